"""Projects (the first component of a repository name) and the repositories inside them."""
import datetime
import uuid

from pymongo.errors import DuplicateKeyError


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class Projects:
    def __init__(self, db):
        self.collection = db["projects"]

    async def ensure_indexes(self):
        await self.collection.create_index("name", unique=True)

    async def get_by_name(self, name):
        return await self.collection.find_one({"name": name})

    async def create(self, name, owner_id, is_public=False, description="", storage_quota=0):
        """Create a project, or return the one that already holds the name."""
        now = _now()
        doc = {"_id": str(uuid.uuid4()), "name": name, "description": description, "owner_id": owner_id,
               "is_public": is_public, "storage_quota": storage_quota, "storage_used": 0,
               "created_at": now, "updated_at": now}
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            return await self.get_by_name(name)
        return doc


class Repositories:
    def __init__(self, db):
        self.collection = db["repositories"]

    async def ensure_indexes(self):
        await self.collection.create_index("project_id")

    async def ensure(self, name, project_id):
        await self.collection.update_one(
            {"_id": name}, {"$setOnInsert": {"project_id": project_id, "created_at": _now()}}, upsert=True)

    async def exists(self, name):
        return await self.collection.find_one({"_id": name}, {"_id": 1}) is not None

    async def names(self, last=None, limit=None, project_ids=None):
        query = {}
        if last:
            query["_id"] = {"$gt": last}
        if project_ids is not None:
            query["project_id"] = {"$in": list(project_ids)}
        cursor = self.collection.find(query, {"_id": 1}).sort("_id", 1)
        if limit is not None:
            cursor = cursor.limit(limit)
        return [doc["_id"] async for doc in cursor]
