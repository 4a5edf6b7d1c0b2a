"""The HTTP server: Tornado's, answering a TLS handshake on this plain-HTTP port at once.

Clients told a registry is insecure (skopeo and podman with --tls-verify=false, Docker's
insecure-registries) try HTTPS first and fall back to HTTP when the server answers in plain
HTTP. Tornado would wait silently for request headers instead, so every such call stalled for
the client's TLS handshake timeout (10 s for Go clients).
"""
import asyncio
import socket

import tornado.httpserver

TLS_HANDSHAKE_RECORD = 0x16
# A new connection that sends nothing this long is handed to Tornado as it is.
FIRST_BYTE_WAIT_SECONDS = 5
PLAIN_HTTP_ANSWER = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                     b"This port speaks plain HTTP.\n")


async def _peek_first_byte(sock):
    """The connection's first byte without consuming it, or None."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
    try:
        await asyncio.wait_for(readable, FIRST_BYTE_WAIT_SECONDS)
        data = sock.recv(1, socket.MSG_PEEK)
    except (asyncio.TimeoutError, OSError):
        return None
    finally:
        loop.remove_reader(fd)
    return data[0] if data else None


class RegistryHTTPServer(tornado.httpserver.HTTPServer):
    async def handle_stream(self, stream, address):
        if await _peek_first_byte(stream.socket) == TLS_HANDSHAKE_RECORD:
            try:
                await stream.write(PLAIN_HTTP_ANSWER)
            finally:
                stream.close()
            return
        super().handle_stream(stream, address)
