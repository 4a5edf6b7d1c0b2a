"""Liveness of the database and the blob store, checked side by side and bounded in time."""
import asyncio

SERVICE = "CYP-Registry"
VERSION = "v1.1.0"
# Bounded, so a probe with a short timeout still sees the answer.
CHECK_TIMEOUT_SECONDS = 2


async def _check(probe):
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


class HealthService:
    def __init__(self, collections, blob_store):
        self.collections = collections
        self.blob_store = blob_store

    async def report(self):
        """``(healthy, body)``: the seed's status, service and version, plus each check's outcome."""
        database, storage = await asyncio.gather(_check(self.collections.ping), _check(self.blob_store.ping))
        checks = {"database": database, "storage": storage}
        healthy = all(value == "ok" for value in checks.values())
        return healthy, {"status": "healthy" if healthy else "unhealthy", "service": SERVICE, "version": VERSION,
                         "checks": checks}
