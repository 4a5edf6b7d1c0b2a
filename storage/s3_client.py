"""A small S3 client: SigV4-signed requests over Tornado's HTTP/1.1 connection, bodies streamed both ways.

It replaces the AWS SDK, whose import and S3 service model cost a process some 28 MB; this needs the
HTTP code Tornado already has. Request bodies are sent in pieces of the buffer given, and response
bodies reach the caller piece by piece with backpressure: the socket is read only as fast as the
caller takes the pieces, so no body is ever held whole. Connections are kept alive between requests
(storage/keepalive_pool.py): on AWS a new one costs a TLS handshake, once per part otherwise.
"""
import asyncio
import hashlib
import random
import ssl
import time
from urllib.parse import urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.iostream import StreamClosedError
from tornado.tcpclient import TCPClient

from storage import sigv4
from storage.aws_credentials import CredentialChain
from storage.keepalive_pool import KeepAlivePool

CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60
ATTEMPTS = 3
SEND_PIECE = 256 * 1024
RECEIVE_PIECE = 256 * 1024
# Error and listing answers are read whole; nothing S3 sends back besides an object is near this.
MAX_DOCUMENT = 16 * 1024 * 1024
# Idle connections kept per endpoint, and for how long: S3 closes a connection idle for about 20 s.
POOL_SIZE = 16
IDLE_SECONDS = 15
RETRIED_STATUSES = {500, 502, 503, 504}
RETRIED_CODES = {"SlowDown", "RequestTimeout", "InternalError"}
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3RequestError(Exception):
    """A request did not succeed: S3 could not be reached, or answered with an error."""


class S3Error(S3RequestError):
    def __init__(self, status, code, message=""):
        super().__init__(f"{status} {code}: {message}" if message else f"{status} {code}")
        self.status = status
        self.code = code


class _StaleConnection(Exception):
    """A connection taken from the pool was closed by the server before any answer to this request."""


class _Response(httputil.HTTPMessageDelegate):
    """What one HTTP/1.1 connection receives: the head at once, then body pieces on demand."""

    _END = object()

    def __init__(self):
        self.head = asyncio.get_running_loop().create_future()
        self.pieces = asyncio.Queue()
        self.finished = False
        self.keeps_alive = False

    def headers_received(self, start_line, headers):
        connection = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
        self.keeps_alive = start_line.version == "HTTP/1.1" and "close" not in connection
        self.head.set_result((start_line.code, headers))

    def data_received(self, chunk):
        # Tornado awaits this before reading on: the caller has to take the piece first.
        self.pieces.put_nowait(chunk)
        return self.pieces.join()

    def finish(self):
        self.finished = True

    def ended(self, error):
        """The connection is done with this response; ``error`` (as raised) when it broke off."""
        if not self.head.done():
            # A connection closed before any answer stays a StreamClosedError: it may have been a stale one.
            self.head.set_exception(error if isinstance(error, StreamClosedError) else
                                    _transport_error(error) if error else
                                    S3RequestError("S3: the connection closed before an answer"))
        self.pieces.put_nowait(self._END if self.finished else
                               (_transport_error(error) if error else
                                S3RequestError("S3: the connection closed in the middle of a body")))

    async def body(self):
        while True:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    piece = await self.pieces.get()
            except TimeoutError:
                raise S3RequestError(f"S3: no answer bytes for {READ_TIMEOUT} s") from None
            self.pieces.task_done()
            if piece is self._END:
                return
            if isinstance(piece, Exception):
                raise piece
            yield piece


class _Exchange:
    """One request and its response on a connection."""

    def __init__(self, pool, stream):
        self.pool, self.stream = pool, stream
        # No header timeout here: it would run from now, while the body is still going out (an 8 MiB part on a
        # link under 140 KB/s cut off every time). The answer's head is awaited for READ_TIMEOUT once sent.
        self.connection = HTTP1Connection(stream, True, HTTP1ConnectionParameters(
            max_body_size=1 << 62, chunk_size=RECEIVE_PIECE))
        self.response = _Response()
        self.reusable = False
        self.receiving = asyncio.ensure_future(self._receive())

    async def _receive(self):
        try:
            open_after = await self.connection.read_response(self.response)
        except Exception as exc:  # the response ends either way; ended() hands the error to the reader
            self.response.ended(exc)
            return
        # Returned: the answer was read to its end (each piece waited for the reader), so the next one
        # on this connection starts clean.
        self.reusable = open_after and self.response.keeps_alive
        self.response.ended(None)

    def close(self):
        """Give the connection back to the pool when its answer was read whole and the server keeps it;
        otherwise (a body not read to the end, an error, ``Connection: close``) close it."""
        if self.reusable:
            self.pool.give_back(self.stream)
        else:
            self.stream.close()
            self.receiving.cancel()


def _transport_error(exc):
    return S3RequestError(f"S3: {type(exc).__name__}: {exc}")


def _parse(document, *names):
    """The root of the XML answer ``document``, whose element name has to be one of ``names`` (namespace
    aside): anything else (a web page from a proxy on the way, say) is a failed request, not an empty answer."""
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        root = None
    if root is None or root.tag.rpartition("}")[2] not in names:
        raise S3RequestError(f"S3: not an S3 answer where {names[0]} was expected: {document[:200]!r}")
    return root


def _parse_error(status, document):
    try:
        root = ElementTree.fromstring(document) if document else None
    except ElementTree.ParseError:
        root = None
    code = root.findtext("Code") if root is not None else None
    message = root.findtext("Message") if root is not None else None
    return S3Error(status, code or str(status), message or "")


class S3Client:
    def __init__(self, bucket, region="us-east-1", endpoint_url="", access_key_id="", secret_access_key="",
                 credentials=None):
        self.bucket = bucket
        self.region = region or "us-east-1"
        self.credentials = credentials or CredentialChain(access_key_id, secret_access_key)
        if endpoint_url:
            # S3-compatible servers behind a custom endpoint rarely serve virtual-host bucket names.
            url = urlsplit(endpoint_url)
            self.scheme, self.host, self.prefix = url.scheme, url.netloc, f"{url.path.rstrip('/')}/{bucket}"
            self._address = (url.hostname, url.port or (443 if url.scheme == "https" else 80))
        else:
            # A dotted bucket name does not match the wildcard certificate of virtual hosts: path style.
            self.scheme = "https"
            self.host, self.prefix = (f"s3.{self.region}.amazonaws.com", f"/{bucket}") if "." in bucket \
                else (f"{bucket}.s3.{self.region}.amazonaws.com", "")
            self._address = (self.host, 443)
        self._ssl = ssl.create_default_context() if self.scheme == "https" else None
        self._tcp = TCPClient()
        self._pool = KeepAlivePool(self._connect, POOL_SIZE, IDLE_SECONDS)

    async def _connect(self):
        host, port = self._address
        stream = await asyncio.wait_for(self._tcp.connect(host, port, ssl_options=self._ssl), CONNECT_TIMEOUT)
        # Tornado reads 64 KiB per call by default: a GiB pull would be 16k pieces, each a turn of the loop.
        stream.read_chunk_size = RECEIVE_PIECE
        return stream

    def close(self):
        """Close the idle connections (and each one in use once its request is done)."""
        self._pool.close()

    def _path(self, key):
        return sigv4.uri_encode(f"{self.prefix}/{key}", safe="/-_.~")

    async def _payload_hash(self, body):
        if body is None:
            return sigv4.EMPTY_SHA256
        if self.scheme == "https":
            return sigv4.UNSIGNED_PAYLOAD  # TLS protects the bytes; hashing them would cost a pass over each part
        # In a thread: hashlib lets go of the GIL for large buffers.
        return await asyncio.to_thread(_sha256_hex, body)

    async def _head(self, method, key, query, headers, body):
        """The request's start line and signed headers."""
        credentials = await self.credentials.get()
        payload_hash = await self._payload_hash(body)
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self._path(key)
        signed = {"host": self.host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash,
                  **{name.lower(): value for name, value in headers.items()}}
        if credentials.session_token:
            signed["x-amz-security-token"] = credentials.session_token
        signed["authorization"] = sigv4.authorization(method, path, query, signed, payload_hash, credentials,
                                                      amz_date, self.region)
        if body is not None or method in ("PUT", "POST"):
            signed["content-length"] = str(len(body) if body is not None else 0)
        target = path + (f"?{sigv4.canonical_query(query)}" if query else "")
        return httputil.RequestStartLine(method, target, "HTTP/1.1"), httputil.HTTPHeaders(signed)

    async def _exchange(self, start_line, headers, body, fresh):
        """Send the request, on a new connection if ``fresh``, else on one from the pool: the exchange, and
        the status and headers of its answer. _StaleConnection: a pooled connection was found closed."""
        stream, reused = (await self._pool.connect(), False) if fresh else await self._pool.take()
        exchange = _Exchange(self._pool, stream)
        try:
            connection = exchange.connection
            # Tornado turns Nagle's algorithm back on after each request; the head goes out at once.
            stream.set_nodelay(True)
            await asyncio.wait_for(connection.write_headers(start_line, headers), READ_TIMEOUT)
            if body is not None:
                # Slices of the caller's buffer: the socket gets the bytes without a copy, a piece at a time
                # (each write is awaited until the socket took it).
                for offset in range(0, len(body), SEND_PIECE):
                    async with asyncio.timeout(READ_TIMEOUT):
                        await connection.write(body[offset:offset + SEND_PIECE])
            connection.finish()
            status, response_headers = await asyncio.wait_for(asyncio.shield(exchange.response.head), READ_TIMEOUT)
        except BaseException as exc:
            exchange.close()
            # The server closed the connection while it was idle (or just as this request came): no answer,
            # so the request did nothing and is sent again as it is (its body is a buffer, not consumed).
            if reused and isinstance(exc, StreamClosedError):
                raise _StaleConnection() from exc
            raise
        return exchange, status, response_headers

    async def _attempt(self, method, key, query, headers, body):
        """One try: the exchange and its status, or the error (an S3Error carries S3's code). A pooled
        connection found closed is replaced once, at once: that is not a failed try."""
        if body is not None:
            body = memoryview(body)
        start_line, signed = await self._head(method, key, query, headers, body)
        try:
            try:
                exchange, status, response_headers = await self._exchange(start_line, signed, body, False)
            except _StaleConnection:
                exchange, status, response_headers = await self._exchange(start_line, signed, body, True)
        except (TimeoutError, OSError, StreamClosedError, httputil.HTTPInputError) as exc:
            raise _transport_error(exc) from exc
        if status < 300:
            return exchange, status, response_headers
        try:
            document = await self._read_document(exchange)
        finally:
            exchange.close()
        raise _parse_error(status, document)

    @staticmethod
    async def _read_document(exchange):
        pieces, size = [], 0
        async for piece in exchange.response.body():
            size += len(piece)
            if size > MAX_DOCUMENT:
                raise S3RequestError("S3: an answer larger than expected")
            pieces.append(piece)
        return b"".join(pieces)

    @staticmethod
    async def _retrying(once):
        """What the first call of ``once`` that succeeds returns; transport errors and S3's "try again" are
        retried (missing credentials are not: CredentialsUnavailable goes to the caller at once)."""
        for attempt in range(ATTEMPTS):
            try:
                return await once()
            except S3RequestError as exc:
                retried = not isinstance(exc, S3Error) or exc.status in RETRIED_STATUSES or exc.code in RETRIED_CODES
                if not retried or attempt == ATTEMPTS - 1:
                    raise
            await asyncio.sleep(random.uniform(0, 0.2 * 2 ** attempt))
        raise AssertionError("unreachable")

    async def _call(self, method, key="", query=(), headers=None, body=None, result=None):
        """A request whose answer is small: (headers, document). An answer that breaks off is retried too.
        ``result``: the root element a 200 answer has, for operations where S3 may answer 200 and only then
        fail, the error in the body (which is then raised, and retried like any other)."""
        async def once():
            exchange, _, response_headers = await self._attempt(method, key, list(query), headers or {}, body)
            try:
                document = await self._read_document(exchange)
            finally:
                exchange.close()
            if result and _parse(document, result, "Error").tag == "Error":
                raise _parse_error(200, document)
            return response_headers, document

        return await self._retrying(once)

    # The operations the blob store uses.

    async def head_bucket(self):
        await self._call("HEAD")

    async def create_bucket(self):
        body = None
        if self.region != "us-east-1":
            body = (f'<CreateBucketConfiguration xmlns="{NS[1:-1]}"><LocationConstraint>{self.region}'
                    "</LocationConstraint></CreateBucketConfiguration>").encode()
        await self._call("PUT", body=body)

    async def object_size(self, key):
        """The size of the object at ``key``, or None when there is none."""
        try:
            headers, _ = await self._call("HEAD", key)
        except S3Error as exc:
            if exc.status == 404:
                return None
            raise
        return int(headers["Content-Length"])

    async def put_object(self, key, body):
        """``body``: the object's bytes (any bytes-like object, kept until the request is done)."""
        await self._call("PUT", key, body=body)

    async def create_multipart_upload(self, key):
        _, document = await self._call("POST", key, [("uploads", "")])
        upload_id = _parse(document, "InitiateMultipartUploadResult").findtext(f"{NS}UploadId")
        if not upload_id:
            raise S3RequestError("S3: CreateMultipartUpload answered without an UploadId")
        return upload_id

    async def upload_part(self, key, upload_id, number, body):
        """Send one part, the bytes-like ``body`` (sent again as it is if a try fails); its ETag."""
        headers, _ = await self._call("PUT", key, [("partNumber", str(number)), ("uploadId", upload_id)], body=body)
        if "ETag" not in headers:
            raise S3RequestError(f"S3: UploadPart {number} answered without an ETag")
        return headers["ETag"]

    async def complete_multipart_upload(self, key, upload_id, parts):
        """``parts``: (number, ETag) pairs in order."""
        listed = "".join(f"<Part><PartNumber>{number}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
                         for number, etag in parts)
        await self._call("POST", key, [("uploadId", upload_id)],
                         body=f"<CompleteMultipartUpload>{listed}</CompleteMultipartUpload>".encode(),
                         result="CompleteMultipartUploadResult")

    async def abort_multipart_upload(self, key, upload_id):
        await self._call("DELETE", key, [("uploadId", upload_id)])

    async def list_multipart_uploads(self, prefix):
        """(key, UploadId) of the multipart uploads in progress under ``prefix`` (the first thousand)."""
        _, document = await self._call("GET", query=[("uploads", ""), ("prefix", prefix)])
        return [(upload.findtext(f"{NS}Key"), upload.findtext(f"{NS}UploadId"))
                for upload in _parse(document, "ListMultipartUploadsResult").iter(f"{NS}Upload")]

    async def get_object(self, key, start, end):
        """The bytes ``start``..``end`` (inclusive) of the object, piece by piece."""
        exchange, status, headers = await self._retrying(
            lambda: self._attempt("GET", key, [], {"Range": f"bytes={start}-{end}"}, None))
        try:
            # A server that ignores Range answers 200 with the whole object: other bytes than those asked for.
            if status != 206 and not (start == 0 and headers.get("Content-Length") == str(end + 1)):
                raise S3RequestError(f"S3: GET {key} ignored the range {start}-{end} (status {status})")
            async for piece in exchange.response.body():
                yield piece
        finally:
            exchange.close()  # a body not read to the end closes the connection

    async def delete_object(self, key):
        await self._call("DELETE", key)

    async def presigned_get(self, key, expires):
        credentials = await self.credentials.get()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self._path(key)
        query = sigv4.presigned_query("GET", path, [], self.host, credentials, amz_date, self.region, expires)
        return f"{self.scheme}://{self.host}{path}?{query}"


def _sha256_hex(view):
    return hashlib.sha256(view).hexdigest()
