"""The Docker registry token endpoint (GET with Basic credentials, or the OAuth2 password grant as POST).

The password may be the account's password or one of its personal access tokens, whose scopes
then bound what the token grants.
"""
import datetime

from handlers.base import BaseHandler, RegistryErrorsMixin
from handlers.registry.base import parse_basic_auth
from services import access
from services.auth import AuthFailed, Throttled, registry_actions_for
from services.errors import RegistryError
from services.tokens import ALL_ACTIONS, parse_scopes


class TokenHandler(RegistryErrorsMixin, BaseHandler):
    async def authenticate(self, credentials):
        """``(user, pat)``; ``(None, None)`` for anonymous; 401 for wrong or disabled, 429 when throttled."""
        if credentials is None:
            return None, None
        try:
            return await self.settings["auth"].verify_credentials(*credentials, self.request.remote_ip)
        except Throttled as exc:
            raise RegistryError("TOOMANYREQUESTS", str(exc)) from None
        except AuthFailed as exc:
            raise RegistryError("UNAUTHORIZED", str(exc)) from None

    async def answer(self, credentials, scope_values):
        user, pat = await self.authenticate(credentials)
        limit = registry_actions_for(pat["scopes"]) if pat else ALL_ACTIONS
        scopes = await access.grant(self.collections, user, parse_scopes(scope_values), limit)
        token, expires_in, issued_at = self.tokens.issue(
            user["username"] if user else "", user["_id"] if user else None, scopes, pat["_id"] if pat else None)
        issued = datetime.datetime.fromtimestamp(issued_at, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        self.set_header("Cache-Control", "no-store")
        self.write_json({"token": token, "access_token": token, "expires_in": expires_in, "issued_at": issued})

    async def get(self):
        await self.answer(parse_basic_auth(self.request.headers.get("Authorization")),
                          self.get_query_arguments("scope"))

    async def post(self):
        grant_type = self.get_body_argument("grant_type", "")
        if grant_type != "password":
            raise RegistryError("UNSUPPORTED", f"grant_type {grant_type or '(none)'} is not supported; use password",
                                status=400)
        credentials = (self.get_body_argument("username", ""), self.get_body_argument("password", ""))
        await self.answer(credentials, self.get_body_arguments("scope"))
