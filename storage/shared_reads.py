"""Fresh reads of a hot key, shared: one round trip serves every request that asked while the one before
was under way. Used from the event loop only.

A read asked while none of its key is under way is sent at once. One asked while a read of its key is
under way waits for the next read, which is sent as soon as that one answers, for all who asked
meanwhile. Every caller therefore gets the answer of a read sent after it asked: it sees every write
acknowledged before it asked, as a read of its own would, and a key read by many clients at once (a tag
every node of a deployment pulls) costs the database one read per round trip instead of one per request.
"""
import asyncio


class SharedReads:
    def __init__(self):
        self.keys = {}  # key: [the future of the read under way, the future of the next one or None]

    async def read(self, key, fetch):
        """The answer of ``fetch()`` (a coroutine function: the read of ``key``), from a read sent after this
        call; the answer is shared by callers, who must not change it."""
        entry = self.keys.get(key)
        if entry is None:
            future = asyncio.get_running_loop().create_future()
            self.keys[key] = [future, None]
            self._send(key, fetch, future)
        else:
            if entry[1] is None:
                entry[1] = asyncio.get_running_loop().create_future()
            future = entry[1]
        # Shielded: a caller cancelled (its client gone) leaves the read to the others who wait for it.
        return await asyncio.shield(future)

    def _send(self, key, fetch, future):
        asyncio.ensure_future(fetch()).add_done_callback(lambda read: self._answered(key, fetch, future, read))

    def _answered(self, key, fetch, future, read):
        entry = self.keys[key]
        if entry[1] is None:
            del self.keys[key]
        else:
            self.keys[key] = [entry[1], None]
            self._send(key, fetch, entry[1])
        if read.cancelled():
            future.cancel()
        elif read.exception() is not None:
            future.set_exception(read.exception())
        else:
            future.set_result(read.result())
