"""Rate limits: requests per caller (an authenticated user, else the client's address) in fixed windows of
``rate_limit_window_seconds``, shared by every node through MongoDB without a database round trip per request.

Each process counts the requests it admits in memory. Every ``rate_limit_sync_seconds`` it adds those counts
to the shared counters (storage/rate_limits.py, one bulk write) and reads back the cluster's totals of the
callers it counted, and of every caller who has reached a limit anywhere. A request is refused
when the cluster total known at the last sync plus what this process admitted since reaches the limit.

The bound on over-admission: a process decides on the cluster's total as of its last sync (at most one sync
interval old) plus its own counts since; a caller it has not counted yet in the window, and who had not reached
a limit at that sync, it counts from zero until its next sync. So beyond a limit the cluster admits at most one
sync interval of that caller's traffic. Windows start at multiples of their
length since the epoch, so every node (clocks kept by NTP) counts into the same documents; a window's
documents expire by TTL. While the database cannot be reached each process still enforces the limits on
what it counts itself.
"""
import asyncio
import logging
import time

import pymongo.errors

from services.errors import RateLimited
from services.metrics import RATE_LIMITED
from storage.rate_limits import window_end

log = logging.getLogger("cyp.rate_limits")

USER, ADDRESS = "user", "address"


def _add(counts, into):
    for key, n in counts.items():
        into[key] = into.get(key, 0) + n


class RateLimiter:
    def __init__(self, counters, config, clock=time.time):
        self.counters = counters
        self.window_seconds = config["rate_limit_window_seconds"]
        self.limits = {USER: config["rate_limit_per_user"], ADDRESS: config["rate_limit_per_address"]}
        self.sync_seconds = config["rate_limit_sync_seconds"]
        self.clock = clock
        self.window = None
        self.known = {}  # caller key -> the cluster's total at the last sync, with what this process counted since
        self.fresh = {}  # caller key -> requests admitted here since the last sync (not in ``known`` yet)
        self.unsent = {}  # window -> {caller key: n}: counted in ``known`` but not sent yet
        self.failing = False

    @property
    def enabled(self):
        return any(limit > 0 for limit in self.limits.values())

    def admit(self, user, address, api):
        """Count one request of ``user`` (None: an anonymous caller, counted by its ``address``), or raise
        RateLimited until the window ends. ``api`` labels the refusals in the metrics."""
        if user is not None:
            kind, key = USER, "user:" + user["_id"]
        else:
            kind, key = ADDRESS, "address:" + address
        limit = self.limits[kind]
        if limit <= 0:
            return
        window = self._current(self.clock())
        admitted = self.fresh.get(key, 0)
        if self.known.get(key, 0) + admitted >= limit:
            RATE_LIMITED.labels(api, kind).inc()
            raise RateLimited(window_end(window, self.window_seconds),
                              f"too many requests: {limit} per {self.window_seconds} s for this {kind}")
        self.fresh[key] = admitted + 1

    def _current(self, now):
        """The start of the window ``now`` is in, begun here if it is new."""
        window = int(now // self.window_seconds) * self.window_seconds
        if window != self.window:
            if self.fresh:
                _add(self.fresh, self.unsent.setdefault(self.window, {}))
            self.window, self.known, self.fresh = window, {}, {}
        return window

    async def sync(self):
        """Send the counts admitted since the last sync; learn the cluster's totals of this window."""
        window = self._current(self.clock())
        batches, self.unsent = self.unsent, {}
        if self.fresh:
            _add(self.fresh, batches.setdefault(window, {}))
            # On their way to the database they still count here, while the answer is awaited.
            _add(self.fresh, self.known)
            self.fresh = {}
        sent = False
        try:
            for start, counts in batches.items():
                if counts:
                    await self.counters.add(start, counts, window_end(start, 2 * self.window_seconds))
            sent = True
            totals = await self.counters.totals(window, list(batches.get(window, ())),
                                                min(n for n in self.limits.values() if n > 0))
        except pymongo.errors.PyMongoError as exc:
            if not sent and window == self.window and window in batches:  # an ended window's matter no more
                _add(batches[window], self.unsent.setdefault(window, {}))
            if not self.failing:
                log.warning("rate limits: cannot share counts, each process limits alone until it can: %r", exc)
            self.failing = True
            return
        if self.failing:
            log.info("rate limits: sharing counts again")
            self.failing = False
        if window == self.window:
            self.known.update(totals)

    async def sync_forever(self):
        if not self.enabled:
            return
        while True:
            await asyncio.sleep(self.sync_seconds)
            try:
                await self.sync()
            except Exception:
                log.exception("rate limits: sync failed")
