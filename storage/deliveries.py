"""Webhook deliveries: one per (event, matching webhook), holding the exact body sent every time, each
attempt made, and when the next is due.

A delivery's first attempt is usually made before it is stored: the dispatcher that fanned the event out
sends it while it holds the event's lease, and stores it with that attempt's outcome (a dispatcher that
dies before loses the lease on the event, and another fans it out again, under the same event id). A
stored delivery is ``pending`` until its next attempt is due, ``sending`` while a dispatcher holds its
lease (likewise taken over when its holder dies), and ends ``succeeded`` or ``failed`` (its retries
exhausted, or the webhook gone or answering 410). Ended deliveries expire (TTL) after the retention period.
"""
import datetime
import uuid

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from storage.clock import utcnow
from storage.leases import candidates, take_many

PENDING, SENDING, SUCCEEDED, FAILED = "pending", "sending", "succeeded", "failed"
DUPLICATE_KEY = 11000
# Attempts kept on a delivery (the schedule has ten; redeliveries are deliveries of their own).
KEPT_ATTEMPTS = 20


def _takeable(status, now):
    """A delivery a dispatcher may take: a pending one that is due, or one being sent whose lease ran out."""
    if status == PENDING:
        return {"status": PENDING, "next_attempt_at": {"$lte": now}}
    return {"status": SENDING, "lease_until": {"$lt": now}}


def new_delivery(event, webhook_id, body, content_type, redelivery=0):
    now = utcnow()
    return {"_id": f"dlv_{uuid.uuid4().hex}", "event_id": event["_id"], "event_type": event["type"],
            "webhook_id": webhook_id, "project_id": event.get("project_id"), "redelivery": redelivery,
            "body": body, "content_type": content_type, "status": PENDING, "attempts": [], "attempt_count": 0,
            "next_attempt_at": now, "lease_token": None, "lease_until": None, "created_at": now, "updated_at": now}


def _outcome_fields(status, next_attempt_at, retention_seconds):
    now = utcnow()
    fields = {"status": status, "next_attempt_at": next_attempt_at, "lease_token": None, "lease_until": None,
              "updated_at": now}
    if status in (SUCCEEDED, FAILED):
        fields["expire_at"] = now + datetime.timedelta(seconds=retention_seconds)
    return fields


class Deliveries:
    """The API's side (asynchronous driver)."""

    def __init__(self, db):
        self.collection = db["deliveries"]

    async def ensure_indexes(self):
        await self.collection.create_index([("event_id", 1), ("webhook_id", 1), ("redelivery", 1)], unique=True)
        await self.collection.create_index([("status", 1), ("next_attempt_at", 1)])
        await self.collection.create_index([("status", 1), ("lease_until", 1)])
        await self.collection.create_index([("webhook_id", 1), ("created_at", -1)])
        await self.collection.create_index("expire_at", expireAfterSeconds=0)

    async def insert(self, doc):
        await self.collection.insert_one(doc)
        return doc

    async def get(self, webhook_id, delivery_id):
        return await self.collection.find_one({"_id": delivery_id, "webhook_id": webhook_id})

    async def page(self, webhook_id, status, event_type, skip, limit):
        query = {"webhook_id": webhook_id, **({"status": status} if status else {}),
                 **({"event_type": event_type} if event_type else {})}
        total = await self.collection.count_documents(query)
        docs = await self.collection.find(query).sort([("created_at", -1), ("_id", 1)]).skip(skip).limit(
            limit).to_list(None)
        return docs, total

    async def next_redelivery(self, delivery):
        """A new delivery of the same event and body to the same webhook."""
        latest = await self.collection.find({"event_id": delivery["event_id"], "webhook_id": delivery["webhook_id"]},
                                            {"redelivery": 1}).sort("redelivery", -1).limit(1).to_list(None)
        doc = new_delivery({"_id": delivery["event_id"], "type": delivery["event_type"],
                            "project_id": delivery.get("project_id")}, delivery["webhook_id"], delivery["body"],
                           delivery["content_type"], latest[0]["redelivery"] + 1 if latest else 1)
        try:
            return await self.insert(doc)
        except DuplicateKeyError:  # two redeliveries asked at once: the next number
            return await self.next_redelivery(delivery)

    async def delete_for_webhook(self, webhook_id):
        await self.collection.delete_many({"webhook_id": webhook_id})


class SyncDeliveries:
    """The dispatcher's side (synchronous driver)."""

    def __init__(self, db):
        self.collection = db["deliveries"]

    def insert(self, docs):
        """Insert deliveries in one round trip; answers those inserted. Ones already there (made by an earlier
        fan-out of the same event, by a dispatcher whose lease on the event ran out) stay as they are, and are
        not answered."""
        if not docs:
            return []
        try:
            self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details["writeErrors"]
            if any(error["code"] != DUPLICATE_KEY for error in errors):
                raise
            there = {error["index"] for error in errors}
            return [doc for index, doc in enumerate(docs) if index not in there]
        return docs

    def made_for(self, event_ids):
        """``{(event id, webhook id)}`` of the fan-out deliveries (not redeliveries) of ``event_ids`` stored, on the
        unique index."""
        return {(doc["event_id"], doc["webhook_id"]) for doc in self.collection.find(
            {"event_id": {"$in": list(event_ids)}, "redelivery": 0}, {"event_id": 1, "webhook_id": 1})}

    def due(self, limit, busy_webhooks):
        """Up to ``limit`` deliveries due now, earliest first, then ones whose sender died (lease run out),
        leaving out those of ``busy_webhooks``: their ``_id``, ``webhook_id`` and ``status``, to ``take``. Two queries, each on an index range (one with ``$or`` would read every delivery)."""
        now, others = utcnow(), {"webhook_id": {"$nin": list(busy_webhooks)}}
        found = candidates(self.collection, {**_takeable(PENDING, now), **others}, [("next_attempt_at", 1)], limit,
                           fields=("webhook_id", "status"))
        if len(found) < limit:
            found += candidates(self.collection, {**_takeable(SENDING, now), **others}, [("lease_until", 1)],
                                limit - len(found), fields=("webhook_id", "status"))
        return found

    def take(self, found, owner, lease_seconds):
        """The deliveries of ``found`` (``due`` candidates), leased to ``owner`` in one update, those still as due
        (or abandoned) as they were found: a pending one taken by another dispatcher meanwhile is left out."""
        now = utcnow()
        fields = {"status": SENDING, "lease_until": now + datetime.timedelta(seconds=lease_seconds)}
        taken = []
        for status in (PENDING, SENDING):
            batch = [doc for doc in found if doc["status"] == status]
            taken += take_many(self.collection, batch, _takeable(status, now), fields, False, f"{owner}:")
        return taken

    def backlog(self):
        """``{status: (deliveries, oldest created_at)}`` of those not ended (pending, sending), on the status index."""
        found = self.collection.aggregate([
            {"$match": {"status": {"$in": [PENDING, SENDING]}}},
            {"$group": {"_id": "$status", "count": {"$sum": 1}, "oldest": {"$min": "$created_at"}}}])
        return {doc["_id"]: (doc["count"], doc["oldest"]) for doc in found}

    def next_due(self):
        """When the earliest pending delivery is due, or None."""
        doc = self.collection.find_one({"status": PENDING}, {"next_attempt_at": 1}, sort=[("next_attempt_at", 1)])
        return doc["next_attempt_at"] if doc else None

    @staticmethod
    def outcome(delivery, attempt, status, next_attempt_at, retention_seconds):
        """The write keeping the attempt and what comes next, while the lease is still the caller's (for
        ``record``)."""
        return UpdateOne({"_id": delivery["_id"], "lease_token": delivery["lease_token"]},
                         {"$set": _outcome_fields(status, next_attempt_at, retention_seconds),
                          "$inc": {"attempt_count": 1},
                          "$push": {"attempts": {"$each": [attempt], "$slice": -KEPT_ATTEMPTS}}})

    @staticmethod
    def with_first_outcome(delivery, attempt, status, next_attempt_at, retention_seconds):
        """A delivery not stored yet, made by a fan-out and sent once, as it is stored with that attempt (for
        ``insert``)."""
        return {**delivery, **_outcome_fields(status, next_attempt_at, retention_seconds), "attempt_count": 1,
                "attempts": [attempt]}

    def record(self, outcomes):
        """Write the ``outcome`` writes of a round in one round trip."""
        if outcomes:
            self.collection.bulk_write(outcomes, ordered=False)

    def give_up(self, delivery, reason, retention_seconds):
        """End a delivery that will not be sent (its webhook was deleted or disabled)."""
        now = utcnow()
        self.collection.update_one({"_id": delivery["_id"], "lease_token": delivery["lease_token"]}, {"$set": {
            "status": FAILED, "last_error": reason, "lease_token": None, "lease_until": None, "updated_at": now,
            "expire_at": now + datetime.timedelta(seconds=retention_seconds)}})
