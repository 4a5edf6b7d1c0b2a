"""RegistryHandler: the /v2/ base handler; authorizes every request from its bearer token."""
import base64
import binascii
import json

from handlers.base import BaseHandler, bearer_token
from handlers.registry.errors import RegistryError, registry_error_for
from services.names import check_repository_name

ACTION_BY_METHOD = {"GET": "pull", "HEAD": "pull", "POST": "push", "PATCH": "push", "PUT": "push", "DELETE": "delete"}
# Uploads and manifests can be large or slow; the per-request limit is raised where a body streams.
UNLIMITED_BODY = 1 << 50


def parse_basic_auth(header):
    """``(username, password)`` from an HTTP Basic header; None without one. A Basic header that cannot
    be read is refused rather than taken for anonymous."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise RegistryError("UNAUTHORIZED", "malformed Basic credentials")
    return username, password


class RegistryErrorsMixin:
    """Every error as the distribution spec's ``{"errors": [...]}`` body."""

    def is_expected_error(self, exc):
        return isinstance(exc, RegistryError) and exc.status < 500 or super().is_expected_error(exc)

    def write_error(self, status_code, **kwargs):
        error = registry_error_for(kwargs.get("exc_info", (None, None, None))[1], self.request.method, status_code)
        self.error_code = error.code
        self.announce_close_if_body_unread()
        if error.status == 401:
            self.set_challenge(error)
        for name, value in error.headers.items():
            self.set_header(name, value)
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(error.body(), separators=(",", ":")))

    def set_challenge(self, error):
        """Overridden where a 401 must carry WWW-Authenticate."""


class RegistryHandler(RegistryErrorsMixin, BaseHandler):
    """Checks the bearer token against the action the request needs on its repository."""

    # Registry-wide resources (the catalog) name their ``(type, name)`` here instead of a repository.
    resource = None

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Docker-Distribution-Api-Version", "registry/2.0")

    @property
    def repo(self):
        return self.path_kwargs.get("name")

    def required_action(self):
        return ACTION_BY_METHOD.get(self.request.method, "pull")

    def challenge_scopes(self):
        """The scopes a client following this request's 401 should ask the token endpoint for."""
        if self.resource:
            return ["{}:{}:*".format(*self.resource)]
        if self.repo is None:
            return []
        action = self.required_action()
        return [f"repository:{self.repo}:{'pull,push' if action == 'push' else action}"]

    def realm(self):
        base = self.config["public_url"].rstrip("/") or f"{self.request.protocol}://{self.request.host}"
        return f"{base}/auth/token"

    def set_challenge(self, error):
        parts = [f'realm="{self.realm()}"', f'service="{self.config["registry_service"]}"']
        scopes = self.challenge_scopes()
        if scopes:
            parts.append(f'scope="{" ".join(scopes)}"')
        if error.detail and error.detail.get("reason") == "insufficient_scope":
            parts.append('error="insufficient_scope"')
        self.set_header("WWW-Authenticate", "Bearer " + ",".join(parts))

    @property
    def user(self):
        return self.caller.user

    def audit_operation(self):
        # A 401 to a request without credentials is the token challenge every client meets first, not an attempt.
        if self.get_status() == 401 and "Authorization" not in self.request.headers:
            return None
        return super().audit_operation()

    def audit_subject(self):
        """The repository, the reference or digest of the path, and the digest answered."""
        resource = {"repository": self.repo, **{key: value for key, value in self.path_kwargs.items()
                                                if key in ("reference", "digest")}}
        answered = self._headers.get("Docker-Content-Digest")
        if answered:
            resource["digest"] = answered
        return {"resource": resource}

    @property
    def operator(self):
        """Who acts, as events name them."""
        return self.user["username"] if self.user else None

    def finish_empty(self, status, headers=None):
        """An answer without a body (and so without a Content-Type)."""
        self.set_status(status)
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self.clear_header("Content-Type")
        if status != 204:
            self.set_header("Content-Length", 0)
        self.finish()

    async def prepare(self):
        self.caller = None
        await super().prepare()
        try:
            if self.repo is not None:
                check_repository_name(self.repo)
            self.caller = await self.access.caller(bearer_token(self.request.headers))
        finally:
            # As the token's user; as the address for an anonymous token, none, a refused one or an invalid name.
            self.admit(self.caller and self.caller.user, "v2")
        if self.resource is None and self.repo is None:
            if self.caller.claims is None:
                raise RegistryError("UNAUTHORIZED")
            return
        await self.access.authorize(self.caller, self.required_action(), self.repo, self.resource)
        if self.repo is not None:
            # Allowed on the repository, so its project is one the caller sees: its record may name it.
            self.audit_notes["project_name"] = self.repo.partition("/")[0]


class RegistryFallbackHandler(RegistryHandler):
    """Anything under /v2/ that no route matches."""

    async def prepare(self):
        await BaseHandler.prepare(self)
        self.admit(None, "v2")  # unverified: counted against the address
        raise RegistryError("NAME_INVALID", "no such registry endpoint; repository names are <project>/<name>",
                            detail={"path": self.request.path}, status=404)
