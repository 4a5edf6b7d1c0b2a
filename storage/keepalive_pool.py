"""Idle HTTP/1.1 keep-alive connections to one endpoint (scheme, host, port), for the S3 client.

A request takes the connection given back last (the one least likely to have been closed by the
server meanwhile) or opens one; a connection comes back only when its answer was read whole and the
server keeps it open. At most ``limit`` wait idle, each for ``idle_seconds`` at most.
"""
import asyncio
import collections
import select


def dropped(stream):
    """Whether an idle connection can no longer carry a request: closed, or holding or readable bytes while no
    answer is due (the server's FIN or TLS close_notify, or bytes nobody asked for, which the next request would
    take for its answer)."""
    if stream.closed():
        return True
    # Bytes Tornado read ahead past the last answer (it has no public way to ask): the socket no longer shows them.
    # (Over TLS too: a record is decrypted whole into Tornado's buffer, which is larger than any record.)
    if stream._read_buffer_size:
        return True
    poller = select.poll()
    poller.register(stream.socket.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class KeepAlivePool:
    def __init__(self, connect, limit, idle_seconds):
        self._connect = connect  # async () -> a new Tornado IOStream to the endpoint
        self.limit = limit
        self.idle_seconds = idle_seconds
        self._idle = collections.deque()  # [stream, timer], given back last at the right
        self._closed = False

    async def take(self):
        """(stream, reused): an idle connection still open, else a new one."""
        while self._idle:
            stream, timer = self._idle.pop()
            timer.cancel()
            if not dropped(stream):
                return stream, True
            stream.close()
        return await self.connect(), False

    async def connect(self):
        """A new connection, whatever is idle."""
        return await self._connect()

    def give_back(self, stream):
        if self._closed or stream.closed() or len(self._idle) >= self.limit:
            stream.close()
            return
        entry = [stream, None]
        entry[1] = asyncio.get_running_loop().call_later(self.idle_seconds, self._expire, entry)
        self._idle.append(entry)

    def _expire(self, entry):
        self._idle.remove(entry)
        entry[0].close()

    def close(self):
        """Close the idle connections; those in use are closed when given back."""
        self._closed = True
        while self._idle:
            stream, timer = self._idle.pop()
            timer.cancel()
            stream.close()
