"""/api/v1/auth: login, refresh, logout, and the one-time default administrator hint."""
from handlers.api.base import ApiHandler
from handlers.api.errors import ApiError


class LoginHandler(ApiHandler):
    auth_required = False
    audited = {"POST": "auth.login"}

    async def post(self):
        body = self.json_body("login")
        self.audit_notes["claimed_username"] = body["username"]
        # The verified account names the record (no lookup when it is written); a refusal, the name claimed.
        self.audit_notes["user"], tokens = await self.auth.login(body["username"], body["password"],
                                                                 self.request.remote_ip)
        self.write_data(tokens)


class RefreshHandler(ApiHandler):
    auth_required = False

    async def post(self):
        body = self.json_body("refresh")
        self.write_data(await self.auth.refresh(body["refresh_token"]))


class LogoutHandler(ApiHandler):
    audited = {"POST": "auth.logout"}

    async def post(self):
        if self.principal.kind != "session":
            raise ApiError(10001, "a personal access token is revoked with DELETE /api/v1/users/me/pat/:id")
        await self.auth.logout(self.principal)
        self.write_data(None)


class DefaultAdminOnceHandler(ApiHandler):
    auth_required = False

    async def get(self):
        self.write_data(await self.services.bootstrap_hint.take())
