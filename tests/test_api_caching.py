"""No /api/v1 answer may be kept by a cache: they carry tokens, one-time passwords and private data."""
import pytest

from tests.support.api_client import unique_name


def _requests(api, admin_api, user):
    return {
        "login": lambda: api.login_response(user.username, user.password),
        "refresh": lambda: api.post("/api/v1/auth/refresh", json={"refresh_token": user.api.tokens["refresh_token"]}),
        "me": lambda: user.api.get("/api/v1/users/me"),
        "pat creation": lambda: user.api.post("/api/v1/users/me/pat",
                                              json={"name": unique_name("pat"), "scopes": ["api:read"]}),
        "project list": lambda: api.get("/api/v1/projects"),
        "admin user list": lambda: admin_api.get("/api/v1/users"),
        "default-admin-once": lambda: api.get("/api/v1/auth/default-admin-once"),
        "refusal": lambda: api.get("/api/v1/users/me"),
        "unknown route": lambda: api.get("/api/v1/nothing-here"),
    }


@pytest.mark.parametrize("name", ["login", "refresh", "me", "pat creation", "project list", "admin user list",
                                  "default-admin-once", "refusal", "unknown route"])
def test_every_api_answer_forbids_caching_and_carries_no_etag(api, admin_api, user, name):
    response = _requests(api, admin_api, user)[name]()

    assert response.headers["Cache-Control"] == "no-store", response.headers
    assert "ETag" not in response.headers
