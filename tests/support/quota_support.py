"""Helpers for the project, quota, visibility, GC and accounting tests (issue 4).

Projects are created through /api/v1 with unique names; usage is read both through the API and straight from
MongoDB; ``recount`` is the admin API that recomputes usage. Images and blobs are pushed with the /v2/ helpers
of tests.support.manifests.
"""
import contextlib
import datetime

import pymongo

from tests.support.api_client import ok, unique_name
from tests.support.clients import wait_until

MiB = 1024 * 1024
GC_NOW_ENV = {"CYP_GC_GRACE_SECONDS": "0", "CYP_GC_INTERVAL_SECONDS": "3600"}


def new_project(api, prefix="q", **fields):
    """Create a project through POST /api/v1/projects; answers its data."""
    return ok(api.post("/api/v1/projects", json={"name": unique_name(prefix), **fields}))


def project_data(api, key):
    return ok(api.get(f"/api/v1/projects/{key}"))


def storage_used(api, key):
    return project_data(api, key)["storage_used"]


def recount(api, key, fix=False):
    return ok(api.post(f"/api/v1/projects/{key}/recount", params={"fix": "true"} if fix else None))


def set_quota(api, key, quota):
    return ok(api.put(f"/api/v1/projects/{key}/quota", json={"storage_quota": quota}))


def run_gc(api):
    return ok(api.post("/api/v1/system/gc"))


def gc_lease(meta):
    """The cluster's collection lease (``lease:gc`` in the ``meta`` collection), once a node has looked at it (its
    first look records a collection done then, so the first scheduled one is an interval later)."""
    return wait_until(lambda: meta.find_one({"_id": "lease:gc"}), 10)


@contextlib.contextmanager
def gc_lease_held_elsewhere(meta, owner="other-node:4242:abcdef"):
    """The cluster's collection lease (``lease:gc`` in the ``meta`` collection) held by another node's running
    collection for the block's duration; handed back after it. Answers the owner."""
    now = datetime.datetime.now(datetime.UTC)
    meta.update_one({"_id": "lease:gc"}, {"$set": {"token": "elsewhere", "owner": owner,
                                                   "until": now + datetime.timedelta(seconds=60)},
                                          "$setOnInsert": {"done_at": now}}, upsert=True)
    try:
        yield owner
    finally:
        meta.update_one({"_id": "lease:gc", "token": "elsewhere"}, {"$set": {
            "owner": None, "until": datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)}})


class Db:
    """Synchronous access to a server's database for checks of stored state."""

    def __init__(self, uri, name):
        self.client = pymongo.MongoClient(uri, tz_aware=True)
        self.db = self.client[name]

    def __getitem__(self, collection):
        return self.db[collection]

    def project(self, project_id):
        return self.db["projects"].find_one({"_id": project_id})

    def used(self, project_id):
        return self.project(project_id)["storage_used"]

    def counted(self, project_id):
        """``{digest: size}`` of what the accounting counts for the project."""
        return {doc["digest"]: doc["size"] for doc in self.db["project_objects"].find({"project_id": project_id})}

    def close(self):
        self.client.close()
