"""A project's repositories and tags as /api/v1 shows them: listings with their figures, a tag's detail, and
deletes made of the registry's own delete operations (the same quota releases and DELETE_ARTIFACT events as
under /v2/)."""
import json

from services.errors import BlobUnknown, ManifestUnknown
from services.manifests import INDEX_TYPES, platforms_of
from services.names import check_repository_name, check_tag
from services.timestamps import iso_z


async def repository_figures(collections, names):
    """Per repository of ``names``: ``size`` (the bytes of every blob it links plus those of its manifests; a
    blob shared with another repository counts in each), ``blob_count``, ``manifest_count``, ``tag_count``
    and ``last_push`` (the newest of its manifests' stores and its tags' moves, None when it holds none)."""
    links = await collections.blobs.link_totals(names)
    manifests = await collections.manifests.repo_totals(names)
    tags = await collections.manifests.tag_totals(names)
    figures = {}
    for name in names:
        blob_bytes, blob_count = links.get(name, (0, 0))
        manifest_bytes, manifest_count, stored_at = manifests.get(name, (0, 0, None))
        tag_count, tagged_at = tags.get(name, (0, None))
        figures[name] = {"size": blob_bytes + manifest_bytes, "blob_count": blob_count,
                         "manifest_count": manifest_count, "tag_count": tag_count,
                         "last_push": max(filter(None, (stored_at, tagged_at)), default=None)}
    return figures


def public_descriptor(descriptor):
    return {"digest": descriptor["digest"], "media_type": descriptor["mediaType"], "size": descriptor["size"]}


def _images_of(manifest, children):
    """The image manifests a tag's manifest stands for: itself, or an index's children stored in the repository."""
    if manifest["media_type"] not in INDEX_TYPES:
        return [manifest]
    return [children[digest] for digest in manifest["references"] if digest in children]


class RepositoryService:
    def __init__(self, collections, projects, registry):
        self.collections = collections
        self.projects = projects
        self.registry = registry

    async def _repository(self, user, project_key, path, write=False):
        """The repository's full name, once the project is visible to ``user`` (and, for ``write``, writable
        by them: what a /v2/ delete needs) and the repository exists."""
        project = await (self.projects.writable if write else self.projects.visible)(user, project_key)
        _, name = check_repository_name(f"{project['name']}/{path}")
        await self.registry.require_repository(name)
        return name

    async def page(self, user, project_key, search, skip, limit):
        project = await self.projects.visible(user, project_key)
        docs, total = await self.collections.repositories.page(project["_id"], search, skip, limit)
        figures = await repository_figures(self.collections, [doc["_id"] for doc in docs])
        items = []
        for doc in docs:
            found = figures[doc["_id"]]
            items.append({"name": doc["_id"], **found, "last_push": iso_z(found["last_push"]),
                          # Counted in batches by the audit log's writer (services/audit.py).
                          "pull_count": doc.get("pull_count", 0), "created_at": iso_z(doc.get("created_at"))})
        return items, total

    async def tags(self, user, project_key, path, skip, limit):
        name = await self._repository(user, project_key, path)
        docs, total = await self.collections.manifests.tags_page(name, skip, limit)
        return await self._describe_tags(name, docs), total

    async def _describe_tags(self, name, tags):
        """Each tag document with its figures: ``size`` is the bytes of the manifest, of an index's children
        and of the distinct blobs they link in the repository (foreign layers are not stored, so not counted)."""
        manifests = self.collections.manifests
        tops = await manifests.by_digest(name, {tag["digest"] for tag in tags})
        indexes = await manifests.by_digest(
            name, [digest for digest, doc in tops.items() if doc["media_type"] in INDEX_TYPES], with_content=True)
        children = await manifests.by_digest(name, {child for doc in indexes.values() for child in doc["references"]})
        images = {digest: _images_of(doc, children) for digest, doc in tops.items()}
        link_sizes = await self.collections.blobs.link_sizes(
            name, {blob for found in images.values() for image in found for blob in image["references"]})
        referrers = await manifests.referrer_counts(name, list(tops))
        described = []
        for tag in tags:
            found = images.get(tag["digest"], [])
            blobs = {blob for image in found for blob in image["references"]}
            size = tag["size"] + sum(image["size"] for image in found if image["digest"] != tag["digest"]) + \
                sum(link_sizes.get(blob, 0) for blob in blobs)
            index = indexes.get(tag["digest"])
            described.append({
                "tag": tag["tag"], "digest": tag["digest"], "media_type": tag["media_type"], "size": size,
                "manifest_size": tag["size"], "platforms": platforms_of(index["content"]) if index else None,
                "pushed_at": iso_z(tag.get("updated_at")), "last_pulled_at": iso_z(tag.get("last_pulled_at")),
                "referrers_count": referrers.get(tag["digest"], 0)})
        return described

    async def tag(self, user, project_key, path, tag):
        name = await self._repository(user, project_key, path)
        doc = await self.collections.manifests.tag(name, check_tag(tag))
        if doc is None:
            raise ManifestUnknown(f"tag {tag} not found in {name}", tag=tag)
        [described] = await self._describe_tags(name, [doc])
        manifest = json.loads((await self.registry.manifest(name, doc["digest"]))["content"])
        image = doc["media_type"] not in INDEX_TYPES
        referrers = (await self.registry.referrers(name, doc["digest"]))["manifests"]
        return {**described, "manifest": manifest,
                "config": public_descriptor(manifest["config"]) if image else None,
                "layers": [public_descriptor(layer) for layer in manifest.get("layers") or []] if image else None,
                "referrers": [{**public_descriptor(referrer), "artifact_type": referrer.get("artifactType"),
                               "annotations": referrer.get("annotations")} for referrer in referrers]}

    async def delete_tag(self, user, project_key, path, tag, operator):
        """The tag goes, as a /v2/ DELETE of the tag: its manifest and the manifest's other tags stay. Answers the
        repository's full name."""
        name = await self._repository(user, project_key, path, write=True)
        await self.registry.delete_manifest(name, check_tag(tag), operator=operator)
        return name

    async def delete(self, user, project_key, path, operator):
        """Every manifest (with its tags) and every blob link of the repository, each as a /v2/ DELETE of it
        would remove it. Indexes go first, so none names a child already gone while this runs. The repository's
        name stays (empty), as after deletes under /v2/. Answers the repository's full name."""
        name = await self._repository(user, project_key, path, write=True)
        media_types = await self.collections.manifests.media_types(name)
        for digest in sorted(media_types, key=lambda digest: media_types[digest] not in INDEX_TYPES):
            try:
                await self.registry.delete_manifest(name, digest, operator=operator)
            except ManifestUnknown:  # deleted meanwhile by another request
                pass
        for digest in await self.collections.blobs.repo_digests(name):
            try:
                await self.registry.unlink_blob(name, digest)
            except BlobUnknown:
                pass
        return name
