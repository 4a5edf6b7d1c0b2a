"""Filesystem blob store for single-node and shared-filesystem deployments.

An upload appends to ``<root>/uploads/<uuid>``; its state is that path (relative to the root)
and the size made durable, so a resumed writer first cuts the file back to that size and a dead
request's extra bytes vanish. ``commit`` fsyncs the file and renames it into the
content-addressed tree, ``<root>/blobs/<algorithm>/<xx>/<hex>.<uuid>``; a rename is atomic, so
a crash never leaves a half-written file under a digest. The upload's uuid stays in the name
because every commit owns its data (see storage.blobstore): a second push of a digest, or a push
claiming a digest it does not have, must never replace or remove the file another ref points at.

File I/O runs in the default executor, so the event loop never waits on the disk.
"""
import asyncio
import contextlib
import functools
import os
import re
import tempfile
import uuid
from pathlib import Path

from storage.blobstore import BlobStore, StorageUnavailable, UploadWriter, raises_unavailable, unavailable_on
from storage.directories import fsync_dir

# Bytes gathered before one write call, and read per piece.
IO_PIECE = 1024 * 1024
# Bytes written after which an upload's file is synced in the background while the body goes on coming:
# the kernel starts writing dirty pages back only at a tenth of memory, so the fsync of the final PUT
# would otherwise write a whole layer to disk while the client waits.
WRITEBACK_BYTES = 32 * 1024 * 1024
# Digests as the registry hands them over (already verified); also keeps paths inside the root.
_DIGEST_RE = re.compile(r"^([a-z0-9]+):([a-f0-9]{2,})$")

_storage_errors = raises_unavailable("filesystem", OSError)


async def _in_thread(func, *args):
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


def _open_for_append(path, size):
    """The upload file cut back to ``size`` (bytes past it are a dead request's), opened to append."""
    file = open(path, "ab", buffering=0)
    try:
        actual = os.fstat(file.fileno()).st_size
        if actual < size:
            raise StorageUnavailable(f"filesystem: upload {path} holds {actual} of its {size} recorded bytes")
        file.truncate(size)
    except BaseException:
        file.close()
        raise
    return file


def _open_holding(path, size):
    """The file opened for reading, once found to hold at least ``size`` bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        actual = os.fstat(fd).st_size
        if actual < size:
            raise StorageUnavailable(f"filesystem: blob {path} holds {actual} of its {size} bytes")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(file, data):
    view = memoryview(data)
    while view:
        view = view[file.write(view):]


class FilesystemWriter(UploadWriter):
    """Writes MiB-sized pieces; one piece is written in a thread while the next one fills."""

    def __init__(self, store, state, file):
        self.store = store
        self.path = state["path"]
        self.size = state["size"]  # bytes handed to the file; the buffer comes on top
        self.file = file
        self.buffer = bytearray()
        # The directory entry of a new file must be durable before its size is recorded.
        self.new_file = state["size"] == 0
        self.unsynced = 0
        self.syncing = None  # the background sync in flight (see WRITEBACK_BYTES)

    async def write(self, data):
        self.buffer += data
        if len(self.buffer) >= IO_PIECE:
            await self._send()

    @_storage_errors
    async def _send(self):
        await self._drain()
        if not self.buffer:
            return
        data, self.buffer = self.buffer, bytearray()
        if self.file is None:  # closed by a checkpoint; the writer goes on
            self.file = await _in_thread(open, self.store.root / self.path, "ab", 0)
        loop = asyncio.get_running_loop()
        self.pending = loop.run_in_executor(None, _write_all, self.file, data)
        self.size += len(data)
        self.unsynced += len(data)
        if self.unsynced >= WRITEBACK_BYTES and (self.syncing is None or self.syncing.done()):
            await self._synced()  # the last one's failure, when it failed, is this request's
            self.unsynced = 0
            self.syncing = loop.run_in_executor(None, os.fdatasync, self.file.fileno())

    async def _synced(self):
        """Wait for the background sync before the file closes; its failure is the request's (a later fsync
        of the file would not report a write-back error again)."""
        if self.syncing is not None:
            syncing, self.syncing = self.syncing, None
            await syncing

    async def _drain(self):
        if self.pending is not None:
            pending, self.pending = self.pending, None
            await pending

    def _sync_and_close(self):
        if self.file is not None:
            os.fsync(self.file.fileno())
            self.file.close()
            self.file = None
        if self.new_file:
            fsync_dir(self.store.root / "uploads")
            self.new_file = False

    @_storage_errors
    async def checkpoint(self):
        await self._send()
        await self._drain()
        await self._synced()
        await _in_thread(self._sync_and_close)
        return {"path": self.path, "size": self.size}

    @_storage_errors
    async def commit(self, digest):
        await self._send()
        await self._drain()
        await self._synced()
        target = self.store.blob_path(digest, Path(self.path).name)
        await _in_thread(self._sync_and_rename, self.store.root / target)
        return {"path": target}

    def _sync_and_rename(self, target):
        self._sync_and_close()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.store.root / self.path, target)
        fsync_dir(target.parent)

    async def discard(self):
        await super().discard()
        with contextlib.suppress(Exception):
            await self._synced()
        if self.file is not None:
            self.file.close()
            self.file = None


class FilesystemBlobStore(BlobStore):
    name = "filesystem"
    keeps_files = True

    def __init__(self, root):
        self.root = Path(root).resolve()

    @_storage_errors
    async def ensure_ready(self):
        for folder in ("uploads", "blobs"):
            await _in_thread(functools.partial(os.makedirs, self.root / folder, exist_ok=True))

    @staticmethod
    def blob_path(digest, name):
        """``blobs/<algorithm>/<xx>/<hex>.<name>``, relative to the root."""
        match = _DIGEST_RE.match(digest)
        if not match:
            raise ValueError(f"not a digest: {digest!r}")
        algorithm, encoded = match.groups()
        return f"blobs/{algorithm}/{encoded[:2]}/{encoded}.{name}"

    def new_upload_state(self):
        return {"path": f"uploads/{uuid.uuid4().hex}", "size": 0}

    @_storage_errors
    async def open_writer(self, state):
        file = await _in_thread(_open_for_append, self.root / state["path"], state["size"])
        return FilesystemWriter(self, state, file)

    @_storage_errors
    async def abort(self, state):
        await _in_thread(self._remove, state["path"])

    def _remove(self, path):
        (self.root / path).unlink(missing_ok=True)

    @staticmethod
    def _pread(fd, offset, end):
        return asyncio.get_running_loop().run_in_executor(None, os.pread, fd, min(IO_PIECE, end - offset), offset)

    @_storage_errors
    async def open_file(self, ref, size):
        return await _in_thread(_open_holding, self.root / ref["path"], size)

    async def read(self, ref, start, length):
        if length <= 0:
            return
        fd = await self.open_file(ref, start + length)
        with unavailable_on("filesystem", OSError):
            offset, end = start, start + length
            # The next piece is read while the previous one is being sent.
            ahead = self._pread(fd, offset, end)
            try:
                while ahead is not None:
                    # Shielded: a cancelled reader must still let the thread finish before the close below.
                    piece = await asyncio.shield(ahead)
                    ahead = None
                    if not piece:
                        raise StorageUnavailable(f"filesystem: blob {ref['path']} is {end - offset} bytes short")
                    offset += len(piece)
                    if offset < end:
                        ahead = self._pread(fd, offset, end)
                    yield piece
            finally:
                if ahead is not None:
                    await asyncio.wait([ahead])  # its thread may still be using the descriptor
                os.close(fd)

    @_storage_errors
    async def delete(self, ref):
        await _in_thread(self._remove, ref["path"])

    @_storage_errors
    async def ping(self):
        await _in_thread(self._probe)

    def _probe(self):
        """Create and remove a file: the root is there and writable."""
        fd, path = tempfile.mkstemp(dir=self.root / "uploads", prefix=".ping-")
        os.close(fd)
        os.remove(path)
