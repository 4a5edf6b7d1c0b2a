"""The backend one process works on: MongoDB (the embedded one when no URI is set), its
collections, the blob store and the quota actors."""
import asyncio
import contextlib
from dataclasses import dataclass

from actors.quota import QuotaActors
from services.metrics import CommandTimer
from services.timed_blobstore import TimedBlobStore
from storage.embedded_mongo import EmbeddedMongo, embedded_or_running
from storage.factory import create_blob_store
from storage.mongo import Collections, create_client, create_sync_client, require_replica_set


@dataclass
class Backend:
    collections: Collections
    blob_store: object
    quota: QuotaActors
    # The database through the synchronous driver, for actors' threads.
    sync_db: object
    # The embedded database this process runs, when it runs one.
    embedded: EmbeddedMongo = None


@contextlib.asynccontextmanager
async def database_uri(config, for_command=False):
    """``(uri, embedded)``: the configured MongoDB, or the data directory's embedded one."""
    if config["mongo_uri"]:
        yield config["mongo_uri"], None
        return
    async with embedded_or_running(config["data_dir"], for_command) as found:
        yield found


@contextlib.asynccontextmanager
async def open_backend(config, for_command=False, listeners=()):
    """``listeners`` are pymongo event listeners for both drivers (tests watch the write concerns), beside the
    one timing every command for the metrics."""
    listeners = (*listeners, CommandTimer())
    async with database_uri(config, for_command) as (uri, embedded):
        client = create_client(uri, listeners)
        # The actors' threads use the synchronous driver (thread-safe, pooled).
        sync_client = create_sync_client(uri, listeners)
        quota = QuotaActors(sync_client[config["mongo_db"]])
        db = client[config["mongo_db"]]
        blob_store = TimedBlobStore(create_blob_store(config, db))
        try:
            await require_replica_set(client, uri)
            collections = Collections(db, config["audit_retention_days"] * 86400)
            await collections.prepare()
            await blob_store.ensure_ready()
            await asyncio.get_running_loop().run_in_executor(None, quota.ensure_indexes)
            yield Backend(collections, blob_store, quota, sync_client[config["mongo_db"]], embedded)
        finally:
            await blob_store.close()
            quota.stop()
            sync_client.close()
            await client.close()

