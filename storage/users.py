"""User accounts."""
import datetime
import uuid

from pymongo.errors import DuplicateKeyError


class Users:
    def __init__(self, db):
        self.collection = db["users"]

    async def ensure_indexes(self):
        await self.collection.create_index("username", unique=True)

    async def count(self):
        return await self.collection.count_documents({})

    async def get(self, user_id):
        return await self.collection.find_one({"_id": user_id})

    async def get_by_username(self, username):
        return await self.collection.find_one({"username": username})

    async def create(self, username, password_hash, is_admin=False):
        """Insert a user; None when the username is taken."""
        now = datetime.datetime.now(datetime.timezone.utc)
        doc = {"_id": str(uuid.uuid4()), "username": username, "password_hash": password_hash,
               "is_admin": is_admin, "disabled": False, "created_at": now, "updated_at": now}
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            return None
        return doc
