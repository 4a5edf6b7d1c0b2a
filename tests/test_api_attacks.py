"""Attacks on /api/v1 tokens: each is refused with the right code and changes nothing."""
import secrets
import time

import jwt
import pytest

from tests.support.api_client import assert_no_secrets, b64url, jwt_claims, ok, refused, strong_password, unique_name
from tests.support.registry_client import RegistryClient
from tests.support.token_keys import forge

ATTEMPT = {"display_name": "pwned"}


def attempt_write(api, token, user, db):
    """PUT /users/me with ``token``; answers the response after checking the profile did not change."""
    response = api.put("/api/v1/users/me", token=token, json=ATTEMPT)
    assert db.users.find_one({"_id": user.id})["display_name"] == user.username
    return response


def unsigned(claims, alg="none", signature=""):
    return f"{b64url({'alg': alg, 'typ': 'JWT'})}.{b64url(claims)}.{signature}"


# -- forged access tokens -------------------------------------------------------------------------

def test_a_token_forged_with_the_server_key_is_accepted_so_the_forgery_tests_below_are_meaningful(api, user, db):
    claims = {**jwt_claims(user.api.tokens["access_token"]), "jti": secrets.token_hex(8)}

    token = forge(claims, db)

    assert ok(api.get("/api/v1/users/me", token=token))["id"] == user.id


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "AAAA"])
def test_a_jwt_with_alg_none_is_refused_and_changes_nothing(api, user, db, alg, signature):
    token = unsigned(jwt_claims(user.api.tokens["access_token"]), alg, signature)

    refused(attempt_write(api, token, user, db), 30002)

    assert ok(user.api.get("/api/v1/users/me"))["id"] == user.id


def test_a_jwt_signed_with_another_key_is_refused_and_changes_nothing(api, user, db):
    token = jwt.encode(jwt_claims(user.api.tokens["access_token"]), secrets.token_hex(32), algorithm="HS256")

    refused(attempt_write(api, token, user, db), 30002)


def test_a_jwt_naming_the_administrator_signed_with_another_key_grants_nothing(api, user, db):
    admin = db.users.find_one({"username": "admin"})
    claims = {**jwt_claims(user.api.tokens["access_token"]), "sub": admin["_id"]}
    token = jwt.encode(claims, secrets.token_hex(32), algorithm="HS256")

    refused(api.get("/api/v1/users", token=token), 30002)
    refused(api.patch(f"/api/v1/users/{user.id}", token=token, json={"is_admin": True}), 30002)

    assert db.users.find_one({"_id": user.id})["is_admin"] is False


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_a_jwt_signed_with_the_server_key_under_another_algorithm_is_refused(api, user, db, alg):
    token = forge(jwt_claims(user.api.tokens["access_token"]), db, algorithm=alg)

    refused(attempt_write(api, token, user, db), 30002)


def test_an_expired_access_token_is_refused_and_changes_nothing(api, user, db):
    now = int(time.time())
    claims = {**jwt_claims(user.api.tokens["access_token"]), "iat": now - 7200, "nbf": now - 7200,
              "exp": now - 60, "jti": secrets.token_hex(8)}
    token = forge(claims, db)

    refused(attempt_write(api, token, user, db), 30002)


@pytest.mark.parametrize("change", [
    {"aud": "cyp-registry"}, {"iss": "someone-else"}, {"typ": "refresh"}, {"sid": "no-such-session"},
    {"sub": "no-such-user"},
])
def test_a_correctly_signed_token_with_a_wrong_claim_is_refused(api, user, db, change):
    claims = {**jwt_claims(user.api.tokens["access_token"]), "jti": secrets.token_hex(8), **change}
    token = forge(claims, db)

    refused(attempt_write(api, token, user, db), 30002)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", "Token abc", "bearer"])
def test_a_missing_or_malformed_authorization_header_answers_30001(api, header):
    refused(api.get("/api/v1/users/me", headers={"Authorization": header}), 30001)


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJ.eyJ.sig", "cyp_", "cyp_short"])
def test_a_garbage_bearer_token_answers_30002(api, token):
    refused(api.get("/api/v1/users/me", token=token), 30002)


def test_a_registry_token_is_not_an_api_token(registry, api, user, db):
    response = RegistryClient(registry.url, user.username, user.password).token_response()
    assert response.status_code == 200

    refused(attempt_write(api, response.json()["token"], user, db), 30002)


# -- refresh tokens -------------------------------------------------------------------------------

def test_a_replayed_refresh_token_is_refused_and_issues_nothing(api, user, db):
    used = user.api.tokens["refresh_token"]
    ok(api.post("/api/v1/auth/refresh", json={"refresh_token": used}))
    sessions = db.sessions.count_documents({"user_id": user.id})

    response = api.post("/api/v1/auth/refresh", json={"refresh_token": used})

    refused(response, 30002)
    assert db.sessions.count_documents({"user_id": user.id}) == sessions


def test_a_refresh_token_is_not_an_access_token(api, user, db):
    refused(attempt_write(api, user.api.tokens["refresh_token"], user, db), 30002)

    assert ok(user.api.get("/api/v1/users/me"))["id"] == user.id


def test_an_access_token_is_not_a_refresh_token(api, user):
    response = api.post("/api/v1/auth/refresh", json={"refresh_token": user.api.tokens["access_token"]})

    refused(response, 30002)
    assert ok(api.post("/api/v1/auth/refresh", json={"refresh_token": user.api.tokens["refresh_token"]}))


def test_a_refresh_token_forged_with_another_key_is_refused(api, user):
    claims = jwt_claims(user.api.tokens["refresh_token"])
    token = jwt.encode(claims, secrets.token_hex(32), algorithm="HS256")

    refused(api.post("/api/v1/auth/refresh", json={"refresh_token": token}), 30002)


def test_a_refresh_token_with_alg_none_is_refused(api, user):
    token = unsigned(jwt_claims(user.api.tokens["refresh_token"]))

    refused(api.post("/api/v1/auth/refresh", json={"refresh_token": token}), 30002)


# -- logged out -----------------------------------------------------------------------------------

def test_a_logged_out_access_token_is_refused_and_changes_nothing(api, user, db):
    token = user.api.tokens["access_token"]
    ok(user.api.post("/api/v1/auth/logout"))

    refused(attempt_write(api, token, user, db), 30002)
    refused(api.post("/api/v1/auth/logout", token=token), 30002)


# -- secrets in answers ---------------------------------------------------------------------------

def test_no_answer_about_users_contains_a_password_or_its_hash(registry, admin_api, api, make_user):
    member = make_user()
    created_password, new_password = strong_password(), strong_password()
    responses = [
        api.login_response(member.username, member.password),
        member.api.get("/api/v1/users/me"),
        member.api.put("/api/v1/users/me", json={"bio": "hello"}),
        member.api.get("/api/v1/users/me/token-info"),
        member.api.post("/api/v1/users/me/avatar", data=b"\x89PNG\r\n\x1a\n" + b"\x00" * 32),
        admin_api.get("/api/v1/users", params={"page_size": 100}),
        admin_api.get(f"/api/v1/users/{member.id}"),
        admin_api.patch(f"/api/v1/users/{member.id}", json={"bio": "patched"}),
        admin_api.post("/api/v1/users", json={"username": unique_name("h"), "password": created_password}),
        member.api.put("/api/v1/users/me/password",
                       json={"old_password": member.password, "new_password": new_password}),
    ]

    for response in responses:
        assert response.status_code == 200, response.text
        assert_no_secrets(response)
        for password in (member.password, created_password, new_password):
            assert password not in response.text
