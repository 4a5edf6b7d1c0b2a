"""Registry bearer tokens (Docker token-auth spec): short-lived HS256 JWTs carrying an ``access`` list."""
import time
import uuid
from dataclasses import dataclass

import jwt

ALL_ACTIONS = frozenset({"pull", "push", "delete"})


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: frozenset

    def __str__(self):
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def parse_scopes(values):
    """Parse ``scope`` parameters (each may hold several, space-separated); malformed ones are skipped."""
    scopes = []
    for value in values:
        for item in value.split():
            head, _, actions = item.rpartition(":")
            kind, _, name = head.partition(":")
            if kind and name and actions:
                scopes.append(Scope(kind, name, frozenset(a for a in actions.split(",") if a)))
    return scopes


def expand(actions):
    return ALL_ACTIONS if "*" in actions else frozenset(actions)


class RegistryTokens:
    def __init__(self, key, service, ttl_seconds, issuer="cyp-registry"):
        self.key = key
        self.service = service
        self.ttl = ttl_seconds
        self.issuer = issuer

    def issue(self, subject, user_id, access):
        """``access`` is a list of Scope; answers ``(token, expires_in, issued_at_epoch)``."""
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": subject or "", "aud": self.service, "iat": now, "nbf": now - 5,
            "exp": now + self.ttl, "jti": uuid.uuid4().hex, "uid": user_id,
            "access": [{"type": s.type, "name": s.name, "actions": sorted(s.actions)} for s in access],
        }
        return jwt.encode(claims, self.key, algorithm="HS256"), self.ttl, now

    def verify(self, token):
        try:
            return jwt.decode(token, self.key, algorithms=["HS256"], audience=self.service, issuer=self.issuer,
                              options={"require": ["exp", "iat", "sub", "access"]})
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None


def granted(claims, kind, name):
    """The actions a verified token grants on one resource."""
    actions = set()
    for entry in claims.get("access") or []:
        if entry.get("type") == kind and entry.get("name") == name:
            actions |= expand(entry.get("actions") or [])
    return actions
