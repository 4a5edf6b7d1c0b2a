"""Online garbage collection with a grace period.

First, links from a repository to blobs none of its manifests reference are dropped (and the
project's usage falls when no other reference remains); then blobs no repository links are
deleted from the store. Nothing younger than the grace period is touched, so a push in
progress — whose layers are linked before its manifest arrives — is never collected.
"""
import asyncio
import datetime
import logging
import uuid

from services.metrics import GC_FREED_BYTES, GC_RUNS

log = logging.getLogger("cyp.gc")

# How often a node looks whether a collection is due and unheld.
LEASE_POLL_SECONDS = 0.5


class GarbageCollector:
    def __init__(self, collections, store, registry, grace_seconds):
        self.collections = collections
        self.store = store
        self.registry = registry
        self.grace = datetime.timedelta(seconds=grace_seconds)

    async def run_once(self):
        """One collection; every removal is marked, checked and then made only if still marked
        (storage/blobs.py), so pushes on other nodes meanwhile lose nothing."""
        cutoff = datetime.datetime.now(datetime.timezone.utc) - self.grace
        mark = uuid.uuid4().hex
        unlinked = 0
        blobs = self.collections.blobs
        for repo in await self.collections.repositories.all():
            referenced = await self.collections.manifests.referenced_by(repo["_id"])
            unreferenced = set(await blobs.links_older_than(repo["_id"], cutoff)) - referenced
            if not unreferenced:
                continue
            await blobs.mark_links(repo["_id"], unreferenced, cutoff, mark)
            # Read again after marking: a manifest stored since the first read touched its links first.
            unreferenced -= await self.collections.manifests.referenced_by(repo["_id"])
            for digest in sorted(unreferenced):
                if await blobs.unlink_marked(repo["_id"], digest, mark) is not None:
                    await self.registry.release(repo["project_id"], digest)
                    unlinked += 1
        deleted, freed = 0, 0
        for digest in await blobs.unlinked_older_than(cutoff, mark):
            blob = await blobs.remove_marked(digest, mark)
            if blob is not None:
                await self.store.delete(blob["ref"])
                deleted, freed = deleted + 1, freed + blob["size"]
        GC_RUNS.inc()
        GC_FREED_BYTES.inc(freed)
        if unlinked or deleted:
            log.info("garbage collected", extra={"unlinked": unlinked, "deleted_blobs": deleted, "freed_bytes": freed})
        return {"unlinked": unlinked, "deleted_blobs": deleted, "freed_bytes": freed}


async def collect_forever(collector, lease, owner):
    """Collect once per interval across the cluster, under ``lease`` (storage.meta.ScheduledLease): the node
    that takes it collects, renewing it every third of its time, and the others look again every
    LEASE_POLL_SECONDS, so one of them takes over within the lease time (and that) of the holder's death."""
    while True:
        await asyncio.sleep(LEASE_POLL_SECONDS)
        try:
            token = await lease.take(owner)
            if token is not None:
                await _collect_holding(collector, lease, token)
        except Exception:
            log.exception("garbage collection failed")


async def _collect_holding(collector, lease, token):
    """One collection while renewing the lease; a run cut short (this node stopping) is handed back at once."""
    run = asyncio.ensure_future(collector.run_once())
    finished = False
    try:
        while not (await asyncio.wait([run], timeout=lease.renew_every))[0]:
            if not await lease.renew(token):
                log.warning("garbage collection lease lost; another node collects")
                return
        finished = True
        run.result()
    finally:
        run.cancel()
        await lease.release(token, done=finished)
