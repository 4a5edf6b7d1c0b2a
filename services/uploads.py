"""Blob uploads: sessions that stream into the BlobStore while hashing, resumable on any node."""
import asyncio
import logging
import time

from services.digests import new_hasher, parse_digest, restore_hasher
from services.errors import DigestInvalid, DomainError, UploadBusy, UploadInvalid, UploadOffsetMismatch, UploadUnknown

log = logging.getLogger("cyp.uploads")


def range_header(size):
    """The spec's inclusive ``0-<last byte>``; an empty upload reports 0-0 as the reference registry does."""
    return f"0-{max(size - 1, 0)}"


class UploadSession:
    """One request's exclusive write access to an upload."""

    def __init__(self, uploads, doc, writer, hasher):
        self.uploads = uploads
        self.doc = doc
        self.writer = writer
        self.hasher = hasher
        self.size = doc["size"]
        self.lease_token = doc["lease_token"]
        self.renewed_at = time.monotonic()

    @property
    def id(self):
        return self.doc["_id"]

    async def write(self, data):
        self.hasher.update(data)
        await self.writer.write(data)
        self.size += len(data)
        lease_seconds = self.uploads.lease_seconds
        if time.monotonic() - self.renewed_at > lease_seconds / 3:
            self.renewed_at = time.monotonic()
            if not await self.uploads.collections.uploads.renew(self.id, self.lease_token, lease_seconds):
                raise UploadInvalid("upload was taken over by another request")

    async def save(self, keep_lease=False):
        """Make the appended bytes durable; the upload is released for the next request, or, with
        ``keep_lease``, stays this session's to go on writing."""
        state = await self.writer.checkpoint()
        saved = await self.uploads.collections.uploads.save_progress(
            self.id, self.lease_token, self.size, self.hasher.serialize(), state, self.uploads.expiry_seconds,
            keep_lease_seconds=self.uploads.lease_seconds if keep_lease else None)
        if not saved:
            raise UploadInvalid("upload was taken over by another request")
        if keep_lease:
            self.renewed_at = time.monotonic()
        return self.size

    async def release(self):
        """Give the lease back without recording anything (the request died mid-stream)."""
        await self.writer.discard()
        await self.uploads.collections.uploads.release(self.id, self.lease_token)

    async def finish(self, digest):
        """Verify, charge the project, commit and link; a wrong digest or a refused charge leave nothing.
        True when this made the blob's link into the repository (False: it was there already)."""
        algorithm, _ = parse_digest(digest)
        hashed_here = algorithm == self.doc["algorithm"]
        if hashed_here and f"{algorithm}:{self.hasher.finalize()}" != digest:
            await self.abort()
            raise DigestInvalid(digest=digest)
        registry, name, uploads = self.uploads.registry, self.doc["repo"], self.uploads.collections.uploads
        # Noted first: a node that dies between the charge and the link leaves the charge to be given back
        # (BlobUploads.give_back_abandoned_charges) once this request's lease runs out.
        if not await uploads.mark_charging(self.id, self.lease_token, digest):
            raise UploadInvalid("upload was taken over by another request")
        try:
            project = await registry.charge(name, digest, self.size, holder=self.id)
        except DomainError:  # refused (quota, project gone): nothing of it may stay
            await self.abort()
            raise
        try:
            await self._commit(digest, algorithm, hashed_here)
            linked = await registry.link_blob(name, digest, self.size, charged_project=project, holder=self.id)
        except BaseException:
            await registry.give_back(project["_id"], digest, self.id)
            await uploads.clear_charging(self.id)
            raise
        await uploads.delete(self.id)
        return linked

    async def _commit(self, digest, algorithm, hashed_here):
        store = self.uploads.store
        ref = await self.writer.commit(digest)
        if not hashed_here and await self.uploads.digest_stored(ref, self.size, algorithm) != digest:
            await store.delete(ref)
            await self.uploads.collections.uploads.delete(self.id)
            raise DigestInvalid(digest=digest)
        if not await self.uploads.collections.blobs.add(digest, self.size, ref):
            await store.delete(ref)

    async def abort(self):
        await self.uploads.store.abort(self.doc["store_state"])
        await self.uploads.collections.uploads.delete(self.id)


class BlobUploads:
    def __init__(self, collections, store, registry, expiry_seconds, lease_seconds):
        self.collections = collections
        self.store = store
        self.registry = registry
        self.expiry_seconds = expiry_seconds
        # A request holds its upload's lease this long and renews it while the body streams.
        self.lease_seconds = lease_seconds

    async def start(self, repo, algorithm="sha256"):
        return await self.collections.uploads.create(
            repo, algorithm, self.store.new_upload_state(), new_hasher(algorithm).serialize(), self.expiry_seconds)

    async def status(self, repo, upload_id):
        doc = await self.collections.uploads.get(upload_id, repo)
        if doc is None:
            raise UploadUnknown(uuid=upload_id)
        return doc

    async def open(self, repo, upload_id, start=None, take_over=False):
        """Lease the upload for one request; ``start`` is the Content-Range start the client claims.
        ``take_over`` takes it even from a holder whose lease has not run out (an import resuming its own)."""
        doc = await self.collections.uploads.acquire(upload_id, repo, self.lease_seconds, take_over)
        if doc is None:
            current = await self.status(repo, upload_id)
            raise UploadBusy(uuid=upload_id, size=current["size"])
        if start is not None and start != doc["size"]:
            await self.collections.uploads.release(upload_id, doc["lease_token"])
            raise UploadOffsetMismatch(upload_id, doc["size"], start)
        try:
            writer = await self.store.open_writer(doc["store_state"])
        except Exception:
            await self.collections.uploads.release(upload_id, doc["lease_token"])
            raise
        return UploadSession(self, doc, writer, restore_hasher(doc["algorithm"], doc["hash_state"]))

    async def cancel(self, repo, upload_id):
        doc = await self.status(repo, upload_id)
        await self.store.abort(doc["store_state"])
        await self.collections.uploads.delete(upload_id)

    async def digest_stored(self, ref, size, algorithm):
        """Hash a committed blob by reading it back (when the client's algorithm differs from the one hashed)."""
        hasher = new_hasher(algorithm)
        async for piece in self.store.read(ref, 0, size):
            hasher.update(bytes(piece))
        return f"{algorithm}:{hasher.finalize()}"

    async def give_back_abandoned_charges(self):
        """Give back the quota charge of every upload whose request died between charging and linking its blob
        (its lease ran out with the charge noted); returns how many. The upload itself stays, for its client
        or the expiry sweep, as after any request that died."""
        count = 0
        while (doc := await self.collections.uploads.claim_abandoned_charge(self.lease_seconds)) is not None:
            digest = doc["charging"]
            linked = await self.collections.blobs.is_linked(doc["repo"], digest)
            try:
                project = await self.registry.project_of(doc["repo"])
            except DomainError:  # the project is gone, and its accounting with it
                project = None
            if linked:  # it died after the link: the reference is the link's, and the upload is done
                if project is not None:
                    await self.registry.held(project["_id"], digest, doc["_id"])
                await self.collections.uploads.delete(doc["_id"])
                continue
            if project is not None:
                await self.registry.give_back(project["_id"], digest, doc["_id"])
            await self.collections.uploads.clear_charging(doc["_id"])
            count += 1
        if count:
            log.warning("uploads whose node died while charging their blob: any charge given back",
                        extra={"count": count})
        return count

    async def sweep_expired(self):
        """Delete expired uploads and their partial data; returns how many went."""
        count = 0
        while (doc := await self.collections.uploads.claim_expired(self.lease_seconds)) is not None:
            await self.store.abort(doc["store_state"])
            await self.collections.uploads.delete(doc["_id"])
            count += 1
        if count:
            log.info("expired uploads removed", extra={"count": count})
        return count


async def sweep_forever(uploads, interval_seconds):
    while True:
        try:
            await uploads.give_back_abandoned_charges()
            await uploads.sweep_expired()
        except Exception:
            log.exception("upload sweep failed")
        await asyncio.sleep(interval_seconds)
