"""The Docker registry token endpoint (GET with Basic credentials, or the OAuth2 password grant as POST)."""
from handlers.base import BaseHandler
from handlers.registry.base import RegistryErrorsMixin, parse_basic_auth
from handlers.registry.errors import RegistryError


class TokenHandler(RegistryErrorsMixin, BaseHandler):
    audited = {"GET": "auth.token", "POST": "auth.token"}

    def audit_operation(self):
        # A login with a password or PAT (docker login, a client's pull or push); anonymous tokens are not recorded.
        return super().audit_operation() if "claimed_username" in self.audit_notes else None

    async def answer(self, read_credentials, scope_values):
        """``read_credentials()`` answers the request's ``(username, password)`` (None: anonymous) or refuses them."""
        user = pat = None
        try:
            credentials = read_credentials()
            if credentials is not None:
                self.audit_notes["claimed_username"] = credentials[0]
                user, pat = await self.auth.verify_credentials(*credentials, self.request.remote_ip)
                # The verified account names the record (no lookup when it is written).
                self.audit_notes["user"] = user
        finally:
            # As the user once verified; credentials unreadable or refused count against the address, never
            # against the user they name (nobody spends someone else's budget).
            self.admit(user, "token")
        token = await self.access.issue_token(user, pat, scope_values)
        self.set_header("Cache-Control", "no-store")
        self.write_json(token)

    async def get(self):
        await self.answer(lambda: parse_basic_auth(self.request.headers.get("Authorization")),
                          self.get_query_arguments("scope"))

    async def post(self):
        await self.answer(self.password_grant, self.get_body_arguments("scope"))

    def password_grant(self):
        grant_type = self.get_body_argument("grant_type", "")
        if grant_type != "password":
            raise RegistryError("UNSUPPORTED", f"grant_type {grant_type or '(none)'} is not supported; use password",
                                status=400)
        return self.get_body_argument("username", ""), self.get_body_argument("password", "")
