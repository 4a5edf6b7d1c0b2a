"""/api/v1/users: the caller's own account, its PATs, and user administration."""
import datetime

import tornado.ioloop

from handlers.api.base import ApiHandler
from services.api_errors import ApiError
from services.users import public_pat, public_user


def _epoch_iso(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class UsersBase(ApiHandler):
    @property
    def users(self):
        return self.settings["users"]

    async def send_avatar(self, user):
        avatar = user.get("avatar")
        if not avatar:
            raise ApiError(20001, "this user has no avatar")
        self.set_header("Content-Type", avatar["media_type"])
        self.set_header("Content-Length", avatar["size"])
        self.set_header("ETag", f'"{avatar["digest"]}"')
        self.set_header("Cache-Control", "private, max-age=300")
        async for piece in self.blob_store.read(avatar["ref"], 0, avatar["size"]):
            self.write(piece)
        self.finish()


class MeHandler(UsersBase):
    async def get(self):
        self.write_data(public_user(self.principal.user))

    async def put(self):
        fields = self.json_body("profile_update")
        self.write_data(public_user(await self.collections.users.update(self.principal.user["_id"], fields)))


class PasswordHandler(UsersBase):
    async def put(self):
        body = self.json_body("password_change")
        await self.users.change_password(self.principal.user, body["old_password"], body["new_password"],
                        self.principal.session_id)
        self.write_data(None)


class AvatarUploadHandler(UsersBase):
    """POST streams the image bytes (the request body) into the blob store; GET serves it back."""

    async def prepare(self):
        self.upload = None
        self.stream_error = None
        await super().prepare()
        if self.request.method == "POST":
            limit = self.config["avatar_max_bytes"]
            length = self.request.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limit:
                raise ApiError(10003, f"avatar exceeds {limit} bytes")
            self.upload = self.users.avatar_upload(limit)

    async def data_received(self, chunk):
        if self.upload is None or self.stream_error is not None:
            return
        try:
            await self.upload.write(chunk)
        except Exception as exc:  # answered by post(), where errors are written
            self.stream_error = exc

    def on_connection_close(self):
        super().on_connection_close()
        if self.upload is not None:
            upload, self.upload = self.upload, None
            tornado.ioloop.IOLoop.current().add_callback(upload.abort)

    async def post(self):
        upload, self.upload = self.upload, None
        try:
            if self.stream_error is not None:
                raise self.stream_error
            await upload.finish(self.principal.user)
        except BaseException:
            await upload.abort()
            raise
        self.write_data(public_user(await self.users.get(self.principal.user["_id"])))

    async def get(self):
        await self.send_avatar(self.principal.user)


class AvatarHandler(UsersBase):
    async def get(self, user_id):
        await self.send_avatar(await self.users.get(user_id))


class TokenInfoHandler(UsersBase):
    async def get(self):
        principal = self.principal
        info = {"type": principal.kind, "user_id": principal.user["_id"], "username": principal.user["username"],
                "scopes": sorted(principal.scopes)}
        if principal.kind == "pat":
            pat = public_pat(principal.pat)
            info.update(pat_id=pat["id"], pat_name=pat["name"], issued_at=pat["created_at"],
                        expires_at=pat["expires_at"], last_used_at=pat["last_used_at"])
        else:
            info.update(session_id=principal.session_id, issued_at=_epoch_iso(principal.claims["iat"]),
                        expires_at=_epoch_iso(principal.claims["exp"]))
        self.write_data(info)


class NotificationSettingsHandler(UsersBase):
    async def get(self):
        self.write_data(self.principal.user.get("notification_settings"))

    async def put(self):
        fields = self.json_body("notification_settings")
        self.write_data(await self.users.update_notifications(self.principal.user, fields))


def _parse_expiry(value):
    if value is None:
        return None
    try:
        if isinstance(value, int):
            when = datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
        else:
            when = datetime.datetime.fromisoformat(value)
        if when.tzinfo is None:
            raise ApiError(10001, "expires_at must carry a time zone")
        when = when.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise ApiError(10001, "expires_at must be an RFC 3339 time or Unix seconds") from None
    if when <= datetime.datetime.now(datetime.timezone.utc):
        raise ApiError(10001, "expires_at must be in the future")
    return when


class PatListHandler(UsersBase):
    async def get(self):
        pats = await self.collections.pats.list_for_user(self.principal.user["_id"])
        self.write_data([public_pat(pat) for pat in pats])

    async def post(self):
        body = self.json_body("pat_create")
        if self.principal.kind == "pat":
            raise ApiError(30003, "a personal access token cannot create another; log in with the password")
        doc, secret = await self.auth.create_pat(self.principal.user, body["name"], body["scopes"],
                                                 _parse_expiry(body.get("expires_at")))
        self.write_data({**public_pat(doc), "token": secret})


class PatHandler(UsersBase):
    async def delete(self, pat_id):
        if not await self.collections.pats.revoke(self.principal.user["_id"], pat_id):
            raise ApiError(20001, "personal access token not found")
        self.write_data(None)


class UserListHandler(UsersBase):
    admin_required = True

    async def get(self):
        page, page_size = self.page_args()
        search = self.get_query_argument("search", "")[:64]
        users, total = await self.collections.users.page(search, (page - 1) * page_size, page_size)
        self.write_data({"items": [public_user(u) for u in users], "total": total, "page": page,
                         "page_size": page_size})

    async def post(self):
        user = await self.users.create(self.json_body("user_create"))
        self.write_data(public_user(user))


class UserHandler(UsersBase):
    admin_required = True

    async def get(self, user_id):
        self.write_data(public_user(await self.users.get(user_id)))

    async def patch(self, user_id):
        fields = self.json_body("user_admin_update")
        self.write_data(public_user(await self.users.admin_update(user_id, fields)))

    async def delete(self, user_id):
        await self.users.delete(user_id)
        self.write_data(None)
