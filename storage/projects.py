"""Projects: the first component of every repository name, with their owner, visibility and quota."""
import re
import uuid
from dataclasses import dataclass

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.clock import utcnow


@dataclass(frozen=True)
class Visibility:
    """The projects one caller sees: every project, or the public ones plus those ``owner_id`` owns.

    The one statement of the rule, as a predicate and as a query, so lists and single reads agree.
    """

    everything: bool = False
    owner_id: str = None

    def admits(self, project):
        return self.everything or bool(project.get("is_public")) or (
            self.owner_id is not None and project.get("owner_id") == self.owner_id)

    def query(self):
        if self.everything:
            return {}
        if self.owner_id is not None:
            return {"$or": [{"is_public": True}, {"owner_id": self.owner_id}]}
        return {"is_public": True}


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

    async def page(self, visibility, search, is_public, skip, limit):
        """``(projects, total)`` of those ``visibility`` admits, by name, optionally searched and filtered."""
        filters = [visibility.query()]
        if search:
            filters.append({"name": {"$regex": re.escape(search), "$options": "i"}})
        if is_public is not None:
            filters.append({"is_public": is_public})
        query = {"$and": filters}
        total = await self.collection.count_documents(query)
        docs = await self.collection.find(query).sort("name", 1).skip(skip).limit(limit).to_list(None)
        return docs, total

    async def visible(self, visibility):
        return await self.collection.find(visibility.query()).to_list(None)

    async def visible_ids(self, visibility):
        """The ids of the projects ``visibility`` admits; None when it admits every project."""
        if visibility.everything:
            return None
        return [doc["_id"] for doc in await self.collection.find(visibility.query(), {"_id": 1}).to_list(None)]

    async def named(self, names):
        """The projects named one of ``names``: their id, name and owner."""
        return await self.collection.find({"name": {"$in": list(names)}}, {"name": 1, "owner_id": 1}).to_list(None)

    async def with_ids(self, ids):
        """The projects whose id is one of ``ids``: their id, name and owner."""
        return await self.collection.find({"_id": {"$in": list(ids)}}, {"name": 1, "owner_id": 1}).to_list(None)

    async def owned_by(self, owner_id):
        return await self.collection.find({"owner_id": owner_id}, {"_id": 1}).to_list(None)

    async def count_owned_by(self, owner_id):
        return await self.collection.count_documents({"owner_id": owner_id})

    async def all(self):
        return await self.collection.find({}).to_list(None)

    async def update(self, project_id, fields):
        return await self.collection.find_one_and_update(
            {"_id": project_id}, {"$set": {**fields, "updated_at": utcnow()}}, return_document=ReturnDocument.AFTER)

    async def delete(self, project_id):
        await self.collection.delete_one({"_id": project_id})
