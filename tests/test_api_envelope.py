"""/api/v1: every answer, success or error, is the envelope; bodies are schema-checked; routes and methods."""
import json
import secrets
import time

import pytest

from tests.support.api_client import assert_envelope, ok, refused

ENVELOPE_FIELDS = {"code", "message", "data", "timestamp", "trace_id"}


# -- the envelope ---------------------------------------------------------------------------------

def test_a_success_answer_is_the_envelope_with_code_20000_and_the_trace_id_header(admin_api):
    response = admin_api.get("/api/v1/users/me")

    body = assert_envelope(response, 200, 20000)
    assert set(body) == ENVELOPE_FIELDS
    assert body["message"] == "success"
    assert body["data"]["username"] == "admin"
    assert body["trace_id"] == response.headers["X-Trace-Id"]


def test_an_error_answer_is_the_envelope_with_null_data_and_the_trace_id_header(api):
    response = api.get("/api/v1/users/me")

    body = assert_envelope(response, 401, 30001)
    assert set(body) == ENVELOPE_FIELDS
    assert body["data"] is None
    assert body["trace_id"] == response.headers["X-Trace-Id"]


def test_the_log_lines_of_a_request_carry_its_trace_id(registry, api):
    trace = "logtrace-" + secrets.token_hex(8)

    response = api.get("/api/v1/users/me", headers={"X-Request-Id": trace})

    refused(response, 30001)
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in registry.log_text().splitlines() if trace in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert lines, "no log line carries the trace id"
    assert all(line.get("trace_id") == trace for line in lines)
    assert any(line.get("path") == "/api/v1/users/me" and line.get("status") == 401 for line in lines)


def test_every_request_gets_its_own_trace_id(admin_api):
    first = admin_api.get("/api/v1/users/me").json()["trace_id"]
    second = admin_api.get("/api/v1/users/me").json()["trace_id"]

    assert first != second


def test_a_well_formed_request_id_from_the_client_becomes_the_trace_id(admin_api):
    trace = "client-trace-0123456789"

    response = admin_api.get("/api/v1/users/me", headers={"X-Request-Id": trace})

    assert ok(response)["username"] == "admin"
    assert response.json()["trace_id"] == trace == response.headers["X-Trace-Id"]


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/no-such-endpoint"),
    ("POST", "/api/v1/auth/no-such-endpoint"),
    ("GET", "/api/v1/users/me/no-such-thing"),
    ("GET", "/api/v2/users"),
    ("DELETE", "/api/v1"),
])
def test_an_unknown_route_answers_20001_in_the_envelope(admin_api, method, path):
    refused(admin_api.request(method, path), 20001)


def test_an_unknown_path_outside_the_api_answers_in_the_envelope_too(api):
    refused(api.get("/no-such-page"), 20001)


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/auth/login"),
    ("DELETE", "/api/v1/auth/login"),
    ("GET", "/api/v1/auth/refresh"),
    ("PATCH", "/api/v1/users/me"),
    ("DELETE", "/api/v1/users/me"),
    ("POST", "/api/v1/users/me/token-info"),
    ("PUT", "/api/v1/users/me/pat"),
])
def test_a_method_the_route_does_not_have_answers_20004_in_the_envelope(admin_api, method, path):
    refused(admin_api.request(method, path, json={}), 20004)


# -- request bodies -------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b'{"username": "admin", ', b"not json at all", b"\xff\xfe\x00garbage", b"{'a': 1}"])
def test_a_malformed_json_body_answers_10002_never_500(api, body):
    response = api.post("/api/v1/auth/login", data=body, headers={"Content-Type": "application/json"})

    refused(response, 10002)


@pytest.mark.parametrize("body", [b"[" * 100000, b'{"a":' * 50000])
def test_a_deeply_nested_json_body_answers_a_parameter_error_never_500(api, body):
    response = api.post("/api/v1/auth/login", data=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    refused(response, response.json()["code"])
    assert response.json()["code"] in (10001, 10002)


def test_a_deeply_nested_json_update_answers_a_parameter_error_and_changes_nothing(user, db):
    before = db.users.find_one({"_id": user.id})

    response = user.api.put("/api/v1/users/me", data=b"[" * 100000, headers={"Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    assert response.json()["code"] in (10001, 10002)
    refused(response, response.json()["code"])
    assert db.users.find_one({"_id": user.id}) == before


def test_a_json_string_with_a_lone_surrogate_answers_a_parameter_error_never_500(user, db):
    before = db.users.find_one({"_id": user.id})

    response = user.api.put("/api/v1/users/me", data=b'{"display_name": "\\ud800"}',
                            headers={"Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    assert response.json()["code"] in (10001, 10002)
    refused(response, response.json()["code"])
    assert db.users.find_one({"_id": user.id}) == before


def test_an_empty_body_where_json_is_required_answers_10002(api):
    refused(api.post("/api/v1/auth/login", data=b""), 10002)


def test_a_malformed_json_body_on_an_authenticated_endpoint_changes_nothing(user, db):
    response = user.api.put("/api/v1/users/me", data=b'{"display_name": "x"',
                            headers={"Content-Type": "application/json"})

    refused(response, 10002)
    assert db.users.find_one({"_id": user.id})["display_name"] == user.username


@pytest.mark.parametrize("body, field", [
    ({"username": "admin", "password": "x", "role": "superuser"}, "role"),
    ({"username": 42, "password": "x"}, "username"),
    ({"username": "admin", "password": ["x"]}, "password"),
    ({"username": "a" * 65, "password": "x"}, "username"),
    ({"username": "admin", "password": "p" * 257}, "password"),
    ({"username": "admin"}, "password"),
    ({"password": "x"}, "username"),
    ({"username": "", "password": "x"}, "username"),
])
def test_a_body_breaking_its_schema_answers_10001_naming_the_field(api, body, field):
    message = refused(api.post("/api/v1/auth/login", json=body), 10001)

    assert field in message


def test_a_json_body_that_is_not_an_object_answers_10001(api):
    refused(api.post("/api/v1/auth/login", json=["admin", "password"]), 10001)


@pytest.mark.parametrize("body, field", [
    ({"bio": "b" * 501}, "bio"),
    ({"display_name": 7}, "display_name"),
    ({"is_admin": True}, "is_admin"),
])
def test_a_schema_error_on_an_update_names_the_field_and_changes_nothing(user, db, body, field):
    before = db.users.find_one({"_id": user.id})

    message = refused(user.api.put("/api/v1/users/me", json=body), 10001)

    assert field in message
    after = db.users.find_one({"_id": user.id})
    assert after == before


def test_a_body_over_256_kib_answers_10003_with_413(api):
    body = b'{"username": "admin", "password": "' + b"p" * (256 * 1024 + 10) + b'"}'

    refused(api.post("/api/v1/auth/login", data=body, headers={"Content-Type": "application/json"}), 10003)


def test_an_oversized_update_answers_10003_and_changes_nothing(user, db):
    before = db.users.find_one({"_id": user.id})

    response = user.api.put("/api/v1/users/me", json={"bio": "b" * (300 * 1024)})

    refused(response, 10003)
    assert db.users.find_one({"_id": user.id}) == before
