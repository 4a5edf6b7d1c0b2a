"""/api/v1/projects: project CRUD, statistics, quota and storage, recount; members are gone (410)."""
from handlers.api.base import ApiHandler
from handlers.api.errors import ApiError
from services.audit import changed_fields


class ReadableAnonymously:
    """GET works without a token (public projects); every other method needs one."""

    @property
    def auth_optional(self):
        return self.request.method == "GET"


class ProjectListHandler(ReadableAnonymously, ApiHandler):
    audited = {"POST": "project.create"}

    async def get(self):
        page, page_size = self.page_args()
        docs, total = await self.projects.page(self.user, self.get_query_argument("search", "")[:64],
                                               self.bool_arg("is_public"), (page - 1) * page_size, page_size)
        self.write_page([await self.projects.describe(doc) for doc in docs], total, page, page_size)

    async def post(self):
        project = await self.projects.create(self.user, self.json_body("project_create"))
        self.audit_notes["project"] = project
        self.write_data(await self.projects.describe(project))


class ProjectStatisticsHandler(ApiHandler):
    auth_optional = True

    async def get(self):
        self.write_data(await self.projects.statistics(self.user))


class ProjectHandler(ReadableAnonymously, ApiHandler):
    audited = {"PUT": "project.update", "PATCH": "project.update", "DELETE": "project.delete"}

    async def get(self, project_id):
        self.write_data(await self.projects.describe(await self.projects.visible(self.user, project_id)))

    async def put(self, project_id):
        project = await self.projects.writable(self.user, project_id)
        self.audit_notes["project"] = project
        fields = self.json_body("project_update")
        self.audit_notes["resource"] = changed_fields(fields)
        updated = await self.projects.update(project, fields)
        self.write_data(await self.projects.describe(updated))

    patch = put

    async def delete(self, project_id):
        project = await self.projects.writable(self.user, project_id)
        self.audit_notes["project"] = project  # gone once written: its name is kept from here
        await self.projects.delete(project, self.bool_arg("force", False))
        self.write_data(None)


class ProjectQuotaHandler(ApiHandler):
    admin_required = True
    audited = {"PUT": "project.quota"}

    async def put(self, project_id):
        project = self.audit_notes["project"] = await self.projects.visible(self.user, project_id)
        body = self.json_body("project_quota")
        self.audit_notes["resource"] = {"storage_quota": body["storage_quota"]}
        self.write_data(await self.projects.describe(await self.projects.set_quota(project, body["storage_quota"])))


class ProjectStorageHandler(ApiHandler):
    auth_optional = True

    async def get(self, project_id):
        self.write_data(await self.projects.storage(await self.projects.visible(self.user, project_id)))


class ProjectRecountHandler(ApiHandler):
    admin_required = True
    audited = {"POST": "project.recount"}

    async def post(self, project_id):
        project = self.audit_notes["project"] = await self.projects.visible(self.user, project_id)
        self.write_data(await self.projects.recount(project, self.bool_arg("fix", False)))


class MembersGoneHandler(ApiHandler):
    """Project members and teams were retired; every method says so."""

    auth_required = False

    async def prepare(self):
        await super().prepare()
        raise ApiError(20003, "project members and teams have been retired")
