"""Account and project rules that close gaps: usernames unique in any case, passwords that cannot pass for
a PAT, password guesses throttled behind a session, owners who cannot vanish, reserved project names,
quotas only administrators raise, and honest answers from the token endpoint."""
import base64

import pytest
import requests

from tests.support.api_client import Api, fresh_address, jwt_claims, ok, refused, strong_password, unique_name
from tests.support.processes import RegistryServer


def test_a_username_differing_only_in_case_from_an_existing_one_is_refused(admin_api, user):
    response = admin_api.post("/api/v1/users", json={"username": user.username.upper(), "password": strong_password()})

    refused(response, 20002)


def test_a_login_finds_the_account_whatever_the_case_of_the_name(registry, user):
    data = ok(Api(registry.url, address=fresh_address()).session(user.username.upper(), user.password)
              .get("/api/v1/users/me"))

    assert data["id"] == user.id


def test_a_password_that_looks_like_a_pat_is_refused(admin_api):
    response = admin_api.post("/api/v1/users", json={"username": unique_name("u"), "password": "cyp_Secret123!"})

    assert "cyp_" in refused(response, 10001)


def test_guessing_the_old_password_behind_a_session_is_throttled_like_a_login(registry, make_user):
    user = make_user()
    api = Api(registry.url, user.api.token, address=fresh_address())
    for _ in range(5):
        refused(api.put("/api/v1/users/me/password", json={"old_password": "Wrong-pass-1",
                                                            "new_password": strong_password()}), 30003)

    response = api.put("/api/v1/users/me/password", json={"old_password": user.password,
                                                           "new_password": strong_password()})

    refused(response, 30004)
    assert int(response.headers["Retry-After"]) > 0


def test_a_user_who_owns_projects_cannot_be_deleted(admin_api, user):
    ok(user.api.post("/api/v1/projects", json={"name": unique_name("owned")}))

    assert "owns 1 project" in refused(admin_api.delete(f"/api/v1/users/{user.id}"), 20002)
    assert ok(admin_api.get(f"/api/v1/users/{user.id}"))["id"] == user.id


def test_a_project_cannot_take_the_name_of_a_route(admin_api):
    assert "reserved" in refused(admin_api.post("/api/v1/projects", json={"name": "statistics"}), 10001)


@pytest.fixture(scope="module")
def default_quota_server(mongo, tmp_path_factory):
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("quota"), env={"CYP_DEFAULT_PROJECT_QUOTA": "1000"})
    server.start()
    yield server
    server.stop()


def quota_user(server):
    admin = Api(server.url).session("admin", server.admin_password)
    username, password = unique_name("q"), strong_password()
    ok(admin.post("/api/v1/users", json={"username": username, "password": password}))
    return admin, Api(server.url).session(username, password)


@pytest.mark.parametrize("quota", [-1, 1001])
def test_a_user_cannot_create_a_project_with_more_quota_than_the_default(default_quota_server, quota):
    _, user = quota_user(default_quota_server)

    refused(user.post("/api/v1/projects", json={"name": unique_name("p"), "storage_quota": quota}), 30003)


def test_a_user_may_create_a_project_with_less_quota_than_the_default(default_quota_server):
    _, user = quota_user(default_quota_server)

    assert ok(user.post("/api/v1/projects", json={"name": unique_name("p"), "storage_quota": 10}))["storage_quota"] == 10


def test_an_administrator_may_create_a_project_with_any_quota(default_quota_server):
    admin, _ = quota_user(default_quota_server)

    assert ok(admin.post("/api/v1/projects", json={"name": unique_name("p"), "storage_quota": -1}))["storage_quota"] == -1


def test_a_disabled_users_refresh_token_is_refused_and_leaves_the_session_unrotated(api, admin_api, user, db):
    ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"disabled": True}))
    session_before = db.sessions.find_one({"user_id": user.id})

    refused(api.post("/api/v1/auth/refresh", json={"refresh_token": user.api.tokens["refresh_token"]}), 30003)

    assert db.sessions.find_one({"_id": session_before["_id"]})["refresh_jti"] == session_before["refresh_jti"]


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic"])
def test_the_token_endpoint_refuses_unreadable_basic_credentials(registry, header):
    response = requests.get(f"{registry.url}/auth/token", params={"service": "cyp-registry"},
                            headers={"Authorization": header}, timeout=30)

    assert response.status_code == 401
    assert "token" not in response.json()


def test_a_catalog_grant_holds_no_made_up_actions(admin):
    token = admin.token("registry:catalog:*,delete,frobnicate")

    assert jwt_claims(token)["access"] == [{"type": "registry", "name": "catalog", "actions": ["*"]}]
