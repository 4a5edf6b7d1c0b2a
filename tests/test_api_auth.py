"""/api/v1/auth: login, failed-login throttling, refresh rotation with family revocation, logout, disabled users."""
import datetime
import time
from concurrent.futures import ThreadPoolExecutor

import pymongo
import pytest
from passlib.hash import argon2

from tests.support.api_client import Api, fresh_address, jwt_claims, ok, refused, unique_name
from tests.support.processes import RegistryServer

USER_LOCK_AFTER = 5  # the default login_max_failures


def now():
    return datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture(scope="module")
def second_node(mongo, registry, tmp_path_factory):
    """Another server process on the shared server's database: a second node of the same registry."""
    node = RegistryServer(mongo.uri, tmp_path_factory.mktemp("second-node"), db_name=registry.db_name).start()
    yield node
    node.stop()


def refresh(api, refresh_token):
    return api.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


# -- login ----------------------------------------------------------------------------------------

def test_login_answers_an_access_token_a_refresh_token_its_expiry_and_the_bearer_type(api, user, db):
    response = api.login_response(user.username, user.password)

    data = ok(response)
    assert data["token_type"] == "Bearer"
    assert isinstance(data["access_token"], str) and isinstance(data["refresh_token"], str)
    assert data["access_token"] != data["refresh_token"]
    assert isinstance(data["expires_at"], int) and time.time() < data["expires_at"] <= time.time() + 86400 + 60
    assert jwt_claims(data["access_token"])["exp"] == data["expires_at"]
    me = ok(api.get("/api/v1/users/me", token=data["access_token"]))
    assert (me["id"], me["username"]) == (user.id, user.username)
    session = db.sessions.find_one({"_id": jwt_claims(data["access_token"])["sid"]})
    assert session["user_id"] == user.id and session["revoked"] is False
    assert db.users.find_one({"_id": user.id})["last_login_at"] is not None


def test_a_wrong_password_is_refused_with_30001_and_no_session_is_created(registry, user, db):
    sessions_before = db.sessions.count_documents({"user_id": user.id})

    response = Api(registry.url, address=fresh_address()).login_response(user.username, "Wrong-password-1")

    refused(response, 30001)
    assert db.sessions.count_documents({"user_id": user.id}) == sessions_before


def test_an_unknown_username_is_refused_exactly_like_a_wrong_password(registry, user):
    anonymous = Api(registry.url, address=fresh_address())

    wrong_password = refused(anonymous.login_response(user.username, "Wrong-password-1"), 30001)
    no_such_user = refused(anonymous.login_response(unique_name("nobody"), "Wrong-password-1"), 30001)

    assert wrong_password == no_such_user


def test_a_password_hashed_with_older_parameters_is_hashed_again_with_todays_at_login(api, user, db):
    older = argon2.using(type="ID", memory_cost=19456, rounds=2, parallelism=1).hash(user.password)
    db.users.update_one({"_id": user.id}, {"$set": {"password_hash": older}})

    ok(api.login_response(user.username, user.password))

    stored = db.users.find_one({"_id": user.id})["password_hash"]
    assert stored.startswith("$argon2id$v=19$m=7168,t=5,p=1$") and argon2.verify(user.password, stored)
    ok(api.login_response(user.username, user.password))


def test_repeated_failed_logins_for_one_user_are_slowed_then_refused_with_30004(registry, second_node, make_user,
                                                                                 db):
    victim, bystander = make_user(), make_user()
    attacker = Api(registry.url, address=fresh_address())
    durations = []

    for _ in range(USER_LOCK_AFTER):
        started = time.monotonic()
        refused(attacker.login_response(victim.username, "Wrong-password-1"), 30001)
        durations.append(time.monotonic() - started)
    locked = attacker.login_response(victim.username, victim.password)

    refused(locked, 30004)
    assert durations[-1] >= 1.0 and durations[-1] > durations[0] + 0.5, durations
    record = db.login_attempts.find_one({"_id": f"user:{victim.username.lower()}"})
    assert record["count"] >= USER_LOCK_AFTER
    assert record["locked_until"] > now()
    # The lock is on the account, whatever the address and whichever node; other accounts are not affected.
    refused(Api(second_node.url, address=fresh_address()).login_response(victim.username, victim.password), 30004)
    assert ok(Api(registry.url, address=fresh_address()).login_response(bystander.username, bystander.password))


def test_repeated_failed_logins_from_one_address_lock_that_address(mongo, tmp_path):
    # Its own server (and database): the address counters of the shared server stay untouched.
    # With login_max_failures 1 an address is locked after 4 failures (four times the per-user limit).
    server = RegistryServer(mongo.uri, tmp_path, env={"CYP_LOGIN_MAX_FAILURES": "1"}).start()
    try:
        api = Api(server.url)
        for _ in range(3):
            refused(api.login_response(unique_name("nobody"), "Wrong-password-1"), 30001)
        assert ok(api.login_response("admin", server.admin_password))["access_token"]
        refused(api.login_response(unique_name("nobody"), "Wrong-password-1"), 30001)

        refused(api.login_response("admin", server.admin_password), 30004)

        client = pymongo.MongoClient(mongo.uri, tz_aware=True)
        try:
            record = client[server.db_name].login_attempts.find_one({"_id": "ip:127.0.0.1"})
        finally:
            client.close()
        assert record["count"] >= 4 and record["locked_until"] > now()
    finally:
        server.stop()


def test_a_client_cannot_dodge_the_address_lock_with_forwarded_headers_by_default(mongo, tmp_path):
    # Without trust_proxy_headers, X-Real-Ip / X-Forwarded-For are the client's own words: ignored.
    server = RegistryServer(mongo.uri, tmp_path, env={"CYP_LOGIN_MAX_FAILURES": "1"}).start()
    try:
        for _ in range(4):
            refused(Api(server.url, address=fresh_address()).login_response(unique_name("nobody"), "Wrong-password-1"),
                    30001)

        refused(Api(server.url, address=fresh_address()).login_response("admin", server.admin_password), 30004)
    finally:
        server.stop()


def test_a_disabled_user_cannot_log_in(api, admin_api, user, db):
    ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"disabled": True}))
    sessions_before = db.sessions.count_documents({"user_id": user.id})

    refused(api.login_response(user.username, user.password), 30003)

    assert db.sessions.count_documents({"user_id": user.id}) == sessions_before


def test_a_disabled_users_existing_session_and_personal_access_token_stop_working(api, admin_api, user):
    pat = user.api.create_pat(["api:read", "api:write"])
    tokens = user.api.tokens
    ok(user.api.get("/api/v1/users/me"))
    ok(api.get("/api/v1/users/me", token=pat["token"]))

    ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"disabled": True}))

    for response in (user.api.get("/api/v1/users/me"), api.get("/api/v1/users/me", token=pat["token"]),
                     refresh(api, tokens["refresh_token"])):
        code = response.json()["code"]
        assert code in (30002, 30003), response.text
        refused(response, code)


# -- refresh --------------------------------------------------------------------------------------

def test_refresh_answers_new_tokens_for_the_same_session(api, user):
    first = user.api.tokens

    second = ok(refresh(api, first["refresh_token"]))

    assert second["token_type"] == "Bearer"
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert jwt_claims(second["access_token"])["sid"] == jwt_claims(first["access_token"])["sid"]
    assert ok(api.get("/api/v1/users/me", token=second["access_token"]))["id"] == user.id


def test_a_refresh_token_works_only_once(api, user):
    used = user.api.tokens["refresh_token"]
    ok(refresh(api, used))

    refused(refresh(api, used), 30002)


def test_presenting_a_used_refresh_token_revokes_the_whole_session(api, user, db):
    first = user.api.tokens
    second = ok(refresh(api, first["refresh_token"]))
    third = ok(refresh(api, second["refresh_token"]))
    ok(api.get("/api/v1/users/me", token=third["access_token"]))

    refused(refresh(api, first["refresh_token"]), 30002)

    refused(api.get("/api/v1/users/me", token=third["access_token"]), 30002)
    refused(refresh(api, third["refresh_token"]), 30002)
    assert db.sessions.find_one({"_id": jwt_claims(first["access_token"])["sid"]})["revoked"] is True


def test_a_replayed_refresh_token_does_not_end_the_users_other_sessions(api, user):
    other = api.session(user.username, user.password)
    ok(refresh(api, user.api.tokens["refresh_token"]))

    refused(refresh(api, user.api.tokens["refresh_token"]), 30002)

    assert ok(other.get("/api/v1/users/me"))["id"] == user.id


def test_concurrent_refreshes_with_one_refresh_token_succeed_at_most_once(api, user):
    token = user.api.tokens["refresh_token"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: refresh(api, token), range(8)))

    assert sum(a.status_code == 200 for a in answers) <= 1, [a.status_code for a in answers]
    for answer in answers:
        if answer.status_code != 200:
            refused(answer, 30002)


def test_sessions_and_login_counters_expire_through_ttl_indexes(db):
    for collection in (db.sessions, db.login_attempts):
        ttl = [index for index in collection.index_information().values() if "expireAfterSeconds" in index]
        assert [index["key"] for index in ttl] == [[("expires_at", 1)]], (collection.name, ttl)


@pytest.mark.parametrize("token, code", [("", 10001), ("not-a-jwt", 30002), ("a.b.c", 30002)])
def test_a_garbage_refresh_token_is_refused(api, token, code):
    refused(refresh(api, token), code)


# -- logout ---------------------------------------------------------------------------------------

def test_logout_revokes_the_session_so_its_tokens_are_refused(api, user, db):
    tokens = user.api.tokens

    assert ok(user.api.post("/api/v1/auth/logout")) is None

    refused(user.api.get("/api/v1/users/me"), 30002)
    refused(refresh(api, tokens["refresh_token"]), 30002)
    assert db.sessions.find_one({"_id": jwt_claims(tokens["access_token"])["sid"]})["revoked"] is True


def test_logout_ends_only_the_session_it_is_called_with(api, user):
    other = api.session(user.username, user.password)

    ok(user.api.post("/api/v1/auth/logout"))

    assert ok(other.get("/api/v1/users/me"))["id"] == user.id


def test_a_logout_on_one_node_is_honoured_by_every_node_at_once(second_node, user):
    elsewhere = user.api.with_token(user.api.token)
    elsewhere.url = second_node.url
    assert ok(elsewhere.get("/api/v1/users/me"))["id"] == user.id

    ok(user.api.post("/api/v1/auth/logout"))

    refused(elsewhere.get("/api/v1/users/me"), 30002)


def test_a_pat_revoked_on_one_node_is_refused_by_every_node_at_once(second_node, user):
    pat = user.api.create_pat(["api:read"])
    elsewhere = Api(second_node.url, pat["token"])
    assert ok(elsewhere.get("/api/v1/users/me"))["id"] == user.id

    ok(user.api.delete(f"/api/v1/users/me/pat/{pat['id']}"))

    refused(elsewhere.get("/api/v1/users/me"), 30002)


def test_logout_without_a_token_answers_30001(api):
    refused(api.post("/api/v1/auth/logout"), 30001)
