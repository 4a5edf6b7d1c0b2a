"""Personal access tokens: only the SHA-256 of each secret is stored."""
import hashlib
import uuid

from storage.clock import utcnow


def secret_hash(secret):
    # PAT secrets are 256-bit random strings, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(secret.encode()).hexdigest()


class PersonalAccessTokens:
    def __init__(self, db):
        self.collection = db["personal_access_tokens"]

    async def ensure_indexes(self):
        await self.collection.create_index("secret_hash", unique=True)
        await self.collection.create_index([("user_id", 1), ("created_at", -1)])

    async def create(self, user_id, name, scopes, secret, expires_at):
        doc = {"_id": uuid.uuid4().hex, "user_id": user_id, "name": name, "scopes": sorted(scopes),
               "secret_hash": secret_hash(secret), "prefix": secret[:8], "expires_at": expires_at,
               "created_at": utcnow(), "last_used_at": None, "revoked": False}
        await self.collection.insert_one(doc)
        return doc

    async def find_usable(self, secret):
        """The unrevoked, unexpired PAT with this secret, marking it used; None otherwise."""
        now = utcnow()
        return await self.collection.find_one_and_update(
            {"secret_hash": secret_hash(secret), "revoked": False,
             "$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]},
            {"$set": {"last_used_at": now}}, return_document=True)

    async def usable(self, pat_id):
        now = utcnow()
        return await self.collection.find_one(
            {"_id": pat_id, "revoked": False, "$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]})

    async def list_for_user(self, user_id):
        cursor = self.collection.find({"user_id": user_id, "revoked": False}, {"secret_hash": 0}).sort("created_at", -1)
        return await cursor.to_list(None)

    async def revoke(self, user_id, pat_id):
        result = await self.collection.update_one({"_id": pat_id, "user_id": user_id, "revoked": False},
                                                  {"$set": {"revoked": True, "revoked_at": utcnow()}})
        return result.modified_count == 1

    async def revoke_for_user(self, user_id):
        await self.collection.update_many({"user_id": user_id, "revoked": False},
                                          {"$set": {"revoked": True, "revoked_at": utcnow()}})
