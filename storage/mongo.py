"""The MongoDB clients and the registry's collections, gathered in one object for the services.

Every write is durable before it is acknowledged: both clients default to ``w: "majority", j: true``
(the journal, on every member that counts). Two exceptions: bulk blob data (GridFS chunks), written
with ``BULK_DATA`` and covered by the durable write that commits it, and the webhook dispatcher's
bookkeeping (``DISPATCH``) and the rate limits' request counters (``COUNTERS``), which acknowledge nothing
to anyone.
"""
import asyncio
import logging
import os
import uuid

import pymongo
from pymongo import AsyncMongoClient, WriteConcern

from storage.accounting import AsyncAccounting
from storage.audit import AuditRecords
from storage.blobs import Blobs
from storage.deliveries import Deliveries
from storage.events import Events
from storage.import_tasks import ImportTasks
from storage.login_attempts import LoginAttempts
from storage.manifests import Manifests
from storage.meta import Meta
from storage.migrations import migrate
from storage.nodes import Nodes
from storage.pats import PersonalAccessTokens
from storage.projects import Projects
from storage.rate_limits import RateCounters
from storage.repositories import Repositories
from storage.sessions import Sessions
from storage.token_keys import TokenKeys
from storage.uploads import Uploads
from storage.users import Users
from storage.webhooks import Webhooks

log = logging.getLogger("cyp.storage")

DURABLE = WriteConcern(w="majority", j=True)
# SecantusDB 0.7.0b3 commits a transaction without flushing its journal even under j: true (a kill -9
# right after loses it, 8 of 8 times); a journaled single write right after the commit flushes it. On
# MongoDB that write is merely one more. Each process writes its own document, so they never contend.
JOURNAL_MARK = {"_id": f"journal-mark:{os.getpid()}"}
BULK_DATA = WriteConcern(w=1, j=False)
# The dispatcher's fan-out, leases and attempt records: a crash that loses the last of them sends a delivery
# again under the same event id, which consumers already expect (at least once). A journaled write each cost
# a delivery three waits for the journal, one after another on the dispatcher's thread.
DISPATCH = WriteConcern(w=1, j=False)
# Rate-limit counters and node heartbeats: a crash that loses the last second of them admits that many
# requests more, or beats once less.
COUNTERS = WriteConcern(w=1, j=False)
# A request waits this long for an unreachable database before it is answered 503.
SERVER_SELECTION_MS = 2000
# SecantusDB 0.7.0b3 rolls back the transaction of a client that died mid-way (a node killed with
# SIGKILL) only when another transaction statement arrives after it has idled 60 s; until then its
# snapshot and uncommitted writes stay pinned, and a large one stalls the whole server (every command
# waits). Each process starts a tiny transaction this often, so such a transaction ends within about
# 75 s. On MongoDB (which reaps them itself) it costs one statement that matches nothing.
ABANDONED_TRANSACTION_SWEEP_SECONDS = 15
# Each serving process beats this often; one silent this long is taken for dead (kill -9, a lost machine) and
# the sessions it left open are ended at once (killAllSessions), not after the 75 s above: SecantusDB stalls
# every write to what its open transaction changed until then. Live processes' transactions ended with them are
# retried by with_transaction. On MongoDB, where the command needs the killAnySession privilege, a refusal only
# leaves the server's own reaping (transactionLifetimeLimitSeconds, 60 s).
NODE_BEAT_SECONDS = 1
NODE_SILENT_SECONDS = 5


def _options(listeners):
    return {"serverSelectionTimeoutMS": SERVER_SELECTION_MS, "connectTimeoutMS": SERVER_SELECTION_MS,
            "tz_aware": True, "w": DURABLE.document["w"], "journal": True,
            "event_listeners": list(listeners)}


def create_client(uri, listeners=()):
    return AsyncMongoClient(uri, **_options(listeners))


def create_sync_client(uri, listeners=()):
    """For the actors' threads (pymongo's synchronous client is thread-safe and pooled)."""
    return pymongo.MongoClient(uri, **_options(listeners))


def sync_transaction(db, work):
    """Run ``work(session)`` in one durable transaction on the synchronous driver (retried on transient
    conflicts); answers its result."""
    with db.client.start_session() as session:
        result = session.with_transaction(work, write_concern=DURABLE)
    db["meta"].update_one(JOURNAL_MARK, {"$inc": {"commits": 1}}, upsert=True)
    return result


async def require_replica_set(client, uri):
    """Refuse a standalone server: majority writes and transactions need a replica set (one member is enough)."""
    hello = await client.admin.command("hello")
    if not hello.get("setName"):
        raise RuntimeError(f"the MongoDB at {uri} is a standalone server; CYP-Registry needs a replica set "
                           "(a one-member set is fine: start mongod with --replSet rs0 and run rs.initiate())")


class Collections:
    """Every aggregate's collection wrapper over one database."""

    def __init__(self, db, audit_retention_seconds):
        self.db = db
        self.audit = AuditRecords(db, audit_retention_seconds)
        self.uploads = Uploads(db)
        self.accounting = AsyncAccounting(db)
        self.blobs = Blobs(db)
        self.manifests = Manifests(db)
        self.repositories = Repositories(db)
        self.projects = Projects(db)
        self.users = Users(db)
        self.meta = Meta(db)
        self.token_keys = TokenKeys(db)
        self.sessions = Sessions(db)
        self.pats = PersonalAccessTokens(db)
        self.login_attempts = LoginAttempts(db)
        self.import_tasks = ImportTasks(db)
        self.events = Events(db)
        self.webhooks = Webhooks(db)
        self.deliveries = Deliveries(db)
        self.rate_counters = RateCounters(db.with_options(write_concern=COUNTERS))
        self.nodes = Nodes(db.with_options(write_concern=COUNTERS))

    async def prepare(self):
        """Migrate stored data to the current shape, then create the indexes that rely on it."""
        await migrate(self.db, self.meta)
        for part in (self.uploads, self.blobs, self.manifests, self.repositories, self.projects, self.users,
                     self.sessions, self.pats, self.login_attempts, self.import_tasks, self.events, self.webhooks,
                     self.deliveries, self.audit, self.rate_counters):
            await part.ensure_indexes()

    async def ping(self):
        await self.db.command("ping")

    async def end_abandoned_transactions_forever(self):
        """The tiny transaction of ABANDONED_TRANSACTION_SWEEP_SECONDS: a write statement first, with no read
        before it, so it reaches the server's sweep even while plain commands are stuck. It deletes a document
        that does not exist: one cut short by the timeout below is itself abandoned, and must then hold no
        document another write needs (on SecantusDB a plain write to a document an open transaction changed waits
        until that transaction ends: this process's commit mark once was that document)."""
        async def touch(session):
            await self.meta.collection.delete_one({"_id": f"transaction-sweep:{uuid.uuid4()}"}, session=session)

        async def sweep():
            async with self.db.client.start_session() as session:
                await session.with_transaction(touch, write_concern=DURABLE)

        while True:
            await asyncio.sleep(ABANDONED_TRANSACTION_SWEEP_SECONDS)
            try:
                # Bounded: one stuck behind a stalled server must not hold back the next, which (on a
                # new connection) is the one that ends the abandoned transaction once it is old enough.
                await asyncio.wait_for(sweep(), ABANDONED_TRANSACTION_SWEEP_SECONDS)
            except (TimeoutError, pymongo.errors.PyMongoError) as exc:
                log.warning("the periodic transaction failed: %r", exc)

    async def watch_nodes_forever(self, node_id):
        """Beat this process's heartbeat; end the open sessions of any process that went silent."""
        while True:
            try:
                await self.nodes.beat(node_id)
                dead = await self.nodes.claim_dead(NODE_SILENT_SECONDS)
                if dead:
                    log.warning("processes stopped beating; ending the transactions they left open",
                                extra={"nodes": dead})
                    await self.db.client.admin.command("killAllSessions", [])
            except pymongo.errors.OperationFailure as exc:
                log.info("the database refused to end abandoned sessions (it reaps them itself): %s", exc)
            except pymongo.errors.PyMongoError as exc:
                log.warning("the node heartbeat failed: %r", exc)
            await asyncio.sleep(NODE_BEAT_SECONDS)

    async def transaction(self, work):
        """Run ``await work(session)`` in one durable transaction (retried on transient conflicts), so a
        change and the event that reports it are stored together or not at all; answers its result."""
        async with self.db.client.start_session() as session:
            result = await session.with_transaction(work, write_concern=DURABLE)
        await self.meta.collection.update_one(JOURNAL_MARK, {"$inc": {"commits": 1}}, upsert=True)
        return result
