"""Blob reads (GET/HEAD with Range) and deletes."""
import re

from tornado.iostream import StreamClosedError

from handlers.registry.base import RegistryHandler
from services.errors import RegistryError

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
# Bytes handed to the socket per flush: large enough to keep the write path cheap, small enough to stay flat.
FLUSH_BYTES = 4 * 1024 * 1024


def parse_range(header, size):
    """``(start, length)`` for a single byte range; None without one or when it is malformed (RFC 9110
    says to ignore those); RANGE_INVALID when it cannot be satisfied."""
    match = _RANGE_RE.match((header or "").strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    unsatisfiable = RegistryError("RANGE_INVALID", f"range not satisfiable for a blob of {size} bytes",
                                  detail={"range": header, "size": size}, headers={"Content-Range": f"bytes */{size}"})
    if first == "":
        length = min(int(last), size)
        if length == 0:
            raise unsatisfiable
        return size - length, length
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise unsatisfiable
    end = min(int(last), size - 1) if last else size - 1
    return start, end - start + 1


class BlobHandler(RegistryHandler):
    async def head(self, name, digest):
        await self.get(name, digest, send_body=False)

    async def get(self, name, digest, send_body=True):
        blob = await self.registry.blob(name, digest)
        location = await self.blob_store.redirect_url(blob["ref"], digest) if send_body else None
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
            await self.stream(blob["ref"], start, length)
        self.finish()

    async def stream(self, ref, start, length):
        """Write the blob piece by piece, flushing every few MiB so memory stays flat whatever its size."""
        pieces = self.blob_store.read(ref, start, length)
        unflushed = 0
        try:
            async for piece in pieces:
                self.write(piece)
                unflushed += len(piece)
                if unflushed >= FLUSH_BYTES:
                    await self.flush()
                    unflushed = 0
        except StreamClosedError:
            return
        finally:
            await pieces.aclose()

    async def delete(self, name, digest):
        await self.registry.unlink_blob(name, digest)
        self.set_status(202)
        self.set_header("Content-Length", 0)
        self.finish()
