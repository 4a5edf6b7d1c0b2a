"""The events collection: the outbox that webhook delivery reads. One document per event, written
with the change it reports."""
from storage.clock import utcnow


def event_document(event_type, project, payload):
    return {"type": event_type, "project_id": project["_id"], "project": project.get("name"),
            "payload": payload, "created_at": utcnow(), "status": "pending"}


class Events:
    """Event writes from the event loop (asynchronous driver)."""

    def __init__(self, db):
        self.collection = db["events"]

    async def emit(self, event_type, project, payload):
        await self.collection.insert_one(event_document(event_type, project, payload))


class SyncEvents:
    """Event writes from the actors' threads (synchronous driver)."""

    def __init__(self, db):
        self.collection = db["events"]

    def emit(self, event_type, project, payload):
        self.collection.insert_one(event_document(event_type, project, payload))
