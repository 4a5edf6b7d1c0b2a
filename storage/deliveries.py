"""Webhook deliveries: one per (event, matching webhook), holding the exact body sent every time, each
attempt made, and when the next is due.

A delivery's first attempt is usually made before it is stored: the dispatcher that fanned the event out
sends it while it holds the event's lease, and stores it with that attempt's outcome (a dispatcher that
dies before loses the lease on the event, and another fans it out again, under the same event id). A
delivery still to be sent lives in ``deliveries``: ``pending`` until its next attempt is due, ``sending``
while a dispatcher holds its lease (likewise taken over when its holder dies). One that has ended
(``succeeded``, or ``failed``: its retries exhausted, or the webhook gone or answering 410) lives in
``delivery_history``, written there once, and is deleted from there after the retention period.

Most deliveries are history from the start (their first attempt succeeds), so that collection has no index
but ``_id``: every secondary index costs SecantusDB about as much again per document inserted. The ids do
the indexes' work. They sort a webhook's deliveries by time (``dlv_<webhook>_<milliseconds><event><n>``):
its listing, its deletion and the expiry are ranges of ``_id``; and a fan-out's delivery has the same id
each time it is made, so one made twice is stored once. The expiry is this module's own ranged delete
rather than a TTL index, which SecantusDB serves by reading every document of the collection under its
global lock, once a minute.
"""
import datetime
import re
import time

from pymongo import DeleteOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from storage.clock import utcnow
from storage.leases import candidates, take_many

PENDING, SENDING, SUCCEEDED, FAILED = "pending", "sending", "succeeded", "failed"
ENDED = (SUCCEEDED, FAILED)
DUPLICATE_KEY = 11000
# Attempts kept on a delivery (the schedule has ten; redeliveries are deliveries of their own).
KEPT_ATTEMPTS = 20
HISTORY = "delivery_history"
# After every character of an id past its webhook's prefix (hexadecimal digits).
PAST_THE_IDS = "~"
# The random ids deliveries had up to version 6 (a node of that version still makes them during an upgrade).
VERSION_6_ID = re.compile(r"^dlv_[0-9a-f]{32}$")
# One step of the expiry runs this long at most (on the dispatcher's thread): the next goes on from there.
EXPIRE_STEP_SECONDS = 0.5
# Times a redelivery placed in a millisecond already taken is placed a millisecond later before giving up.
REDELIVERY_PLACES = 10


def _prefix(webhook_id):
    return f"dlv_{webhook_id.removeprefix('wh_')}_"


def _milliseconds(at):
    return f"{int(at.timestamp() * 1000):012x}"


def delivery_id(webhook_id, at, event_id, redelivery):
    """The id of a delivery of ``event_id`` to ``webhook_id``, placed at ``at`` among the webhook's deliveries
    (a fan-out's: when its event occurred, so the same every time it is made)."""
    return f"{_prefix(webhook_id)}{_milliseconds(at)}{str(event_id).removeprefix('evt_')}{redelivery:x}"


def placed(doc, at):
    """``doc`` under an id of this version, placed at ``at``, if it has a version-6 id."""
    if not VERSION_6_ID.match(doc["_id"]):
        return doc
    return {**doc, "_id": delivery_id(doc["webhook_id"], at, doc["event_id"], doc.get("redelivery", 0))}


def _ids_after(prefix, before=None):
    """The ``_id`` range of the deliveries under ``prefix`` (placed before ``before``, when given)."""
    return {"$gt": prefix, "$lt": prefix + (_milliseconds(before) if before else PAST_THE_IDS)}


def of_webhook(webhook_id):
    """The ``_id`` range of a webhook's deliveries."""
    return _ids_after(_prefix(webhook_id))


def _takeable(status, now):
    """A delivery a dispatcher may take: a pending one that is due, or one being sent whose lease ran out."""
    if status == PENDING:
        return {"status": PENDING, "next_attempt_at": {"$lte": now}}
    return {"status": SENDING, "lease_until": {"$lt": now}}


def new_delivery(event, webhook_id, body, content_type, redelivery=0, at=None):
    """``at``: where the delivery is placed among the webhook's (its event's ``occurred_at`` by default)."""
    now = utcnow()
    return {"_id": delivery_id(webhook_id, at or event["occurred_at"], event["_id"], redelivery),
            "event_id": event["_id"], "event_type": event["type"],
            "webhook_id": webhook_id, "project_id": event.get("project_id"), "redelivery": redelivery,
            "body": body, "content_type": content_type, "status": PENDING, "attempts": [], "attempt_count": 0,
            "next_attempt_at": now, "lease_token": None, "lease_until": None, "created_at": now, "updated_at": now}


def _outcome_fields(status, next_attempt_at, retention_seconds):
    now = utcnow()
    fields = {"status": status, "next_attempt_at": next_attempt_at, "lease_token": None, "lease_until": None,
              "updated_at": now}
    if status in ENDED:
        fields["expire_at"] = now + datetime.timedelta(seconds=retention_seconds)
    return fields


def _ids_in(collection, ids):
    """Those of ``ids`` stored in ``collection``."""
    if not ids:
        return set()
    return {doc["_id"] for doc in collection.find({"_id": {"$in": ids}}, {"_id": 1})}


def _insert_new(collection, docs):
    """Insert ``docs`` in one round trip; answers those inserted. Ones already there stay as they are."""
    if not docs:
        return []
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details["writeErrors"]
        if any(error["code"] != DUPLICATE_KEY for error in errors):
            raise
        there = {error["index"] for error in errors}
        return [doc for index, doc in enumerate(docs) if index not in there]
    return docs


class Deliveries:
    """The API's side (asynchronous driver)."""

    def __init__(self, db):
        self.collection = db["deliveries"]
        self.history = db[HISTORY]

    async def ensure_indexes(self):
        await self.collection.create_index([("status", 1), ("next_attempt_at", 1)])
        await self.collection.create_index([("status", 1), ("lease_until", 1)])

    async def insert(self, doc):
        await self.collection.insert_one(doc)
        return doc

    async def get(self, webhook_id, delivery_id_):
        """The delivery as it last stood. One that ends is written to the history, then deleted from
        ``deliveries``: read in that order, a move between the reads finds it in the history, and its
        history copy wins."""
        query = {"_id": delivery_id_, "webhook_id": webhook_id}
        live = await self.collection.find_one(query)
        return await self.history.find_one(query) or live

    async def page(self, webhook_id, status, event_type, skip, limit):
        """Newest first, from both collections: the first ``skip + limit`` of each, merged."""
        query = {"_id": of_webhook(webhook_id), **({"status": status} if status else {}),
                 **({"event_type": event_type} if event_type else {})}
        found, total = {}, 0
        for collection in (self.collection, self.history):  # the history's copy wins over one being moved
            total += await collection.count_documents(query)
            async for doc in collection.find(query).sort("_id", -1).limit(skip + limit):
                found[doc["_id"]] = doc
        return sorted(found.values(), key=lambda doc: doc["_id"], reverse=True)[skip:skip + limit], total

    async def next_redelivery(self, delivery):
        """A new delivery of the same event and body to the same webhook, placed now; its ``redelivery`` is
        the one of ``delivery`` and one more. None when none of REDELIVERY_PLACES took it: then it is not a
        clash of places but a unique index of version 6 (re-created by a node of that version during an
        upgrade) refusing a second redelivery of the same number."""
        now = utcnow()
        for place in range(REDELIVERY_PLACES):
            doc = new_delivery({"_id": delivery["event_id"], "type": delivery["event_type"],
                                "project_id": delivery.get("project_id")}, delivery["webhook_id"], delivery["body"],
                               delivery["content_type"], delivery.get("redelivery", 0) + 1,
                               now + datetime.timedelta(milliseconds=place))
            try:
                return await self.insert(doc)
            except DuplicateKeyError:  # the same one asked twice within a millisecond: place it a little later
                continue
        return None

    async def delete_for_webhook(self, webhook_id):
        for collection in (self.collection, self.history):
            await collection.delete_many({"_id": of_webhook(webhook_id)})


class SyncDeliveries:
    """The dispatcher's side (synchronous driver)."""

    def __init__(self, db):
        self.collection = db["deliveries"]
        self.history = db[HISTORY]

    def insert(self, docs):
        """Store deliveries, those ended in the history, in a round trip to each collection; answers those
        inserted. Ones already there (made by an earlier fan-out of the same event, by a dispatcher whose
        lease on the event ran out) stay as they are, and are not answered. One a node of version 6 stored
        enters the history under an id of this version, placed when it was made, so it is listed."""
        return (_insert_new(self.history, [placed(doc, doc["created_at"]) for doc in docs if doc["status"] in ENDED])
                + _insert_new(self.collection, [doc for doc in docs if doc["status"] not in ENDED]))

    def stored(self, delivery_ids):
        """Those of ``delivery_ids`` stored, in either collection."""
        ids = list(delivery_ids)
        return _ids_in(self.collection, ids) | _ids_in(self.history, ids)

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
        # Ended already, by another dispatcher (one whose lease on it, or on its event, ran out while it sent):
        # its outcome is in the history, and this copy goes without being sent again.
        ended = _ids_in(self.history, [doc["_id"] for doc in taken])
        self.record([self.leave(doc) for doc in taken if doc["_id"] in ended])
        return [doc for doc in taken if doc["_id"] not in ended]

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
    def with_outcome(delivery, attempt, status, next_attempt_at, retention_seconds):
        """The delivery as it stands after ``attempt``, with what comes next."""
        return {**delivery, **_outcome_fields(status, next_attempt_at, retention_seconds),
                "attempt_count": delivery.get("attempt_count", 0) + 1,
                "attempts": (delivery.get("attempts", []) + [attempt])[-KEPT_ATTEMPTS:]}

    @staticmethod
    def outcome(delivery, attempt, status, next_attempt_at, retention_seconds):
        """The write keeping an attempt of a stored delivery that will be made again, while the lease is still
        the caller's (for ``record``)."""
        return UpdateOne({"_id": delivery["_id"], "lease_token": delivery["lease_token"]},
                         {"$set": _outcome_fields(status, next_attempt_at, retention_seconds),
                          "$inc": {"attempt_count": 1},
                          "$push": {"attempts": {"$each": [attempt], "$slice": -KEPT_ATTEMPTS}}})

    @staticmethod
    def leave(delivery):
        """The write taking a stored delivery that has ended out of ``deliveries`` once ``insert`` has put it
        in the history, while the lease is still the caller's (for ``record``)."""
        return DeleteOne({"_id": delivery["_id"], "lease_token": delivery["lease_token"]})

    def record(self, writes):
        """Make the ``outcome`` and ``leave`` writes of a round in one round trip."""
        if writes:
            self.collection.bulk_write(writes, ordered=False)

    def give_up(self, delivery, reason, retention_seconds):
        """End a stored delivery that will not be sent (its webhook was deleted or disabled)."""
        now = utcnow()
        self.insert([{**delivery, "status": FAILED, "last_error": reason, "lease_token": None, "lease_until": None,
                      "updated_at": now, "expire_at": now + datetime.timedelta(seconds=retention_seconds)}])
        self.record([self.leave(delivery)])

    def expire(self, retention_seconds, after=None, seconds=EXPIRE_STEP_SECONDS):
        """One step of deleting the history past its retention (``expire_at``): one ranged delete per webhook,
        the webhooks found by skipping along ``_id`` (a webhook deleted meanwhile is found too), from ``after``
        (None: from the first) for about ``seconds``. Answers how many it deleted, and the ``after`` to go on
        from (None: every webhook's history was looked at).

        Deliveries that ended in ``deliveries`` (where a node of version 6 ends them, during a rolling
        upgrade) expire there, on the status index, at the first step."""
        now, stop, deleted = utcnow(), time.monotonic() + seconds, 0
        if after is None:
            deleted, after = self.collection.delete_many({"status": {"$in": list(ENDED)},
                                                          "expire_at": {"$lte": now}}).deleted_count, "dlv_"
        while True:
            first = self.history.find_one({"_id": {"$gt": after}}, {"_id": 1}, sort=[("_id", 1)])
            if first is None:
                return deleted, None
            webhook_prefix = first["_id"][:first["_id"].index("_", len("dlv_")) + 1]
            # An expired delivery ended, so was placed, at least the retention ago: the range stops there.
            expired = _ids_after(webhook_prefix, now - datetime.timedelta(seconds=retention_seconds))
            deleted += self.history.delete_many({"_id": expired, "expire_at": {"$lte": now}}).deleted_count
            after = webhook_prefix + PAST_THE_IDS
            if time.monotonic() >= stop:
                return deleted, after
