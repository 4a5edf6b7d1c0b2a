"""A small /v2/ client for behaviour tests: the Docker token flow done explicitly, then plain requests."""
import requests


class RegistryClient:
    def __init__(self, url, username=None, password=None):
        self.url = url
        self.auth = (username, password) if username else None

    def token(self, *scopes):
        response = requests.get(f"{self.url}/auth/token", params={"service": "cyp-registry", "scope": list(scopes)},
                                auth=self.auth, timeout=30)
        response.raise_for_status()
        return response.json()["token"]

    def request(self, method, path, scope=None, headers=None, **kwargs):
        """``path`` is relative to the server; ``scope`` (e.g. ``repository:p/r:pull,push``) selects the token."""
        headers = dict(headers or {})
        if scope is not None:
            headers["Authorization"] = f"Bearer {self.token(scope)}"
        url = path if path.startswith("http") else f"{self.url}{path}"
        return requests.request(method, url, headers=headers, timeout=120, allow_redirects=False, **kwargs)

    def push_blob(self, repo, data, digest):
        """Monolithic upload; returns the response."""
        return self.request("POST", f"/v2/{repo}/blobs/uploads/", f"repository:{repo}:pull,push",
                            params={"digest": digest}, data=data,
                            headers={"Content-Type": "application/octet-stream"})

    def put_manifest(self, repo, reference, body, media_type):
        return self.request("PUT", f"/v2/{repo}/manifests/{reference}", f"repository:{repo}:pull,push",
                            data=body, headers={"Content-Type": media_type})
