"""PULL_ARTIFACT events: gathered in memory and written together once a second, after the pulls were
answered, so a pull costs no database write. A crash loses at most the last second's pull events.
Identical pulls of one second (same repository, reference, digest and operator: a client pulling in a loop)
are one event with their ``count`` and the times of the first and last, so such a client costs an event
(and a delivery per webhook) a second, not one per request.

Only pulls some enabled webhook wants are written: which projects have one (or whether a global one
exists) is read again at most every ``SUBSCRIBERS_SECONDS``.
"""
import asyncio
import logging
import time

from services.folding import fold
from services.timestamps import iso_z
from storage.events import event_document

log = logging.getLogger("cyp.webhooks")

FLUSH_SECONDS = 1.0
SUBSCRIBERS_SECONDS = 5.0
# Beyond this many waiting events (a database that stopped answering), the oldest are dropped.
MAX_BUFFERED = 10_000
# Pulls with the same operator and these are one event.
PULL_KEY = ("repository", "reference", "digest", "media_type")


def _same_pull(event):
    return (event["operator"], *(event["data"][field] for field in PULL_KEY))


class PullEvents:
    def __init__(self, collections):
        self.collections = collections
        self.buffer = []
        self.subscribers = None
        self.subscribers_read = 0.0

    def record(self, manifest, repository, reference, operator):
        """One answered manifest GET; nothing is written now (the project is looked up at the flush)."""
        if len(self.buffer) >= MAX_BUFFERED:
            del self.buffer[0]
        self.buffer.append(event_document("PULL_ARTIFACT", None, {
            "repository": repository, "reference": reference, "digest": manifest["digest"],
            "media_type": manifest["media_type"]}, operator))

    async def _wanted(self):
        """``(project ids, global)`` that have an enabled webhook for pulls."""
        if self.subscribers is None or time.monotonic() - self.subscribers_read > SUBSCRIBERS_SECONDS:
            project_ids = await self.collections.webhooks.collection.distinct(
                "project_id", {"enabled": True, "events": "PULL_ARTIFACT"})
            self.subscribers = (set(project_ids) - {None}, None in project_ids)
            self.subscribers_read = time.monotonic()
        return self.subscribers

    async def flush(self):
        if not self.buffer:
            return
        pulls, self.buffer = self.buffer, []
        project_ids, everyone = await self._wanted()
        names = {pull["data"]["repository"].split("/", 1)[0] for pull in pulls}
        projects = {doc["name"]: doc for doc in await self.collections.projects.named(names)}
        events = []
        for event, last, count in fold(pulls, _same_pull):
            project = projects.get(event["data"]["repository"].split("/", 1)[0])
            if project is not None and (everyone or project["_id"] in project_ids):
                event["project_id"] = project["_id"]
                event["data"] = {"project": {"id": project["_id"], "name": project["name"]}, **event["data"],
                                 "count": count, "first_pulled_at": iso_z(event["occurred_at"]),
                                 "last_pulled_at": iso_z(last["occurred_at"])}
                events.append(event)
        await self.collections.events.emit_many(events)

    async def flush_forever(self):
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:
                log.exception("writing pull events failed")
