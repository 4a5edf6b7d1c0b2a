"""Projects (the first component of a repository name) and the repositories inside them."""
import re
import uuid

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.clock import utcnow


class Projects:
    def __init__(self, db):
        self.collection = db["projects"]

    async def ensure_indexes(self):
        await self.collection.create_index("name", unique=True)
        await self.collection.create_index("owner_id")

    async def get(self, project_id):
        return await self.collection.find_one({"_id": project_id})

    async def get_by_name(self, name):
        return await self.collection.find_one({"name": name})

    async def create(self, name, owner_id, is_public=False, description="", storage_quota=-1):
        """Insert a project; None when the name is taken."""
        now = utcnow()
        doc = {"_id": str(uuid.uuid4()), "name": name, "description": description, "owner_id": owner_id,
               "is_public": is_public, "storage_quota": storage_quota, "storage_used": 0,
               "created_at": now, "updated_at": now}
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            return None
        return doc

    def visible_query(self, user):
        """Projects ``user`` (None = anonymous) may see: administrators all, others their own and public ones."""
        if user and user.get("is_admin"):
            return {}
        if user:
            return {"$or": [{"is_public": True}, {"owner_id": user["_id"]}]}
        return {"is_public": True}

    async def page(self, query, skip, limit):
        total = await self.collection.count_documents(query)
        docs = await self.collection.find(query).sort("name", 1).skip(skip).limit(limit).to_list(None)
        return docs, total

    async def find(self, query, projection=None):
        return await self.collection.find(query, projection).to_list(None)

    async def update(self, project_id, fields):
        return await self.collection.find_one_and_update(
            {"_id": project_id}, {"$set": {**fields, "updated_at": utcnow()}}, return_document=ReturnDocument.AFTER)

    async def delete(self, project_id):
        await self.collection.delete_one({"_id": project_id})


def name_search(text):
    return {"name": {"$regex": re.escape(text), "$options": "i"}}


class Repositories:
    def __init__(self, db):
        self.collection = db["repositories"]

    async def ensure_indexes(self):
        await self.collection.create_index("project_id")

    async def ensure(self, name, project_id):
        await self.collection.update_one(
            {"_id": name}, {"$setOnInsert": {"project_id": project_id, "created_at": utcnow()}}, upsert=True)

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

    async def all(self):
        return await self.collection.find({}).to_list(None)

    async def delete_for_project(self, project_id):
        await self.collection.delete_many({"project_id": project_id})
