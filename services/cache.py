"""A small bounded cache with an age limit, for what may be a little stale (see where it is used for how
much and why). Used from the event loop only."""
import time
from collections import OrderedDict

MISSING = object()


class TtlCache:
    def __init__(self, max_entries, ttl_seconds):
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self.entries = OrderedDict()

    def get(self, key):
        """The value stored less than ``ttl`` ago, or MISSING."""
        entry = self.entries.get(key)
        if entry is None:
            return MISSING
        stored_at, value = entry
        if time.monotonic() - stored_at > self.ttl:
            del self.entries[key]
            return MISSING
        self.entries.move_to_end(key)
        return value

    def put(self, key, value):
        self.entries[key] = (time.monotonic(), value)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return value

    def forget(self, key):
        self.entries.pop(key, None)


class BytesByKey:
    """Immutable byte strings by content key (a digest), least recently used dropped past ``max_bytes``;
    anything over ``max_item`` is not kept."""

    def __init__(self, max_bytes, max_item):
        self.max_bytes = max_bytes
        self.max_item = max_item
        self.size = 0
        self.entries = OrderedDict()

    def get(self, key):
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key, value):
        if len(value) <= self.max_item and key not in self.entries:
            self.entries[key] = value
            self.size += len(value)
            while self.size > self.max_bytes:
                _, dropped = self.entries.popitem(last=False)
                self.size -= len(dropped)
        return value
