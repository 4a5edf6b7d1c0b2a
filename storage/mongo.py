"""The MongoDB clients and the registry's collections, gathered in one object for the services.

Every write is durable before it is acknowledged: both clients default to ``w: "majority", j: true``
(the journal, on every member that counts). The one exception is bulk blob data (GridFS chunks),
written with ``BULK_DATA`` and covered by the durable write that commits it.
"""
import pymongo
from pymongo import AsyncMongoClient, WriteConcern

from storage.blobs import Blobs
from storage.events import Events
from storage.import_tasks import ImportTasks
from storage.login_attempts import LoginAttempts
from storage.manifests import Manifests
from storage.meta import Meta
from storage.migrations import migrate
from storage.pats import PersonalAccessTokens
from storage.projects import Projects
from storage.repositories import Repositories
from storage.sessions import Sessions
from storage.uploads import Uploads
from storage.users import Users

DURABLE = WriteConcern(w="majority", j=True)
BULK_DATA = WriteConcern(w=1, j=False)
# A request waits this long for an unreachable database before it is answered 503.
SERVER_SELECTION_MS = 2000


def _options(listeners):
    return {"serverSelectionTimeoutMS": SERVER_SELECTION_MS, "connectTimeoutMS": SERVER_SELECTION_MS,
            "tz_aware": True, "w": DURABLE.document["w"], "journal": True, "event_listeners": list(listeners)}


def create_client(uri, listeners=()):
    return AsyncMongoClient(uri, **_options(listeners))


def create_sync_client(uri, listeners=()):
    """For the actors' threads (pymongo's synchronous client is thread-safe and pooled)."""
    return pymongo.MongoClient(uri, **_options(listeners))


async def require_replica_set(client, uri):
    """Refuse a standalone server: majority writes and transactions need a replica set (one member is enough)."""
    hello = await client.admin.command("hello")
    if not hello.get("setName"):
        raise RuntimeError(f"the MongoDB at {uri} is a standalone server; CYP-Registry needs a replica set "
                           "(a one-member set is fine: start mongod with --replSet rs0 and run rs.initiate())")


class Collections:
    """Every aggregate's collection wrapper over one database."""

    def __init__(self, db):
        self.db = db
        self.uploads = Uploads(db)
        self.blobs = Blobs(db)
        self.manifests = Manifests(db)
        self.repositories = Repositories(db)
        self.projects = Projects(db)
        self.users = Users(db)
        self.meta = Meta(db)
        self.sessions = Sessions(db)
        self.pats = PersonalAccessTokens(db)
        self.login_attempts = LoginAttempts(db)
        self.import_tasks = ImportTasks(db)
        self.events = Events(db)

    async def prepare(self):
        """Migrate stored data to the current shape, then create the indexes that rely on it."""
        await migrate(self.db, self.meta)
        for part in (self.uploads, self.blobs, self.manifests, self.repositories, self.projects, self.users,
                     self.sessions, self.pats, self.login_attempts, self.import_tasks):
            await part.ensure_indexes()

    async def ping(self):
        await self.db.command("ping")
