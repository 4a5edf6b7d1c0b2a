"""The bootstrap administrator: its one-time password, printed once and answered once, and what
``must_change_password`` says about an account."""
import re

import pytest
import requests

from tests.support.api_client import Api, ok, strong_password
from tests.support.processes import RegistryServer
from tests.support.registry_client import RegistryClient

BANNER_RE = re.compile(r"one-time password: (\S+)")


def envelope(response, status):
    body = response.json()
    assert response.status_code == status, (response.status_code, response.text)
    assert set(body) >= {"code", "message", "data", "timestamp", "trace_id"}, body
    return body


@pytest.fixture
def generated_password_server(mongo, tmp_path):
    """A first start with no configured administrator password: the server makes one up and prints it."""
    server = RegistryServer(mongo.uri, tmp_path / "registry", env={"CYP_BOOTSTRAP_ADMIN_PASSWORD": ""}).start()
    yield server
    server.stop()


def printed_passwords(server):
    return BANNER_RE.findall(server.log_text())


# --- the one-time password ----------------------------------------------------------------------

def test_the_first_start_prints_the_generated_admin_password_exactly_once(generated_password_server):
    passwords = printed_passwords(generated_password_server)

    assert len(passwords) == 1, generated_password_server.log_text()
    assert generated_password_server.log_text().count(passwords[0]) == 1


def test_the_printed_bootstrap_password_logs_in_as_admin(generated_password_server):
    [password] = printed_passwords(generated_password_server)

    response = RegistryClient(generated_password_server.url, "admin", password).token_response()

    assert response.status_code == 200, response.text


def test_a_restart_against_the_same_database_prints_no_password(generated_password_server, mongo, tmp_path):
    [password] = printed_passwords(generated_password_server)
    generated_password_server.stop()
    restarted = RegistryServer(mongo.uri, tmp_path / "registry", db_name=generated_password_server.db_name,
                               env={"CYP_BOOTSTRAP_ADMIN_PASSWORD": ""}).start()
    try:
        log = restarted.log_text()
    finally:
        restarted.stop()

    assert "one-time password" not in log
    assert password not in log


def test_default_admin_once_answers_the_generated_password(generated_password_server):
    [password] = printed_passwords(generated_password_server)

    response = requests.get(f"{generated_password_server.url}/api/v1/auth/default-admin-once", timeout=30)
    body = envelope(response, 200)

    assert body["code"] == 20000
    assert (body["data"]["username"], body["data"]["password"]) == ("admin", password)


def test_default_admin_once_answers_410_the_second_time(generated_password_server):
    url = f"{generated_password_server.url}/api/v1/auth/default-admin-once"
    first = requests.get(url, timeout=30)

    second = requests.get(url, timeout=30)
    body = envelope(second, 410)

    assert first.status_code == 200
    assert 20000 < body["code"] < 30000
    assert body["data"] is None


def test_default_admin_once_gives_a_null_password_when_it_was_configured(own_registry):
    response = requests.get(f"{own_registry.url}/api/v1/auth/default-admin-once", timeout=30)
    body = envelope(response, 200)

    assert body["data"]["username"] == "admin"
    assert body["data"]["password"] is None


def test_default_admin_once_is_gone_after_a_restart_against_the_same_database(generated_password_server, mongo,
                                                                             tmp_path):
    generated_password_server.stop()
    restarted = RegistryServer(mongo.uri, tmp_path / "registry", db_name=generated_password_server.db_name,
                               env={"CYP_BOOTSTRAP_ADMIN_PASSWORD": ""}).start()
    try:
        response = requests.get(f"{restarted.url}/api/v1/auth/default-admin-once", timeout=30)
    finally:
        restarted.stop()

    assert envelope(response, 410)["code"] == 20003


# --- must_change_password -----------------------------------------------------------------------

def test_a_generated_password_must_be_changed(generated_password_server):
    [password] = printed_passwords(generated_password_server)
    admin = Api(generated_password_server.url).session("admin", password)

    assert ok(admin.get("/api/v1/users/me"))["must_change_password"] is True
    hint = requests.get(f"{generated_password_server.url}/api/v1/auth/default-admin-once", timeout=30)
    assert envelope(hint, 200)["data"]["must_change_password"] is True


def test_changing_the_password_clears_must_change_password(generated_password_server):
    [password] = printed_passwords(generated_password_server)
    admin = Api(generated_password_server.url).session("admin", password)

    ok(admin.put("/api/v1/users/me/password", json={"old_password": password, "new_password": strong_password()}))

    assert ok(admin.get("/api/v1/users/me"))["must_change_password"] is False


def test_a_configured_bootstrap_password_need_not_be_changed(admin_api):
    assert ok(admin_api.get("/api/v1/users/me"))["must_change_password"] is False


def test_a_password_an_administrator_sets_for_someone_else_must_be_changed(registry, admin_api, user):
    password = strong_password()

    ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"password": password}))

    assert ok(Api(registry.url).session(user.username, password).get("/api/v1/users/me"))["must_change_password"]


def test_an_administrator_setting_their_own_password_keeps_their_session(registry, make_user):
    admin = make_user(is_admin=True)
    password = strong_password()

    ok(admin.api.patch(f"/api/v1/users/{admin.id}", json={"password": password}))

    assert ok(admin.api.get("/api/v1/users/me"))["must_change_password"] is False
