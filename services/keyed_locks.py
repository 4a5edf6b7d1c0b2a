"""Locks by key, made on first use and dropped once nobody holds or awaits them. Used from the event loop only."""
import asyncio
import contextlib


class KeyedLocks:
    def __init__(self):
        self.locks = {}  # key -> [lock, how many hold or await it]

    @contextlib.asynccontextmanager
    async def hold(self, key):
        entry = self.locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self.locks[key]
