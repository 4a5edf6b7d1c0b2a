"""Storage accounting (synchronous pymongo: used from the quota actors' threads).

``project_objects`` holds one document per (project, digest) counted in the project's usage,
with ``refs``: how many repository links and manifests of the project hold that digest. A
document is ``pending`` while its first holder charges the bytes and ``counted`` after, so a
second holder arriving meanwhile waits for the outcome instead of assuming it.
``projects.storage_used`` changes only through atomic conditional updates, so no number of
nodes charging at once can push a project over its quota (-1 means unlimited).

``Accounting`` is the quota actors' (synchronous driver); ``AsyncAccounting`` takes a reference inside
a transaction of the event loop's driver, so what holds it (a manifest) and its charge are stored
together or not at all: a manifest is never pending.
"""
import datetime

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.clock import utcnow
from storage.events import SyncEvents

PENDING, COUNTED = "pending", "counted"
WARNING_RATIO = 0.8
# A first holder settles its claim in milliseconds; one pending this long belongs to a dead node.
CLAIM_WAIT_SECONDS = 30
CLAIM_POLL_SECONDS = 0.01


def _crossed(before, after, quota, ratio):
    return quota >= 0 and before < quota * ratio <= after


def crossing_event(before, project):
    """The event a rise of usage from ``before`` to the project's ``storage_used`` announces (QUOTA_EXCEEDED on
    reaching the quota, QUOTA_WARNING on reaching WARNING_RATIO of it), or None."""
    used, quota = project["storage_used"], project["storage_quota"]
    if _crossed(before, used, quota, 1.0):
        return "QUOTA_EXCEEDED"
    if _crossed(before, used, quota, WARNING_RATIO):
        return "QUOTA_WARNING"
    return None


def _counted(project_id, digest):
    return {"project_id": project_id, "digest": digest, "state": COUNTED}


def _within_quota(project_id, size):
    return {"_id": project_id, "$or": [{"storage_quota": {"$lt": 0}},
                                       {"$expr": {"$lte": [{"$add": ["$storage_used", size]}, "$storage_quota"]}}]}


def _stale_claim(project_id, digest, older_than_seconds):
    cutoff = utcnow() - datetime.timedelta(seconds=older_than_seconds)
    return {"project_id": project_id, "digest": digest, "state": PENDING, "created_at": {"$lt": cutoff}}


def _object(project_id, digest, size, state, holder=None):
    return {"project_id": project_id, "digest": digest, "size": size, "refs": 1, "state": state,
            "created_at": utcnow(), **({"holders": [holder]} if holder else {})}


class ClaimPending(Exception):
    """Another request (an upload, outside any transaction) is settling the first charge of the digest."""


class Accounting:
    def __init__(self, db):
        self.db = db
        self.projects = db["projects"]
        self.objects = db["project_objects"]
        self.events = SyncEvents(db)

    def ensure_indexes(self):
        self.objects.create_index([("project_id", 1), ("digest", 1)], unique=True)

    def usage(self, project_id):
        return self.projects.find_one({"_id": project_id}, {"storage_used": 1, "storage_quota": 1, "name": 1})

    def usages(self):
        """Every project's id, usage and quota."""
        return list(self.projects.find({}, {"storage_used": 1, "storage_quota": 1}))

    def is_counted(self, project_id, digest):
        return self.objects.find_one({"project_id": project_id, "digest": digest, "state": COUNTED},
                                     {"_id": 1}) is not None

    def add_reference(self, project_id, digest, holder=None):
        """One more holder of an already counted digest; False when it is not counted. ``holder``: the upload
        taking it, noted in ``holders`` until its link is made (``held``), so a charge whose node died before
        linking can be told from any other reference and given back (``give_back``)."""
        update = {"$inc": {"refs": 1}, **({"$push": {"holders": holder}} if holder else {})}
        return self.objects.find_one_and_update(_counted(project_id, digest), update) is not None

    def claim(self, project_id, digest, size, holder=None):
        """Start counting ``digest`` with its first holder; False when another request holds the claim."""
        try:
            self.objects.insert_one(_object(project_id, digest, size, PENDING, holder))
        except DuplicateKeyError:
            return False
        return True

    def settle(self, project_id, digest, session=None):
        self.objects.update_one({"project_id": project_id, "digest": digest, "state": PENDING},
                                {"$set": {"state": COUNTED}}, session=session)

    def abandon(self, project_id, digest):
        self.objects.delete_one({"project_id": project_id, "digest": digest, "state": PENDING})

    def drop_stale_claim(self, project_id, digest, older_than_seconds):
        """Remove a pending claim whose holder died before settling it."""
        self.objects.delete_one(_stale_claim(project_id, digest, older_than_seconds))

    def held(self, project_id, digest, holder):
        """``holder``'s reference is its link's now."""
        self.objects.update_one({"project_id": project_id, "digest": digest, "holders": holder},
                                {"$pull": {"holders": holder}})

    def give_back(self, project_id, digest, holder):
        """Drop the reference ``holder`` took and never linked (at most once: the note goes with it), or the claim
        it left pending; the size to give back when it was the last one, else 0."""
        self.objects.delete_one({"project_id": project_id, "digest": digest, "state": PENDING, "holders": holder})
        return self.remove_reference(project_id, digest, {"holders": holder}, {"$pull": {"holders": holder}})

    def remove_reference(self, project_id, digest, only=None, also=None):
        """One holder fewer; the size to give back when it was the last one, else 0."""
        doc = self.objects.find_one_and_update({"project_id": project_id, "digest": digest, "state": COUNTED,
                                                **(only or {})},
                                               {"$inc": {"refs": -1}, **(also or {})},
                                               return_document=ReturnDocument.AFTER)
        if doc is None or doc["refs"] > 0:
            return 0
        # Deleted only while still unreferenced: a holder arriving meanwhile keeps it counted.
        gone = self.objects.find_one_and_delete({"project_id": project_id, "digest": digest, "state": COUNTED,
                                                 "refs": {"$lte": 0}})
        return gone["size"] if gone else 0

    def add(self, project_id, size, session=None):
        """Raise usage by ``size`` if it stays within the quota; the project after, or None when refused."""
        return self.projects.find_one_and_update(_within_quota(project_id, size), {"$inc": {"storage_used": size}},
                                                 return_document=ReturnDocument.AFTER, session=session)

    def subtract(self, project_id, size):
        return self.projects.find_one_and_update({"_id": project_id}, {"$inc": {"storage_used": -size}},
                                                 return_document=ReturnDocument.AFTER)

    def set_quota(self, project_id, quota, session=None):
        return self.projects.find_one_and_update({"_id": project_id},
                                                 {"$set": {"storage_quota": quota, "updated_at": utcnow()}},
                                                 return_document=ReturnDocument.AFTER, session=session)

    def reset(self, project_id, holders):
        """Make the counted objects exactly ``holders`` ({digest: (size, refs)}) and usage their sum."""
        self.objects.delete_many({"project_id": project_id, "digest": {"$nin": list(holders)}})
        for digest, (size, refs) in holders.items():
            self.objects.update_one({"project_id": project_id, "digest": digest},
                                    {"$set": {"size": size, "refs": refs, "state": COUNTED},
                                     "$setOnInsert": {"created_at": utcnow()}}, upsert=True)
        return self.projects.find_one_and_update(
            {"_id": project_id}, {"$set": {"storage_used": sum(size for size, _ in holders.values())}},
            return_document=ReturnDocument.AFTER)

    def drop(self, project_id):
        self.objects.delete_many({"project_id": project_id})


class AsyncAccounting:
    """References taken and dropped inside a transaction of the event loop's driver (``session``), with the change
    that makes them (a manifest stored or deleted)."""

    def __init__(self, db):
        self.projects = db["projects"]
        self.objects = db["project_objects"]

    async def take(self, project_id, digest, size, session):
        """One more holder of ``digest``; its bytes are charged with the first. Answers ``(usage before, the project
        after)`` when this charged them, ``(None, None)`` when they were counted already, and ``(None, False)`` when
        they would exceed the quota (the caller aborts the transaction: the counted object is in it). Raises
        ClaimPending when a charge outside any transaction is being settled."""
        if await self.objects.find_one_and_update(_counted(project_id, digest), {"$inc": {"refs": 1}},
                                                  session=session) is not None:
            return None, None
        try:
            await self.objects.insert_one(_object(project_id, digest, size, COUNTED), session=session)
        except DuplicateKeyError:
            raise ClaimPending() from None
        project = await self.projects.find_one_and_update(
            _within_quota(project_id, size), {"$inc": {"storage_used": size}}, return_document=ReturnDocument.AFTER,
            session=session)
        if project is None:
            return None, False
        return project["storage_used"] - size, project

    async def drop(self, project_id, digest, session):
        """One holder of ``digest`` fewer; its bytes are given back with the last."""
        doc = await self.objects.find_one_and_update(_counted(project_id, digest), {"$inc": {"refs": -1}},
                                                     return_document=ReturnDocument.AFTER, session=session)
        if doc is not None and doc["refs"] <= 0:
            await self.objects.delete_one({"_id": doc["_id"]}, session=session)
            await self.projects.update_one({"_id": project_id}, {"$inc": {"storage_used": -doc["size"]}},
                                           session=session)

    async def drop_stale_claim(self, project_id, digest, older_than_seconds):
        """Remove a pending claim whose holder died before settling it."""
        await self.objects.delete_one(_stale_claim(project_id, digest, older_than_seconds))
