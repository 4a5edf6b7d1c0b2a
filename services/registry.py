"""Repository-level registry operations: blob links, manifests, tags, referrers, catalog, all under quota."""
import asyncio
import datetime
import time

from services.access import visibility
from services.cache import BytesByKey
from services.digests import is_digest, parse_digest
from services.errors import (
    BlobUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestUnknown,
    NameUnknown,
    TokenRequired,
)
from services.keyed_locks import KeyedLocks
from services.manifests import OCI_INDEX, annotations_of, parse_manifest
from services.names import check_repository_name, check_tag
from storage.accounting import (
    CLAIM_POLL_SECONDS,
    CLAIM_WAIT_SECONDS,
    ClaimPending,
    crossing_event,
)
from storage.blobs import BlobGone
from storage.clock import utcnow


class ManifestVanished(Exception):
    """A manifest about to be tagged was deleted meanwhile."""


class ChargeRefused(Exception):
    """A charge taken inside a transaction would exceed the quota (the transaction is aborted)."""


def push_event_data(name, tags, parsed, size):
    """PUSH_ARTIFACT's data: what was pushed; an index's children are listed in its one event."""
    data = {"repository": name, "tags": tags, "digest": parsed.digest, "media_type": parsed.media_type,
            "size": size}
    if parsed.artifact_type:
        data["artifact_type"] = parsed.artifact_type
    if parsed.children:
        data["children"] = parsed.children
    if parsed.subject:
        data["subject"] = parsed.subject
    return data


# Repositories looked at when a mount names no source.
MOUNT_CANDIDATES = 20
# Manifest bytes kept in memory (by digest, so never stale); bigger manifests are read each time.
MANIFEST_CACHE_BYTES = 32 * 1024 * 1024
MANIFEST_CACHE_ITEM = 256 * 1024
# A tag pushed again onto the manifest it is on is written (its pushed_at) at most this often: concurrent pushes of
# one unchanged tag then store nothing in common but their events, where each wrote the tag and its manifest, so
# the transactions of two workers or nodes conflicted and were run again.
PUSHED_AT_RESOLUTION = datetime.timedelta(seconds=1)


class RegistryService:
    def __init__(self, collections, store, quota, access, gc_grace_seconds):
        self.collections = collections
        self.store = store
        self.quota = quota
        self.access = access
        # A blob read touches a link older than a tenth of the collector's grace period, so the manifest the
        # client pushes next (within the rest of it) still finds it (storage/blobs.py).
        self.link_refresh = datetime.timedelta(seconds=gc_grace_seconds / 10)
        self.manifest_bytes = BytesByKey(MANIFEST_CACHE_BYTES, MANIFEST_CACHE_ITEM)
        # A project's manifest writes take turns on a node, as the quota actor's charges do: concurrent transactions
        # on one tag or manifest conflicted and their retries starved the one holding the write (32 PUTs of one tag:
        # none answered in 10 s with SecantusDB's profiler on), and a new manifest's
        # transaction writes the project's usage, so concurrent ones conflicted and retried (bench_manifest_puts.py,
        # 32 clients: 13.5 PUT/s, p99 12 s; taking turns 43 PUT/s, p99 1.1 s, where charging apart from the
        # transaction made 37 PUT/s, p99 1.5 s). Across nodes the transactions keep them correct.
        self.project_charges = KeyedLocks()

    async def project_of(self, name):
        """The project a repository belongs to; NameUnknown when it does not exist."""
        project_name, _ = check_repository_name(name)
        project = await self.collections.projects.get_by_name(project_name)
        if project is None:
            raise NameUnknown(f"project {project_name} does not exist; create it first", project=project_name)
        return project

    async def require_repository(self, name):
        if not await self.collections.repositories.exists(name):
            raise NameUnknown(name=name)

    async def precheck(self, name, size, digest=None):
        """Refuse early when ``size`` more bytes would not fit (known from Content-Length)."""
        project = await self.project_of(name)
        await self.quota.precheck(project["_id"], size, digest)

    async def charge(self, name, digest, size, holder=None):
        """Take the quota reference a new link of ``digest`` in ``name`` holds, before it becomes visible (the
        first reference in the project charges the bytes; a manifest takes its own in its transaction:
        ``_take_reference``). ``holder``: the upload taking it, noted until ``held`` (see Accounting.add_reference)."""
        project = await self.project_of(name)
        await self.quota.charge(project["_id"], digest, size, holder)
        return project

    async def release(self, project_id, digest):
        await self.quota.release(project_id, digest)

    async def give_back(self, project_id, digest, holder):
        """The reference the upload ``holder`` took, if it took one and never linked it, goes."""
        await self.quota.give_back(project_id, digest, holder)

    async def held(self, project_id, digest, holder):
        await self.quota.held(project_id, digest, holder)

    async def link_blob(self, name, digest, size, charged_project=None, holder=None):
        """Link ``digest`` into ``name``; a new link holds one quota reference, taken here unless the
        caller (the upload ``holder``) took it already (``charged_project``). True when this call made the link."""
        project = charged_project
        if project is None:
            if await self.collections.blobs.is_linked(name, digest):
                return False
            project = await self.charge(name, digest, size)
        await self.collections.repositories.ensure(name, project["_id"])
        try:
            made = await self.collections.blobs.link(name, project["_id"], digest)
        except BlobGone:  # collected meanwhile: the caller uploads it (a charge it took, it gives back)
            if charged_project is None:
                await self.release(project["_id"], digest)
            raise BlobUnknown(digest=digest) from None
        if not made:
            if holder:
                await self.give_back(project["_id"], digest, holder)
            else:
                await self.release(project["_id"], digest)
            return False
        if holder:
            await self.held(project["_id"], digest, holder)
        return True

    async def blob(self, name, digest):
        """The blob document of ``digest`` when linked to ``name``; BlobUnknown otherwise."""
        parse_digest(digest)
        blob = await self.collections.blobs.linked(name, digest, self.link_refresh)
        if blob is None:
            raise BlobUnknown(digest=digest)
        return blob

    async def blob_redirect(self, blob, digest):
        """A URL the client may fetch the blob from directly (a presigned S3 URL), or None."""
        return await self.store.redirect_url(blob["ref"], digest)

    def read_blob(self, blob, start, length):
        """Async iterator over ``length`` bytes of the blob from ``start``."""
        return self.store.read(blob["ref"], start, length)

    async def open_blob_file(self, blob):
        """An open descriptor of the blob's file when the store keeps files (the caller closes it), else None."""
        return await self.store.open_file(blob["ref"], blob["size"]) if self.store.keeps_files else None

    async def unlink_blob(self, name, digest):
        parse_digest(digest)
        link = await self.collections.blobs.unlink(name, digest)
        if link is None:
            raise BlobUnknown(digest=digest)
        await self.release(link["project_id"], digest)

    async def mount_blob(self, caller, name, digest, source=None):
        """Link ``digest`` from another repository into ``name``; False when there is nothing the caller
        may mount (the client then uploads it).

        With ``source``, its token must hold pull on it; when only the token falls short of what the
        account may do, TokenRequired makes the client fetch one that does. Without ``source``, any
        repository linking the blob that the caller may pull will do.
        """
        parse_digest(digest)
        if source is None:
            source = await self._mount_candidate(caller, digest)
        elif not caller.holds("pull", "repository", source):
            if await self.access.allowed(caller, "pull", source):
                raise TokenRequired("the token does not grant pull on the mount's source; request a new one",
                                    reason="insufficient_scope")
            return False
        blob = await self.collections.blobs.linked(source, digest) if source else None
        if blob is None:
            return False
        try:
            await self.link_blob(name, digest, blob["size"])
        except BlobUnknown:
            return False
        return True

    async def _mount_candidate(self, caller, digest):
        for repo in await self.collections.blobs.repositories_linking(digest, MOUNT_CANDIDATES):
            if caller.holds("pull", "repository", repo) or await self.access.allowed(caller, "pull", repo):
                return repo
        return None

    async def manifest(self, name, reference, with_content=True):
        """``{digest, media_type, size[, content]}`` of the manifest a tag or digest names, read fresh: by tag
        the tag alone (it carries the rest; a tag exists only while its manifest does), by digest the
        manifest's document. The bytes come from memory when they are there: they are the digest's, never
        stale. A repository that does not exist is told apart only when nothing was found."""
        try:
            if is_digest(reference):
                parse_digest(reference)
                doc = await self.collections.manifests.describe(name, reference)
                if doc is None:
                    raise ManifestUnknown(digest=reference)
            else:
                doc = await self.collections.manifests.resolve_tag(name, reference)
                if doc is None:
                    raise ManifestUnknown(tag=reference)
        except ManifestUnknown:
            await self.require_repository(name)
            raise
        found = {"digest": doc["digest"], "media_type": doc["media_type"], "size": doc["size"]}
        if with_content:
            found["content"] = self.manifest_bytes.get(doc["digest"]) or await self._manifest_content(
                name, doc["digest"])
        return found

    async def _manifest_content(self, name, digest):
        stored = await self.collections.manifests.get(name, digest)
        if stored is None:
            raise ManifestUnknown(digest=digest)
        return self.manifest_bytes.put(digest, bytes(stored["content"]))

    async def put_manifest(self, name, reference, content, content_type, tags=(), sparse=False, operator=None):
        """Validate and store a manifest under its digest, tagged with ``reference`` when that is a tag
        and with every one of ``tags``; answers the ParsedManifest and the tags applied.

        The manifest, its tags and the PUSH_ARTIFACT event are stored in one transaction. ``sparse`` lets
        an index name children that are absent: only an import filtered by platform stores one
        (byte-exact, so its digest is the source's); a push never does.
        """
        tags = list(dict.fromkeys(([] if is_digest(reference) else [reference]) + list(tags)))
        for tag in tags:
            check_tag(tag)
        algorithm = parse_digest(reference)[0] if is_digest(reference) else "sha256"
        parsed = parse_manifest(content, content_type, algorithm)
        if is_digest(reference) and parsed.digest != reference:
            raise DigestInvalid("manifest digest does not match its content", expected=reference,
                                computed=parsed.digest)
        stored = await self.collections.manifests.stored_sparse(name, parsed.digest)
        missing = await self.collections.blobs.hold_links(name, parsed.blobs, self.link_refresh)
        # An index stored sparse by an import may be tagged again as it is; any other keeps every child.
        if not (sparse or stored):
            present = await self.collections.manifests.existing_digests(name, parsed.children)
            missing += [child for child in parsed.children if child not in present]
        if missing:
            raise ManifestBlobUnknown(missing=missing)
        project = await self.project_of(name)

        async def store(session):
            created = stored is None and await self.collections.manifests.put(
                name, project["_id"], parsed, content, sparse, session=session)
            if created:  # in the transaction: a manifest refused over the quota leaves no repository behind
                await self.collections.repositories.ensure(name, project["_id"], session)
            if created or not tags:  # no tag can be on a manifest stored just now
                moving, refreshing = tags, []
            else:
                moving, refreshing = await self.collections.manifests.tags_to_write(
                    name, tags, parsed.digest, utcnow() - PUSHED_AT_RESOLUTION, session)
            # Moving a tag onto a manifest this transaction did not create writes the manifest too, so a delete
            # running at the same time conflicts instead of leaving the tag behind: also when another PUT stored it
            # since it was looked at. A tag on it already conflicts with such a delete through its own document.
            if not created and moving and not await self.collections.manifests.hold(name, parsed.digest, session):
                raise ManifestVanished()
            for tag in moving + refreshing:
                await self.collections.manifests.set_tag(name, tag, parsed, len(content), session=session)
            if tags or parsed.subject:
                await self.collections.events.emit("PUSH_ARTIFACT", project, push_event_data(
                    name, tags, parsed, len(content)), operator, session=session)
            if created:  # last: the project's usage is then held by this transaction for its commit alone
                await self._take_reference(project, parsed.digest, len(content), session)

        try:
            await self._charging_transaction(store, project["_id"], parsed.digest, len(content))
        except ManifestVanished:  # deleted since it was looked at: store it again as new
            return await self.put_manifest(name, reference, content, content_type, tags, sparse, operator)
        return parsed, tags

    async def _take_reference(self, project, digest, size, session):
        """Inside a manifest's transaction, the quota reference the new manifest holds: a node that dies before the
        commit leaves neither, so usage never counts a manifest that is not stored."""
        before, after = await self.collections.accounting.take(project["_id"], digest, size, session)
        if after is False:
            raise ChargeRefused()
        if after and (event := crossing_event(before, after)):
            await self.collections.events.emit(event, after, {
                "storage_used": after["storage_used"], "storage_quota": after["storage_quota"]}, session=session)

    async def _charging_transaction(self, work, project_id, digest, size):
        """Run ``work``, which takes a quota reference to ``digest`` (``_take_reference``), in one transaction. A
        first charge of the digest still being settled outside (an upload of the same bytes) is waited for, as the
        quota actor waits; a refused charge is told by the actor from the usage read now (QuotaExceeded, with its
        event), or, when space was freed meanwhile, tried again."""
        deadline = time.monotonic() + CLAIM_WAIT_SECONDS
        while True:
            try:
                async with self.project_charges.hold(project_id):
                    return await self.collections.transaction(work)
            except ClaimPending:
                if time.monotonic() > deadline:
                    await self.collections.accounting.drop_stale_claim(project_id, digest, CLAIM_WAIT_SECONDS)
                await asyncio.sleep(CLAIM_POLL_SECONDS)
            except ChargeRefused:
                await self.quota.recheck(project_id, size, digest)

    async def delete_manifest(self, name, reference, operator=None):
        """By digest: the manifest and its tags go; by tag: only the tag. Either way with its DELETE_ARTIFACT
        event, in one transaction."""
        await self.require_repository(name)
        project = await self.project_of(name)
        if is_digest(reference):
            parse_digest(reference)

            async def delete(session):
                deleted, tags = await self.collections.manifests.delete(name, reference, session=session)
                if deleted is not None:
                    # Its quota reference goes with it: a node dying after the commit leaves nothing counted.
                    await self.collections.accounting.drop(deleted["project_id"], reference, session)
                    await self.collections.events.emit("DELETE_ARTIFACT", project, {
                        "repository": name, "digest": reference, "tags": tags,
                        "media_type": deleted["media_type"]}, operator, session=session)
                return deleted

            async with self.project_charges.hold(project["_id"]):
                deleted = await self.collections.transaction(delete)
            if deleted is None:
                raise ManifestUnknown(digest=reference)
            return

        async def untag(session):
            digest = await self.collections.manifests.delete_tag(name, reference, session=session)
            if digest is not None:
                await self.collections.events.emit("DELETE_ARTIFACT", project, {
                    "repository": name, "digest": digest, "tags": [reference]}, operator, session=session)
            return digest

        if await self.collections.transaction(untag) is None:
            raise ManifestUnknown(tag=reference)

    async def tags(self, name, last, limit):
        await self.require_repository(name)
        return await self.collections.manifests.list_tags(name, last, limit)

    async def referrers(self, name, digest, artifact_type=None):
        """An OCI index of the manifests whose subject is ``digest`` (empty, never 404)."""
        check_repository_name(name)
        parse_digest(digest)
        docs = await self.collections.manifests.referrers(name, digest, artifact_type)
        manifests = []
        for doc in docs:
            descriptor = {"mediaType": doc["media_type"], "digest": doc["digest"], "size": doc["size"]}
            if doc.get("artifact_type"):
                descriptor["artifactType"] = doc["artifact_type"]
            annotations = annotations_of(doc["content"])
            if annotations:
                descriptor["annotations"] = annotations
            manifests.append(descriptor)
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}

    async def catalog(self, user, last, limit):
        """Repository names in the projects ``user`` may see."""
        project_ids = await self.collections.projects.visible_ids(visibility(user))
        return await self.collections.repositories.names(last, limit, project_ids)
