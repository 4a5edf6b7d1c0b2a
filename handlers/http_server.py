"""The HTTP server: Tornado's, answering on this plain-HTTP port what Tornado would leave unanswered.

- A TLS handshake is answered at once: clients told a registry is insecure (skopeo and podman with
  --tls-verify=false, Docker's insecure-registries) try HTTPS first and fall back to HTTP when the
  server answers in plain HTTP; Tornado would wait silently for request headers instead, so every
  such call stalled for the client's TLS handshake timeout (10 s for Go clients).
- A request line or header block over the size limit is answered 414 or 431 before the
  connection closes, where Tornado closes it without a word.
- Request body bytes are counted as they are read, streamed bodies included (cyp_http_request_bytes_total).
"""
import asyncio
import contextlib
import socket

import tornado.httpserver
import tornado.httputil
import tornado.iostream

from handlers.metrics import api_of
from services.metrics import HTTP_REQUEST_BYTES

TLS_HANDSHAKE_RECORD = 0x16
# The most a request line and its headers may take together (Tornado's default, set explicitly).
MAX_HEADER_BYTES = 64 * 1024
# A new connection that sends nothing this long is handed to Tornado as it is.
FIRST_BYTE_WAIT_SECONDS = 5
PLAIN_HTTP_ANSWER = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                     b"This port speaks plain HTTP.\n")
_TOO_LARGE = "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}"


def _too_large_answer(status, text):
    return _TOO_LARGE.format(status, len(text), text).encode()


URI_TOO_LONG = _too_large_answer("414 URI Too Long", "request line too long\n")
HEADERS_TOO_LARGE = _too_large_answer("431 Request Header Fields Too Large", "request headers too large\n")


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


class AnsweringIOStream(tornado.iostream.IOStream):
    """Tornado's stream, saying why before it closes a connection whose request outgrew the header limit."""

    def close_fd(self):
        if isinstance(self.error, tornado.iostream.UnsatisfiableReadError):
            # The buffer holds what was read of the request: when its first line does not end within the
            # limit, the request line itself is what is too long.
            line_end = bytes(getattr(self, "_read_buffer", b"\n")).find(b"\n")
            too_long_line = line_end < 0 or line_end >= MAX_HEADER_BYTES
            with contextlib.suppress(OSError):
                self.socket.send(URI_TOO_LONG if too_long_line else HEADERS_TOO_LARGE)
        super().close_fd()


class BodyCountingDelegate(tornado.httputil.HTTPMessageDelegate):
    """Passes one request on, counting the body bytes read for it (however the handler consumes them)."""

    def __init__(self, delegate):
        self.delegate = delegate
        self.api = "other"
        self.received = 0

    def headers_received(self, start_line, headers):
        self.api = api_of(start_line.path)
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk):
        self.received += len(chunk)
        return self.delegate.data_received(chunk)

    def _count(self):
        if self.received:
            HTTP_REQUEST_BYTES.labels(self.api).inc(self.received)
            self.received = 0

    def finish(self):
        self._count()
        self.delegate.finish()

    def on_connection_close(self):
        self._count()
        self.delegate.on_connection_close()


class RegistryHTTPServer(tornado.httpserver.HTTPServer):
    def initialize(self, *args, **kwargs):
        super().initialize(*args, max_header_size=MAX_HEADER_BYTES, **kwargs)

    def start_request(self, server_conn, request_conn):
        return BodyCountingDelegate(super().start_request(server_conn, request_conn))

    async def handle_stream(self, stream, address):
        if await _peek_first_byte(stream.socket) == TLS_HANDSHAKE_RECORD:
            try:
                await stream.write(PLAIN_HTTP_ANSWER)
            finally:
                stream.close()
            return
        stream.__class__ = AnsweringIOStream
        super().handle_stream(stream, address)
