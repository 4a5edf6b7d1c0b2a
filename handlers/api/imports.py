"""/api/v1/projects/:id/images/import: image import tasks (the project's owner or an administrator)."""
from handlers.api.base import ApiHandler


class ImportListHandler(ApiHandler):
    audited = {"POST": "import.create"}

    async def get(self, project_id):
        page, page_size = self.page_args()
        items, total = await self.services.imports.page(self.user, project_id, self.get_query_argument("status", None),
                                                         (page - 1) * page_size, page_size)
        self.write_page(items, total, page, page_size)

    async def post(self, project_id):
        task = await self.services.imports.create(self.user, project_id, self.json_body("import_create"))
        self.audit_notes.update(project_name=task["repository"].partition("/")[0],
                                resource={"task_id": task["task_id"], "image": task["image"]})
        self.write_data(task)


class ImportTaskHandler(ApiHandler):
    audited = {"DELETE": "import.cancel"}

    async def get(self, project_id, task_id):
        self.write_data(await self.services.imports.get(self.user, project_id, task_id))

    async def delete(self, project_id, task_id):
        task = await self.services.imports.cancel(self.user, project_id, task_id)
        self.audit_notes["project_name"] = task["repository"].partition("/")[0]
        self.write_data(task)
