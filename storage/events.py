"""The events collection: the outbox webhook delivery reads.

One document per event, written in the same transaction as the change it reports (pull events,
written in batches after the answer, are the one exception). An event is ``pending`` until a
dispatcher has fanned it out into one delivery per matching webhook, ``dispatched`` after; a
dispatched event expires (TTL) after the retention period.
"""
import datetime
import uuid

from storage.clock import utcnow
from storage.leases import candidates, take_many

PENDING, DISPATCHED = "pending", "dispatched"


def new_event_id():
    return f"evt_{uuid.uuid4().hex}"


def event_document(event_type, project, data, operator=None):
    """``data`` is the event's own content; the project (id and name) is added to it for every event of one."""
    if project is not None:
        data = {"project": {"id": project["_id"], "name": project.get("name")}, **data}
    return {"_id": new_event_id(), "type": event_type, "occurred_at": utcnow(), "operator": operator or "anonymous",
            "project_id": project["_id"] if project else None, "data": data, "status": PENDING,
            "lease_until": None}


class Events:
    """Event writes from the event loop (asynchronous driver); ``session`` joins the change's transaction."""

    def __init__(self, db):
        self.collection = db["events"]

    async def ensure_indexes(self):
        await self.collection.create_index([("status", 1), ("occurred_at", 1)])
        await self.collection.create_index("expire_at", expireAfterSeconds=0)

    async def emit(self, event_type, project, data, operator=None, session=None):
        doc = event_document(event_type, project, data, operator)
        await self.collection.insert_one(doc, session=session)
        return doc

    async def emit_many(self, docs):
        if docs:
            await self.collection.insert_many(docs, ordered=False)


class SyncEvents:
    """The same for the actors' threads (synchronous driver), and the dispatcher's claims."""

    def __init__(self, db):
        self.collection = db["events"]

    def emit(self, event_type, project, data, operator=None, session=None):
        doc = event_document(event_type, project, data, operator)
        self.collection.insert_one(doc, session=session)
        return doc

    def claim_pending(self, owner, lease_seconds, limit):
        """Up to ``limit`` pending events no other dispatcher is fanning out right now, oldest first, leased to
        ``owner``: those never leased, then those whose lease ran out (two conditions: no ``$or``). Answers them,
        and the ids of the latter (claimed again: some of their deliveries may be stored already)."""
        now = utcnow()
        lease = {"lease_until": now + datetime.timedelta(seconds=lease_seconds)}
        claimed, again = [], set()
        for condition in ({"status": PENDING, "lease_until": None}, {"status": PENDING, "lease_until": {"$lt": now}}):
            found = candidates(self.collection, condition, [("occurred_at", 1)], limit - len(claimed), fields=None)
            taken = take_many(self.collection, found, condition, lease, whole=True, token_prefix=f"{owner}:")
            claimed += taken
            if condition["lease_until"] is not None:
                again = {event["_id"] for event in taken}
            if len(claimed) >= limit:
                break
        return claimed, again

    def dispatched(self, events, retention_seconds):
        """Mark fanned-out ``events`` so, in one update."""
        if events:
            self.collection.update_many({"_id": {"$in": [event["_id"] for event in events]}}, {"$set": {
                "status": DISPATCHED, "lease_until": None, "lease_token": None,
                "expire_at": utcnow() + datetime.timedelta(seconds=retention_seconds)}})
