"""Repositories: ``<project>/<path>`` names that hold blobs, manifests and tags."""
import re

from pymongo import UpdateOne

from storage.clock import utcnow


class Repositories:
    def __init__(self, db):
        self.collection = db["repositories"]

    async def ensure_indexes(self):
        await self.collection.create_index("project_id")

    async def ensure(self, name, project_id, session=None):
        await self.collection.update_one(
            {"_id": name}, {"$setOnInsert": {"project_id": project_id, "created_at": utcnow()}}, upsert=True,
            session=session)

    async def exists(self, name):
        return await self.collection.find_one({"_id": name}, {"_id": 1}) is not None

    async def names(self, last=None, limit=None, project_ids=None):
        """Repository names in order, after ``last``, at most ``limit``, within ``project_ids`` (None: all)."""
        query = {}
        if last:
            query["_id"] = {"$gt": last}
        if project_ids is not None:
            query["project_id"] = {"$in": list(project_ids)}
        cursor = self.collection.find(query, {"_id": 1}).sort("_id", 1)
        if limit is not None:
            cursor = cursor.limit(limit)
        return [doc["_id"] async for doc in cursor]

    async def page(self, project_id, search, skip, limit):
        """``(repositories, total)`` of the project, by name, optionally searched (case-insensitive substring
        of the full name)."""
        query = {"project_id": project_id}
        if search:
            query["_id"] = {"$regex": re.escape(search), "$options": "i"}
        total = await self.collection.count_documents(query)
        docs = await self.collection.find(query).sort("_id", 1).skip(skip).limit(limit).to_list(None)
        return docs, total

    async def record_pulls(self, pulls):
        """``pulls``: ``{name: number of pulls}``, added to each repository's ``pull_count``."""
        if pulls:
            await self.collection.bulk_write([UpdateOne({"_id": name}, {"$inc": {"pull_count": count}})
                                              for name, count in pulls.items()], ordered=False)

    async def all(self):
        return await self.collection.find({}).to_list(None)

    async def delete_for_project(self, project_id):
        await self.collection.delete_many({"project_id": project_id})
