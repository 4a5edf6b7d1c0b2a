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

from services.errors import CollectionRunning
from services.metrics import GC_FREED_BYTES, GC_RUNS
from storage.leases import holder_name

log = logging.getLogger("cyp.gc")

# How often a node looks whether a collection is due and unheld.
LEASE_POLL_SECONDS = 0.5


class GarbageCollector:
    def __init__(self, collections, store, registry, grace_seconds, lease):
        self.collections = collections
        self.store = store
        self.registry = registry
        self.grace = datetime.timedelta(seconds=grace_seconds)
        # The cluster's one lease (storage.meta.ScheduledLease): scheduled and asked-for runs alike hold it.
        self.lease = lease

    async def run_now(self):
        """One collection now (``POST /system/gc``, ``gc run``), under the cluster's lease like a scheduled one,
        and recorded as done like one when it completes (the next scheduled run is an interval later; one that
        fails leaves the schedule as it was). CollectionRunning when a collection runs anywhere, or its lease was
        lost to another node meanwhile."""
        token = await self.lease.take(holder_name(), due_only=False)
        if token is None:
            raise CollectionRunning(await self.lease.holder())
        result = await _collect_holding(self, token, failure_counts_as_done=False)
        if result is None:
            raise CollectionRunning(await self.lease.holder())
        return result

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


async def collect_forever(collector, owner):
    """Collect once per interval across the cluster, under the collector's lease: the node that takes it
    collects, renewing it every third of its time, and the others look again every LEASE_POLL_SECONDS, so one
    of them takes over within the lease time (and that) of the holder's death."""
    while True:
        await asyncio.sleep(LEASE_POLL_SECONDS)
        try:
            token = await collector.lease.take(owner)
            if token is not None:
                await _collect_holding(collector, token)
        except Exception:
            log.exception("garbage collection failed")


async def _collect_holding(collector, token, failure_counts_as_done=True):
    """One collection while renewing the lease; its result, or None when the lease was lost. A run cut short
    (this node stopping) is handed back at once; a scheduled one that failed counts as done (no node retries it
    at once)."""
    lease = collector.lease
    run = asyncio.ensure_future(collector.run_once())
    finished = False
    try:
        while not (await asyncio.wait([run], timeout=lease.renew_every))[0]:
            if not await lease.renew(token):
                log.warning("garbage collection lease lost; another node collects")
                return None
        finished = failure_counts_as_done or run.exception() is None
        return run.result()
    finally:
        run.cancel()
        await lease.release(token, done=finished)
