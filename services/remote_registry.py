"""Talking to another registry as a client would: the /v2/ probe, anonymous, Basic or Docker token
authentication (refreshed once on a 401), manifest HEAD before GET, streamed blob GETs with Range,
redirects to object storage, and retries with full-jitter exponential backoff.

Every refusal is a RemoteError whose message names the cause in words a user can act on.
"""
import asyncio
import base64
import contextlib
import random
import re
import time

from services.manifests import SUPPORTED_TYPES
from services.outbound import OutboundRefused, is_network_error

SCHEMA1_TYPES = ("application/vnd.docker.distribution.manifest.v1+prettyjws",
                 "application/vnd.docker.distribution.manifest.v1+json")
ACCEPT = ", ".join(SUPPORTED_TYPES + SCHEMA1_TYPES)
RETRIED_STATUSES = {408, 429, 500, 502, 503, 504}
_AUTH_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


class RemoteError(Exception):
    """The remote registry refused or failed; ``kind`` is one of not_found, unauthorized, forbidden,
    rate_limited, unreachable, invalid, refused."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _retry_after(response):
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


class RetryPolicy:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base * 2**n)), or what the
    server's Retry-After asks (capped); ``deadline`` (monotonic) bounds it all."""

    def __init__(self, attempts, base_seconds, cap_seconds, deadline):
        self.attempts = attempts
        self.base = base_seconds
        self.cap = cap_seconds
        self.deadline = deadline

    def wait(self, attempt, retry_after=None):
        wait = min(self.cap, retry_after) if retry_after is not None else random.uniform(
            0, min(self.cap, self.base * 2 ** attempt))
        if time.monotonic() + wait > self.deadline:
            return None
        return wait


class RemoteRegistry:
    """One remote repository, seen with the given credentials."""

    def __init__(self, outbound, host, repository, credentials=None, insecure=False, retry=None):
        self.outbound = outbound
        self.host = host
        self.repository = repository
        self.credentials = credentials
        self.insecure = insecure
        self.retry = retry
        self.base = None
        self.authorization = None
        self.challenge = None

    # --- connection and authentication --------------------------------------------------------

    async def connect(self):
        """Probe ``/v2/`` (HTTPS first; plain HTTP too for an insecure registry) and learn how to authenticate."""
        schemes = ("https", "http") if self.insecure else ("https",)
        last_error = None
        for scheme in schemes:
            self.base = f"{scheme}://{self.host}"
            try:
                async with self._send("GET", f"{self.base}/v2/") as response:
                    if response.status == 401:
                        self.challenge = response.headers.get("WWW-Authenticate", "")
                        await self._authenticate()
                    elif response.status != 200:
                        raise RemoteError("invalid", f"{self.host} does not answer the registry API "
                                                     f"(GET /v2/ gave HTTP {response.status})")
                    return
            except RemoteError as exc:
                if exc.kind != "unreachable":
                    raise
                last_error = exc
        raise last_error

    async def _authenticate(self):
        scheme, _, params = self.challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.credentials:
                raise RemoteError("unauthorized", f"{self.host} requires a username and password")
            user, password = self.credentials
            self.authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        elif scheme.lower() == "bearer":
            self.authorization = f"Bearer {await self._token(dict(_AUTH_PARAM_RE.findall(params)))}"
        else:
            raise RemoteError("unauthorized", f"{self.host} asks for {scheme or 'an unknown'} authentication")

    async def _token(self, challenge):
        realm = challenge.get("realm")
        if not realm:
            raise RemoteError("invalid", f"{self.host} gave a Bearer challenge without a realm")
        params = {"scope": f"repository:{self.repository}:pull"}
        if challenge.get("service"):
            params["service"] = challenge["service"]
        headers = {}
        if self.credentials:
            user, password = self.credentials
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        async with self._send("GET", realm, headers=headers, params=params) as response:
            if response.status in (401, 403):
                raise RemoteError("unauthorized", f"{self.host} refused the credentials (token endpoint answered "
                                                  f"HTTP {response.status})")
            if response.status != 200:
                raise RemoteError("invalid", f"{self.host}'s token endpoint answered HTTP {response.status}")
            body = await response.json(content_type=None)
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RemoteError("invalid", f"{self.host}'s token endpoint answered no token")
        return token

    # --- requests --------------------------------------------------------------------------------

    def _send(self, method, url, headers=None, **kwargs):
        """One request (redirects followed and guarded), mapping what cannot connect to RemoteError."""
        return _Guarded(self.outbound.request(method, url, headers=headers, verify=not self.insecure, **kwargs),
                        self.host)

    @contextlib.asynccontextmanager
    async def request(self, method, path, headers=None, follow_redirects=False):
        """The response to ``path`` under the repository: authenticated, retried by the policy (network
        errors, 408, 429, 5xx), with one fresh authentication on a 401. Other statuses are the caller's."""
        url = f"{self.base}/v2/{self.repository}/{path}"
        attempt, refreshed = 0, False
        while True:
            wanted = dict(headers or {})
            if self.authorization:
                wanted["Authorization"] = self.authorization
            context = self._send(method, url, headers=wanted, follow_redirects=follow_redirects)
            try:
                response = await context.__aenter__()
            except RemoteError as exc:
                if exc.kind != "unreachable":
                    raise
                await self.backoff(attempt, exc)
                attempt += 1
                continue
            try:
                if response.status == 401 and not refreshed and response.headers.get("WWW-Authenticate"):
                    refreshed = True
                    self.challenge = response.headers["WWW-Authenticate"]
                elif response.status in RETRIED_STATUSES:
                    retry_after = _retry_after(response)
                    kind = "rate_limited" if response.status == 429 else "unreachable"
                    failure = RemoteError(kind, f"{self.host} kept answering HTTP {response.status} to {method} {path}")
                else:
                    yield response
                    return
            finally:
                await context.__aexit__(None, None, None)
            if response.status == 401:
                await self._authenticate()
            else:
                await self.backoff(attempt, failure, retry_after)
                attempt += 1

    async def backoff(self, attempt, failure, retry_after=None):
        """Sleep before the next attempt, or raise ``failure`` when the attempts or the deadline are spent."""
        wait = self.retry.wait(attempt, retry_after) if attempt + 1 < self.retry.attempts else None
        if wait is None:
            raise failure
        await asyncio.sleep(wait)

    async def manifest_head(self, reference):
        """``(digest, media type, size)`` of a manifest, or RemoteError not_found."""
        async with self.request("HEAD", f"manifests/{reference}", {"Accept": ACCEPT}) as response:
            self._refuse(response, f"manifest {reference}")
            return (response.headers.get("Docker-Content-Digest"),
                    response.headers.get("Content-Type", "").split(";")[0].strip(),
                    int(response.headers.get("Content-Length") or 0))

    async def manifest(self, reference, limit):
        """``(bytes, media type)`` of a manifest of at most ``limit`` bytes."""
        async with self.request("GET", f"manifests/{reference}", {"Accept": ACCEPT}) as response:
            self._refuse(response, f"manifest {reference}")
            content = await response.content.read(limit + 1)
            if len(content) > limit:
                raise RemoteError("invalid", f"manifest {reference} is larger than {limit} bytes")
            return content, response.headers.get("Content-Type", "").split(";")[0].strip()

    @contextlib.asynccontextmanager
    async def blob(self, digest, start=0):
        """The response streaming the blob from ``start`` (redirects to storage followed and guarded)."""
        headers = {"Range": f"bytes={start}-"} if start else {}
        async with self.request("GET", f"blobs/{digest}", headers, follow_redirects=True) as response:
            self._refuse(response, f"blob {digest}")
            if start and response.status != 206:
                raise RemoteError("invalid", f"{self.host} ignored the Range request for {digest}")
            yield response

    def _refuse(self, response, what):
        if response.status in (200, 206):
            return
        if response.status == 404:
            raise RemoteError("not_found", f"{what} not found in {self.host}/{self.repository}")
        if response.status == 401:
            raise RemoteError("unauthorized", f"{self.host} refused the credentials for {self.repository} "
                                              "(unauthorized)")
        if response.status == 403:
            raise RemoteError("forbidden", f"{self.host} denied access to {self.repository} (forbidden)")
        raise RemoteError("invalid", f"{self.host} answered HTTP {response.status} for {what}")


class _Guarded:
    """An outbound request context whose connection failures and guard refusals become RemoteErrors."""

    def __init__(self, context, host):
        self.context = context
        self.host = host

    async def __aenter__(self):
        try:
            return await self.context.__aenter__()
        except OutboundRefused as exc:
            raise RemoteError("refused", str(exc)) from None
        except Exception as exc:
            if is_network_error(exc):
                raise RemoteError("unreachable", f"{self.host} is unreachable: {type(exc).__name__}: {exc}") from None
            raise

    async def __aexit__(self, *exc_info):
        return await self.context.__aexit__(*exc_info)

