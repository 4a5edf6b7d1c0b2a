"""Fresh reads of a hot key, shared: one round trip serves every request that asked while the one before
was under way. Used from the event loop only.

A read asked while none of its key is under way is sent at once. One asked while a read of its key is
under way waits for the next read, which is sent as soon as that one answers, for all who asked
meanwhile. Every caller therefore gets the answer of a read sent after it asked: it sees every write
acknowledged before it asked, as a read of its own would, and a key read by many clients at once (a tag
every node of a deployment pulls) costs the database one read per round trip instead of one per request.
"""
import asyncio
import contextvars

from pymongo.errors import NetworkTimeout

# A read that takes longer fails (answered 503) rather than holding every request for its key.
READ_SECONDS = 10


class SharedReads:
    def __init__(self, read_seconds=READ_SECONDS):
        self.read_seconds = read_seconds
        # key: [the future of the read under way, the future of the next one or None, the read's task]
        self.keys = {}

    async def read(self, key, fetch):
        """The answer of ``fetch()`` (a coroutine function: the read of ``key``), from a read sent after this
        call; the answer is shared by callers, who must not change it."""
        entry = self.keys.get(key)
        if entry is None:
            future = asyncio.get_running_loop().create_future()
            self.keys[key] = [future, None, None]
            self._send(key, fetch)
        else:
            if entry[1] is None:
                entry[1] = asyncio.get_running_loop().create_future()
            future = entry[1]
        # Shielded: a caller cancelled (its client gone) leaves the read to the others who wait for it.
        return await asyncio.shield(future)

    def _send(self, key, fetch):
        # In a context of its own: the read serves several requests, and logs no one's trace id.
        task = asyncio.get_running_loop().create_task(self._timed(key, fetch), context=contextvars.Context())
        self.keys[key][2] = task
        task.add_done_callback(lambda read: self._answered(key, fetch, read))

    async def _timed(self, key, fetch):
        try:
            async with asyncio.timeout(self.read_seconds):
                return await fetch()
        except TimeoutError:
            raise NetworkTimeout(f"the read of {key} took over {self.read_seconds} s") from None

    def _answered(self, key, fetch, read):
        future, following, _ = self.keys.pop(key)
        if following is not None:
            self.keys[key] = [following, None, None]
            self._send(key, fetch)
        if read.cancelled():
            future.cancel()
        elif read.exception() is not None:
            future.set_exception(read.exception())
            future.exception()  # retrieved here too: its callers may all have been cancelled
        else:
            future.set_result(read.result())
