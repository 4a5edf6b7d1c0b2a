"""Online garbage collection with a grace period.

First, links from a repository to blobs none of its manifests reference are dropped (and the
project's usage falls when no other reference remains); then blobs no repository links are
deleted from the store. Nothing younger than the grace period is touched, so a push in
progress — whose layers are linked before its manifest arrives — is never collected.
"""
import asyncio
import datetime
import logging

from services.metrics import GC_FREED_BYTES, GC_RUNS

log = logging.getLogger("cyp.gc")


class GarbageCollector:
    def __init__(self, collections, store, registry, grace_seconds):
        self.collections = collections
        self.store = store
        self.registry = registry
        self.grace = datetime.timedelta(seconds=grace_seconds)

    async def run_once(self):
        cutoff = datetime.datetime.now(datetime.timezone.utc) - self.grace
        unlinked = 0
        for repo in await self.collections.repositories.all():
            referenced = await self.collections.manifests.referenced_by(repo["_id"])
            for digest in await self.collections.blobs.links_older_than(repo["_id"], cutoff):
                if digest in referenced:
                    continue
                if await self.collections.blobs.unlink(repo["_id"], digest) is not None:
                    await self.registry.release(repo["project_id"], digest)
                    unlinked += 1
        deleted, freed = 0, 0
        for digest in await self.collections.blobs.unlinked_older_than(cutoff):
            blob = await self.collections.blobs.remove_if_untouched(digest, cutoff)
            if blob is not None:
                await self.store.delete(blob["ref"])
                deleted, freed = deleted + 1, freed + blob["size"]
        GC_RUNS.inc()
        GC_FREED_BYTES.inc(freed)
        if unlinked or deleted:
            log.info("garbage collected", extra={"unlinked": unlinked, "deleted_blobs": deleted, "freed_bytes": freed})
        return {"unlinked": unlinked, "deleted_blobs": deleted, "freed_bytes": freed}


async def collect_forever(collector, interval_seconds):
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await collector.run_once()
        except Exception:
            log.exception("garbage collection failed")
