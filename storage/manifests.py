"""Manifests, stored byte-exact per repository, and the tags that point at them."""

from bson import Binary
from pymongo import UpdateMany, UpdateOne

from storage.clock import utcnow
from storage.shared_reads import SharedReads


class Manifests:
    def __init__(self, db):
        self.collection = db["manifests"]
        self.tags = db["tags"]
        # Pulls read tags and manifests by digest fresh; a hot one's reads are shared.
        self.pull_reads = SharedReads()

    async def ensure_indexes(self):
        await self.collection.create_index([("repo", 1), ("digest", 1)], unique=True)
        await self.collection.create_index([("repo", 1), ("subject", 1)])
        await self.collection.create_index([("project_id", 1), ("digest", 1)])
        await self.tags.create_index([("repo", 1), ("tag", 1)], unique=True)
        await self.tags.create_index([("repo", 1), ("digest", 1)])

    async def put(self, repo, project_id, parsed, content, sparse=False, session=None):
        """Store a parsed manifest (services.manifests.ParsedManifest) with its exact bytes; True when new.
        ``sparse``: an index stored without some of its children (by a filtered import)."""
        result = await self.collection.update_one(
            {"repo": repo, "digest": parsed.digest},
            {"$setOnInsert": {
                "project_id": project_id, "media_type": parsed.media_type, "size": len(content),
                "content": Binary(content), "subject": parsed.subject, "artifact_type": parsed.artifact_type,
                "references": parsed.references, "created_at": utcnow(), "sparse": sparse,
            }},
            upsert=True, session=session,
        )
        return result.upserted_id is not None

    async def stored_sparse(self, repo, digest):
        """None when the manifest is not stored; else whether it was stored as a sparse index."""
        doc = await self.collection.find_one({"repo": repo, "digest": digest}, {"sparse": 1})
        return None if doc is None else bool(doc.get("sparse"))

    async def exists(self, repo, digest):
        return await self.collection.find_one({"repo": repo, "digest": digest}, {"_id": 1}) is not None

    async def get(self, repo, digest, with_content=True):
        return await self.collection.find_one({"repo": repo, "digest": digest},
                                              None if with_content else {"content": 0})

    async def describe(self, repo, digest):
        """The manifest's document without its bytes, or None: read fresh, the read shared (not to be changed)."""
        return await self.pull_reads.read(("digest", repo, digest), lambda: self.get(repo, digest, with_content=False))

    async def hold(self, repo, digest, session):
        """Inside a transaction, mark the manifest as in use (tagged now): False when it is gone, and a
        delete running at the same time conflicts with this write instead of slipping past it."""
        result = await self.collection.update_one({"repo": repo, "digest": digest},
                                                  {"$set": {"tagged_at": utcnow()}}, session=session)
        return result.matched_count == 1

    async def existing_digests(self, repo, digests):
        return set(await self.collection.distinct("digest", {"repo": repo, "digest": {"$in": list(digests)}}))

    async def delete(self, repo, digest, session=None):
        """Delete a manifest and every tag pointing at it; ``(the deleted document or None, the tags removed)``."""
        tags = await self.tags.distinct("tag", {"repo": repo, "digest": digest}, session=session)
        deleted = await self.collection.find_one_and_delete({"repo": repo, "digest": digest}, {"content": 0},
                                                            session=session)
        await self.tags.delete_many({"repo": repo, "digest": digest}, session=session)
        return deleted, sorted(tags)

    async def referrers(self, repo, subject, artifact_type=None):
        query = {"repo": repo, "subject": subject}
        if artifact_type:
            query["artifact_type"] = artifact_type
        cursor = self.collection.find(query).sort("digest", 1)
        return await cursor.to_list(None)

    async def referenced_by(self, repo):
        """Every digest the manifests of ``repo`` reference (blobs and child manifests)."""
        return set(await self.collection.distinct("references", {"repo": repo}))

    async def project_holders(self, project_id):
        """``{digest: (size, number of repositories holding it)}`` for the project's manifests."""
        holders = {}
        async for doc in self.collection.find({"project_id": project_id}, {"digest": 1, "size": 1}):
            size, count = holders.get(doc["digest"], (doc["size"], 0))
            holders[doc["digest"]] = (size, count + 1)
        return holders

    async def repo_totals(self, repos):
        """``{repo: (bytes, number of manifests, when the newest was stored)}`` for each of ``repos`` holding any."""
        cursor = await self.collection.aggregate([
            {"$match": {"repo": {"$in": list(repos)}}},
            {"$group": {"_id": "$repo", "size": {"$sum": "$size"}, "n": {"$sum": 1}, "last": {"$max": "$created_at"}}}])
        return {doc["_id"]: (doc["size"], doc["n"], doc["last"]) async for doc in cursor}

    async def tag_totals(self, repos):
        """``{repo: (number of tags, when a tag was last set)}`` for each of ``repos`` holding any."""
        cursor = await self.tags.aggregate([
            {"$match": {"repo": {"$in": list(repos)}}},
            {"$group": {"_id": "$repo", "n": {"$sum": 1}, "last": {"$max": "$updated_at"}}}])
        return {doc["_id"]: (doc["n"], doc["last"]) async for doc in cursor}

    async def media_types(self, repo):
        """``{digest: media type}`` of every manifest of ``repo``."""
        return {doc["digest"]: doc["media_type"]
                async for doc in self.collection.find({"repo": repo}, {"digest": 1, "media_type": 1})}

    async def by_digest(self, repo, digests, with_content=False):
        """``{digest: document}`` of those of ``digests`` stored in ``repo``."""
        docs = await self.collection.find({"repo": repo, "digest": {"$in": list(digests)}},
                                          None if with_content else {"content": 0}).to_list(None)
        return {doc["digest"]: doc for doc in docs}

    async def referrer_counts(self, repo, subjects):
        """``{subject: number of manifests of repo whose subject it is}`` for those of ``subjects`` that have any."""
        cursor = await self.collection.aggregate([
            {"$match": {"repo": repo, "subject": {"$in": list(subjects)}}},
            {"$group": {"_id": "$subject", "n": {"$sum": 1}}}])
        return {doc["_id"]: doc["n"] async for doc in cursor}

    async def record_tag_pulls(self, pulls):
        """``pulls``: ``{(repo, reference): last pulled at}``; a pull by tag moves that tag's ``last_pulled_at``, a
        pull by digest that of every tag then pointing at the digest."""
        if pulls:
            await self.tags.bulk_write([
                UpdateMany({"repo": repo, "digest": reference}, {"$max": {"last_pulled_at": at}}) if ":" in reference
                else UpdateOne({"repo": repo, "tag": reference}, {"$max": {"last_pulled_at": at}})
                for (repo, reference), at in pulls.items()], ordered=False)

    async def count_for_projects(self, project_ids):
        return await self.collection.count_documents({"project_id": {"$in": list(project_ids)}})

    async def count_tags(self, repos):
        return await self.tags.count_documents({"repo": {"$in": list(repos)}})

    async def delete_for_repos(self, repos):
        # Tags first: a tag never points at a manifest that is gone.
        await self.tags.delete_many({"repo": {"$in": list(repos)}})
        await self.collection.delete_many({"repo": {"$in": list(repos)}})

    async def set_tag(self, repo, tag, parsed, size, session=None):
        """Point ``tag`` at a stored manifest; the tag carries its media type and size, so a read by tag
        needs only the tag (a tag exists only while its manifest does)."""
        await self.tags.update_one({"repo": repo, "tag": tag},
                                   {"$set": {"digest": parsed.digest, "media_type": parsed.media_type, "size": size,
                                             "updated_at": utcnow()}}, upsert=True, session=session)

    async def tags_to_write(self, repo, tags, digest, set_since, session):
        """Inside a transaction, which of ``tags`` to write for pointing them at ``digest``: ``(moving, refreshing)``,
        the tags that are new or on another manifest, and those on it already but set before ``set_since``."""
        current = {doc["tag"]: doc async for doc in self.tags.find(
            {"repo": repo, "tag": {"$in": list(tags)}}, {"tag": 1, "digest": 1, "updated_at": 1}, session=session)}
        moving = [tag for tag in tags if current.get(tag, {}).get("digest") != digest]
        refreshing = [tag for tag in tags if tag not in moving and current[tag].get("updated_at", set_since) <= set_since]
        return moving, refreshing

    async def resolve_tag(self, repo, tag):
        """The tag's ``{digest, media_type, size}``, or None: read fresh, the read shared (not to be changed)."""
        return await self.pull_reads.read(("tag", repo, tag), lambda: self.tags.find_one(
            {"repo": repo, "tag": tag}, {"digest": 1, "media_type": 1, "size": 1}))

    async def tag(self, repo, tag):
        """The whole tag document (with ``updated_at``: when it was last set), or None."""
        return await self.tags.find_one({"repo": repo, "tag": tag})

    async def tags_page(self, repo, skip, limit):
        """``(tag documents, total)`` of ``repo``, by tag."""
        total = await self.tags.count_documents({"repo": repo})
        docs = await self.tags.find({"repo": repo}).sort("tag", 1).skip(skip).limit(limit).to_list(None)
        return docs, total

    async def list_tags(self, repo, last=None, limit=None):
        query = {"repo": repo}
        if last:
            query["tag"] = {"$gt": last}
        cursor = self.tags.find(query, {"tag": 1}).sort("tag", 1)
        if limit is not None:
            cursor = cursor.limit(limit)
        return [doc["tag"] async for doc in cursor]

    async def delete_tag(self, repo, tag, session=None):
        """Remove the tag; the digest it pointed at, or None when there was no such tag."""
        doc = await self.tags.find_one_and_delete({"repo": repo, "tag": tag}, session=session)
        return doc["digest"] if doc else None
