"""The BlobStore contract, one suite run against every backend: GridFS, S3 (a real moto_server) and the filesystem.

Sizes are given in the backend's ``unit``, the amount it sends to storage at once (a GridFS batch of
chunks, an S3 part, a filesystem write), so every backend sees writes and reads across its boundaries.
"""
import asyncio
import random
import secrets

import boto3
import pytest
from pymongo import AsyncMongoClient

from storage.blobstore import StorageUnavailable
from storage.filesystem_store import IO_PIECE, FilesystemBlobStore
from storage.gridfs_store import CHUNKS_PER_WRITE_MIB, GridFSBlobStore
from storage.s3_store import PART_SIZE, S3BlobStore
from tests.support.manifests import sha256
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

# Small GridFS chunks: many chunk boundaries inside one batch.
GRIDFS_CHUNK = 256 * 1024
# Piece sizes written in turn: odd, so pieces straddle every chunk, part and write boundary.
ODD_PIECES = [1, 7, 65_537, 1_000_003, 333_333, 4_194_319]


class Backend:
    """A store under test, with the backend-specific look at what it keeps."""

    def __init__(self, store, unit):
        self.store = store
        self.unit = unit

    async def upload_leftovers(self, state):
        """How many pieces of an unfinished upload the backend still keeps."""
        raise NotImplementedError

    async def blob_exists(self, ref):
        raise NotImplementedError


class GridFSBackend(Backend):
    async def upload_leftovers(self, state):
        if await self.store.files.find_one({"_id": state["file_id"]}):
            return 0  # committed: the chunks are the blob's
        return await self.store.chunks.count_documents({"files_id": state["file_id"]})

    async def blob_exists(self, ref):
        return (await self.store.files.find_one({"_id": ref["file_id"]}) is not None
                or await self.store.chunks.count_documents({"files_id": ref["file_id"]}) > 0)


class S3Backend(Backend):
    """Looks at the bucket with boto3, a client independent of the store's own."""

    def __init__(self, store, unit, moto):
        super().__init__(store, unit)
        self.boto = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name=REGION,
                                 aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)

    async def upload_leftovers(self, state):
        listed = await asyncio.to_thread(self.boto.list_multipart_uploads, Bucket=self.store.bucket,
                                         Prefix=state["key"])
        return len(listed.get("Uploads", []))

    async def blob_exists(self, ref):
        listed = await asyncio.to_thread(self.boto.list_objects_v2, Bucket=self.store.bucket, Prefix=ref["key"])
        return listed.get("KeyCount", 0) > 0


class FilesystemBackend(Backend):
    async def upload_leftovers(self, state):
        return int((self.store.root / state["path"]).exists())

    async def blob_exists(self, ref):
        return (self.store.root / ref["path"]).exists()


@pytest.fixture(params=["gridfs", "s3", "filesystem"])
async def backend(request, tmp_path):
    if request.param == "gridfs":
        client = AsyncMongoClient(request.getfixturevalue("mongo").uri)
        store = GridFSBlobStore(client[f"contract_{secrets.token_hex(4)}"], GRIDFS_CHUNK)
        await store.ensure_ready()
        yield GridFSBackend(store, CHUNKS_PER_WRITE_MIB * 1024 * 1024)
        await client.drop_database(store.db.name)
        await client.close()
        return
    if request.param == "s3":
        moto = request.getfixturevalue("moto")
        store = S3BlobStore(**moto.store_settings(f"contract-{secrets.token_hex(4)}"))
        backend = S3Backend(store, PART_SIZE, moto)
    else:
        backend = FilesystemBackend(FilesystemBlobStore(tmp_path / "blobs"), IO_PIECE)
    await backend.store.ensure_ready()
    yield backend
    await backend.store.close()


def payload(size, seed):
    return random.Random(f"{seed}-{size}").randbytes(size)


async def write_in_pieces(writer, data):
    offset, sizes = 0, iter(ODD_PIECES * (len(data) // sum(ODD_PIECES) + 1))
    while offset < len(data):
        size = next(sizes)
        await writer.write(data[offset:offset + size])
        offset += size


async def read_bytes(store, ref, start, length):
    return b"".join([bytes(piece) async for piece in store.read(ref, start, length)])


async def store_blob(store, data):
    writer = await store.open_writer(store.new_upload_state())
    await write_in_pieces(writer, data)
    return await writer.commit(sha256(data))


async def test_odd_sized_pieces_across_boundaries_read_back_exactly(backend):
    data = payload(2 * backend.unit + 12_345, "odd")

    ref = await store_blob(backend.store, data)

    assert await read_bytes(backend.store, ref, 0, len(data)) == data


@pytest.mark.parametrize("size_in", [lambda unit: 0, lambda unit: 1, lambda unit: unit, lambda unit: unit + 1],
                         ids=["empty", "one-byte", "one-unit", "one-unit-plus-one"])
async def test_blobs_of_edge_sizes_written_in_one_piece(backend, size_in):
    data = payload(size_in(backend.unit), "edge")
    writer = await backend.store.open_writer(backend.store.new_upload_state())

    await writer.write(data)
    ref = await writer.commit(sha256(data))

    assert await read_bytes(backend.store, ref, 0, len(data)) == data


async def test_checkpoints_let_other_writers_continue_the_upload(backend):
    store, unit = backend.store, backend.unit
    data = payload(2 * unit + 777, "resume")
    cuts = [0, unit // 2 + 3, unit // 2 + 3, unit + 5, 2 * unit, len(data)]  # one request sends nothing
    state = store.new_upload_state()

    for start, end in zip(cuts, cuts[1:-1]):
        writer = await store.open_writer(state)  # a new request, as on another node
        await write_in_pieces(writer, data[start:end])
        state = await writer.checkpoint()
    writer = await store.open_writer(state)
    await write_in_pieces(writer, data[cuts[-2]:])
    ref = await writer.commit(sha256(data))

    assert await read_bytes(store, ref, 0, len(data)) == data
    assert await backend.upload_leftovers(state) == 0


async def test_byte_ranges_are_read_exactly(backend):
    data = payload(2 * backend.unit + 333, "ranges")
    ref = await store_blob(backend.store, data)
    unit, size = backend.unit, len(data)
    ranges = [(0, 1), (0, 100), (unit - 10, 20), (unit // 2, unit + 1000), (GRIDFS_CHUNK - 1, 2),
              (size - 7, 7), (size - 1, 1), (0, size)]

    for start, length in ranges:
        assert await read_bytes(backend.store, ref, start, length) == data[start:start + length], (start, length)


async def test_reading_zero_bytes_yields_nothing(backend):
    data = payload(1000, "zero")
    ref = await store_blob(backend.store, data)

    for start in (0, 500, 1000):
        assert [piece async for piece in backend.store.read(ref, start, 0)] == []


async def test_a_read_closed_early_leaves_the_blob_readable(backend):
    data = payload(3 * IO_PIECE + 5, "early")
    ref = await store_blob(backend.store, data)

    pieces = backend.store.read(ref, 0, len(data))
    first = await anext(pieces)
    await pieces.aclose()

    assert bytes(first) == data[:len(first)]
    assert await read_bytes(backend.store, ref, 0, len(data)) == data


async def test_a_writer_after_a_crashed_request_continues_from_the_checkpoint(backend):
    store, unit = backend.store, backend.unit
    data = payload(2 * unit + 4321, "crash")
    writer = await store.open_writer(store.new_upload_state())
    await write_in_pieces(writer, data[:unit + 11])
    state = await writer.checkpoint()

    crashed = await store.open_writer(state)
    await write_in_pieces(crashed, payload(unit + unit // 2, "garbage"))  # sent past the checkpoint, never saved
    await crashed.discard()
    resumed = await store.open_writer(state)
    await write_in_pieces(resumed, data[unit + 11:])
    ref = await resumed.commit(sha256(data))

    assert await read_bytes(store, ref, 0, len(data)) == data
    assert await backend.upload_leftovers(state) == 0


async def test_abort_removes_the_upload_data_and_can_be_repeated(backend):
    store = backend.store
    writer = await store.open_writer(store.new_upload_state())
    await write_in_pieces(writer, payload(backend.unit + 100, "abort"))
    state = await writer.checkpoint()
    assert await backend.upload_leftovers(state) > 0

    await store.abort(state)
    await store.abort(state)

    assert await backend.upload_leftovers(state) == 0


async def crash_before_any_checkpoint(backend):
    """The state of an upload whose first request sent more than a unit, then died."""
    state = backend.store.new_upload_state()
    crashed = await backend.store.open_writer(state)
    await write_in_pieces(crashed, payload(backend.unit + backend.unit // 2, "early-crash"))
    await crashed.discard()
    return state


async def test_abort_after_a_request_that_crashed_before_any_checkpoint_leaves_nothing(backend):
    state = await crash_before_any_checkpoint(backend)

    await backend.store.abort(state)

    assert await backend.upload_leftovers(state) == 0


async def test_commit_after_a_request_that_crashed_before_any_checkpoint_leaves_nothing_behind(backend):
    state = await crash_before_any_checkpoint(backend)
    data = payload(backend.unit + 99, "after-early-crash")

    writer = await backend.store.open_writer(state)
    await write_in_pieces(writer, data)
    ref = await writer.commit(sha256(data))

    assert await read_bytes(backend.store, ref, 0, len(data)) == data
    assert await backend.upload_leftovers(state) == 0


async def test_abort_of_an_upload_that_never_wrote_is_harmless(backend):
    await backend.store.abort(backend.store.new_upload_state())


async def test_delete_removes_the_blob(backend):
    data = payload(backend.unit + 3, "delete")
    ref = await store_blob(backend.store, data)
    assert await backend.blob_exists(ref)

    await backend.store.delete(ref)
    await backend.store.delete(ref)

    assert not await backend.blob_exists(ref)
    with pytest.raises(StorageUnavailable):
        await read_bytes(backend.store, ref, 0, len(data))


async def test_two_commits_of_one_digest_own_their_data(backend):
    """The caller keeps one and deletes the other: that must never take the kept one's bytes."""
    data = payload(IO_PIECE + 17, "twice")
    first, second = await store_blob(backend.store, data), await store_blob(backend.store, data)

    await backend.store.delete(second)

    assert first != second
    assert await read_bytes(backend.store, first, 0, len(data)) == data


async def test_ping_answers_and_nothing_redirects_by_default(backend):
    ref = await store_blob(backend.store, b"x")

    await backend.store.ping()

    assert await backend.store.redirect_url(ref, sha256(b"x")) is None
