"""A small /api/v1 client for behaviour tests: the envelope checked on every answer, logins, throwaway users.

The fixtures built on it (``api``, ``admin_api``, ``make_user``, ``user``, ...) are in tests/conftest.py.
"""
import base64
import json
import secrets
import time
from dataclasses import dataclass

import requests

from tests.support.sent_secrets import remember, remember_body

ENVELOPE_KEYS = {"code", "message", "data", "timestamp", "trace_id"}
SUCCESS = 20000
# The HTTP status each envelope code travels with (the table: 1xxxx 400/413, 2xxxx 404/409/410/405,
# 3xxxx 401/403/429, 5xxxx 500/503).
STATUS_OF = {
    10001: 400, 10002: 400, 10003: 413,
    20001: 404, 20002: 409, 20003: 410, 20004: 405,
    30001: 401, 30002: 401, 30003: 403, 30004: 429,
    50001: 500, 50003: 503,
}
SESSION_SCOPES = ["api:read", "api:write", "registry:delete", "registry:pull", "registry:push"]


def assert_envelope(response, status, code):
    """The response is ``{code, message, data, timestamp, trace_id}`` with this status and code; answers the body."""
    assert response.status_code == status, (response.request.method, response.url, response.status_code,
                                            response.text[:500])
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == ENVELOPE_KEYS, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["timestamp"], int) and abs(body["timestamp"] - time.time()) < 300, body
    assert isinstance(body["trace_id"], str) and body["trace_id"], body
    assert body["trace_id"] == response.headers.get("X-Trace-Id"), (body["trace_id"], response.headers)
    assert_no_secrets(response)
    return body


def assert_no_secrets(response):
    """No answer ever carries a password hash (as a JSON key or an argon2 hash value)."""
    text = response.text
    assert '"password_hash"' not in text and "$argon2" not in text, text[:500]


def ok(response, status=200):
    """The success envelope; answers its ``data``."""
    return assert_envelope(response, status, SUCCESS)["data"]


def refused(response, code):
    """The error envelope with ``code`` (and its HTTP status), ``data`` null; answers its ``message``."""
    body = assert_envelope(response, STATUS_OF[code], code)
    assert body["data"] is None, body
    return body["message"]


def unique_name(prefix="u"):
    """``prefix`` and ten random hex digits: a fresh name for a user, a project or a PAT."""
    return f"{prefix}{secrets.token_hex(5)}"


def strong_password():
    return f"Pw-{secrets.token_urlsafe(10)}-9aZ"


def b64url(data):
    """Unpadded base64url of bytes, or of a document as compact JSON (a part of a JWT)."""
    if isinstance(data, (dict, list)):
        data = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_claims(token):
    """A JWT's claims (an /api/v1 token's or a registry token's), read without checking its signature."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def fresh_address():
    """A made-up private client address, so deliberate login failures count against no one else's address."""
    return "10." + ".".join(str(secrets.randbelow(250) + 1) for _ in range(3))


class Api:
    """Plain HTTP against /api/v1 with an optional bearer token."""

    def __init__(self, url, token=None, address=None):
        self.url = url
        self.token = token
        self.address = address

    def with_token(self, token):
        return Api(self.url, token, self.address)

    def request(self, method, path, token=None, headers=None, **kwargs):
        headers = dict(headers or {})
        token = token if token is not None else self.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        remember(token)
        remember_body(kwargs.get("json"))
        if self.address:
            # The shared test server trusts proxy headers (trust_proxy_headers); a private address keeps
            # deliberate failures off 127.0.0.1.
            headers["X-Real-Ip"] = self.address
        url = path if path.startswith("http") else f"{self.url}{path}"
        return requests.request(method, url, headers=headers, timeout=60, allow_redirects=False, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.request("PUT", path, **kwargs)

    def patch(self, path, **kwargs):
        return self.request("PATCH", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def login_response(self, username, password):
        return self.post("/api/v1/auth/login", json={"username": username, "password": password})

    def login(self, username, password):
        """Log in and answer the token data (access_token, refresh_token, expires_at, token_type)."""
        return ok(self.login_response(username, password))

    def session(self, username, password):
        """A new Api carrying the access token of a fresh login; ``.tokens`` holds the whole answer."""
        tokens = self.login(username, password)
        api = self.with_token(tokens["access_token"])
        api.tokens = tokens
        return api

    def create_pat(self, scopes, name=None, expires_at=None):
        body = {"name": name or unique_name("pat-"), "scopes": list(scopes)}
        if expires_at is not None:
            body["expires_at"] = expires_at
        return ok(self.post("/api/v1/users/me/pat", json=body))


@dataclass
class User:
    id: str
    username: str
    password: str
    api: Api  # logged in as this user


def admin_api_for(server):
    """The bootstrap administrator's logged-in client on ``server`` (a processes.RegistryServer)."""
    return Api(server.url).session("admin", server.admin_password)


def create_user(admin_api, is_admin=False, address=None, **fields):
    """A new ordinary (or admin) user created through POST /api/v1/users by an administrator, already logged in
    (from ``address``, sent as X-Real-Ip, when given; its client keeps sending it)."""
    username = unique_name("user")
    password = strong_password()
    data = ok(admin_api.post("/api/v1/users", json={"username": username, "password": password,
                                                    "is_admin": is_admin, **fields}))
    return User(data["id"], username, password, Api(admin_api.url, address=address).session(username, password))
