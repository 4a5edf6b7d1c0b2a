"""Who may do what: project visibility, registry actions on repositories, how far a PAT reaches,
and the registry tokens that carry the grants (Docker token-auth spec)."""
from dataclasses import dataclass

from services.cache import MISSING, TtlCache
from services.errors import AccessDenied, NameInvalid, NameUnknown, TokenRequired
from services.names import check_repository_name
from services.tokens import ALL_ACTIONS, InvalidToken, Scope, expand, granted, parse_scopes
from services.timestamps import epoch_iso_z
from storage.clock import utcnow
from storage.projects import Visibility

# What each PAT scope lets a registry token do; a password login may do everything its user may.
PAT_REGISTRY_ACTIONS = {"registry:pull": {"pull"}, "registry:push": {"pull", "push"}, "registry:delete": {"delete"}}
# The scope a PAT needs for each registry action, named in refusals.
SCOPE_FOR_ACTION = {"pull": "registry:pull", "push": "registry:push", "delete": "registry:delete"}


def visibility(user):
    """The projects ``user`` (None = anonymous) sees: administrators all, others public ones and their own."""
    if user and user.get("is_admin"):
        return Visibility(everything=True)
    return Visibility(owner_id=user["_id"] if user else None)


def can_see(user, project):
    return visibility(user).admits(project)


def can_write(user, project):
    """Owners and administrators push, delete and change settings."""
    return bool(user) and (user.get("is_admin") or project.get("owner_id") == user["_id"])


def registry_actions_for(pat_scopes):
    """The registry actions a PAT's scopes allow: ``registry:push`` never deletes, ``registry:delete`` does."""
    actions = set()
    for scope in pat_scopes:
        actions |= PAT_REGISTRY_ACTIONS.get(scope, set())
    return frozenset(actions)


# How stale a registry request's view of an account or a PAT may be in a process that did not change it:
# a disabled user or a revoked PAT is refused there within this, and at once by the process that changed it.
ACCOUNT_STALENESS_SECONDS = 5
CACHED_ACCOUNTS = 10_000


class LiveAccounts:
    """Accounts and PATs as registry requests see them, read again at most every ACCOUNT_STALENESS_SECONDS
    (a registry request would otherwise cost a database round trip for each)."""

    def __init__(self, collections):
        self.collections = collections
        self.users = TtlCache(CACHED_ACCOUNTS, ACCOUNT_STALENESS_SECONDS)
        self.pats = TtlCache(CACHED_ACCOUNTS, ACCOUNT_STALENESS_SECONDS)

    async def user(self, user_id):
        user = self.users.get(user_id)
        if user is MISSING:
            user = self.users.put(user_id, await self.collections.users.get(user_id))
        return user

    async def pat(self, pat_id):
        """The PAT while it is usable (not revoked, not expired), else None."""
        pat = self.pats.get(pat_id)
        if pat is MISSING:
            pat = self.pats.put(pat_id, await self.collections.pats.usable(pat_id))
        if pat is not None and pat.get("expires_at") is not None and pat["expires_at"] <= utcnow():
            return None
        return pat

    def forget_user(self, user_id):
        self.users.forget(user_id)

    def forget_pat(self, pat_id):
        self.pats.forget(pat_id)


@dataclass
class RegistryCaller:
    """The caller of one /v2/ request: the verified token's claims and the live account and PAT behind it."""

    claims: dict = None
    user: dict = None
    pat: dict = None

    def holds(self, action, kind, name):
        return self.claims is not None and action in granted(self.claims, kind, name)


class AccessService:
    def __init__(self, collections, tokens, auth, accounts, rate_limits):
        self.collections = collections
        self.tokens = tokens
        self.auth = auth
        self.accounts = accounts
        self.rate_limits = rate_limits

    async def repository_actions(self, user, name):
        """Every action ``user`` (None = anonymous) may take on repository ``name``."""
        try:
            project_name, _ = check_repository_name(name)
        except NameInvalid:
            return frozenset()
        project = await self.collections.projects.get_by_name(project_name)
        if project is None:
            return frozenset()
        if can_write(user, project):
            return ALL_ACTIONS
        return frozenset({"pull"}) if project.get("is_public") else frozenset()

    async def allowed(self, caller, action, repo):
        """Whether the caller's account (within its PAT's reach) may take ``action`` on ``repo``, whatever
        its current token holds."""
        limit = registry_actions_for(caller.pat["scopes"]) if caller.pat else ALL_ACTIONS
        return action in limit and action in await self.repository_actions(caller.user, repo)

    async def grant(self, user, requested, limit=ALL_ACTIONS):
        """Narrow each requested Scope to what the user holds (and ``limit``, a PAT's reach); empty ones are dropped."""
        result = []
        for scope in requested:
            if scope.type == "repository":
                actions = expand(scope.actions) & await self.repository_actions(user, scope.name) & limit
            elif scope.type == "registry" and scope.name == "catalog":
                # Anyone may list; the listing holds only the projects the caller can see.
                actions = frozenset(scope.actions) & {"*"} if "pull" in limit else frozenset()
            else:
                actions = frozenset()
            if actions:
                result.append(Scope(scope.type, scope.name, frozenset(actions)))
        return result

    async def issue_token(self, credentials, scope_values, remote_ip):
        """``(user, the token endpoint's answer)`` for ``(username, password)`` (None: anonymous) and the requested
        scopes; ``user`` is the verified account (None: anonymous).

        The password may be the account's or one of its PATs, whose scopes then bound the grant.
        """
        user = pat = None
        if credentials is not None:
            user, pat = await self.auth.verify_credentials(*credentials, remote_ip)
        # Counted once the user is verified: a request naming a user it cannot prove it is spends nothing of
        # that user's budget (wrong passwords are the login throttle's).
        self.rate_limits.admit(user, remote_ip, "token")
        limit = registry_actions_for(pat["scopes"]) if pat else ALL_ACTIONS
        scopes = await self.grant(user, parse_scopes(scope_values), limit)
        token, expires_in, issued_at = self.tokens.issue(
            user["username"] if user else "", user["_id"] if user else None, scopes, pat["_id"] if pat else None)
        return user, {"token": token, "access_token": token, "expires_in": expires_in,
                      "issued_at": epoch_iso_z(issued_at)}

    async def caller(self, bearer):
        """The RegistryCaller behind a bearer token (None: anonymous); a token outlives nothing it came
        from, so a disabled or deleted account or a revoked PAT ends it."""
        if bearer is None:
            return RegistryCaller()
        try:
            claims = self.tokens.verify(bearer)
        except InvalidToken:
            raise TokenRequired("invalid or expired token", reason="invalid_token") from None
        caller = RegistryCaller(claims)
        if claims.get("uid"):
            user = await self.accounts.user(claims["uid"])
            if user is None or user.get("disabled"):
                raise TokenRequired("the token's account is disabled or gone", reason="invalid_token")
            caller.user = user
        if claims.get("pat"):
            caller.pat = await self.accounts.pat(claims["pat"])
            if caller.pat is None:
                raise TokenRequired("the token's personal access token was revoked", reason="invalid_token")
        return caller

    async def authorize(self, caller, action, repo=None, resource=None):
        """Pass, or say why not: TokenRequired (fetch a token), AccessDenied (never allowed), NameUnknown.

        ``resource`` is a registry-wide ``(type, name)`` such as the catalog; otherwise ``repo``.
        """
        kind, name = resource or ("repository", repo)
        if caller.holds(action, kind, name):
            return
        user = caller.user
        if user is None:
            raise TokenRequired(**({"reason": "insufficient_scope"} if caller.claims else {}))
        if caller.pat is not None and action not in registry_actions_for(caller.pat["scopes"]):
            raise AccessDenied(f"personal access token {caller.pat['name']!r} does not allow {action}; "
                               f"it needs the {SCOPE_FOR_ACTION[action]} scope")
        if resource or action in await self.repository_actions(user, repo):
            raise TokenRequired("token does not grant this action; request a new one", reason="insufficient_scope")
        project = await self.collections.projects.get_by_name(repo.split("/", 1)[0])
        if project is None or not can_see(user, project):
            # A private project of someone else looks exactly like one that does not exist.
            raise NameUnknown(f"repository {repo} not known to registry: its project does not exist or is not "
                              "visible to you", name=repo)
        raise AccessDenied(f"user {user['username']} may not {action} {repo}")
