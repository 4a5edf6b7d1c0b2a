"""Authentication: password logins (throttled), API sessions with rotating refresh tokens, and PAT bearers."""
import asyncio
import secrets
from dataclasses import dataclass, field

from services.errors import AccountDisabled, Throttled, Unauthenticated, WrongCredentials
from services.passwords import hash_password, needs_rehash, verify_password
from services.pats import API_SCOPES, PAT_PREFIX
from services.tokens import InvalidToken

API_AUDIENCE = "cyp-api"
# Failures per address are allowed this many times more than per user (addresses are shared by NAT).
ADDRESS_FAILURE_FACTOR = 4
MAX_FAILURE_DELAY_SECONDS = 2.0


@dataclass
class Principal:
    """Who is calling, and through what: an API session or a personal access token."""
    user: dict
    kind: str
    scopes: frozenset = API_SCOPES
    claims: dict = field(default=None)
    pat: dict = field(default=None)

    @property
    def session_id(self):
        return self.claims.get("sid") if self.claims else None


class AuthService:
    def __init__(self, collections, codec, config):
        self.collections = collections
        self.codec = codec
        self.access_ttl = config["api_access_token_ttl_seconds"]
        self.refresh_ttl = config["api_refresh_token_ttl_seconds"]
        self.max_failures = config["login_max_failures"]
        self.lock_seconds = config["login_lock_seconds"]

    # --- passwords and PATs -------------------------------------------------------------------

    def _attempt_keys(self, username, remote_ip):
        return [f"user:{username.lower()}", f"ip:{remote_ip}"]

    async def verify_credentials(self, username, password, remote_ip):
        """``(user, pat)`` for a username with its password or one of its PATs; throttled per user and address."""
        keys = self._attempt_keys(username, remote_ip)
        until = await self.collections.login_attempts.locked_until(keys)
        if until:
            raise Throttled(until)
        user = await self.collections.users.get_by_username(username)
        pat = None
        if user is not None and password.startswith(PAT_PREFIX):
            pat = await self.collections.pats.find_usable(password)
            ok = pat is not None and pat["user_id"] == user["_id"]
        else:
            ok = user is not None and await verify_password(password, user.get("password_hash"))
        if not ok:
            await self._failed(keys)
            raise WrongCredentials()
        await self.collections.login_attempts.clear(keys[:1])
        if user.get("disabled"):
            raise AccountDisabled()
        if pat is None and needs_rehash(user["password_hash"]):
            await self.collections.users.update(user["_id"], {"password_hash": await hash_password(password)})
        return user, pat

    async def confirm_password(self, user, password, remote_ip):
        """Whether ``password`` is ``user``'s, counted against the same throttle as logins, so a stolen
        session cannot guess the password freely."""
        keys = self._attempt_keys(user["username"], remote_ip)
        until = await self.collections.login_attempts.locked_until(keys)
        if until:
            raise Throttled(until)
        if await verify_password(password, user.get("password_hash")):
            return True
        await self._failed(keys)
        return False

    async def _failed(self, keys):
        user_key, address_key = keys
        await self.collections.login_attempts.record_failure(
            [user_key], self.lock_seconds, self.max_failures, self.lock_seconds)
        await self.collections.login_attempts.record_failure(
            [address_key], self.lock_seconds, self.max_failures * ADDRESS_FAILURE_FACTOR, self.lock_seconds)
        failures = await self.collections.login_attempts.failures(keys)
        # Each further failure answers more slowly, before the lock refuses outright.
        await asyncio.sleep(min(0.1 * 2 ** (failures - 1), MAX_FAILURE_DELAY_SECONDS))

    # --- API sessions ---------------------------------------------------------------------------

    def _session_tokens(self, user_id, session_id, refresh_jti=None):
        access, access_claims = self.codec.encode(API_AUDIENCE, self.access_ttl, sub=user_id, sid=session_id,
                                                  typ="access")
        refresh_claims = {"sub": user_id, "sid": session_id, "typ": "refresh"}
        if refresh_jti:
            refresh_claims["jti"] = refresh_jti
        refresh, refresh_claims = self.codec.encode(API_AUDIENCE, self.refresh_ttl, **refresh_claims)
        return {"access_token": access, "refresh_token": refresh, "expires_at": access_claims["exp"],
                "refresh_expires_at": refresh_claims["exp"], "token_type": "Bearer"}

    async def login(self, username, password, remote_ip):
        """``(user, session tokens)`` for a username and its account password."""
        user, pat = await self.verify_credentials(username, password, remote_ip)
        if pat is not None:
            raise WrongCredentials("log in with the account password; a personal access token is used as a bearer token")
        refresh_jti = secrets.token_hex(16)
        session = await self.collections.sessions.create(user["_id"], refresh_jti, self.refresh_ttl, remote_ip)
        await self.collections.users.touch_login(user["_id"])
        return user, self._session_tokens(user["_id"], session["_id"], refresh_jti)

    async def refresh(self, refresh_token):
        """Rotate a refresh token; presenting one already used revokes its whole session."""
        try:
            claims = await self.codec.decode(refresh_token, API_AUDIENCE, required=("sub", "sid", "typ"))
        except InvalidToken:
            raise Unauthenticated("invalid or expired refresh token") from None
        if claims["typ"] != "refresh":
            raise Unauthenticated("not a refresh token")
        await self._live_user(claims["sub"])
        new_jti = secrets.token_hex(16)
        session = await self.collections.sessions.rotate(claims["sid"], claims["jti"], new_jti, self.refresh_ttl)
        if session is None:
            await self.collections.sessions.revoke(claims["sid"])
            raise Unauthenticated("refresh token already used or session ended; log in again")
        return self._session_tokens(claims["sub"], claims["sid"], new_jti)

    async def logout(self, principal):
        if principal.session_id:
            await self.collections.sessions.revoke(principal.session_id)

    async def _live_user(self, user_id):
        user = await self.collections.users.get(user_id)
        if user is None:
            raise Unauthenticated("account no longer exists")
        if user.get("disabled"):
            raise AccountDisabled()
        return user

    async def authenticate(self, bearer):
        """The Principal behind an API bearer token: a session access token or a PAT."""
        if bearer.startswith(PAT_PREFIX):
            pat = await self.collections.pats.find_usable(bearer)
            if pat is None:
                raise Unauthenticated("invalid, expired or revoked personal access token")
            return Principal(await self._live_user(pat["user_id"]), "pat", frozenset(pat["scopes"]), pat=pat)
        try:
            claims = await self.codec.decode(bearer, API_AUDIENCE, required=("sub", "sid", "typ"))
        except InvalidToken:
            raise Unauthenticated("invalid or expired token") from None
        if claims["typ"] != "access":
            raise Unauthenticated("not an access token")
        if await self.collections.sessions.active(claims["sid"]) is None:
            raise Unauthenticated("session has ended; log in again")
        return Principal(await self._live_user(claims["sub"]), "session", claims=claims)
