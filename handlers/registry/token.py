"""The Docker registry token endpoint (GET with Basic credentials, or the OAuth2 password grant as POST)."""
import datetime

from handlers.base import BaseHandler, RegistryErrorsMixin
from handlers.registry.base import parse_basic_auth
from services import access
from services.errors import RegistryError
from services.passwords import verify_password
from services.tokens import parse_scopes


class TokenHandler(RegistryErrorsMixin, BaseHandler):
    async def authenticate(self, credentials):
        """The user behind ``(username, password)``; None for anonymous; 401 for wrong or disabled."""
        if credentials is None:
            return None
        username, password = credentials
        user = await self.collections.users.get_by_username(username)
        if user is None or user.get("disabled") or not await verify_password(password, user.get("password_hash")):
            raise RegistryError("UNAUTHORIZED", "invalid username or password")
        return user

    async def answer(self, user, scope_values):
        scopes = await access.grant(self.collections, user, parse_scopes(scope_values))
        token, expires_in, issued_at = self.tokens.issue(
            user["username"] if user else "", user["_id"] if user else None, scopes)
        issued = datetime.datetime.fromtimestamp(issued_at, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        self.set_header("Cache-Control", "no-store")
        self.write_json({"token": token, "access_token": token, "expires_in": expires_in, "issued_at": issued})

    async def get(self):
        user = await self.authenticate(parse_basic_auth(self.request.headers.get("Authorization")))
        await self.answer(user, self.get_query_arguments("scope"))

    async def post(self):
        grant_type = self.get_body_argument("grant_type", "")
        if grant_type != "password":
            raise RegistryError("UNSUPPORTED", f"grant_type {grant_type or '(none)'} is not supported; use password",
                                status=400)
        credentials = (self.get_body_argument("username", ""), self.get_body_argument("password", ""))
        user = await self.authenticate(credentials)
        await self.answer(user, self.get_body_arguments("scope"))
