"""User accounts. Usernames are unique without regard to case: ``username_key`` holds the folded
name under a unique index (see storage/migrations.py for accounts from before it)."""
import re
import uuid

from pymongo.errors import DuplicateKeyError

from storage.clock import utcnow

DEFAULT_NOTIFICATIONS = {
    "email_enabled": False,
    "events": {"push": True, "delete": True, "quota_warning": True, "quota_exceeded": True,
               "import_completed": True, "import_failed": True},
}


def username_key(username):
    return username.casefold()


class Users:
    def __init__(self, db):
        self.collection = db["users"]

    async def ensure_indexes(self):
        await self.collection.create_index("username", unique=True)
        await self.collection.create_index("username_key", unique=True)

    async def count(self):
        return await self.collection.count_documents({})

    async def get(self, user_id):
        return await self.collection.find_one({"_id": user_id})

    async def get_by_username(self, username):
        """The user named ``username`` in any case; the exact spelling wins for two accounts from before
        names were folded."""
        found = await self.collection.find(
            {"$or": [{"username": username}, {"username_key": username_key(username)}]}).limit(2).to_list(None)
        return next((user for user in found if user["username"] == username), found[0] if found else None)

    async def named(self, usernames):
        """The users named one of ``usernames`` in any case: their id, name and folded name."""
        keys = list({username_key(username) for username in usernames})
        return await self.collection.find({"username_key": {"$in": keys}},
                                          {"username": 1, "username_key": 1}).to_list(None)

    async def create(self, username, password_hash, is_admin=False, email=None, display_name=None,
                     must_change_password=False):
        """Insert a user; None when the username is taken."""
        now = utcnow()
        doc = {"_id": str(uuid.uuid4()), "username": username, "username_key": username_key(username),
               "password_hash": password_hash,
               "email": email, "display_name": display_name or username, "bio": "", "is_admin": is_admin,
               "disabled": False, "must_change_password": must_change_password, "avatar": None,
               "notification_settings": DEFAULT_NOTIFICATIONS,
               "created_at": now, "updated_at": now, "last_login_at": None}
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            return None
        return doc

    async def update(self, user_id, fields):
        """Set ``fields``; answers the updated user (None when it does not exist)."""
        return await self.collection.find_one_and_update(
            {"_id": user_id}, {"$set": {**fields, "updated_at": utcnow()}}, return_document=True)

    async def touch_login(self, user_id):
        await self.collection.update_one({"_id": user_id}, {"$set": {"last_login_at": utcnow()}})

    async def page(self, search, skip, limit):
        query = {}
        if search:
            pattern = {"$regex": re.escape(search), "$options": "i"}
            query = {"$or": [{"username": pattern}, {"email": pattern}, {"display_name": pattern}]}
        total = await self.collection.count_documents(query)
        cursor = self.collection.find(query).sort("username", 1).skip(skip).limit(limit)
        return await cursor.to_list(None), total

    async def enabled_admins(self):
        return await self.collection.count_documents({"is_admin": True, "disabled": False})

    async def delete(self, user_id):
        result = await self.collection.delete_one({"_id": user_id})
        return result.deleted_count == 1
