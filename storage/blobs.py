"""Committed blobs (one document per digest) and their links to repositories."""
import datetime

from pymongo.errors import DuplicateKeyError


class Blobs:
    def __init__(self, db):
        self.collection = db["blobs"]
        self.links = db["repository_blobs"]

    async def ensure_indexes(self):
        await self.links.create_index([("repo", 1), ("digest", 1)], unique=True)
        await self.links.create_index("digest")

    async def get(self, digest):
        return await self.collection.find_one({"_id": digest})

    async def add(self, digest, size, ref):
        """Record a committed blob; False when the digest was already stored (the caller drops its copy)."""
        try:
            await self.collection.insert_one({
                "_id": digest, "size": size, "ref": ref,
                "created_at": datetime.datetime.now(datetime.timezone.utc),
            })
        except DuplicateKeyError:
            return False
        return True

    async def link(self, repo, digest):
        await self.links.update_one(
            {"repo": repo, "digest": digest},
            {"$setOnInsert": {"created_at": datetime.datetime.now(datetime.timezone.utc)}},
            upsert=True,
        )

    async def linked(self, repo, digest):
        """The blob's document when it is linked to ``repo``, else None."""
        if await self.links.find_one({"repo": repo, "digest": digest}, {"_id": 1}) is None:
            return None
        return await self.get(digest)

    async def missing_links(self, repo, digests):
        found = await self.links.distinct("digest", {"repo": repo, "digest": {"$in": list(digests)}})
        return sorted(set(digests) - set(found))

    async def unlink(self, repo, digest):
        result = await self.links.delete_one({"repo": repo, "digest": digest})
        return result.deleted_count == 1
