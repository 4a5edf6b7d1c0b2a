"""Sending part of a file to a client's socket by the kernel (``sendfile``), for blobs the store keeps as files.

Each ``sendfile`` call runs in the default executor, since it reads the disk, and hands over only what the
socket takes at once (the socket is non-blocking); waiting for room in the socket is the event loop's. The
wait watches a duplicate of the socket's descriptor: the original is registered with the loop by Tornado's
stream, and a second registration of the same descriptor would replace Tornado's.
"""
import asyncio
import os

# The most one call sends: bounds the time a call holds an executor thread.
SENDFILE_BYTES = 8 * 1024 * 1024


class FileShort(Exception):
    """The file ended before the bytes asked for."""


def _send_some(sock_fd, file_fd, offset, count):
    try:
        sent = os.sendfile(sock_fd, file_fd, offset, min(count, SENDFILE_BYTES))
    except BlockingIOError:
        return None
    if sent == 0:
        raise FileShort(f"the file ended at byte {offset}, {count} bytes short")
    return sent


async def _writable(loop, fd, idle_seconds):
    ready = loop.create_future()
    loop.add_writer(fd, lambda: ready.done() or ready.set_result(True))
    try:
        async with asyncio.timeout(idle_seconds):
            return await ready
    except TimeoutError:
        return False
    finally:
        loop.remove_writer(fd)


async def send_file(sock, file_fd, offset, count, idle_seconds):
    """Send ``count`` bytes of ``file_fd`` from ``offset``; False when the peer took nothing for
    ``idle_seconds``. A peer gone raises ConnectionError (or TimeoutError);
    a file shorter than asked, FileShort."""
    loop = asyncio.get_running_loop()
    sock_fd, sending = os.dup(sock.fileno()), None
    try:
        while count:
            sending = loop.run_in_executor(None, _send_some, sock_fd, file_fd, offset, count)
            # Shielded: a cancelled send must still let its thread finish before the descriptors close.
            sent = await asyncio.shield(sending)
            if sent is not None:
                offset += sent
                count -= sent
            # Less than asked: the socket is full, and another call now would only find it so.
            if count and (sent is None or sent < SENDFILE_BYTES) and not await _writable(loop, sock_fd, idle_seconds):
                return False
        return True
    finally:
        if sending is not None and not sending.done():
            await asyncio.wait([sending])
        os.close(sock_fd)


def written_by_kernel(request_conn, count):
    """Count ``count`` body bytes sent past Tornado's HTTP/1 connection as written: it checks what it wrote
    against Content-Length when the response finishes. Tornado 6.6 keeps that count in this attribute."""
    request_conn._expected_content_remaining -= count
