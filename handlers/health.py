"""/health and /api/health: liveness of the service and its database and blob store."""
from handlers.base import BaseHandler


class HealthHandler(BaseHandler):
    async def get(self):
        healthy, report = await self.health.report()
        self.set_header("Cache-Control", "no-store")
        self.write_json(report, status=200 if healthy else 503)
