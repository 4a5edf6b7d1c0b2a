"""/api/v1/auth: login, refresh, logout, and the one-time default administrator hint."""
from handlers.api.base import ApiHandler
from services.api_errors import ApiError
from services.auth import AccountDisabled, AuthFailed
from services.bootstrap import HINT_KEY


class LoginHandler(ApiHandler):
    auth_required = False

    async def post(self):
        body = self.json_body("login")
        try:
            tokens = await self.auth.login(body["username"], body["password"], self.request.remote_ip)
        except AccountDisabled:
            raise
        except AuthFailed as exc:
            # Wrong credentials ask for authentication again; a bad token (30002) is another case.
            raise ApiError(30001, str(exc)) from None
        self.write_data(tokens)


class RefreshHandler(ApiHandler):
    auth_required = False

    async def post(self):
        body = self.json_body("refresh")
        self.write_data(await self.auth.refresh(body["refresh_token"]))


class LogoutHandler(ApiHandler):
    async def post(self):
        if self.principal.kind != "session":
            raise ApiError(10001, "a personal access token is revoked with DELETE /api/v1/users/me/pat/:id")
        await self.auth.logout(self.principal)
        self.write_data(None)


class DefaultAdminOnceHandler(ApiHandler):
    auth_required = False

    async def get(self):
        hint = self.settings.get("bootstrap_hint")
        # Only the node that created the administrator knows the password; the flag in MongoDB
        # makes the answer a one-time one across restarts and nodes.
        if not hint or not await self.collections.meta.take_once(HINT_KEY):
            raise ApiError(20003, "the default administrator hint has already been shown or is not available")
        self.settings["bootstrap_hint"] = None
        self.write_data({
            "username": hint["username"],
            "password": hint["password"],
            "must_change_password": True,
            "message": "password set by configuration" if hint["password"] is None else "shown once; change it now",
        })
