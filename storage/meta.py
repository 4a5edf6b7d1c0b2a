"""Registry-wide singletons shared by every node: the token signing key, the bootstrap state."""
from pymongo.errors import DuplicateKeyError


class Meta:
    def __init__(self, db):
        self.collection = db["meta"]

    async def get_or_create(self, key, value):
        """The stored value of ``key``; ``value`` is stored first if there is none (first node wins)."""
        try:
            await self.collection.insert_one({"_id": key, "value": value})
        except DuplicateKeyError:
            pass
        doc = await self.collection.find_one({"_id": key})
        return doc["value"]

    async def get(self, key):
        doc = await self.collection.find_one({"_id": key})
        return doc["value"] if doc else None

    async def take_once(self, key):
        """Atomically mark ``key`` as taken; True only for the first caller, on any node."""
        result = await self.collection.update_one({"_id": key, "taken": {"$ne": True}}, {"$set": {"taken": True}})
        return result.modified_count == 1
