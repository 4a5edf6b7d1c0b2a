"""/api/v1/system: administrator operations."""
from handlers.api.base import ApiHandler


class GarbageCollectHandler(ApiHandler):
    admin_required = True
    audited = {"POST": "system.gc"}

    async def post(self):
        self.write_data(await self.services.gc.run_now())
