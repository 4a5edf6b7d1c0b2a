"""GridFS blob store whose uploads resume on any node.

Chunks are written to ``fs.chunks`` as the body streams in (``files_id`` = the upload's file
id, every chunk exactly ``chunk_size`` bytes); the tail shorter than a chunk is kept in the
upload state; ``commit`` writes the last chunk and the ``fs.files`` document, after which the
blob is an ordinary GridFS file.
"""
import asyncio

from bson import Binary, ObjectId
from pymongo.errors import PyMongoError

from storage.blobstore import BlobStore, StorageUnavailable, UploadWriter, raises_unavailable
from storage.clock import utcnow
from storage.mongo import BULK_DATA

# Chunks sent per insert_many: fewer round trips without holding much in memory. A 1 GiB push's worker peaked
# at 93-98 MB with 4 MiB, 84 MB with 2 MiB, at the same speed (139-144 against 143-155 MB/s).
CHUNKS_PER_WRITE_MIB = 2
# Bytes fetched per query when reading: each asks for a bounded range of ``n``, so the first byte of any
# blob comes after one small query (a single sorted query over a large file makes some servers gather
# every chunk before answering the first).
READ_BATCH_BYTES = 4 * 1024 * 1024

_storage_errors = raises_unavailable("GridFS", PyMongoError)


class GridFSWriter(UploadWriter):
    """Writes whole chunks in batches; one batch is inserted while the next one fills."""

    def __init__(self, store, state):
        self.store = store
        self.file_id = state["file_id"]
        self.next_n = state["chunks"]
        self.buffer = bytearray(state["tail"])
        self.batch_bytes = max(1, CHUNKS_PER_WRITE_MIB * 1024 * 1024 // store.chunk_size) * store.chunk_size
        self.pending = None

    async def write(self, data):
        self.buffer += data
        if len(self.buffer) >= self.batch_bytes:
            await self._send_chunks()

    async def _send_chunks(self, include_tail=False):
        size = self.store.chunk_size
        end = len(self.buffer) if include_tail else len(self.buffer) // size * size
        if end == 0:
            return
        docs = []
        with memoryview(self.buffer) as view:  # one copy per chunk, and released before the buffer shrinks
            for offset in range(0, end, size):
                docs.append({"files_id": self.file_id, "n": self.next_n,
                             "data": Binary(bytes(view[offset:offset + size]))})
                self.next_n += 1
        del self.buffer[:end]
        await self._drain()
        self.pending = asyncio.ensure_future(self.store.chunk_writes.insert_many(docs, ordered=True))

    @_storage_errors
    async def _drain(self):
        if self.pending is not None:
            pending, self.pending = self.pending, None
            await pending

    async def checkpoint(self):
        await self._send_chunks()
        await self._drain()
        return {"file_id": self.file_id, "chunks": self.next_n, "tail": Binary(bytes(self.buffer))}

    @_storage_errors
    async def commit(self, digest):
        length = (self.next_n * self.store.chunk_size) + len(self.buffer)
        await self._send_chunks(include_tail=True)
        await self._drain()
        await self.store.files.insert_one({
            "_id": self.file_id, "length": length, "chunkSize": self.store.chunk_size,
            "uploadDate": utcnow(), "filename": digest,
            "metadata": {"digest": digest},
        })
        return {"file_id": self.file_id, "chunk_size": self.store.chunk_size}


class GridFSBlobStore(BlobStore):
    name = "gridfs"

    def __init__(self, db, chunk_size, bucket="fs"):
        self.db = db
        self.chunk_size = chunk_size
        self.chunks = db[f"{bucket}.chunks"]
        # Chunks need no journal write of their own: the upload's checkpoint or commit is durable and covers them.
        self.chunk_writes = self.chunks.with_options(write_concern=BULK_DATA)
        self.files = db[f"{bucket}.files"]

    async def ensure_ready(self):
        await self.chunks.create_index([("files_id", 1), ("n", 1)], unique=True)
        await self.files.create_index([("filename", 1), ("uploadDate", 1)])

    def new_upload_state(self):
        return {"file_id": ObjectId(), "chunks": 0, "tail": Binary(b"")}

    @_storage_errors
    async def open_writer(self, state):
        # Chunks past the recorded count belong to a request that died mid-stream.
        await self.chunks.delete_many({"files_id": state["file_id"], "n": {"$gte": state["chunks"]}})
        return GridFSWriter(self, state)

    @_storage_errors
    async def abort(self, state):
        await self.chunks.delete_many({"files_id": state["file_id"]})

    async def _chunks(self, file_id, first, end):
        """Chunks ``first`` to ``end - 1`` of a file, in order."""
        return await self.chunks.find({"files_id": file_id, "n": {"$gte": first, "$lt": end}},
                                      sort=[("n", 1)]).to_list(None)

    async def read(self, ref, start, length):
        if length <= 0:
            return
        size = ref["chunk_size"]
        first, last = start // size, (start + length - 1) // size
        skip, remaining, expected_n = start - first * size, length, first
        per_batch = max(1, READ_BATCH_BYTES // size)

        def fetch(batch_start):
            return asyncio.ensure_future(self._chunks(ref["file_id"], batch_start,
                                                      min(batch_start + per_batch, last + 1)))

        # One batch is fetched ahead while the previous one is being sent.
        pending = fetch(first)
        try:
            while pending is not None:
                docs = await pending
                next_start = expected_n + len(docs)
                pending = fetch(next_start) if docs and next_start <= last else None
                for chunk in docs:
                    if chunk["n"] != expected_n:
                        raise StorageUnavailable(f"GridFS: chunk {expected_n} of {ref['file_id']} missing")
                    data = chunk["data"]
                    piece = data[skip:skip + remaining] if skip or remaining < len(data) else data
                    skip, remaining, expected_n = 0, remaining - len(piece), expected_n + 1
                    yield piece
        except PyMongoError as exc:
            raise StorageUnavailable(f"GridFS: {exc}") from exc
        finally:
            if pending is not None:
                pending.cancel()
        if remaining:
            raise StorageUnavailable(f"GridFS: blob {ref['file_id']} is {remaining} bytes short")

    @_storage_errors
    async def delete(self, ref):
        await self.files.delete_one({"_id": ref["file_id"]})
        await self.chunks.delete_many({"files_id": ref["file_id"]})

    @_storage_errors
    async def ping(self):
        await self.db.command("ping")
