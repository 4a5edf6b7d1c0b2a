"""Committed blobs (one document per digest) and their links to repositories.

A link carries the blob's size and storage ref (copied when it is made; a blob's ref never changes
while a link to it exists, since the garbage collector deletes only unlinked blobs), so a blob read
finds everything in the one document that also proves the link.

Blobs and links carry ``touched_at``: when a push, a mount, a manifest referencing them or a client
asking whether they exist last relied on them. The garbage collector removes one in three steps: it
marks it (``gc_mark``) while it is untouched for the grace period, checks that nothing references it,
then deletes it only if it is still marked. Every use touches it and clears the mark first, so a use
racing the collector either makes the mark fail, clears it before the delete, or comes after the delete
and finds nothing (then the client uploads, as for any missing blob).
"""
from pymongo import ReturnDocument

from storage.clock import utcnow
from storage.shared_reads import SharedReads


def _touch(now):
    return {"$set": {"touched_at": now}, "$unset": {"gc_mark": ""}}


class BlobGone(Exception):
    """The blob was collected between being found and being linked."""


class Blobs:
    def __init__(self, db):
        self.collection = db["blobs"]
        self.links = db["repository_blobs"]
        # Pulls read links fresh; a hot blob's reads are shared.
        self.pull_reads = SharedReads()

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
            {"$setOnInsert": {"size": size, "ref": ref, "created_at": now}, **_touch(now)},
            upsert=True, return_document=ReturnDocument.BEFORE)
        return before is None

    async def link(self, repo, project_id, digest):
        """Link ``digest`` (a stored blob) into ``repo``, touching both; True when the link is new.
        BlobGone when the collector deleted the blob meanwhile."""
        now = utcnow()
        if not (await self.collection.update_one({"_id": digest}, _touch(now))).matched_count:
            raise BlobGone(digest)
        blob = await self.get(digest)
        result = await self.links.update_one(
            {"repo": repo, "digest": digest},
            {"$setOnInsert": {"project_id": project_id, "created_at": now, "size": blob["size"],
                              "ref": blob["ref"]}, **_touch(now)}, upsert=True)
        return result.upserted_id is not None

    async def in_project(self, project_id, digest):
        return await self.links.find_one({"project_id": project_id, "digest": digest}, {"_id": 1}) is not None

    async def is_linked(self, repo, digest):
        return await self.links.find_one({"repo": repo, "digest": digest}, {"_id": 1}) is not None

    async def linked(self, repo, digest, refresh_after=None):
        """``{_id, size, ref}`` of the blob when it is linked to ``repo``, else None (one fresh read, shared with
        the calls that ask meanwhile: ``SharedReads``). A link
        untouched for longer than ``refresh_after`` (a timedelta) is touched: a client that learns here that
        the blob exists may rely on it in the manifest it pushes next. Such a link may be marked by the
        collector, and removed between the read and the touch: then it is unknown, as after the removal."""
        link = await self.pull_reads.read((repo, digest), lambda: self.links.find_one(
            {"repo": repo, "digest": digest}, {"size": 1, "ref": 1, "touched_at": 1}))
        if link is None:
            return None
        now = utcnow()
        if refresh_after is not None and link.get("touched_at", now) < now - refresh_after:
            if not (await self.links.update_one({"_id": link["_id"]}, _touch(now))).matched_count:
                return None
        return {"_id": digest, "size": link["size"], "ref": link["ref"]}

    async def repositories_linking(self, digest, limit):
        return [doc["repo"] for doc in await self.links.find({"digest": digest}, {"repo": 1}).limit(limit).to_list(None)]

    async def hold_links(self, repo, digests, refresh_after):
        """Make sure the links of ``digests`` in ``repo`` outlive the manifest about to reference them (the collector
        takes only links untouched for its whole grace period): those untouched for longer than ``refresh_after``
        (a timedelta, a tenth of that period) or marked by a collection are touched, the others are only read.
        Answers those missing."""
        wanted = set(digests)
        if not wanted:
            return []
        now, query = utcnow(), {"repo": repo, "digest": {"$in": list(wanted)}}
        links = await self.links.find(query, {"digest": 1, "touched_at": 1, "gc_mark": 1}).to_list(None)
        stale = [link["digest"] for link in links
                 if "gc_mark" in link or link.get("touched_at", now) < now - refresh_after]
        if stale:  # one may be collected between the read and the touch: it is missing then
            touched = await self.links.update_many({"repo": repo, "digest": {"$in": stale}}, _touch(now))
            if touched.matched_count < len(stale):
                links = await self.links.find(query, {"digest": 1}).to_list(None)
        return sorted(wanted - {link["digest"] for link in links})

    async def unlink(self, repo, digest):
        """Remove the link; the removed link document, or None when there was none."""
        return await self.links.find_one_and_delete({"repo": repo, "digest": digest})

    async def links_older_than(self, repo, cutoff):
        return await self.links.distinct("digest", {"repo": repo, "touched_at": {"$lt": cutoff}})

    async def mark_links(self, repo, digests, cutoff, mark):
        """Mark those links of ``digests`` in ``repo`` still untouched since ``cutoff``."""
        await self.links.update_many({"repo": repo, "digest": {"$in": list(digests)}, "touched_at": {"$lt": cutoff}},
                                     {"$set": {"gc_mark": mark}})

    async def unlink_marked(self, repo, digest, mark):
        """Remove the link if it still carries ``mark`` (untouched since it was marked); the link, or None."""
        return await self.links.find_one_and_delete({"repo": repo, "digest": digest, "gc_mark": mark})

    async def unlinked_older_than(self, cutoff, mark):
        """Mark and answer the blobs no repository links that nobody touched since ``cutoff``; a link made after
        the mark was checked clears it (``link`` touches the blob first)."""
        found = []
        async for doc in self.collection.find({"touched_at": {"$lt": cutoff}}, {"_id": 1}):
            if await self._linked_anywhere(doc["_id"]):
                continue
            marked = await self.collection.update_one({"_id": doc["_id"], "touched_at": {"$lt": cutoff}},
                                                      {"$set": {"gc_mark": mark}})
            if marked.modified_count and not await self._linked_anywhere(doc["_id"]):
                found.append(doc["_id"])
        return found

    async def _linked_anywhere(self, digest):
        return await self.links.find_one({"digest": digest}, {"_id": 1}) is not None

    async def remove_marked(self, digest, mark):
        """Delete the blob document if it still carries ``mark``; the document, or None."""
        return await self.collection.find_one_and_delete({"_id": digest, "gc_mark": mark})

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
