"""Registry-wide singletons shared by every node: the token signing key, the bootstrap state, locks."""
import asyncio
import contextlib
import datetime
import uuid

from pymongo.errors import DuplicateKeyError

from storage.clock import utcnow


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

    async def set(self, key, value):
        await self.collection.update_one({"_id": key}, {"$set": {"value": value}}, upsert=True)

    async def take_once(self, key):
        """Atomically mark ``key`` as taken; True only for the first caller, on any node."""
        result = await self.collection.update_one({"_id": key, "taken": {"$ne": True}}, {"$set": {"taken": True}})
        return result.modified_count == 1

    @contextlib.asynccontextmanager
    async def lock(self, name, lease_seconds=10, wait_seconds=10):
        """A lock every node respects; the lease frees it should its holder die."""
        token, deadline = uuid.uuid4().hex, asyncio.get_running_loop().time() + wait_seconds
        key = f"lock:{name}"
        while True:
            now = utcnow()
            try:
                taken = await self.collection.find_one_and_update(
                    {"_id": key, "$or": [{"until": None}, {"until": {"$lt": now}}]},
                    {"$set": {"token": token, "until": now + datetime.timedelta(seconds=lease_seconds)}},
                    upsert=True)
            except DuplicateKeyError:  # held: the upsert met the existing document
                taken = None
            if taken is not None or await self.collection.find_one({"_id": key, "token": token}):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"lock {name} is busy")
            await asyncio.sleep(0.02)
        try:
            yield
        finally:
            await self.collection.update_one({"_id": key, "token": token}, {"$set": {"until": None}})
