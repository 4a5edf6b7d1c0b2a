"""/api/v1/users administration: list, create, get, update, delete; the last administrator; disabled users."""
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pymongo
import pytest
import requests

from tests.support.api_client import Api, admin_api_for, fresh_address, ok, refused, strong_password, unique_name
from tests.support.processes import RegistryServer
from tests.support.registry_client import RegistryClient


def admin_id(db):
    return db.users.find_one({"username": "admin"})["_id"]


def require_single_admin(db):
    """Guard for the last-administrator tests: they must never demote the shared server's administrator."""
    admins = list(db.users.find({"is_admin": True, "disabled": False}, {"username": 1}))
    if [a["username"] for a in admins] != ["admin"]:
        pytest.fail(f"precondition: 'admin' must be the only enabled administrator, found {admins}")


def registry_token(registry, username, password, scope="registry:catalog:*"):
    return RegistryClient(registry.url, username, password, address=fresh_address()).token_response(scope)


# -- listing --------------------------------------------------------------------------------------

def test_listing_users_answers_a_page_with_the_total(admin_api, db):
    data = ok(admin_api.get("/api/v1/users", params={"page": 1, "page_size": 5}))

    assert (data["page"], data["page_size"]) == (1, 5)
    assert data["total"] == db.users.count_documents({})
    assert len(data["items"]) == min(5, data["total"])
    assert all({"id", "username", "is_admin", "disabled"} <= set(item) for item in data["items"])


def test_listing_users_is_searchable_and_pages_through_the_matches(admin_api, make_user):
    tag = secrets.token_hex(4)
    names = sorted(make_user(display_name=f"Team {tag} member").username for _ in range(3))

    first = ok(admin_api.get("/api/v1/users", params={"search": tag, "page": 1, "page_size": 2}))
    second = ok(admin_api.get("/api/v1/users", params={"search": tag, "page": 2, "page_size": 2}))

    assert first["total"] == second["total"] == 3
    assert len(first["items"]) == 2 and len(second["items"]) == 1
    assert sorted(item["username"] for item in first["items"] + second["items"]) == names


def test_searching_users_matches_the_username_case_insensitively(admin_api, user):
    data = ok(admin_api.get("/api/v1/users", params={"search": user.username.upper()}))

    assert [item["id"] for item in data["items"]] == [user.id]


def test_a_search_with_regex_characters_matches_them_literally(admin_api):
    data = ok(admin_api.get("/api/v1/users", params={"search": ".*"}))

    assert data["total"] == 0 and data["items"] == []


@pytest.mark.parametrize("params, field", [
    ({"page": 0}, "page"), ({"page": "x"}, "page"), ({"page_size": 0}, "page_size"),
    ({"page_size": 1000}, "page_size"), ({"page_size": -1}, "page_size"), ({"page": "\u00b2"}, "page"),
])
def test_an_invalid_page_answers_10001_naming_it(admin_api, params, field):
    assert field in refused(admin_api.get("/api/v1/users", params=params), 10001)


def test_a_page_number_too_large_to_use_answers_an_empty_page_or_10001_never_500(admin_api):
    response = admin_api.get("/api/v1/users", params={"page": "9" * 30})

    if response.status_code == 200:
        assert ok(response)["items"] == []
    else:
        assert "page" in refused(response, 10001)


# -- creating -------------------------------------------------------------------------------------

def test_an_administrator_creates_a_user_who_can_then_log_in(admin_api, api, db):
    username, password = unique_name("new"), strong_password()

    data = ok(admin_api.post("/api/v1/users", json={"username": username, "password": password,
                                                   "email": f"{username}@example.com", "display_name": "New One"}))

    assert data["username"] == username and data["is_admin"] is False and data["disabled"] is False
    assert (data["email"], data["display_name"]) == (f"{username}@example.com", "New One")
    stored = db.users.find_one({"_id": data["id"]})
    assert stored["username"] == username
    assert stored["password_hash"].startswith("$argon2id$") and password not in str(stored)
    assert ok(api.login_response(username, password))["access_token"]


def test_creating_a_user_with_a_taken_username_answers_20002(admin_api, user, db):
    response = admin_api.post("/api/v1/users", json={"username": user.username, "password": strong_password()})

    refused(response, 20002)
    assert db.users.count_documents({"username": user.username}) == 1


@pytest.mark.parametrize("password", ["short1!", "onlylowercaseletters", "ONLYUPPER123456", "{username}-X9x"])
def test_creating_a_user_with_a_weak_password_answers_10001_and_creates_nothing(admin_api, db, password):
    username = unique_name("weak")

    message = refused(admin_api.post("/api/v1/users", json={"username": username,
                                                            "password": password.format(username=username)}), 10001)

    assert "password" in message
    assert db.users.count_documents({"username": username}) == 0


@pytest.mark.parametrize("body, field", [
    ({"username": "-bad", "password": "Str0ng-enough!"}, "username"),
    ({"username": "ab", "password": "Str0ng-enough!"}, "username"),
    ({"username": "has space", "password": "Str0ng-enough!"}, "username"),
    ({"username": "fine-name", "password": "Str0ng-enough!", "email": "nope"}, "email"),
    ({"username": "fine-name", "password": "Str0ng-enough!", "password_hash": "$argon2id$x"}, "password_hash"),
    ({"password": "Str0ng-enough!"}, "username"),
])
def test_creating_a_user_with_an_invalid_field_answers_10001_naming_it(admin_api, db, body, field):
    count = db.users.count_documents({})

    message = refused(admin_api.post("/api/v1/users", json=body), 10001)

    assert field in message
    assert db.users.count_documents({}) == count


# -- one user -------------------------------------------------------------------------------------

def test_an_administrator_gets_a_user_by_id(admin_api, user):
    data = ok(admin_api.get(f"/api/v1/users/{user.id}"))

    assert (data["id"], data["username"]) == (user.id, user.username)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_an_unknown_user_id_answers_20001(admin_api, method):
    response = admin_api.request(method, "/api/v1/users/no-such-user", json={"display_name": "x"})

    refused(response, 20001)


def test_an_administrator_updates_a_users_profile_and_rights(admin_api, user, db):
    data = ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"display_name": "Renamed", "bio": "hi"}))

    assert (data["display_name"], data["bio"]) == ("Renamed", "hi")
    stored = db.users.find_one({"_id": user.id})
    assert (stored["display_name"], stored["bio"]) == ("Renamed", "hi")


@pytest.mark.parametrize("body, field", [
    ({"username": "renamed"}, "username"), ({"is_admin": "yes"}, "is_admin"), ({"password": "short"}, "password"),
    ({"password_hash": "x"}, "password_hash"),
])
def test_an_invalid_user_update_answers_10001_and_changes_nothing(admin_api, user, db, body, field):
    before = db.users.find_one({"_id": user.id})

    message = refused(admin_api.patch(f"/api/v1/users/{user.id}", json=body), 10001)

    assert field in message
    assert db.users.find_one({"_id": user.id}) == before


def test_an_administrator_resets_a_password_ending_the_users_sessions(admin_api, api, user):
    new_password = strong_password()

    ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"password": new_password}))

    refused(user.api.get("/api/v1/users/me"), 30002)
    assert ok(api.login_response(user.username, new_password))["access_token"]


def test_an_administrator_deletes_a_user_and_everything_of_theirs_stops_working(admin_api, api, user, db):
    pat = user.api.create_pat(["api:read"])

    assert ok(admin_api.delete(f"/api/v1/users/{user.id}")) is None

    refused(admin_api.get(f"/api/v1/users/{user.id}"), 20001)
    assert db.users.find_one({"_id": user.id}) is None
    refused(user.api.get("/api/v1/users/me"), 30002)
    refused(api.get("/api/v1/users/me", token=pat["token"]), 30002)
    refused(api.post("/api/v1/auth/refresh", json={"refresh_token": user.api.tokens["refresh_token"]}), 30002)


def test_a_promoted_user_becomes_an_administrator_and_can_be_demoted_again(admin_api, user, db):
    try:
        assert ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"is_admin": True}))["is_admin"] is True
        assert ok(user.api.get("/api/v1/users"))["total"] >= 2

        assert ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"is_admin": False}))["is_admin"] is False
    finally:
        db.users.update_one({"_id": user.id}, {"$set": {"is_admin": False}})
    refused(user.api.get("/api/v1/users"), 30003)


# -- non-administrators ---------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, body", [
    ("GET", "/api/v1/users", None),
    ("GET", "/api/v1/users?search=admin", None),
    ("POST", "/api/v1/users", {"username": "sneaky-{tag}", "password": "Str0ng-enough!", "is_admin": True}),
    ("GET", "/api/v1/users/{admin}", None),
    ("PATCH", "/api/v1/users/{self}", {"is_admin": True}),
    ("PATCH", "/api/v1/users/{admin}", {"disabled": True}),
    ("PATCH", "/api/v1/users/{victim}", {"password": "Str0ng-enough!"}),
    ("DELETE", "/api/v1/users/{victim}", None),
    ("DELETE", "/api/v1/users/{admin}", None),
])
def test_a_non_administrator_is_refused_every_admin_endpoint_with_30003_and_nothing_changes(
        make_user, db, method, path, body):
    caller, victim = make_user(), make_user()
    tag = secrets.token_hex(3)
    ids = {"admin": admin_id(db), "self": caller.id, "victim": victim.id, "tag": tag}
    path = path.format(**ids)
    body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in body.items()} if body else None
    users_before = list(db.users.find({}).sort("_id", 1))

    response = caller.api.request(method, path, json=body)

    refused(response, 30003)
    assert list(db.users.find({}).sort("_id", 1)) == users_before


def test_a_pat_with_api_write_of_a_non_administrator_is_refused_admin_endpoints(api, user, db):
    pat = user.api.create_pat(["api:read", "api:write"])

    refused(api.patch(f"/api/v1/users/{user.id}", token=pat["token"], json={"is_admin": True}), 30003)

    assert db.users.find_one({"_id": user.id})["is_admin"] is False


def test_admin_endpoints_without_a_token_answer_30001(api, user):
    refused(api.get("/api/v1/users"), 30001)
    refused(api.delete(f"/api/v1/users/{user.id}"), 30001)


# -- the last administrator -----------------------------------------------------------------------

@pytest.mark.parametrize("body", [{"is_admin": False}, {"disabled": True}, {"is_admin": False, "disabled": True}])
def test_the_last_administrator_cannot_be_demoted_or_disabled(admin_api, db, body):
    require_single_admin(db)
    before = db.users.find_one({"username": "admin"})

    refused(admin_api.patch(f"/api/v1/users/{before['_id']}", json=body), 20002)

    after = db.users.find_one({"username": "admin"})
    assert after["is_admin"] is True and after["disabled"] is False
    assert after == before
    assert ok(admin_api.get("/api/v1/users"))["total"] >= 1


def test_the_last_administrator_cannot_be_deleted(admin_api, db):
    require_single_admin(db)

    refused(admin_api.delete(f"/api/v1/users/{admin_id(db)}"), 20002)

    stored = db.users.find_one({"username": "admin"})
    assert stored is not None and stored["is_admin"] is True
    assert ok(admin_api.get("/api/v1/users/me"))["is_admin"] is True


def test_with_two_administrators_the_other_one_can_be_demoted(admin_api, make_user, db):
    require_single_admin(db)
    second = make_user(is_admin=True)
    try:
        data = ok(admin_api.patch(f"/api/v1/users/{second.id}", json={"is_admin": False}))

        assert data["is_admin"] is False
        assert db.users.find_one({"_id": second.id})["is_admin"] is False
    finally:
        db.users.update_one({"_id": second.id}, {"$set": {"is_admin": False}})
    require_single_admin(db)


def test_two_administrators_demoting_each_other_at_once_leave_one_administrator(mongo, tmp_path):
    # Its own server: if the rule fails here, the shared server's administrator is not the one demoted.
    server = RegistryServer(mongo.uri, tmp_path).start()
    client = pymongo.MongoClient(mongo.uri)
    try:
        users = client[server.db_name].users
        first = admin_api_for(server)
        first_id = users.find_one({"username": "admin"})["_id"]
        for _ in range(5):
            name, password = unique_name("adm"), strong_password()
            second_id = ok(first.post("/api/v1/users", json={"username": name, "password": password,
                                                            "is_admin": True}))["id"]
            second = Api(server.url).session(name, password)
            barrier = threading.Barrier(2)

            def demote(caller, target):
                barrier.wait()
                return caller.patch(f"/api/v1/users/{target}", json={"is_admin": False})

            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(demote, (first, second), (second_id, first_id)))

            # The loser is refused as the last administrator (409), or, demoted already, as a non-admin (403).
            statuses = sorted(a.status_code for a in answers)
            assert statuses in ([200, 403], [200, 409]), [a.text for a in answers]
            assert users.count_documents({"is_admin": True, "disabled": False}) == 1
            users.update_one({"_id": first_id}, {"$set": {"is_admin": True}})
            users.delete_one({"_id": second_id})
    finally:
        client.close()
        server.stop()


# -- disabled users -------------------------------------------------------------------------------

def test_a_disabled_users_api_tokens_stop_working_and_nothing_is_changed_with_them(admin_api, api, user, db):
    pat = user.api.create_pat(["api:read", "api:write"])

    ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"disabled": True}))

    for token in (user.api.tokens["access_token"], pat["token"]):
        response = api.put("/api/v1/users/me", token=token, json={"display_name": "still here"})
        assert response.json()["code"] in (30002, 30003), response.text
        refused(response, response.json()["code"])
    assert db.users.find_one({"_id": user.id})["display_name"] == user.username


def test_a_disabled_users_registry_tokens_and_credentials_stop_working(registry, admin_api, user):
    pat = user.api.create_pat(["registry:pull"])
    token = registry_token(registry, user.username, user.password)
    assert token.status_code == 200
    headers = {"Authorization": f"Bearer {token.json()['token']}"}
    assert requests.get(f"{registry.url}/v2/", headers=headers, timeout=30).status_code == 200

    ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"disabled": True}))

    assert requests.get(f"{registry.url}/v2/", headers=headers, timeout=30).status_code == 401
    assert registry_token(registry, user.username, user.password).status_code == 401
    assert registry_token(registry, user.username, pat["token"]).status_code == 401


def test_a_re_enabled_user_can_log_in_again(admin_api, api, user):
    ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"disabled": True}))
    refused(api.login_response(user.username, user.password), 30003)

    ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"disabled": False}))

    assert ok(api.login_response(user.username, user.password))["access_token"]
