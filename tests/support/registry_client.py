"""A small /v2/ client for behaviour tests: the Docker token flow done explicitly, then plain requests."""
import functools

import requests

from tests.support.manifests import OCI_MANIFEST, sha256
from tests.support.sent_secrets import remember


class RegistryClient:
    """``address``: a made-up client address sent as X-Real-Ip (the test server trusts proxy headers), so that
    deliberate failures at the token endpoint count against no one else's address."""

    def __init__(self, url, username=None, password=None, address=None):
        self.url = url
        self.auth = (username, password) if username else None
        self.address = address
        remember(password)

    def _headers(self, headers=None):
        headers = dict(headers or {})
        if self.address:
            headers["X-Real-Ip"] = self.address
        return headers

    def token_response(self, *scopes):
        """GET /auth/token for ``scopes`` (none: no scope parameter at all) with this client's credentials."""
        return requests.get(f"{self.url}/auth/token", params={"service": "cyp-registry", "scope": list(scopes)},
                            auth=self.auth, headers=self._headers(), timeout=30)

    def token(self, *scopes):
        response = self.token_response(*scopes)
        response.raise_for_status()
        token = response.json()["token"]
        remember(token)
        return token

    def request(self, method, path, scope=None, headers=None, **kwargs):
        """``path`` is relative to the server; ``scope`` (e.g. ``repository:p/r:pull,push``) selects the token."""
        headers = self._headers(headers)
        if scope is not None:
            headers["Authorization"] = f"Bearer {self.token(scope)}"
        url = path if path.startswith("http") else f"{self.url}{path}"
        return requests.request(method, url, headers=headers, timeout=120, allow_redirects=False, **kwargs)

    def push_blob(self, repo, data, digest=None):
        """Monolithic upload of ``data`` under ``digest`` (by default its sha256); returns the response."""
        return self.request("POST", f"/v2/{repo}/blobs/uploads/", f"repository:{repo}:pull,push",
                            params={"digest": sha256(data) if digest is None else digest}, data=data,
                            headers={"Content-Type": "application/octet-stream"})

    def put_manifest(self, repo, reference, body, media_type=OCI_MANIFEST):
        """PUT ``body`` (bytes, or an iterable of them to send it chunked); returns the response."""
        return self.request("PUT", f"/v2/{repo}/manifests/{reference}", f"repository:{repo}:pull,push",
                            data=body, headers={"Content-Type": media_type})


def cached_client(url, username=None, password=None):
    """A RegistryClient that fetches one token per scope (each fetch costs an argon2 verification)."""
    client = RegistryClient(url, username, password)
    client.token = functools.lru_cache(maxsize=None)(client.token)
    return client
