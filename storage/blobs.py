"""Committed blobs (one document per digest) and their links to repositories.

A link carries the blob's size and storage ref (copied when it is made; a blob's ref never changes
while a link to it exists, since the garbage collector deletes only unlinked blobs), so a blob read
finds everything in the one document that also proves the link.
"""

from pymongo import ReturnDocument

from storage.clock import utcnow


class Blobs:
    def __init__(self, db):
        self.collection = db["blobs"]
        self.links = db["repository_blobs"]

    async def ensure_indexes(self):
        await self.links.create_index([("repo", 1), ("digest", 1)], unique=True)
        await self.links.create_index([("project_id", 1), ("digest", 1)])
        await self.links.create_index("digest")
        await self.collection.create_index("touched_at")

    async def get(self, digest):
        return await self.collection.find_one({"_id": digest})

    async def add(self, digest, size, ref):
        """Record a committed blob; False when the digest was already stored (the caller drops its copy).

        Either way the blob is touched, so the garbage collector leaves it alone for a grace period.
        """
        now = utcnow()
        before = await self.collection.find_one_and_update(
            {"_id": digest},
            {"$setOnInsert": {"size": size, "ref": ref, "created_at": now}, "$set": {"touched_at": now}},
            upsert=True, return_document=ReturnDocument.BEFORE)
        return before is None

    async def link(self, repo, project_id, digest):
        """Link ``digest`` (a stored blob) into ``repo``; True when the link is new."""
        blob = await self.get(digest)
        result = await self.links.update_one(
            {"repo": repo, "digest": digest},
            {"$setOnInsert": {"project_id": project_id, "created_at": utcnow(), "size": blob["size"],
                              "ref": blob["ref"]}}, upsert=True)
        return result.upserted_id is not None

    async def in_project(self, project_id, digest):
        return await self.links.find_one({"project_id": project_id, "digest": digest}, {"_id": 1}) is not None

    async def is_linked(self, repo, digest):
        return await self.links.find_one({"repo": repo, "digest": digest}, {"_id": 1}) is not None

    async def linked(self, repo, digest):
        """``{_id, size, ref}`` of the blob when it is linked to ``repo``, else None (one round trip)."""
        link = await self.links.find_one({"repo": repo, "digest": digest}, {"size": 1, "ref": 1})
        return {"_id": digest, "size": link["size"], "ref": link["ref"]} if link else None

    async def repositories_linking(self, digest, limit):
        return [doc["repo"] for doc in await self.links.find({"digest": digest}, {"repo": 1}).limit(limit).to_list(None)]

    async def missing_links(self, repo, digests):
        found = await self.links.distinct("digest", {"repo": repo, "digest": {"$in": list(digests)}})
        return sorted(set(digests) - set(found))

    async def unlink(self, repo, digest):
        """Remove the link; the removed link document, or None when there was none."""
        return await self.links.find_one_and_delete({"repo": repo, "digest": digest})

    async def links_older_than(self, repo, cutoff):
        return await self.links.distinct("digest", {"repo": repo, "created_at": {"$lt": cutoff}})

    async def unlinked_older_than(self, cutoff):
        """Blobs no repository links that nobody touched since ``cutoff``."""
        found = []
        async for doc in self.collection.find({"touched_at": {"$lt": cutoff}}, {"_id": 1}):
            if await self.links.find_one({"digest": doc["_id"]}, {"_id": 1}) is None:
                found.append(doc["_id"])
        return found

    async def remove_if_untouched(self, digest, cutoff):
        """Delete the blob document unless it was touched since ``cutoff``; the document, or None."""
        return await self.collection.find_one_and_delete({"_id": digest, "touched_at": {"$lt": cutoff}})

    async def sizes(self, digests):
        docs = await self.collection.find({"_id": {"$in": list(digests)}}, {"size": 1}).to_list(None)
        return {doc["_id"]: doc["size"] for doc in docs}

    async def project_link_counts(self, project_id):
        """``{digest: number of repositories of the project linking it}``."""
        cursor = await self.links.aggregate([{"$match": {"project_id": project_id}},
                                             {"$group": {"_id": "$digest", "n": {"$sum": 1}}}])
        return {doc["_id"]: doc["n"] async for doc in cursor}

    async def link_totals(self, repos):
        """``{repo: (bytes, number of links)}`` of the blobs each of ``repos`` links (a link carries its blob's
        size); a repository linking nothing is absent."""
        cursor = await self.links.aggregate([{"$match": {"repo": {"$in": list(repos)}}},
                                             {"$group": {"_id": "$repo", "size": {"$sum": "$size"}, "n": {"$sum": 1}}}])
        return {doc["_id"]: (doc["size"], doc["n"]) async for doc in cursor}

    async def link_sizes(self, repo, digests):
        """``{digest: size}`` of those of ``digests`` linked to ``repo``."""
        docs = await self.links.find({"repo": repo, "digest": {"$in": list(digests)}}, {"digest": 1, "size": 1}).to_list(None)
        return {doc["digest"]: doc["size"] for doc in docs}

    async def repo_digests(self, repo):
        return await self.links.distinct("digest", {"repo": repo})

    async def delete_links_for_project(self, project_id):
        await self.links.delete_many({"project_id": project_id})
