"""Signed tokens: registry bearer tokens (Docker token-auth spec) and the API's access/refresh tokens.

All are HS256 JWTs signed with the current key of the key set every node reads from MongoDB
(storage/token_keys.py), named by the ``kid`` header; only HS256 is accepted, so ``alg: none`` and
tokens signed with any other key are refused. A key retired by a rotation keeps verifying until the
tokens it signed have expired; a node reads the key set every KEY_REFRESH_SECONDS, and again when a
token names a key it does not know (at most once a second, every such token waiting for one read that
started after it arrived), so a rotation made anywhere is used everywhere within KEY_REFRESH_SECONDS
and never refuses a token another node signed.
"""
import asyncio
import datetime
import logging
import time
import uuid
from dataclasses import dataclass

import jwt

from services.cache import MISSING, TtlCache

log = logging.getLogger("cyp.tokens")

ALL_ACTIONS = frozenset({"pull", "push", "delete"})
ISSUER = "cyp-registry"


# Clocks of the nodes and of other issuers may differ this much: iat, nbf and exp are checked with it.
CLOCK_SKEW_SECONDS = 60
KEY_REFRESH_SECONDS = 5
# Tokens naming unknown keys read the key set again at most this often (forged kids cost no more reads).
UNKNOWN_KEY_REREAD_SECONDS = 1


class InvalidToken(Exception):
    pass


def longest_token_ttl(config):
    return max(config["registry_token_ttl_seconds"], config["api_access_token_ttl_seconds"],
               config["api_refresh_token_ttl_seconds"])


def verification_window(config):
    """How long a retired key keeps verifying: until every token it signed has expired, counting the tokens
    nodes that had not yet read the rotation signed, and the clock skew allowed."""
    return datetime.timedelta(seconds=longest_token_ttl(config) + KEY_REFRESH_SECONDS + CLOCK_SKEW_SECONDS)


class KeyRing:
    """This node's copy of the key set (``storage.token_keys.TokenKeys``), read again every KEY_REFRESH_SECONDS."""

    def __init__(self, token_keys, window):
        self.token_keys = token_keys
        self.window = window
        self.doc = None
        self.read_at = 0.0  # when the read that gave ``doc`` started (time.monotonic)
        self.reread_at = 0.0
        self.reread_lock = asyncio.Lock()

    async def refresh(self):
        started = time.monotonic()
        doc = await self.token_keys.load()
        if started >= self.read_at:  # not overtaken by a read that started later
            self.doc, self.read_at = doc, started

    async def _read_since(self, asked_at):
        """Make sure ``doc`` comes from a read started after ``asked_at``: one such read serves every token
        waiting, and they happen at most every UNKNOWN_KEY_REREAD_SECONDS."""
        async with self.reread_lock:
            if self.read_at > asked_at:
                return
            await asyncio.sleep(max(0.0, self.reread_at + UNKNOWN_KEY_REREAD_SECONDS - time.monotonic()))
            self.reread_at = time.monotonic()
            await self.refresh()

    async def refresh_forever(self):
        while True:
            await asyncio.sleep(KEY_REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception:
                log.exception("reading the token keys failed; the keys read before stay in use")

    def signing(self):
        """``(kid, secret)`` of the current key."""
        current = self.doc["current"]
        return current, next(k["secret"] for k in self.doc["keys"] if k["kid"] == current)

    def usable(self, kid):
        """The key named ``kid`` (None: the key of tokens signed before keys had ids) as this node last read
        the set, unless it is unknown, removed or retired for longer than its tokens live."""
        if kid is None:
            kid = self.doc.get("legacy_kid")
        key = next((k for k in self.doc["keys"] if k["kid"] == kid), None)
        if key is None or (key["retired_at"] is not None
                           and key["retired_at"] + self.window < datetime.datetime.now(datetime.timezone.utc)):
            return None
        return key

    async def verifying(self, kid):
        """The secret that verifies tokens naming ``kid``, or None; a key this node does not know yet (a
        rotation it has not read) is looked for in a fresh read of the set."""
        key = self.usable(kid)
        if key is None:
            await self._read_since(time.monotonic())
            key = self.usable(kid)
        return key and key["secret"]


async def open_key_ring(collections, config):
    """This node's KeyRing over the stored key set, read once now."""
    ring = KeyRing(collections.token_keys, verification_window(config))
    await ring.refresh()
    return ring


class JwtCodec:
    def __init__(self, keys, issuer=ISSUER):
        self.keys = keys
        self.issuer = issuer

    def encode(self, audience, ttl_seconds, **claims):
        """Sign ``claims`` with iss/aud/iat/nbf/exp/jti filled in; answers ``(token, claims)``."""
        now = int(time.time())
        full = {"iss": self.issuer, "aud": audience, "iat": now, "nbf": now - 5, "exp": now + ttl_seconds,
                "jti": uuid.uuid4().hex, **claims}
        kid, secret = self.keys.signing()
        return jwt.encode(full, secret, algorithm="HS256", headers={"kid": kid}), full

    async def decode(self, token, audience, required=()):
        """The claims of a token signed by a key of the set, with CLOCK_SKEW_SECONDS of leeway on its times."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if kid is not None and not isinstance(kid, str):
                raise InvalidToken("malformed kid header")
            secret = await self.keys.verifying(kid)
            if secret is None:
                raise InvalidToken("the token's signing key is unknown or retired")
            return jwt.decode(token, secret, algorithms=["HS256"], audience=audience, issuer=self.issuer,
                              leeway=CLOCK_SKEW_SECONDS, options={"require": ["exp", "iat", "jti", *required]})
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

    async def verify(self, token):
        """The token's claims; a token seen before skips the signature check, never the expiry nor the check
        that its key is still in the set."""
        seen = self.verified.get(token)
        if seen is MISSING:
            claims = await self.codec.decode(token, self.service, required=("sub", "access"))
            self.verified.put(token, (jwt.get_unverified_header(token).get("kid"), claims))
            return claims
        kid, claims = seen
        if claims["exp"] + CLOCK_SKEW_SECONDS <= time.time():
            raise InvalidToken("Signature has expired")
        if self.codec.keys.usable(kid) is None:
            raise InvalidToken("the token's signing key was removed")
        return claims


def granted(claims, kind, name):
    """The actions a verified token grants on one resource."""
    actions = set()
    for entry in claims.get("access") or []:
        if entry.get("type") == kind and entry.get("name") == name:
            actions |= expand(entry.get("actions") or [])
    return actions
