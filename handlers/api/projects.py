"""/api/v1/projects: project CRUD, statistics, quota and storage, recount; members are gone (410)."""
from handlers.api.base import ApiHandler
from services.api_errors import ApiError


class ProjectsBase(ApiHandler):
    @property
    def projects(self):
        return self.settings["projects"]

    @property
    def user(self):
        return self.principal.user if self.principal else None


class ProjectListHandler(ProjectsBase):
    @property
    def auth_optional(self):
        return self.request.method == "GET"

    async def get(self):
        page, page_size = self.page_args()
        raw = self.get_query_argument("is_public", None)
        if raw not in (None, "true", "false"):
            raise ApiError(10001, "is_public must be true or false")
        docs, total = await self.projects.page(self.user, self.get_query_argument("search", "")[:64],
                                               None if raw is None else raw == "true",
                                               (page - 1) * page_size, page_size)
        self.write_data({"items": [await self.projects.describe(doc) for doc in docs], "total": total,
                         "page": page, "page_size": page_size})

    async def post(self):
        project = await self.projects.create(self.user, self.json_body("project_create"))
        self.write_data(await self.projects.describe(project))


class ProjectStatisticsHandler(ProjectsBase):
    auth_optional = True

    async def get(self):
        self.write_data(await self.projects.statistics(self.user))


class ProjectHandler(ProjectsBase):
    @property
    def auth_optional(self):
        return self.request.method == "GET"

    async def get(self, project_id):
        self.write_data(await self.projects.describe(await self.projects.visible(self.user, project_id)))

    async def put(self, project_id):
        project = await self.projects.writable(self.user, project_id)
        updated = await self.projects.update(project, self.json_body("project_update"))
        self.write_data(await self.projects.describe(updated))

    patch = put

    async def delete(self, project_id):
        project = await self.projects.writable(self.user, project_id)
        force = self.get_query_argument("force", "false")
        if force not in ("true", "false"):
            raise ApiError(10001, "force must be true or false")
        await self.projects.delete(project, force == "true")
        self.write_data(None)


class ProjectQuotaHandler(ProjectsBase):
    admin_required = True

    async def put(self, project_id):
        project = await self.projects.visible(self.user, project_id)
        body = self.json_body("project_quota")
        self.write_data(await self.projects.describe(await self.projects.set_quota(project, body["storage_quota"])))


class ProjectStorageHandler(ProjectsBase):
    auth_optional = True

    async def get(self, project_id):
        self.write_data(await self.projects.storage(await self.projects.visible(self.user, project_id)))


class ProjectRecountHandler(ProjectsBase):
    admin_required = True

    async def post(self, project_id):
        project = await self.projects.visible(self.user, project_id)
        fix = self.get_query_argument("fix", "false") == "true"
        self.write_data(await self.projects.recount(project, fix))


class MembersGoneHandler(ApiHandler):
    """Project members and teams were retired; every method says so."""

    auth_required = False

    async def prepare(self):
        await super().prepare()
        raise ApiError(20003, "project members and teams have been retired")
