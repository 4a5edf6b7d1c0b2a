"""Failed-login counters per user and per address, shared by every node, expiring by TTL."""
import datetime

from storage.clock import utcnow


class LoginAttempts:
    def __init__(self, db):
        self.collection = db["login_attempts"]

    async def ensure_indexes(self):
        await self.collection.create_index("expires_at", expireAfterSeconds=0)

    async def locked_until(self, keys):
        """The latest lock among ``keys`` still in force, or None."""
        now = utcnow()
        docs = await self.collection.find({"_id": {"$in": keys}, "locked_until": {"$gt": now}}).to_list(None)
        return max((doc["locked_until"] for doc in docs), default=None)

    async def failures(self, keys):
        docs = await self.collection.find({"_id": {"$in": keys}, "expires_at": {"$gt": utcnow()}}).to_list(None)
        return max((doc["count"] for doc in docs), default=0)

    async def record_failure(self, keys, window_seconds, max_failures, lock_seconds):
        """Count a failure against every key; a key reaching ``max_failures`` is locked."""
        now = utcnow()
        window_end = now + datetime.timedelta(seconds=window_seconds)
        for key in keys:
            # A counter whose window has passed starts again; the increment itself is one atomic upsert,
            # so failures arriving together each count.
            await self.collection.update_one({"_id": key, "expires_at": {"$lte": now}},
                                             {"$set": {"count": 0, "expires_at": window_end},
                                              "$unset": {"locked_until": ""}})
            doc = await self.collection.find_one_and_update(
                {"_id": key}, {"$inc": {"count": 1}, "$setOnInsert": {"expires_at": window_end}},
                upsert=True, return_document=True)
            if doc["count"] >= max_failures:
                until = now + datetime.timedelta(seconds=lock_seconds)
                await self.collection.update_one({"_id": key}, {"$set": {"locked_until": until, "expires_at": until}})

    async def clear(self, keys):
        await self.collection.delete_many({"_id": {"$in": keys}})
