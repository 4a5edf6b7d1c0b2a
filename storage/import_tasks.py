"""Image import tasks: their whole state lives here, so any node can take one over.

A task is ``pending`` until a node claims it (one conditional update sets ``owner``, a fresh
``lease_token`` and ``lease_until``), ``running`` while its holder heartbeats the lease, and ends
``completed``, ``failed`` or ``cancelled``. A running task whose lease ran out is claimed again
by any node, which resumes it from what the document records (blobs done, uploads in progress).
``active_key`` is set only while a task is pending or running: its unique index makes two
identical imports into one project share one task.
"""
import datetime
import uuid

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.clock import utcnow
from storage.leases import candidates

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = "pending", "running", "completed", "failed", "cancelled"
ACTIVE = (PENDING, RUNNING)
FINISHED = (COMPLETED, FAILED, CANCELLED)


def _claimable(now):
    return {"$or": [{"status": PENDING}, {"status": RUNNING, "lease_until": {"$lt": now}}]}


class ImportTasks:
    """The API's and the pipeline's side (asynchronous driver)."""

    def __init__(self, db):
        self.collection = db["import_tasks"]

    async def ensure_indexes(self):
        await self.collection.create_index([("project_id", 1), ("created_at", -1)])
        await self.collection.create_index([("status", 1), ("created_at", 1)])
        await self.collection.create_index("active_key", unique=True, sparse=True)

    async def create(self, fields, active_key):
        """Insert a pending task; when an identical one is active, answer that one instead ``(task, created)``."""
        now = utcnow()
        doc = {"_id": fields.get("_id") or str(uuid.uuid4()), "status": PENDING, "progress": 0, "message": "waiting to start",
               "created_at": now, "updated_at": now, "attempts": 0, "owner": None, "lease_token": None,
               "lease_until": None, "cancel_requested": False, "active_key": active_key, "details": {},
               "uploads": {}, "linked": [], **fields}
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.collection.find_one({"active_key": active_key})
            if existing is not None:
                return existing, False
            return await self.create(fields, active_key)
        return doc, True

    async def get(self, project_id, task_id):
        return await self.collection.find_one({"_id": task_id, "project_id": project_id})

    async def project_of(self, task_id):
        doc = await self.collection.find_one({"_id": task_id}, {"project_id": 1})
        return doc and doc["project_id"]

    async def page(self, project_id, status, skip, limit):
        query = {"project_id": project_id, **({"status": status} if status else {})}
        total = await self.collection.count_documents(query)
        docs = await self.collection.find(query).sort([("created_at", -1), ("_id", -1)]).skip(skip).limit(
            limit).to_list(None)
        return docs, total

    async def request_cancel(self, project_id, task_id):
        """A pending task is cancelled at once; a running one is flagged for its holder. The task after."""
        now = utcnow()
        doc = await self.collection.find_one_and_update(
            {"_id": task_id, "project_id": project_id, "status": PENDING},
            {"$set": {"status": CANCELLED, "message": "cancelled", "updated_at": now, "cancel_requested": True},
             "$unset": {"active_key": "", "credentials": ""}}, return_document=ReturnDocument.AFTER)
        if doc is not None:
            return doc
        return await self.collection.find_one_and_update(
            {"_id": task_id, "project_id": project_id}, {"$set": {"cancel_requested": True}},
            return_document=ReturnDocument.AFTER)

    # --- the holder's writes: each one only while it still holds the lease -------------------------

    async def update(self, task, fields, unset=(), session=None):
        """Record ``fields`` for the task held under ``task["lease_token"]``; False when the lease is gone."""
        update = {"$set": {**fields, "updated_at": utcnow()}}
        if unset:
            update["$unset"] = {name: "" for name in unset}
        result = await self.collection.update_one({"_id": task["_id"], "lease_token": task["lease_token"]}, update,
                                                  session=session)
        return result.matched_count == 1

    async def finish(self, task, status, message, fields=None, session=None):
        """End the task; its credentials are wiped and it no longer blocks an identical import."""
        return await self.update(task, {"status": status, "message": message, "lease_until": None,
                                        "owner": None, **(fields or {})}, unset=("active_key", "credentials"),
                                 session=session)


class SyncImportTasks:
    """The import actors' side (synchronous driver): claiming, heartbeating and releasing leases."""

    def __init__(self, db):
        self.collection = db["import_tasks"]

    def candidates(self, limit):
        """Claimable tasks: those whose holder stopped heartbeating, then pending ones, each oldest first. Two
        queries on the status index: actors ask twice a second, and a query with ``$or`` reads every task."""
        now = utcnow()
        found = candidates(self.collection, {"status": RUNNING, "lease_until": {"$lt": now}}, [("created_at", 1)],
                           limit, fields=("project_id",))
        if len(found) < limit:
            found += candidates(self.collection, {"status": PENDING}, [("created_at", 1)], limit - len(found),
                                fields=("project_id",))
        return found

    def count_by_status(self):
        """``{status: tasks}`` over every status, one count on the status index each."""
        return {status: self.collection.count_documents({"status": status}) for status in (*ACTIVE, *FINISHED)}

    def running_in_project(self, project_id):
        return self.collection.count_documents({"project_id": project_id, "status": RUNNING,
                                                "lease_until": {"$gte": utcnow()}})

    def claim(self, task_id, owner, lease_seconds):
        """Take the task if it is still claimable; the task with its new lease, or None."""
        now = utcnow()
        return self.collection.find_one_and_update(
            {"_id": task_id, **_claimable(now)},
            {"$set": {"status": RUNNING, "owner": owner, "lease_token": uuid.uuid4().hex,
                      "lease_until": now + datetime.timedelta(seconds=lease_seconds), "updated_at": now},
             "$inc": {"attempts": 1}, "$min": {"started_at": now}},
            return_document=ReturnDocument.AFTER)

    def heartbeat(self, task, lease_seconds):
        """Extend the lease; the task as it stands (to see a cancel request), or None when the lease is lost."""
        return self.collection.find_one_and_update(
            {"_id": task["_id"], "lease_token": task["lease_token"], "status": RUNNING},
            {"$set": {"lease_until": utcnow() + datetime.timedelta(seconds=lease_seconds)}},
            return_document=ReturnDocument.AFTER)

    def release(self, task):
        """Give an unfinished task back (this node is stopping), so another takes it over at once."""
        self.collection.update_one({"_id": task["_id"], "lease_token": task["lease_token"], "status": RUNNING},
                                   {"$set": {"status": PENDING, "owner": None, "lease_token": None,
                                             "lease_until": None, "message": "waiting for another node"}})
