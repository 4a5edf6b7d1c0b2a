"""The HTTP server: Tornado's, answering on this plain-HTTP port what Tornado would leave unanswered.

- A TLS handshake is answered at once: clients told a registry is insecure (skopeo and podman with
  --tls-verify=false, Docker's insecure-registries) try HTTPS first and fall back to HTTP when the
  server answers in plain HTTP; Tornado would wait silently for request headers instead, so every
  such call stalled for the client's TLS handshake timeout (10 s for Go clients).
- A request line or header block over the size limit is answered 414 or 431 before the
  connection closes, where Tornado closes it without a word; and a connection closes only once
  the peer stopped sending (lingering, as nginx does), so an answer sent before a body was read
  (413) is not lost to a reset.
- Request body bytes are counted as they are read, streamed bodies included (cyp_http_request_bytes_total).
- A stop drains without failing a request a load balancer sent (see ``stop`` and ``drain``): the
  connections already queued on the port are taken in before it closes, every answer from then on
  carries ``Connection: close``, and a keep-alive connection is closed only once it has been idle
  longer than the balancer keeps an idle connection, so a request is never sent on a connection
  just as this server closes it (a balancer does not resend a POST or PATCH, nor any request whose
  body it streamed, that failed that way).
- A connection from this host may get a small send buffer (``fit_send_buffer``).
"""
import asyncio
import contextlib
import ipaddress
import socket
import time

import tornado.httpserver
import tornado.httputil
import tornado.iostream

from handlers.base import has_body_in
from handlers.metrics import api_of
from services.metrics import HTTP_REQUEST_BYTES

TLS_HANDSHAKE_RECORD = 0x16
# The most a request line and its headers may take together (Tornado's default, set explicitly).
MAX_HEADER_BYTES = 64 * 1024
# A new connection that sends nothing this long is handed to Tornado as it is.
FIRST_BYTE_WAIT_SECONDS = 5
# A connection closing with its request's body unread is drained this long, up to this much, before it closes.
LINGER_SECONDS = 2
LINGER_BYTES = 16 * 1024 * 1024
LINGER_READ_BYTES = 256 * 1024
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


def _close_lingering(sock):
    """Close ``sock`` once the peer has stopped sending, or after LINGER_SECONDS or LINGER_BYTES: closing a socket
    with input unread resets the connection, and the peer loses the answer sent just before (a balancer still
    sending a body refused with 413 then answers its client 502)."""
    try:
        loop = asyncio.get_running_loop()
        sock.shutdown(socket.SHUT_WR)
    except (RuntimeError, OSError):
        sock.close()
        return
    fd, drained = sock.fileno(), 0

    def finish():
        if sock.fileno() >= 0:
            loop.remove_reader(fd)
            deadline.cancel()
            sock.close()

    def readable():
        nonlocal drained
        try:
            data = sock.recv(LINGER_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        drained += len(data)
        if not data or drained > LINGER_BYTES:
            finish()

    deadline = loop.call_later(LINGER_SECONDS, finish)
    loop.add_reader(fd, readable)


def peer_on_this_host(address):
    """Whether an IP peer address (as ``accept`` gives it) is on this host: a loopback address."""
    peer = ipaddress.ip_address(address[0].split("%")[0])
    return (getattr(peer, "ipv4_mapped", None) or peer).is_loopback


def fit_send_buffer(sock, address, local_bytes):
    """Cap the send buffer of a connection from ``address`` at ``local_bytes`` when that peer is on this host
    (0: leave the kernel's autotuning). Measured on loopback, a 1 GiB pull by a Python client that hashes what
    it reads: 1.2 GB/s with the autotuned 4 MiB buffer, 1.7 GB/s with 512 KiB (the kernel doubles it); a
    loopback round trip takes microseconds, so a small buffer never starves the peer. A remote peer keeps the
    buffer its round-trip time needs. The kernel caps what it is given at ``net.core.wmem_max``."""
    if local_bytes and sock.family in (socket.AF_INET, socket.AF_INET6) and peer_on_this_host(address):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, local_bytes)
        except OSError:  # the peer is gone: the first read or write finds it so
            pass


class AnsweringIOStream(tornado.iostream.IOStream):
    """Tornado's stream, saying why before it closes a connection whose request outgrew the header limit, and
    closing only once the peer has stopped sending."""

    def close_fd(self):
        if isinstance(self.error, tornado.iostream.UnsatisfiableReadError):
            # The buffer holds what was read of the request: when its first line does not end within the
            # limit, the request line itself is what is too long.
            line_end = bytes(getattr(self, "_read_buffer", b"\n")).find(b"\n")
            too_long_line = line_end < 0 or line_end >= MAX_HEADER_BYTES
            with contextlib.suppress(OSError):
                self.socket.send(URI_TOO_LONG if too_long_line else HEADERS_TOO_LARGE)
        sock, self.socket = self.socket, None
        _close_lingering(sock)


class BodyCountingDelegate(tornado.httputil.HTTPMessageDelegate):
    """Passes one request on, counting the body bytes read for it (however the handler consumes them), and
    tells the server when the request begins (until then its connection is idle)."""

    def __init__(self, delegate, began):
        self.delegate = delegate
        self.began = began
        self.api = "other"
        self.received = 0

    def headers_received(self, start_line, headers):
        self.began(has_body_in(headers))
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


def _read_whole(request_conn):
    """A request without a body is read whole once its headers are. Tornado marks it read only after a
    streaming handler's ``prepare``, and closes the connection of a request answered before that (a 401
    challenge) without saying ``Connection: close``: a client sending its next request on it got no answer.
    Tornado 6.6 keeps that state in this attribute."""
    request_conn._read_finished = True


def _close_after_answer(request_conn):
    """The answer to this request says ``Connection: close`` (when its headers are still to be sent) and
    the connection closes once it is sent. Tornado 6.6 keeps that decision in this attribute."""
    request_conn._disconnect_on_finish = True


class RegistryHTTPServer(tornado.httpserver.HTTPServer):
    def initialize(self, *args, local_send_buffer_bytes=0, **kwargs):
        super().initialize(*args, max_header_size=MAX_HEADER_BYTES, **kwargs)
        self.local_send_buffer_bytes = local_send_buffer_bytes
        self.draining = False
        self._idle_since = {}  # connection waiting for its next request -> since when (monotonic)
        self._serving = {}  # connection with a request in flight -> that request's HTTP/1 connection
        self._arriving = 0  # accepted connections not yet handed to Tornado (first byte awaited)

    def start_request(self, server_conn, request_conn):
        # Tornado asks for a delegate as a connection starts waiting for its next request.
        self._serving.pop(server_conn, None)
        self._idle_since[server_conn] = time.monotonic()
        return BodyCountingDelegate(super().start_request(server_conn, request_conn),
                                    lambda has_body: self._began(server_conn, request_conn, has_body))

    def _began(self, server_conn, request_conn, has_body):
        self._idle_since.pop(server_conn, None)
        self._serving[server_conn] = request_conn
        if not has_body:
            _read_whole(request_conn)
        if self.draining:
            _close_after_answer(request_conn)

    def on_close(self, server_conn):
        super().on_close(server_conn)
        self._idle_since.pop(server_conn, None)
        self._serving.pop(server_conn, None)

    async def handle_stream(self, stream, address):
        self._arriving += 1
        try:
            first = await _peek_first_byte(stream.socket)
        finally:
            self._arriving -= 1
        if first == TLS_HANDSHAKE_RECORD:
            try:
                await stream.write(PLAIN_HTTP_ANSWER)
            finally:
                stream.close()
            return
        fit_send_buffer(stream.socket, address, self.local_send_buffer_bytes)
        stream.__class__ = AnsweringIOStream
        super().handle_stream(stream, address)

    def stop(self):
        """Stop listening, after taking in the connections the kernel already queued on the port: closing it
        would reset them, after a balancer had sent its request on them."""
        for sock in self._sockets.values():
            while True:
                try:
                    connection, address = sock.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    break
                self._handle_connection(connection, address)
        super().stop()

    async def drain(self, idle_seconds):
        """After ``stop()``: until no connection is left, answer every request with ``Connection: close`` and
        close a connection idle for ``idle_seconds`` (longer than the balancer keeps an idle one)."""
        self.draining = True
        for request_conn in self._serving.values():
            _close_after_answer(request_conn)
        while self._connections or self._arriving:
            now = time.monotonic()
            for server_conn, since in list(self._idle_since.items()):
                if now - since >= idle_seconds:
                    server_conn.stream.close()
            await asyncio.sleep(0.05)
