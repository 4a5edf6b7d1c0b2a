"""Blob reads (GET/HEAD with Range) and deletes."""
import asyncio
import logging
import os

from tornado.iostream import StreamClosedError

from handlers.file_sender import send_file, written_by_kernel
from handlers.registry.base import RegistryHandler
from services.ranges import parse_range

log = logging.getLogger("cyp.blobs")

# Bytes handed to the socket per flush: large enough to keep the write path cheap, small enough to stay flat.
FLUSH_BYTES = 4 * 1024 * 1024


class BlobHandler(RegistryHandler):
    audited = {"DELETE": "blob.delete"}

    async def head(self, name, digest):
        await self.get(name, digest, send_body=False)

    async def get(self, name, digest, send_body=True):
        blob = await self.registry.blob(name, digest)
        location = await self.registry.blob_redirect(blob, digest) if send_body else None
        if location:  # the store serves the bytes itself (a presigned URL); the client follows with its Range
            self.set_header("Docker-Content-Digest", digest)
            return self.redirect(location, status=307)
        size = blob["size"]
        byte_range = parse_range(self.request.headers.get("Range"), size)
        start, length = byte_range or (0, size)
        if byte_range:
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", length)
        self.set_header("Docker-Content-Digest", digest)
        self.set_header("ETag", f'"{digest}"')
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Cache-Control", "max-age=31536000")
        if send_body:
            await self.stream(blob, start, length)
        self.finish()

    async def stream(self, blob, start, length):
        """Write the blob: by the kernel from its file when the store keeps one, else piece by piece.

        A read that fails before anything was sent is answered as an error; one that fails after the
        headers went out can only cut the response short: the connection is closed, so the client sees
        a truncated body, and the request is over. So is a client that takes nothing for
        ``blob_send_timeout_seconds``: a stalled reader would otherwise hold the request, and the blob
        store's connection or cursor with it, for as long as it keeps its connection open.
        """
        file_fd = await self.registry.open_blob_file(blob)
        if file_fd is None:
            return await self.stream_pieces(blob, start, length)
        try:
            await self.stream_file(blob, file_fd, start, length)
        finally:
            os.close(file_fd)

    async def stream_file(self, blob, file_fd, start, length):
        stream = self.request.connection.stream
        try:
            sent = await self.flushed_in_time() and await send_file(
                stream.socket, file_fd, start, length, self.config["blob_send_timeout_seconds"])
        except (StreamClosedError, ConnectionError, TimeoutError):  # the client is gone
            self.request.connection.close()
            return
        except Exception:
            if stream.closed():
                return
            return self.cut_short(blob, failed=True)
        if not sent:
            return self.cut_short(blob)
        written_by_kernel(self.request.connection, length)

    async def stream_pieces(self, blob, start, length):
        """Piece by piece, flushing every few MiB so memory stays flat whatever the blob's size."""
        pieces = self.registry.read_blob(blob, start, length)
        unflushed, sent = 0, False
        try:
            async for piece in pieces:
                self.write(piece)
                unflushed += len(piece)
                if unflushed >= FLUSH_BYTES:
                    if not await self.flushed_in_time():
                        return self.cut_short(blob)
                    unflushed, sent = 0, True
        except StreamClosedError:
            return
        except Exception:
            if not sent:
                raise
            self.cut_short(blob, failed=True)
        finally:
            await pieces.aclose()

    def cut_short(self, blob, failed=False):
        """End a response whose headers went out by closing its connection: the client sees a short body."""
        if failed:
            log.exception("blob read failed mid-response; closing the connection",
                          extra={"digest": blob["_id"], "trace_id": self.trace_id})
        else:
            log.warning("blob download stalled: the client took nothing; closing the connection",
                        extra={"digest": blob["_id"], "trace_id": self.trace_id})
        self.request.connection.close()

    async def flushed_in_time(self):
        try:
            async with asyncio.timeout(self.config["blob_send_timeout_seconds"]):
                await self.flush()
        except TimeoutError:
            return False
        return True

    async def delete(self, name, digest):
        await self.registry.unlink_blob(name, digest)
        self.finish_empty(202)
