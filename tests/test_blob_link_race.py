"""A client asking whether a repository has a blob, racing the garbage collector that removes the link: the
answer is "yes" only when the link was still there when the question touched it, since the client then relies
on it in the manifest it pushes next (storage/blobs.py)."""
import datetime
import os

from bson import ObjectId

from storage.blobs import Blobs
from storage.mongo import create_client

GRACE = datetime.timedelta(seconds=2)


class CollectedRightAfterRead:
    """The links collection, where the collector removes the link it just marked between the read that finds it
    and anything the reader does next."""

    def __init__(self, links, mark):
        self.links = links
        self.mark = mark

    async def find_one(self, *args, **kwargs):
        found = await self.links.find_one(*args, **kwargs)
        await self.links.update_many({}, {"$set": {"gc_mark": self.mark}})
        await self.links.find_one_and_delete({"gc_mark": self.mark})
        return found

    def __getattr__(self, name):
        return getattr(self.links, name)


async def linked_repository(mongo):
    blobs = Blobs(create_client(mongo.uri)[f"race_{ObjectId()}"])
    await blobs.ensure_indexes()
    digest = f"sha256:{os.urandom(32).hex()}"
    await blobs.add(digest, 4, {"path": "x"})
    await blobs.link("app", "project", digest)
    long_ago = datetime.datetime.now(datetime.UTC) - 2 * GRACE
    await blobs.links.update_many({}, {"$set": {"touched_at": long_ago}})
    return blobs, digest


async def test_a_link_collected_between_the_read_and_the_touch_is_unknown(mongo):
    blobs, digest = await linked_repository(mongo)
    blobs.links = CollectedRightAfterRead(blobs.links, "gc-run")

    assert await blobs.linked("app", digest, refresh_after=GRACE / 10) is None


async def test_a_link_the_collector_leaves_is_known_and_touched(mongo):
    blobs, digest = await linked_repository(mongo)

    found = await blobs.linked("app", digest, refresh_after=GRACE / 10)

    assert found["_id"] == digest
    link = await blobs.links.find_one({"repo": "app", "digest": digest})
    assert link["touched_at"] > datetime.datetime.now(datetime.UTC) - GRACE / 10
