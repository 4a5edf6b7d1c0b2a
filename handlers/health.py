"""/health and /api/health: liveness of the service and its database and blob store."""
import asyncio

from handlers.base import BaseHandler

SERVICE = "CYP-Registry"
VERSION = "v1.1.0"
CHECK_TIMEOUT_SECONDS = 3


async def _check(probe):
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


class HealthHandler(BaseHandler):
    async def get(self):
        checks = {"database": await _check(self.collections.ping), "storage": await _check(self.blob_store.ping)}
        healthy = all(value == "ok" for value in checks.values())
        self.set_header("Cache-Control", "no-store")
        self.write_json({"status": "healthy" if healthy else "unhealthy", "service": SERVICE, "version": VERSION,
                         "checks": checks}, status=200 if healthy else 503)
