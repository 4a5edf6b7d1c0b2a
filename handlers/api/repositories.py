"""/api/v1/projects/:id/repositories: a project's repositories and their tags, read and deleted.

``:repository`` is the path inside the project; its slashes may be sent as they are or as ``%2F`` (routes in
handlers/__init__.py).
"""
from handlers.api.base import ApiHandler
from handlers.api.projects import ReadableAnonymously
from services.access import SCOPE_FOR_ACTION


class RepositoryApiHandler(ReadableAnonymously, ApiHandler):
    @property
    def repositories(self):
        return self.services.repositories

    def require_delete_scope(self):
        """A delete here is a registry delete: a PAT needs registry:delete for it, as under /v2/ (besides the
        api:write every non-GET needs); a session holds every scope."""
        self.require_scope(SCOPE_FOR_ACTION["delete"])

    def noted(self, name):
        """The project of repository ``name`` (one the caller was allowed to change) noted for the audit record."""
        self.audit_notes["project_name"] = name.partition("/")[0]


class RepositoryListHandler(RepositoryApiHandler):
    async def get(self, project_id):
        page, page_size = self.page_args()
        items, total = await self.repositories.page(self.user, project_id, self.get_query_argument("search", "")[:64],
                                                    (page - 1) * page_size, page_size)
        self.write_page(items, total, page, page_size)


class RepositoryHandler(RepositoryApiHandler):
    audited = {"DELETE": "repository.delete"}

    async def delete(self, project_id, repository):
        self.require_delete_scope()
        self.noted(await self.repositories.delete(self.user, project_id, repository, self.user["username"]))
        self.write_data(None)


class TagListHandler(RepositoryApiHandler):
    async def get(self, project_id, repository):
        page, page_size = self.page_args()
        items, total = await self.repositories.tags(self.user, project_id, repository, (page - 1) * page_size,
                                                    page_size)
        self.write_page(items, total, page, page_size)


class TagHandler(RepositoryApiHandler):
    audited = {"DELETE": "tag.delete"}

    async def get(self, project_id, repository, tag):
        self.write_data(await self.repositories.tag(self.user, project_id, repository, tag))

    async def delete(self, project_id, repository, tag):
        self.require_delete_scope()
        self.noted(await self.repositories.delete_tag(self.user, project_id, repository, tag, self.user["username"]))
        self.write_data(None)
