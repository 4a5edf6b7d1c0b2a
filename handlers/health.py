"""/health and /api/health: liveness of the service and its database and blob store."""
import asyncio

from handlers.base import BaseHandler

SERVICE = "CYP-Registry"
VERSION = "v1.1.0"
# Checks run side by side and are bounded, so a probe with a short timeout still sees the 503.
CHECK_TIMEOUT_SECONDS = 2


async def _check(probe):
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


class HealthHandler(BaseHandler):
    async def get(self):
        database, storage = await asyncio.gather(_check(self.collections.ping), _check(self.blob_store.ping))
        checks = {"database": database, "storage": storage}
        healthy = all(value == "ok" for value in checks.values())
        self.set_header("Cache-Control", "no-store")
        self.write_json({"status": "healthy" if healthy else "unhealthy", "service": SERVICE, "version": VERSION,
                         "checks": checks}, status=200 if healthy else 503)
