"""Signed tokens: registry bearer tokens (Docker token-auth spec) and the API's access/refresh tokens.

All are HS256 JWTs signed with the key every node reads from MongoDB; only HS256 is accepted,
so ``alg: none`` and tokens signed with any other key are refused.
"""
import time
import uuid
from dataclasses import dataclass

import jwt

from services.cache import MISSING, TtlCache

ALL_ACTIONS = frozenset({"pull", "push", "delete"})
ISSUER = "cyp-registry"


class InvalidToken(Exception):
    pass


class JwtCodec:
    def __init__(self, key, issuer=ISSUER):
        self.key = key
        self.issuer = issuer

    def encode(self, audience, ttl_seconds, **claims):
        """Sign ``claims`` with iss/aud/iat/nbf/exp/jti filled in; answers ``(token, claims)``."""
        now = int(time.time())
        full = {"iss": self.issuer, "aud": audience, "iat": now, "nbf": now - 5, "exp": now + ttl_seconds,
                "jti": uuid.uuid4().hex, **claims}
        return jwt.encode(full, self.key, algorithm="HS256"), full

    def decode(self, token, audience, required=()):
        try:
            return jwt.decode(token, self.key, algorithms=["HS256"], audience=audience, issuer=self.issuer,
                              options={"require": ["exp", "iat", "jti", *required]})
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None


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


# Tokens remembered once verified: clients send the same one on request after request.
VERIFIED_TOKENS = 10_000


class RegistryTokens:
    def __init__(self, codec, service, ttl_seconds):
        self.codec = codec
        self.service = service
        self.ttl = ttl_seconds
        self.verified = TtlCache(VERIFIED_TOKENS, ttl_seconds)

    def issue(self, subject, user_id, access, pat_id=None):
        """``access`` is a list of Scope; answers ``(token, expires_in, issued_at_epoch)``."""
        token, claims = self.codec.encode(
            self.service, self.ttl, sub=subject or "", uid=user_id, pat=pat_id,
            access=[{"type": s.type, "name": s.name, "actions": sorted(s.actions)} for s in access])
        return token, self.ttl, claims["iat"]

    def verify(self, token):
        """The token's claims; a token seen before skips the signature check, never the expiry."""
        claims = self.verified.get(token)
        if claims is MISSING:
            claims = self.verified.put(token, self.codec.decode(token, self.service, required=("sub", "access")))
        elif claims["exp"] <= time.time():
            raise InvalidToken("Signature has expired")
        return claims


def granted(claims, kind, name):
    """The actions a verified token grants on one resource."""
    actions = set()
    for entry in claims.get("access") or []:
        if entry.get("type") == kind and entry.get("name") == name:
            actions |= expand(entry.get("actions") or [])
    return actions
