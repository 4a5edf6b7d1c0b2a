"""Login sessions: one document per refresh-token family; revocation is a flag every node reads.

Documents expire through a TTL index once the family's refresh token could no longer be used.
"""
import datetime
import uuid

from storage.clock import utcnow


class Sessions:
    def __init__(self, db):
        self.collection = db["sessions"]

    async def ensure_indexes(self):
        await self.collection.create_index("expires_at", expireAfterSeconds=0)
        await self.collection.create_index("user_id")

    async def create(self, user_id, refresh_jti, ttl_seconds, remote_ip):
        now = utcnow()
        doc = {"_id": uuid.uuid4().hex, "user_id": user_id, "refresh_jti": refresh_jti, "revoked": False,
               "created_at": now, "last_refreshed_at": now, "remote_ip": remote_ip,
               "expires_at": now + datetime.timedelta(seconds=ttl_seconds)}
        await self.collection.insert_one(doc)
        return doc

    async def active(self, session_id):
        """The session when it exists, is not revoked and has not expired."""
        return await self.collection.find_one({"_id": session_id, "revoked": False, "expires_at": {"$gt": utcnow()}})

    async def rotate(self, session_id, presented_jti, new_jti, ttl_seconds):
        """Swap the family's refresh token; None when ``presented_jti`` is not the current one."""
        now = utcnow()
        return await self.collection.find_one_and_update(
            {"_id": session_id, "refresh_jti": presented_jti, "revoked": False, "expires_at": {"$gt": now}},
            {"$set": {"refresh_jti": new_jti, "last_refreshed_at": now,
                      "expires_at": now + datetime.timedelta(seconds=ttl_seconds)}},
        )

    async def revoke(self, session_id):
        await self.collection.update_one({"_id": session_id}, {"$set": {"revoked": True}})

    async def revoke_for_user(self, user_id, keep=None):
        query = {"user_id": user_id, "revoked": False}
        if keep:
            query["_id"] = {"$ne": keep}
        result = await self.collection.update_many(query, {"$set": {"revoked": True}})
        return result.modified_count
