"""Projects: visibility, settings, quotas, storage figures, deletion and recounts."""
from services.access import can_see, can_write, visibility
from services.errors import Conflict, Forbidden, Invalid, NotFound, ProjectGone
from services.names import check_project_name
from services.repositories import repository_figures
from services.timestamps import iso_z


def public_project(doc, image_count, repository_count):
    return {
        "id": doc["_id"], "name": doc["name"], "description": doc.get("description", ""),
        "is_public": doc.get("is_public", False), "owner_id": doc.get("owner_id"),
        "storage_quota": doc.get("storage_quota", -1), "storage_used": doc.get("storage_used", 0),
        "image_count": image_count, "repository_count": repository_count,
        "created_at": iso_z(doc.get("created_at")), "updated_at": iso_z(doc.get("updated_at")),
    }


class ProjectService:
    def __init__(self, collections, quota, default_quota):
        self.collections = collections
        self.quota = quota
        self.default_quota = default_quota

    async def describe(self, project):
        repos = await self.collections.repositories.names(project_ids=[project["_id"]])
        images = await self.collections.manifests.count_for_projects([project["_id"]])
        return public_project(project, images, len(repos))

    async def create(self, user, fields):
        check_project_name(fields["name"])
        quota = fields.get("storage_quota", self.default_quota)
        if not user.get("is_admin") and self.default_quota >= 0 and not 0 <= quota <= self.default_quota:
            raise Forbidden(f"storage_quota may be at most the default of {self.default_quota} bytes; "
                            "an administrator sets larger ones")
        project = await self.collections.projects.create(
            fields["name"], user["_id"], is_public=fields.get("is_public", False),
            description=fields.get("description", ""), storage_quota=quota)
        if project is None:
            raise Conflict(f"project {fields['name']} already exists")
        return project

    async def visible(self, user, key):
        """The project by id or name if ``user`` may see it; otherwise not found (private ones give no hint)."""
        project = await self.collections.projects.get(key) or await self.collections.projects.get_by_name(key)
        if project is None or not can_see(user, project):
            raise NotFound("project not found")
        return project

    async def writable(self, user, key):
        project = await self.visible(user, key)
        if not can_write(user, project):
            raise Forbidden("only the project's owner or an administrator may change it")
        return project

    async def page(self, user, search, is_public, skip, limit):
        return await self.collections.projects.page(visibility(user), search, is_public, skip, limit)

    async def update(self, project, fields):
        if "name" in fields and fields["name"] != project["name"]:
            raise Invalid("a project cannot be renamed: its repositories are named after it")
        changes = {key: value for key, value in fields.items() if key != "name"}
        return await self.collections.projects.update(project["_id"], changes) if changes else project

    async def set_quota(self, project, storage_quota):
        try:
            return await self.quota.set_quota(project["_id"], storage_quota)
        except ProjectGone:
            raise NotFound("project not found") from None

    async def statistics(self, user):
        projects = await self.collections.projects.visible(visibility(user))
        ids = [p["_id"] for p in projects]
        repos = await self.collections.repositories.names(project_ids=ids)
        limited = [p["storage_quota"] for p in projects if p.get("storage_quota", -1) >= 0]
        return {
            "total_projects": len(projects),
            "public_projects": sum(1 for p in projects if p.get("is_public")),
            "private_projects": sum(1 for p in projects if not p.get("is_public")),
            "repository_count": len(repos),
            "image_count": await self.collections.manifests.count_for_projects(ids),
            "tag_count": await self.collections.manifests.count_tags(repos),
            "storage_used": sum(p.get("storage_used", 0) for p in projects),
            "storage_quota": sum(limited),
            "unlimited_projects": len(projects) - len(limited),
        }

    async def storage(self, project):
        """Usage, quota, percent, and per repository the bytes it references (shared blobs count in each)."""
        used, quota = project.get("storage_used", 0), project.get("storage_quota", -1)
        repos = await self.collections.repositories.names(project_ids=[project["_id"]])
        figures = await repository_figures(self.collections, repos)
        breakdown = [{"name": repo, **{key: figures[repo][key] for key in ("size", "blob_count", "manifest_count")}}
                     for repo in repos]
        return {"project_id": project["_id"], "storage_used": used, "storage_quota": quota,
                "percent": round(used * 100 / quota, 2) if quota > 0 else (0 if quota < 0 else 100.0),
                "repositories": breakdown}

    async def delete(self, project, force):
        images = await self.collections.manifests.count_for_projects([project["_id"]])
        if images and not force:
            raise Conflict(f"project {project['name']} holds {images} images; delete them first or pass force=true")
        repos = await self.collections.repositories.names(project_ids=[project["_id"]])
        await self.collections.projects.delete(project["_id"])
        await self.quota.drop_project(project["_id"])
        await self.collections.manifests.delete_for_repos(repos)
        await self.collections.blobs.delete_links_for_project(project["_id"])
        await self.collections.repositories.delete_for_project(project["_id"])
        await self.collections.webhooks.delete_for_project(project["_id"])

    async def recount(self, project, fix=False):
        """Recompute usage from the links; report (and with ``fix`` repair) any drift."""
        links = await self.collections.blobs.project_link_counts(project["_id"])
        sizes = await self.collections.blobs.sizes(links)
        holders = {digest: (sizes[digest], count) for digest, count in links.items() if digest in sizes}
        for digest, (size, count) in (await self.collections.manifests.project_holders(project["_id"])).items():
            holders[digest] = (size, holders.get(digest, (size, 0))[1] + count)
        actual = sum(size for size, _ in holders.values())
        recorded = project.get("storage_used", 0)
        if fix:
            await self.quota.reset(project["_id"], holders)
        return {"project_id": project["_id"], "recorded": recorded, "actual": actual, "drift": recorded - actual,
                "fixed": fix and actual != recorded}
