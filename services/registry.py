"""Repository-level registry operations: blob links, manifests, tags, referrers, catalog, all under quota."""
from actors.quota import ProjectGone, QuotaExceeded
from services.digests import is_digest, parse_digest
from services.errors import RegistryError
from services.manifests import OCI_INDEX, parse_manifest
from services.names import check_repository_name, is_valid_tag


class RegistryService:
    def __init__(self, collections, store, quota):
        self.collections = collections
        self.store = store
        self.quota = quota

    async def project_of(self, name):
        """The project a repository belongs to; NAME_UNKNOWN when it does not exist."""
        project_name, _ = check_repository_name(name)
        project = await self.collections.projects.get_by_name(project_name)
        if project is None:
            raise RegistryError("NAME_UNKNOWN", f"project {project_name} does not exist; create it first",
                                detail={"project": project_name})
        return project

    async def require_repository(self, name):
        if not await self.collections.repositories.exists(name):
            raise RegistryError("NAME_UNKNOWN", detail={"name": name})

    async def precheck(self, name, size, digest=None):
        """Refuse early when ``size`` more bytes would not fit (known from Content-Length)."""
        project = await self.project_of(name)
        await self._quota_call(self.quota.precheck, project["_id"], size, digest)

    async def charge(self, name, digest, size):
        """Take the quota reference a new link or manifest of ``digest`` in ``name`` holds, before
        anything of it becomes visible (the first reference in the project charges the bytes)."""
        project = await self.project_of(name)
        await self._quota_call(self.quota.charge, project["_id"], digest, size)
        return project

    async def release(self, project_id, digest):
        await self.quota.release(project_id, digest)

    async def _quota_call(self, call, *args):
        try:
            return await call(*args)
        except QuotaExceeded as exc:
            detail = {"reason": "quota_exceeded", "adding": exc.adding, "storage_used": exc.used,
                      "storage_quota": exc.quota}
            raise RegistryError("DENIED", str(exc), detail=detail) from None
        except ProjectGone:
            raise RegistryError("NAME_UNKNOWN", "the project was deleted") from None

    async def link_blob(self, name, digest, size, charged_project=None):
        """Link ``digest`` into ``name``; a new link holds one quota reference, taken here unless the
        caller took it already (``charged_project``)."""
        project = charged_project
        if project is None:
            if await self.collections.blobs.is_linked(name, digest):
                return
            project = await self.charge(name, digest, size)
        await self.collections.repositories.ensure(name, project["_id"])
        if not await self.collections.blobs.link(name, project["_id"], digest):
            await self.release(project["_id"], digest)

    async def blob(self, name, digest):
        """The blob document of ``digest`` when linked to ``name``; BLOB_UNKNOWN otherwise."""
        parse_digest(digest)
        blob = await self.collections.blobs.linked(name, digest)
        if blob is None:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})
        return blob

    async def unlink_blob(self, name, digest):
        parse_digest(digest)
        link = await self.collections.blobs.unlink(name, digest)
        if link is None:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})
        await self.release(link["project_id"], digest)

    async def mount_blob(self, name, digest, source):
        """Link a blob of ``source`` into ``name``; False when it is not there to mount."""
        parse_digest(digest)
        blob = await self.collections.blobs.linked(source, digest)
        if blob is None:
            return False
        await self.link_blob(name, digest, blob["size"])
        return True

    async def resolve(self, name, reference):
        """The digest a tag or digest reference names; MANIFEST_UNKNOWN when there is none."""
        if is_digest(reference):
            parse_digest(reference)
            return reference
        digest = await self.collections.manifests.resolve_tag(name, reference)
        if digest is None:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"tag": reference})
        return digest

    async def manifest(self, name, reference):
        await self.require_repository(name)
        digest = await self.resolve(name, reference)
        doc = await self.collections.manifests.get(name, digest)
        if doc is None:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": digest})
        return doc

    async def put_manifest(self, name, reference, content, content_type):
        """Validate and store a manifest under a tag or its digest; answers the ParsedManifest."""
        if is_digest(reference):
            algorithm, _ = parse_digest(reference)
        else:
            if not is_valid_tag(reference):
                raise RegistryError("TAG_INVALID", "tag must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}",
                                    detail={"tag": reference})
            algorithm = "sha256"
        parsed = parse_manifest(content, content_type, algorithm)
        if is_digest(reference) and parsed.digest != reference:
            raise RegistryError("DIGEST_INVALID", "manifest digest does not match its content",
                                detail={"expected": reference, "computed": parsed.digest})
        missing = await self.collections.blobs.missing_links(name, parsed.blobs)
        present = await self.collections.manifests.existing_digests(name, parsed.children)
        missing += [child for child in parsed.children if child not in present]
        if missing:
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"missing": missing})
        if not await self.collections.manifests.exists(name, parsed.digest):
            await self._store_manifest(name, parsed, content)
        if not is_digest(reference):
            await self.collections.manifests.set_tag(name, reference, parsed.digest)
        return parsed

    async def _store_manifest(self, name, parsed, content):
        """A new manifest holds one quota reference of its own size."""
        project = await self.charge(name, parsed.digest, len(content))
        try:
            await self.collections.repositories.ensure(name, project["_id"])
            created = await self.collections.manifests.put(name, project["_id"], parsed, content)
        except BaseException:
            await self.release(project["_id"], parsed.digest)
            raise
        if not created:
            await self.release(project["_id"], parsed.digest)

    async def delete_manifest(self, name, reference):
        """By digest: the manifest and its tags go; by tag: only the tag."""
        await self.require_repository(name)
        if is_digest(reference):
            parse_digest(reference)
            deleted = await self.collections.manifests.delete(name, reference)
            if deleted is None:
                raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": reference})
            await self.release(deleted["project_id"], reference)
        elif not await self.collections.manifests.delete_tag(name, reference):
            raise RegistryError("MANIFEST_UNKNOWN", detail={"tag": reference})

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
            if doc.get("annotations"):
                descriptor["annotations"] = doc["annotations"]
            manifests.append(descriptor)
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}

    async def catalog(self, user, last, limit):
        """Repository names in the projects ``user`` may see."""
        query = self.collections.projects.visible_query(user)
        project_ids = None if not query else [p["_id"] for p in await self.collections.projects.find(query, {"_id": 1})]
        return await self.collections.repositories.names(last, limit, project_ids)
