"""Storage accounting (synchronous pymongo: used from the quota actors' threads).

``project_objects`` holds one document per (project, digest) counted in the project's usage;
``projects.storage_used`` changes only through atomic conditional updates, so no number of
nodes charging at once can push a project over its quota (-1 means unlimited).
"""
import datetime

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class Accounting:
    def __init__(self, db):
        self.projects = db["projects"]
        self.objects = db["project_objects"]
        self.links = db["repository_blobs"]
        self.manifests = db["manifests"]
        self.events = db["events"]

    def ensure_indexes(self):
        self.objects.create_index([("project_id", 1), ("digest", 1)], unique=True)

    def usage(self, project_id):
        return self.projects.find_one({"_id": project_id}, {"storage_used": 1, "storage_quota": 1, "name": 1})

    def is_counted(self, project_id, digest):
        return self.objects.find_one({"project_id": project_id, "digest": digest}, {"_id": 1}) is not None

    def add(self, project_id, size):
        """Raise usage by ``size`` if it stays within the quota; the project after, or None when refused."""
        return self.projects.find_one_and_update(
            {"_id": project_id, "$or": [{"storage_quota": {"$lt": 0}},
                                        {"$expr": {"$lte": [{"$add": ["$storage_used", size]}, "$storage_quota"]}}]},
            {"$inc": {"storage_used": size}}, return_document=ReturnDocument.AFTER)

    def subtract(self, project_id, size):
        return self.projects.find_one_and_update({"_id": project_id}, {"$inc": {"storage_used": -size}},
                                                 return_document=ReturnDocument.AFTER)

    def set_quota(self, project_id, quota):
        return self.projects.find_one_and_update({"_id": project_id},
                                                 {"$set": {"storage_quota": quota, "updated_at": _now()}},
                                                 return_document=ReturnDocument.AFTER)

    def record(self, project_id, digest, size):
        """Mark ``digest`` as counted; False when another request counted it first."""
        try:
            self.objects.insert_one({"project_id": project_id, "digest": digest, "size": size, "created_at": _now()})
        except DuplicateKeyError:
            return False
        return True

    def still_referenced(self, project_id, digest):
        return (self.links.find_one({"project_id": project_id, "digest": digest}, {"_id": 1}) is not None
                or self.manifests.find_one({"project_id": project_id, "digest": digest}, {"_id": 1}) is not None)

    def forget(self, project_id, digest):
        """Drop the counted object; its size when it was counted, else None."""
        doc = self.objects.find_one_and_delete({"project_id": project_id, "digest": digest})
        return doc["size"] if doc else None

    def reset(self, project_id, sizes):
        self.objects.delete_many({"project_id": project_id, "digest": {"$nin": list(sizes)}})
        for digest, size in sizes.items():
            self.objects.update_one({"project_id": project_id, "digest": digest},
                                    {"$set": {"size": size}, "$setOnInsert": {"created_at": _now()}}, upsert=True)
        return self.projects.find_one_and_update({"_id": project_id},
                                                 {"$set": {"storage_used": sum(sizes.values())}},
                                                 return_document=ReturnDocument.AFTER)

    def drop(self, project_id):
        self.objects.delete_many({"project_id": project_id})

    def emit(self, event_type, project, payload):
        """Queue an event for webhook delivery (durable: it is a document)."""
        self.events.insert_one({"type": event_type, "project_id": project["_id"], "project": project.get("name"),
                                "payload": payload, "created_at": _now(), "status": "pending"})
