"""The blob store as the services see it: any backend, each call timed into cyp_blob_store_duration_seconds.

One wrapper around the BlobStore contract (storage/blobstore.py), so no backend carries metrics code. A read
is timed until its first piece (or its end, when it has none), or as the opening of its file: the rest of a
stream is paced by the client.
Failed calls are timed too.
"""
import contextlib
import time

from services.metrics import BLOB_STORE_DURATION
from storage.blobstore import BlobStore, UploadWriter


@contextlib.contextmanager
def _timed(series):
    began = time.perf_counter()
    try:
        yield
    finally:
        series.observe(time.perf_counter() - began)


class _TimedRead:
    """The backend's read iterator, timing its first step."""

    def __init__(self, pieces, series):
        self.pieces = pieces
        self.series = series

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.series is None:
            return await self.pieces.__anext__()
        series, self.series = self.series, None
        with _timed(series):
            return await self.pieces.__anext__()

    async def aclose(self):
        await self.pieces.aclose()


class _TimedWriter(UploadWriter):
    def __init__(self, writer, series):
        self.writer = writer
        self.series = series

    async def write(self, data):
        with _timed(self.series["write"]):
            await self.writer.write(data)

    async def checkpoint(self):
        with _timed(self.series["checkpoint"]):
            return await self.writer.checkpoint()

    async def commit(self, digest):
        with _timed(self.series["commit"]):
            return await self.writer.commit(digest)

    async def discard(self):
        await self.writer.discard()


class TimedBlobStore(BlobStore):
    OPERATIONS = ("open", "write", "checkpoint", "commit", "abort", "read", "delete", "ping")

    def __init__(self, store):
        self.store = store
        self.name = store.name
        self.keeps_files = store.keeps_files
        # The labelled series looked up once: a write of every upload piece observes one.
        self.series = {operation: BLOB_STORE_DURATION.labels(store.name, operation) for operation in self.OPERATIONS}

    async def ensure_ready(self):
        await self.store.ensure_ready()

    async def close(self):
        await self.store.close()

    def new_upload_state(self):
        return self.store.new_upload_state()

    async def open_writer(self, state):
        with _timed(self.series["open"]):
            return _TimedWriter(await self.store.open_writer(state), self.series)

    async def abort(self, state):
        with _timed(self.series["abort"]):
            await self.store.abort(state)

    def read(self, ref, start, length):
        return _TimedRead(self.store.read(ref, start, length), self.series["read"])

    async def open_file(self, ref, size):
        with _timed(self.series["read"]):
            return await self.store.open_file(ref, size)

    async def redirect_url(self, ref, digest):
        return await self.store.redirect_url(ref, digest)

    async def delete(self, ref):
        with _timed(self.series["delete"]):
            await self.store.delete(ref)

    async def ping(self):
        with _timed(self.series["ping"]):
            await self.store.ping()
