"""A loopback proxy in front of moto_server that breaks chosen S3 requests the way networks and S3 do.

Towards the client it keeps connections alive as S3 does (moto_server closes each one after its
answer: the proxy asks it on a connection of its own per request and drops its ``Connection: close``),
and it counts the connections it accepts. A rule names the requests it breaks (method and a piece of
the target) and how; every other request goes to moto_server and its answer back, unchanged.
"""
import asyncio
import contextlib
import socket
import ssl

# What a rule can do to a request.
LOSE_ANSWER = "lose-answer"  # moto_server gets and carries out the request; the answer never reaches the client
STALLED_ERROR = "stalled-error"  # a 500 whose body stops after a few bytes and never ends
STALLED_BODY = "stalled-body"  # a 206 whose body stops after a few bytes and never ends
SILENT = "silent"  # the request is taken and never answered
NOT_XML = "not-xml"  # a 200 whose body is a web page (a captive portal, a misrouted proxy), not S3's XML
NO_SUCH_UPLOAD = "no-such-upload"  # S3's 404 NoSuchUpload, its answer to completing an upload it already completed
INTERNAL_ERROR_IN_200 = "internal-error-in-200"  # S3's 200 whose body is an InternalError (CompleteMultipartUpload)
CUT_ANSWER = "cut-answer"  # moto_server's answer breaks off half-way (the connection drops)
CLOSE_ANNOUNCED = "close-announced"  # moto_server's answer keeps its "Connection: close"; the proxy then waits
# for the client to close
CLOSED_ON_ARRIVAL = "closed-on-arrival"  # the connection is closed as the request comes, unanswered and not carried out
# (what a request sent on a connection the server is closing for being idle meets)
THROTTLED_BODY = "throttled-body"  # the request body is taken slowly and steadily (a slow link), then carried out
IGNORE_RANGE = "ignore-range"  # the Range header is dropped: the whole object comes back, as from a server without ranges
TRAILING_ANSWER = "trailing-answer"  # moto_server's answer, followed in the same write by bytes it never announced:
# a second answer, as a broken middlebox sends, which must not be taken for the answer to the next request

# THROTTLED_BODY's pace: 5 MiB/s at most, a piece of the body every twentieth of a second.
THROTTLED_PIECE = 256 * 1024
THROTTLED_PAUSE = 0.05
RECEIVE_BUFFER = 256 * 1024

# The beginnings of answers that then stop, until the client closes the connection.
STALLS = {
    STALLED_ERROR: b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 200\r\n\r\n<Error><Co",
    STALLED_BODY: b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\nsome ",
    SILENT: b"",
}

# What TRAILING_ANSWER sends after the real answer: an answer to a range read nobody made yet.
TRAILING = b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\nnot asked!"

# The answers the proxy gives itself, without asking moto_server.
ANSWERS = {
    NOT_XML: (b"200 OK", b"text/html", b"<html><body>Please sign in to continue</body></html>"),
    NO_SUCH_UPLOAD: (b"404 Not Found", b"application/xml",
                     b"<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>"),
    INTERNAL_ERROR_IN_200: (b"200 OK", b"application/xml",
                            (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
                             b"<Message>We encountered an internal error. Please try again.</Message></Error>")),
}


class FaultyS3Proxy:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.rules = []
        self.seen = []
        self.accepted = 0
        self.open_connections = 0  # accepted and not yet closed by the client (or given up by the proxy)
        self.idle = set()  # the writers of connections waiting for their next request
        self.server = None
        self.port = None

    async def start(self):
        listening = socket.create_server(("127.0.0.1", 0))
        # A receive window of a slow link's size rather than loopback's megabytes: a body taken slowly then holds
        # its sender back piece by piece instead of vanishing into buffers.
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.server = await asyncio.start_server(self._serve, sock=listening)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()

    @property
    def endpoint_url(self):
        return f"http://127.0.0.1:{self.port}"

    def add(self, action, method, target_part="", times=1):
        """Break the next ``times`` requests with ``method`` whose target contains ``target_part``."""
        self.rules.append([action, method, target_part, times])

    def _action(self, method, target):
        for rule in self.rules:
            action, rule_method, target_part, times = rule
            if times and method == rule_method and target_part in target:
                rule[3] -= 1
                return action
        return None

    def close_idle(self):
        """Close every connection waiting for a request, as a server does after its idle timeout."""
        for writer in list(self.idle):
            writer.close()

    async def _serve(self, reader, writer):
        self.accepted += 1
        self.open_connections += 1
        try:
            while await self._serve_one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.idle.discard(writer)
            self.open_connections -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve_one(self, reader, writer):
        """Answer one request; whether the connection stays open for the next."""
        self.idle.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        finally:
            self.idle.discard(writer)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ")
        length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                       if line.lower().startswith("content-length:")), 0)
        action = self._action(method, target)
        body = await (self._read_slowly(reader, length) if action == THROTTLED_BODY else reader.readexactly(length))
        self.seen.append((method, target, action))
        if action == CLOSED_ON_ARRIVAL:
            return False
        if action in STALLS:
            writer.write(STALLS[action])
            await writer.drain()
            await reader.read()  # until the client gives up and closes
            return False
        if action in ANSWERS:
            status, content_type, document = ANSWERS[action]
            writer.write(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                         % (status, content_type, len(document), document))
            await writer.drain()
            return True
        if action == IGNORE_RANGE:
            head = "\r\n".join(line for line in lines if not line.lower().startswith("range:")).encode("latin-1")
        answer = await self._forward(head + body)
        if action == LOSE_ANSWER:
            return False
        if action == CUT_ANSWER:
            writer.write(answer[:len(answer) - 20])
            await writer.drain()
            return False
        if action == CLOSE_ANNOUNCED:
            writer.write(answer)
            await writer.drain()
            await reader.read()
            return False
        answer_head, _, answer_body = answer.partition(b"\r\n\r\n")
        kept = [line for line in answer_head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        trailing = TRAILING if action == TRAILING_ANSWER else b""
        writer.write(b"\r\n".join(kept) + b"\r\n\r\n" + answer_body + trailing)
        await writer.drain()
        return True

    @staticmethod
    async def _read_slowly(reader, length):
        pieces = []
        while length:
            pieces.append(await reader.readexactly(min(length, THROTTLED_PIECE)))
            length -= len(pieces[-1])
            await asyncio.sleep(THROTTLED_PAUSE)
        return b"".join(pieces)

    async def _forward(self, request):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            writer.write(request)
            await writer.drain()
            return await reader.read()  # moto_server closes the connection after its answer
        finally:
            writer.close()


class TlsFront:
    """An HTTPS endpoint in front of the proxy: TLS with the certificate given, each connection carried to the
    proxy on one of its own (so the proxy's count of connections is the count of TLS ones). It notes the server
    name each client asked for (SNI)."""

    def __init__(self, upstream_port, cert_path, key_path):
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert_path, key_path)
        self.context.sni_callback = lambda connection, name, context: self.server_names.append(name)
        self.server_names = []
        self.server = None
        self.port = None

    async def start(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer):
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(_carry(reader, upstream_writer), _carry(upstream_reader, writer))


async def _carry(reader, writer):
    """Bytes from ``reader`` to ``writer`` until either side ends; then ``writer`` is closed."""
    try:
        while data := await reader.read(RECEIVE_BUFFER):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()
