"""S3 blob store (on the client in storage/s3_client.py) whose streamed multipart uploads resume on any node.

An upload is one multipart upload to a key of its own, ``blobs/uploads/<uuid>``, and the
committed blob stays at that key (its ref names it): copying a multi-GB object to a
content address would cost as much as the upload itself. The upload state holds the key, the
UploadId, the parts sent so far and the tail shorter than a part, so the next request, on any
node, continues where the last one checkpointed.
"""
import asyncio
import mmap
import uuid

from bson import Binary

from storage.aws_credentials import CredentialsUnavailable
from storage.blobstore import (
    BlobStore,
    StorageUnavailable,
    UploadWriter,
    raises_unavailable,
    unavailable_on,
)
from storage.s3_client import S3Client, S3Error, S3RequestError

# Every part but the last must be at least 5 MiB; 8 MiB parts allow blobs up to 78 GiB.
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000
PRESIGNED_SECONDS = 300

_ERRORS = (S3RequestError, CredentialsUnavailable)
_storage_errors = raises_unavailable("S3", *_ERRORS)


def _part_buffer():
    # An anonymous map, not a bytes object: its pages take memory only once written, it never grows by
    # copying, and it goes back to the system as a whole (freed 8 MiB heap blocks stayed in the process).
    return mmap.mmap(-1, PART_SIZE, flags=mmap.MAP_PRIVATE)


class S3Writer(UploadWriter):
    """Sends whole parts; one part is uploaded while the next one fills.

    A writer has two part buffers, used in turn: one fills while the other, the part in flight, is the
    body of its UploadPart request as it is (not copied, and sent again whole if a try fails) until S3
    has answered for it. So a push holds two parts, whatever the size of the blob.
    """

    def __init__(self, store, state):
        self.store = store
        self.key = state["key"]
        self.upload_id = state["upload_id"]
        self.parts = list(state["parts"])
        self.part = _part_buffer()
        self.filled = len(state["tail"])
        self.part[:self.filled] = state["tail"]
        self.in_flight = None  # the other buffer: the part being sent, free again once drained
        self.pending = None
        self.failed = False  # a part was not stored: nothing more can be written or saved from here

    async def write(self, data):
        self._refuse_when_failed()
        with memoryview(data) as view:
            while view:
                taken = min(len(view), PART_SIZE - self.filled)
                self.part[self.filled:self.filled + taken] = view[:taken]
                self.filled += taken
                view = view[taken:]
                if self.filled == PART_SIZE:
                    await self._send_part()

    def _filled(self):
        return memoryview(self.part)[:self.filled]

    @_storage_errors
    async def _send_part(self):
        await self._drain()
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise StorageUnavailable(f"S3: a blob cannot exceed {MAX_PARTS} parts of {PART_SIZE} bytes")
        if self.upload_id is None:
            self.upload_id = await self.store.start_multipart(self.key)
        body = self._filled()
        self.part, self.in_flight, self.filled = self.in_flight or _part_buffer(), self.part, 0
        self.pending = asyncio.ensure_future(self.store.upload_part(self.key, self.upload_id, number, body))

    @_storage_errors
    async def _drain(self):
        self._refuse_when_failed()
        if self.pending is not None:
            pending, self.pending = self.pending, None
            try:
                self.parts.append(await pending)
            except Exception:
                self._give_up()
                raise

    def _refuse_when_failed(self):
        # A checkpoint now would skip the lost part: the upload resumes from the last one instead.
        if self.failed:
            raise StorageUnavailable("S3: a part of this upload was not stored; it resumes from its last checkpoint")

    def _give_up(self):
        """The part in flight failed, so the writer is done: its buffers' pages go back to the system now. The
        error's traceback holds views of them, in reference cycles that would keep them until a full collection."""
        self.failed = True
        for buffer in (self.part, self.in_flight):
            buffer.madvise(mmap.MADV_DONTNEED)

    async def checkpoint(self):
        await self._drain()
        return {"key": self.key, "upload_id": self.upload_id, "parts": self.parts,
                "tail": Binary(self.part[:self.filled])}

    @_storage_errors
    async def commit(self, digest):
        await self._drain()
        if self.upload_id is None:
            # Smaller than one part: a single PUT.
            await self.store.client.put_object(self.key, self._filled())
        else:
            if self.filled:
                await self._send_part()  # the last part may be short
                await self._drain()
            try:
                await self.store.client.complete_multipart_upload(
                    self.key, self.upload_id, [(part["PartNumber"], part["ETag"]) for part in self.parts])
            except S3Error as exc:
                # A retry after S3 completed the upload but its answer was lost finds no such upload any
                # more; the object at the upload's own key (no other upload writes there) is then this one.
                if exc.code != "NoSuchUpload" or await self.store.client.object_size(self.key) is None:
                    raise
        return {"key": self.key}


class S3BlobStore(BlobStore):
    name = "s3"

    def __init__(self, bucket, region="", endpoint_url="", access_key_id="", secret_access_key="", redirect=False):
        self.bucket = bucket
        self.redirect = redirect
        # Empty keys fall back to the AWS credential chain (environment, shared files, instance role).
        self.client = S3Client(bucket, region=region, endpoint_url=endpoint_url, access_key_id=access_key_id,
                               secret_access_key=secret_access_key)

    @_storage_errors
    async def ensure_ready(self):
        """Create the bucket when it is missing."""
        try:
            await self.client.head_bucket()
            return
        except S3Error as exc:
            if exc.code not in ("404", "NoSuchBucket"):
                raise
        try:
            await self.client.create_bucket()
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):  # another node won
                raise

    def new_upload_state(self):
        return {"key": f"blobs/uploads/{uuid.uuid4().hex}", "upload_id": None, "parts": [], "tail": Binary(b"")}

    async def open_writer(self, state):
        # Nothing to undo: a part a dead request sent past the checkpoint is sent again under the same
        # number (replacing it), and parts beyond the last one are dropped by CompleteMultipartUpload.
        return S3Writer(self, state)

    async def _multipart_uploads(self, key):
        return [upload_id for listed, upload_id in await self.client.list_multipart_uploads(key) if listed == key]

    async def start_multipart(self, key):
        """The key's multipart upload: one a request that died before its checkpoint began, or a new one."""
        existing = await self._multipart_uploads(key)
        if existing:
            return existing[0]
        return await self.client.create_multipart_upload(key)

    async def upload_part(self, key, upload_id, number, body):
        return {"PartNumber": number, "ETag": await self.client.upload_part(key, upload_id, number, body)}

    @_storage_errors
    async def abort(self, state):
        # Listed rather than taken from the state: a request that died before its checkpoint may have
        # started the multipart upload, and an abort that already happened finds nothing to do.
        for upload_id in await self._multipart_uploads(state["key"]):
            try:
                await self.client.abort_multipart_upload(state["key"], upload_id)
            except S3Error as exc:
                if exc.code != "NoSuchUpload":
                    raise

    async def read(self, ref, start, length):
        if length <= 0:
            return
        remaining = length
        with unavailable_on("S3", *_ERRORS):
            pieces = self.client.get_object(ref["key"], start, start + length - 1)
            try:
                async for piece in pieces:
                    remaining -= len(piece)
                    yield piece
            finally:
                await pieces.aclose()  # drops the connection when the body was not read to the end
        if remaining:
            raise StorageUnavailable(f"S3: blob {ref['key']} is {remaining} bytes short")

    @_storage_errors
    async def redirect_url(self, ref, digest):
        if not self.redirect:
            return None
        return await self.client.presigned_get(ref["key"], PRESIGNED_SECONDS)

    @_storage_errors
    async def delete(self, ref):
        await self.client.delete_object(ref["key"])

    @_storage_errors
    async def ping(self):
        await self.client.head_bucket()

    async def close(self):
        self.client.close()
