"""Personal access tokens: created with a secret shown once, listed, revoked.

Only the SHA-256 of a secret is stored. Scopes: ``api:read`` / ``api:write`` for /api/v1,
``registry:pull`` / ``registry:push`` / ``registry:delete`` for the registry (see services.access).
"""
import datetime
import secrets

from services.errors import Forbidden, Invalid, NotFound
from services.passwords import PAT_PREFIX
from services.timestamps import iso_z

API_SCOPES = frozenset({"registry:pull", "registry:push", "registry:delete", "api:read", "api:write"})


def public_pat(doc):
    return {"id": doc["_id"], "name": doc["name"], "scopes": doc["scopes"], "prefix": doc.get("prefix"),
            "expires_at": iso_z(doc.get("expires_at")), "created_at": iso_z(doc.get("created_at")),
            "last_used_at": iso_z(doc.get("last_used_at"))}


def parse_expiry(value, now=None):
    """``expires_at`` as given (RFC 3339 with a zone, or Unix seconds; None never expires) as a UTC datetime."""
    if value is None:
        return None
    try:
        if isinstance(value, int):
            when = datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
        else:
            when = datetime.datetime.fromisoformat(value)
        if when.tzinfo is None:
            raise Invalid("expires_at must carry a time zone")
        when = when.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise Invalid("expires_at must be an RFC 3339 time or Unix seconds") from None
    if when <= (now or datetime.datetime.now(datetime.timezone.utc)):
        raise Invalid("expires_at must be in the future")
    return when


class PatService:
    def __init__(self, collections, accounts):
        self.collections = collections
        # Registry requests' view of PATs (services.access.LiveAccounts): told at once of a revocation here.
        self.accounts = accounts

    async def create(self, principal, name, scopes, expires_at):
        """Answers the public PAT with its ``token``: the only time the secret is ever shown."""
        if principal.kind == "pat":
            raise Forbidden("a personal access token cannot create another; log in with the password")
        expiry = parse_expiry(expires_at)
        secret = PAT_PREFIX + secrets.token_urlsafe(32)
        doc = await self.collections.pats.create(principal.user["_id"], name, scopes, secret, expiry)
        return {**public_pat(doc), "token": secret}

    async def list(self, user):
        return [public_pat(pat) for pat in await self.collections.pats.list_for_user(user["_id"])]

    async def revoke(self, user, pat_id):
        if not await self.collections.pats.revoke(user["_id"], pat_id):
            raise NotFound("personal access token not found")
        self.accounts.forget_pat(pat_id)
