"""/api/v1/users: the caller's own account, its PATs, and user administration."""
import tornado.ioloop

from handlers.api.base import ApiHandler
from services.audit import changed_fields
from services.pats import public_pat
from services.timestamps import epoch_iso_z
from services.users import public_user


class UsersBase(ApiHandler):
    async def send_avatar(self, user):
        avatar, pieces = self.users.avatar(user)
        self.set_header("Content-Type", avatar["media_type"])
        self.set_header("Content-Length", avatar["size"])
        self.set_header("ETag", f'"{avatar["digest"]}"')
        self.set_header("Cache-Control", "private, max-age=300")
        async for piece in pieces:
            self.write(piece)
        self.finish()


class MeHandler(UsersBase):
    audited = {"PUT": "user.update"}

    async def get(self):
        self.write_data(public_user(self.user))

    async def put(self):
        self.write_data(public_user(await self.users.update_profile(self.user, self.json_body("profile_update"))))


class PasswordHandler(UsersBase):
    audited = {"PUT": "user.password"}

    async def put(self):
        body = self.json_body("password_change")
        await self.users.change_password(self.user, body["old_password"], body["new_password"],
                                         self.principal.session_id, self.request.remote_ip)
        self.write_data(None)


class AvatarUploadHandler(UsersBase):
    """POST streams the image bytes (the request body) into the blob store; GET serves it back."""

    @property
    def max_body(self):
        return self.config["avatar_max_bytes"]

    async def prepare(self):
        self.upload = None
        self.stream_error = None
        await super().prepare()
        if self.request.method == "POST":
            self.upload = self.users.avatar_upload(self.max_body)

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
            await upload.finish(self.user)
        except BaseException:
            await upload.abort()
            raise
        self.write_data(public_user(await self.users.get(self.user["_id"])))

    async def get(self):
        await self.send_avatar(self.user)


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
            info.update(session_id=principal.session_id, issued_at=epoch_iso_z(principal.claims["iat"]),
                        expires_at=epoch_iso_z(principal.claims["exp"]))
        self.write_data(info)


class NotificationSettingsHandler(UsersBase):
    async def get(self):
        self.write_data(self.user.get("notification_settings"))

    async def put(self):
        fields = self.json_body("notification_settings")
        self.write_data(await self.users.update_notifications(self.user, fields))


class PatListHandler(UsersBase):
    audited = {"POST": "pat.create"}

    async def get(self):
        self.write_data(await self.pats.list(self.user))

    async def post(self):
        body = self.json_body("pat_create")
        pat = await self.pats.create(self.principal, body["name"], body["scopes"], body.get("expires_at"))
        self.audit_notes["resource"] = {"pat_id": pat["id"], "name": pat["name"], "scopes": pat["scopes"]}
        self.write_data(pat)


class PatHandler(UsersBase):
    audited = {"DELETE": "pat.revoke"}

    async def delete(self, pat_id):
        await self.pats.revoke(self.user, pat_id)
        self.write_data(None)


class UserListHandler(UsersBase):
    admin_required = True
    audited = {"POST": "user.create"}

    async def get(self):
        page, page_size = self.page_args()
        users, total = await self.users.page(self.get_query_argument("search", "")[:64], (page - 1) * page_size,
                                             page_size)
        self.write_page([public_user(u) for u in users], total, page, page_size)

    async def post(self):
        user = await self.users.create(self.json_body("user_create"))
        self.audit_notes["resource"] = {"user_id": user["_id"], "username": user["username"]}
        self.write_data(public_user(user))


class UserHandler(UsersBase):
    admin_required = True
    audited = {"PATCH": "user.update", "DELETE": "user.delete"}

    async def get(self, user_id):
        self.write_data(public_user(await self.users.get(user_id)))

    async def patch(self, user_id):
        fields = self.json_body("user_admin_update")
        self.audit_notes["resource"] = changed_fields(fields)
        self.write_data(public_user(await self.users.admin_update(self.user, user_id, fields,
                                                                  self.principal.session_id)))

    async def delete(self, user_id):
        await self.users.delete(user_id)
        self.write_data(None)
