"""User accounts: profiles, passwords, avatars and administration."""
import hashlib

from services.errors import Conflict, Forbidden, Invalid, NotFound, TooLarge
from services.passwords import generate_password, hash_password, password_problem
from services.timestamps import iso_z

AVATAR_TYPES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


def public_user(doc):
    """What any answer may show of a user: never the password hash."""
    return {
        "id": doc["_id"], "username": doc["username"], "email": doc.get("email"),
        "display_name": doc.get("display_name"), "bio": doc.get("bio", ""), "is_admin": doc.get("is_admin", False),
        "disabled": doc.get("disabled", False), "must_change_password": doc.get("must_change_password", False),
        "avatar_url": f"/api/v1/users/{doc['_id']}/avatar" if doc.get("avatar") else None,
        "created_at": iso_z(doc.get("created_at")), "updated_at": iso_z(doc.get("updated_at")),
        "last_login_at": iso_z(doc.get("last_login_at")),
    }


def one_time_password(username):
    """A generated password that also passes the rules a chosen one must (it could contain a short username)."""
    while True:
        password = generate_password()
        if password_problem(password, username) is None:
            return password


def _stays_admin(user):
    return bool(user.get("is_admin")) and not user.get("disabled")


def avatar_type(data):
    """The image type by magic bytes (PNG, JPEG, WebP), or None."""
    for magic, media_type in AVATAR_TYPES:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


# Bytes needed to tell the image type by its magic bytes (WebP's signature ends at byte 12).
MAGIC_BYTES = 12


class AvatarUpload:
    """An avatar streamed into the blob store as it arrives: typed by its first bytes, hashed and
    size-checked on the way, so nothing beyond one network chunk is held in memory."""

    def __init__(self, users, max_bytes):
        self.users = users
        self.max_bytes = max_bytes
        self.head = b""
        self.media_type = None
        self.state = None
        self.writer = None
        self.hasher = hashlib.sha256()
        self.size = 0

    @property
    def too_large(self):
        return self.size > self.max_bytes

    async def write(self, chunk):
        self.size += len(chunk)
        if self.too_large:
            return
        if self.writer is None:
            if len(self.head) >= MAGIC_BYTES:  # already known not to be an image: nothing more is kept
                return
            self.head += chunk
            if len(self.head) < MAGIC_BYTES:
                return
            self.media_type = avatar_type(self.head)
            if self.media_type is None:
                return
            await self._open()
            chunk, self.head = self.head, b""
        self.hasher.update(chunk)
        await self.writer.write(chunk)

    async def _open(self):
        store = self.users.blob_store
        self.state = store.new_upload_state()
        self.writer = await store.open_writer(self.state)

    async def finish(self, user):
        if self.too_large:
            raise TooLarge(f"avatar exceeds {self.max_bytes} bytes")
        if self.writer is None and self.head:
            self.media_type = avatar_type(self.head)
        if self.media_type is None:
            raise Invalid("avatar must be a PNG, JPEG or WebP image sent as the request body")
        if self.writer is None:  # an image smaller than its magic-byte window
            await self._open()
            self.hasher.update(self.head)
            await self.writer.write(self.head)
        digest = f"sha256:{self.hasher.hexdigest()}"
        ref = await self.writer.commit(digest)
        await self.users.replace_avatar(user, {"ref": ref, "digest": digest, "size": self.size,
                                               "media_type": self.media_type})

    async def abort(self):
        """Drop whatever was written (refused, or the client went away)."""
        if self.writer is not None:
            await self.writer.discard()
            await self.users.blob_store.abort(self.state)


class UserService:
    def __init__(self, collections, blob_store, auth, accounts):
        self.collections = collections
        self.blob_store = blob_store
        self.auth = auth
        # Registry requests' view of accounts (services.access.LiveAccounts): told at once of changes here.
        self.accounts = accounts

    async def get(self, user_id):
        user = await self.collections.users.get(user_id)
        if user is None:
            raise NotFound("user not found")
        return user

    async def by_username(self, username):
        user = await self.collections.users.get_by_username(username)
        if user is None:
            raise NotFound(f"no user named {username}")
        return user

    async def create(self, fields, must_change_password=False):
        problem = password_problem(fields["password"], fields["username"])
        if problem:
            raise Invalid(problem)
        user = await self.collections.users.create(
            fields["username"], await hash_password(fields["password"]), is_admin=fields.get("is_admin", False),
            email=fields.get("email"), display_name=fields.get("display_name"),
            must_change_password=must_change_password)
        if user is None:
            raise Conflict(f"username {fields['username']} is taken")
        return user

    async def change_password(self, user, old_password, new_password, keep_session, remote_ip):
        """Check the old password (throttled like a login), store the new one, and end every other
        session of the user."""
        if not await self.auth.confirm_password(user, old_password, remote_ip):
            raise Forbidden("old_password is wrong")
        if old_password == new_password:
            raise Invalid("new_password must differ from old_password")
        problem = password_problem(new_password, user["username"])
        if problem:
            raise Invalid(f"new_password: {problem}")
        await self.collections.users.update(user["_id"], {"password_hash": await hash_password(new_password),
                                                          "must_change_password": False})
        await self.collections.sessions.revoke_for_user(user["_id"], keep=keep_session)

    async def admin_update(self, admin, user_id, fields, keep_session=None):
        """An administrator's change to a user; a password set for someone else must be changed by its
        owner. ``keep_session`` is the caller's, kept when administrators change their own account."""
        changes = {k: v for k, v in fields.items() if k != "password"}
        if "password" in fields:
            user = await self.get(user_id)
            problem = password_problem(fields["password"], user["username"])
            if problem:
                raise Invalid(f"password: {problem}")
            changes["password_hash"] = await hash_password(fields["password"])
            changes["must_change_password"] = user_id != admin["_id"]
        # Role changes go one at a time everywhere, so two administrators demoting each other
        # at once cannot both pass the last-administrator check.
        async with self.collections.meta.lock("administrators"):
            user = await self.get(user_id)
            if _stays_admin(user) and not _stays_admin({**user, **fields}):
                await self._refuse_if_last_admin()
            updated = await self.collections.users.update(user_id, changes)
        self.accounts.forget_user(user_id)
        if fields.get("disabled") or "password" in fields:
            await self.collections.sessions.revoke_for_user(user_id,
                                                            keep=keep_session if user_id == admin["_id"] else None)
        return updated

    async def reset_password(self, username):
        """An operator's way back in: a new generated password (answered once) that must be changed; the
        user's sessions end and a login lock on the name is lifted."""
        user = await self.by_username(username)
        password = one_time_password(user["username"])
        await self.collections.users.update(user["_id"], {"password_hash": await hash_password(password),
                                                          "must_change_password": True})
        await self.collections.sessions.revoke_for_user(user["_id"])
        await self.collections.login_attempts.clear([f"user:{user['username'].lower()}"])
        return password

    async def _refuse_if_last_admin(self):
        if await self.collections.users.enabled_admins() <= 1:
            raise Conflict("the last administrator cannot be demoted, disabled or deleted")

    async def delete(self, user_id):
        owned = await self.collections.projects.count_owned_by(user_id)
        if owned:
            raise Conflict(f"the user owns {owned} project(s); delete them first")
        async with self.collections.meta.lock("administrators"):
            user = await self.get(user_id)
            if _stays_admin(user):
                await self._refuse_if_last_admin()
            await self.collections.users.delete(user_id)
        self.accounts.forget_user(user_id)
        await self.collections.sessions.revoke_for_user(user_id)
        await self.collections.pats.revoke_for_user(user_id)
        if user.get("avatar"):
            await self.blob_store.delete(user["avatar"]["ref"])

    def avatar_upload(self, max_bytes):
        return AvatarUpload(self, max_bytes)

    async def update_profile(self, user, fields):
        return await self.collections.users.update(user["_id"], fields)

    async def page(self, search, skip, limit):
        return await self.collections.users.page(search, skip, limit)

    def avatar(self, user):
        """``(metadata, async iterator over its bytes)`` of the user's avatar; NotFound without one."""
        avatar = user.get("avatar")
        if not avatar:
            raise NotFound("this user has no avatar")
        return avatar, self.blob_store.read(avatar["ref"], 0, avatar["size"])

    async def replace_avatar(self, user, avatar):
        await self.collections.users.update(user["_id"], {"avatar": avatar})
        if user.get("avatar"):
            await self.blob_store.delete(user["avatar"]["ref"])

    async def update_notifications(self, user, fields):
        settings = {**user.get("notification_settings", {})}
        if "email_enabled" in fields:
            settings["email_enabled"] = fields["email_enabled"]
        settings["events"] = {**settings.get("events", {}), **fields.get("events", {})}
        updated = await self.collections.users.update(user["_id"], {"notification_settings": settings})
        return updated["notification_settings"]
