"""Upload sessions: their whole state lives here so that any node can continue one.

A request that writes to an upload first takes its lease; the lease makes concurrent
requests on one upload fail cleanly instead of interleaving bytes.
"""
import datetime
import uuid

from bson import Binary

from storage.clock import utcnow


class Uploads:
    def __init__(self, db):
        self.collection = db["uploads"]

    async def ensure_indexes(self):
        await self.collection.create_index("expires_at")

    async def create(self, repo, algorithm, store_state, hash_state, expiry_seconds):
        now = utcnow()
        doc = {
            "_id": str(uuid.uuid4()), "repo": repo, "size": 0, "algorithm": algorithm,
            "hash_state": Binary(hash_state), "store_state": store_state,
            "created_at": now, "updated_at": now,
            "expires_at": now + datetime.timedelta(seconds=expiry_seconds),
            "lease_token": None, "lease_until": None,
        }
        await self.collection.insert_one(doc)
        return doc

    async def get(self, upload_id, repo):
        return await self.collection.find_one({"_id": upload_id, "repo": repo, "expires_at": {"$gt": utcnow()}})

    async def acquire(self, upload_id, repo, lease_seconds, take_over=False):
        """Take the upload's lease; None when it is unknown, expired, or busy with another request (unless
        ``take_over``: its caller knows the holder is gone)."""
        now = utcnow()
        token = uuid.uuid4().hex
        idle = {} if take_over else {"$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]}
        doc = await self.collection.find_one_and_update(
            {"_id": upload_id, "repo": repo, "expires_at": {"$gt": now}, **idle},
            {"$set": {"lease_token": token, "lease_until": now + datetime.timedelta(seconds=lease_seconds)}},
            return_document=True,
        )
        return doc

    async def renew(self, upload_id, token, lease_seconds):
        result = await self.collection.update_one(
            {"_id": upload_id, "lease_token": token},
            {"$set": {"lease_until": utcnow() + datetime.timedelta(seconds=lease_seconds)}},
        )
        return result.matched_count == 1

    async def save_progress(self, upload_id, token, size, hash_state, store_state, expiry_seconds,
                            keep_lease_seconds=None):
        """Record what a request appended; its lease is released, or renewed for ``keep_lease_seconds``."""
        now = utcnow()
        lease = {"lease_token": None, "lease_until": None} if keep_lease_seconds is None else {
            "lease_until": now + datetime.timedelta(seconds=keep_lease_seconds)}
        result = await self.collection.update_one(
            {"_id": upload_id, "lease_token": token},
            {"$set": {"size": size, "hash_state": Binary(hash_state), "store_state": store_state,
                      "updated_at": now, "expires_at": now + datetime.timedelta(seconds=expiry_seconds), **lease}},
        )
        return result.matched_count == 1

    async def release(self, upload_id, token):
        await self.collection.update_one({"_id": upload_id, "lease_token": token},
                                         {"$set": {"lease_token": None, "lease_until": None}})

    async def mark_charging(self, upload_id, token, digest):
        """Note, under the request's lease, that the upload's blob ``digest`` is being charged to its project."""
        result = await self.collection.update_one({"_id": upload_id, "lease_token": token},
                                                  {"$set": {"charging": digest}})
        return result.matched_count == 1

    async def clear_charging(self, upload_id):
        """The charge was given back: the note goes, with the lease."""
        await self.collection.update_one({"_id": upload_id}, {"$unset": {"charging": ""},
                                                              "$set": {"lease_token": None, "lease_until": None}})

    async def claim_abandoned_charge(self, lease_seconds):
        """Lease to the caller one upload whose request noted a charge and then stopped renewing its lease."""
        now = utcnow()
        return await self.collection.find_one_and_update(
            {"charging": {"$exists": True}, "lease_until": {"$lt": now}},
            {"$set": {"lease_token": "reconciler", "lease_until": now + datetime.timedelta(seconds=lease_seconds)}},
            return_document=True)

    async def delete(self, upload_id):
        await self.collection.delete_one({"_id": upload_id})

    async def claim_expired(self, lease_seconds):
        """Lease one expired, idle upload to the sweeper, or None. The document goes only after its
        data (``delete``), so a sweeper that dies half-way leaves it for the next sweep."""
        now = utcnow()
        return await self.collection.find_one_and_update(
            {"expires_at": {"$lt": now}, "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]},
            {"$set": {"lease_token": "sweeper", "lease_until": now + datetime.timedelta(seconds=lease_seconds)}},
            return_document=True)
