"""Blob reads (GET/HEAD with Range) and deletes."""
import asyncio
import logging

from tornado.iostream import StreamClosedError

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
        """Write the blob piece by piece, flushing every few MiB so memory stays flat whatever its size.

        A read that fails before anything was sent is answered as an error; one that fails after the
        headers went out can only cut the response short: the connection is closed, so the client sees
        a truncated body, and the request is over. So is a client that takes nothing for
        ``blob_send_timeout_seconds``: a stalled reader would otherwise hold the request, and the blob
        store's connection or cursor with it, for as long as it keeps its connection open.
        """
        pieces = self.registry.read_blob(blob, start, length)
        unflushed, sent = 0, False
        try:
            async for piece in pieces:
                self.write(piece)
                unflushed += len(piece)
                if unflushed >= FLUSH_BYTES:
                    if not await self.flushed_in_time():
                        log.warning("blob download stalled: the client took nothing; closing the connection",
                                    extra={"digest": blob["_id"], "trace_id": self.trace_id})
                        self.request.connection.close()
                        return
                    unflushed, sent = 0, True
        except StreamClosedError:
            return
        except Exception:
            if not sent:
                raise
            log.exception("blob read failed mid-response; closing the connection",
                          extra={"digest": blob["_id"], "trace_id": self.trace_id})
            self.request.connection.close()
        finally:
            await pieces.aclose()

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
