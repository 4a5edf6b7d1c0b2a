"""The MongoDB client and the registry's collections, gathered in one object for the app settings."""
from pymongo import AsyncMongoClient

from storage.blobs import Blobs
from storage.login_attempts import LoginAttempts
from storage.manifests import Manifests
from storage.meta import Meta
from storage.pats import PersonalAccessTokens
from storage.projects import Projects
from storage.repositories import Repositories
from storage.sessions import Sessions
from storage.uploads import Uploads
from storage.users import Users


def create_client(uri, timeout_ms=5000):
    return AsyncMongoClient(uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True)


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

    async def ensure_indexes(self):
        for part in (self.uploads, self.blobs, self.manifests, self.repositories, self.projects, self.users,
                     self.sessions, self.pats, self.login_attempts):
            await part.ensure_indexes()

    async def ping(self):
        await self.db.command("ping")
