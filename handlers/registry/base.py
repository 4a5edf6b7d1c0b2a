"""RegistryHandler: the /v2/ base handler; authorizes every request from its bearer token."""
import base64
import binascii

from handlers.base import BaseHandler, RegistryErrorsMixin
from services import access
from services.access import can_see
from services.auth import registry_actions_for
from services.errors import RegistryError
from services.names import check_repository_name
from services.tokens import InvalidToken, granted

ACTION_BY_METHOD = {"GET": "pull", "HEAD": "pull", "POST": "push", "PATCH": "push", "PUT": "push", "DELETE": "delete"}
# Uploads and manifests can be large or slow; the per-request limit is raised where a body streams.
UNLIMITED_BODY = 1 << 50


def parse_basic_auth(header):
    """``(username, password)`` from an HTTP Basic header, or None."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        username, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, password) if sep else None


class RegistryHandler(RegistryErrorsMixin, BaseHandler):
    """Checks the bearer token against the action the request needs on its repository."""

    # Registry-wide resources (the catalog) name their scope here instead of a repository.
    resource_scope = None

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Docker-Distribution-Api-Version", "registry/2.0")

    @property
    def repo(self):
        return self.path_kwargs.get("name")

    def required_action(self):
        return ACTION_BY_METHOD.get(self.request.method, "pull")

    def challenge_scope(self):
        if self.resource_scope:
            return self.resource_scope
        if self.repo is None:
            return None
        action = self.required_action()
        actions = "pull,push" if action == "push" else action
        return f"repository:{self.repo}:{actions}"

    def realm(self):
        base = self.config["public_url"].rstrip("/") or f"{self.request.protocol}://{self.request.host}"
        return f"{base}/auth/token"

    def set_challenge(self, error):
        parts = [f'realm="{self.realm()}"', f'service="{self.config["registry_service"]}"']
        scope = self.challenge_scope()
        if scope:
            parts.append(f'scope="{scope}"')
        if error.detail and error.detail.get("reason") == "insufficient_scope":
            parts.append('error="insufficient_scope"')
        self.set_header("WWW-Authenticate", "Bearer " + ",".join(parts))

    def token_claims(self):
        """The verified claims of the request's bearer token; None when there is no token."""
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return self.tokens.verify(token.strip())
        except InvalidToken:
            raise RegistryError("UNAUTHORIZED", "invalid or expired token",
                                detail={"reason": "invalid_token"}) from None

    async def token_user(self, claims):
        """The live, enabled user behind a token (None for anonymous)."""
        if not claims or not claims.get("uid"):
            return None
        user = await self.collections.users.get(claims["uid"])
        return user if user and not user.get("disabled") else None

    async def check_still_valid(self, claims):
        """A token outlives nothing it came from: its user disabled or deleted, or its PAT revoked, ends it."""
        self.user = await self.token_user(claims)
        if claims.get("uid") and self.user is None:
            raise RegistryError("UNAUTHORIZED", "the token's account is disabled or gone",
                                detail={"reason": "invalid_token"})
        if claims.get("pat"):
            self.pat = await self.collections.pats.usable(claims["pat"])
            if self.pat is None:
                raise RegistryError("UNAUTHORIZED", "the token's personal access token was revoked",
                                    detail={"reason": "invalid_token"})

    async def prepare(self):
        self.pat = None
        self.user = None
        await super().prepare()
        if self.repo is not None:
            check_repository_name(self.repo)
        self.claims = self.token_claims()
        if self.claims is not None:
            await self.check_still_valid(self.claims)
        if self.resource_scope is None and self.repo is None:
            if self.claims is None:
                raise RegistryError("UNAUTHORIZED")
            return
        await self.authorize(self.required_action())

    def holds(self, action, name=None):
        if self.claims is None:
            return False
        if name is None and self.resource_scope:
            kind, name, _ = self.resource_scope.split(":")
            return action in granted(self.claims, kind, name)
        return action in granted(self.claims, "repository", name or self.repo)

    async def authorize(self, action):
        """Pass, or 401 (fetch a token) / 403 (the user may never do this) / NAME_UNKNOWN."""
        if self.holds(action):
            return
        user = self.user
        if user is None:
            raise RegistryError("UNAUTHORIZED", detail={"reason": "insufficient_scope"} if self.claims else None)
        if self.pat is not None and action not in registry_actions_for(self.pat["scopes"]):
            raise RegistryError("DENIED", f"personal access token {self.pat['name']!r} does not allow {action}; "
                                          "it needs the registry:push scope")
        if self.resource_scope or action in await access.repository_actions(self.collections, user, self.repo):
            raise RegistryError("UNAUTHORIZED", "token does not grant this action; request a new one",
                                detail={"reason": "insufficient_scope"})
        project = await self.collections.projects.get_by_name(self.repo.split("/", 1)[0])
        if project is None or not can_see(user, project):
            # A private project of someone else looks exactly like one that does not exist.
            raise RegistryError("NAME_UNKNOWN", f"repository {self.repo} not known to registry: its project "
                                                "does not exist or is not visible to you", detail={"name": self.repo})
        raise RegistryError("DENIED", f"user {user['username']} may not {action} {self.repo}")


class RegistryFallbackHandler(RegistryHandler):
    """Anything under /v2/ that no route matches."""

    async def prepare(self):
        await BaseHandler.prepare(self)
        raise RegistryError("NAME_INVALID", "no such registry endpoint; repository names are <project>/<name>",
                            detail={"path": self.request.path}, status=404)
