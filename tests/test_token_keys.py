"""Token signing keys: every token names its key (``kid``), a rotation (``server.py keys rotate``, beside running
servers) signs new tokens with a new key while the previous one keeps verifying the tokens it signed, on every
node of one database; a token of an unknown or removed key is refused; clocks may differ by up to 60 s."""
import datetime
import json
import secrets
import time

import jwt
import pymongo
import pytest
import requests

from tests.support.api_client import Api, jwt_claims, ok, refused
from tests.support.clients import run_server_cli, server_env, wait_until
from tests.support.processes import RegistryServer
from tests.support.registry_client import RegistryClient
from tests.support.token_keys import current_key

# A node reads the key set this often (services/tokens.py KEY_REFRESH_SECONDS), plus a margin for a busy machine.
KEY_REFRESH_BOUND = 5 + 3


@pytest.fixture(scope="module")
def nodes(mongo, tmp_path_factory):
    """Two servers (two nodes) on one fresh database."""
    first = RegistryServer(mongo.uri, tmp_path_factory.mktemp("node-a")).start()
    second = RegistryServer(mongo.uri, tmp_path_factory.mktemp("node-b"), db_name=first.db_name,
                            env={"CYP_BOOTSTRAP_ADMIN_PASSWORD": first.admin_password})
    second.admin_password = first.admin_password
    second.start()
    yield first, second
    second.stop()
    first.stop()


@pytest.fixture
def db(mongo, nodes):
    client = pymongo.MongoClient(mongo.uri, tz_aware=True)
    yield client[nodes[0].db_name]
    client.close()


def keys_command(node, *args):
    """``server.py keys ARGS`` beside the running nodes, on their database: ``(status, JSON lines, stderr)``."""
    result = run_server_cli("keys", *args, env=server_env(CYP_MONGO_URI=node.env["CYP_MONGO_URI"],
                                                          CYP_MONGO_DB=node.db_name))
    lines = [json.loads(line) for line in result.stdout.splitlines()] if result.returncode == 0 else []
    return result.returncode, lines, result.stderr


def rotate(node):
    status, [line], stderr = keys_command(node, "rotate")
    assert status == 0, stderr
    return line


def registry_token(node):
    return RegistryClient(node.url, "admin", node.admin_password).token()


def kid_of(token):
    return jwt.get_unverified_header(token).get("kid")


def v2_status(node, token):
    return requests.get(f"{node.url}/v2/", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def token_signed_by_new_key(node, kid):
    """A registry token ``node`` issues once it signs with key ``kid`` (it reads a rotation within its refresh)."""
    return wait_until(lambda: (token := registry_token(node)) and kid_of(token) == kid and token, KEY_REFRESH_BOUND)


def assert_refused_at_v2(node, token):
    response = requests.get(f"{node.url}/v2/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert response.headers["WWW-Authenticate"] == f'Bearer realm="{node.url}/auth/token",service="cyp-registry"'


def shifted(token, db, seconds):
    """``token``'s claims with iat and nbf moved ``seconds`` into the future, signed with the current key."""
    claims = jwt_claims(token)
    now = int(time.time())
    claims.update(iat=now + seconds, nbf=now + seconds, jti=secrets.token_hex(8))
    kid, secret = current_key(db)
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})


# -- kid and rotation -----------------------------------------------------------------------------------

def test_a_token_names_the_current_signing_key(nodes, db):
    first, _ = nodes

    assert kid_of(registry_token(first)) == current_key(db)[0]
    assert kid_of(Api(first.url).login("admin", first.admin_password)["access_token"]) == current_key(db)[0]


def test_tokens_issued_before_a_rotation_still_verify_after_it_on_this_node_and_another(nodes):
    first, second = nodes
    before = registry_token(first)
    session = Api(first.url).login("admin", first.admin_password)

    new_kid = rotate(first)["kid"]
    token_signed_by_new_key(first, new_kid)
    token_signed_by_new_key(second, new_kid)

    assert kid_of(before) != new_kid
    assert v2_status(first, before) == v2_status(second, before) == 200
    for node in nodes:
        assert ok(Api(node.url, token=session["access_token"]).get("/api/v1/users/me"))["username"] == "admin"
    assert ok(Api(second.url).post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}))


def test_tokens_issued_after_a_rotation_carry_the_new_kid_and_verify_on_every_node_at_once(nodes, db):
    first, second = nodes

    line = rotate(first)
    after = token_signed_by_new_key(first, line["kid"])

    assert line["current"] is True and line["previous"] != line["kid"] and current_key(db)[0] == line["kid"]
    # The other node may not have read the rotation yet: a kid it does not know makes it read the keys again.
    assert v2_status(second, after) == 200


def test_a_key_added_elsewhere_a_moment_ago_verifies_at_once_on_every_node(nodes, db):
    """A node does not wait for its next read of the key set: a kid it does not know makes it read again."""
    kid, secret = secrets.token_hex(8), secrets.token_hex(32)
    claims = jwt_claims(registry_token(nodes[0]))
    db.meta.update_one({"_id": "token_keys"}, {"$push": {"keys": {
        "kid": kid, "secret": secret, "created_at": datetime.datetime.now(datetime.timezone.utc), "retired_at": None}}})

    token = jwt.encode({**claims, "jti": secrets.token_hex(8)}, secret, algorithm="HS256", headers={"kid": kid})

    assert [v2_status(node, token) for node in nodes] == [200, 200]


def test_a_token_naming_an_unknown_key_is_refused_on_both_apis(nodes, db):
    first, _ = nodes
    session = Api(first.url).login("admin", first.admin_password)
    claims = jwt_claims(registry_token(first))
    _, secret = current_key(db)

    forged = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": secrets.token_hex(8)})
    forged_api = jwt.encode(jwt_claims(session["access_token"]), secret, algorithm="HS256",
                            headers={"kid": "no-such-key"})

    assert_refused_at_v2(first, forged)
    refused(Api(first.url, token=forged_api).get("/api/v1/users/me"), 30002)


def test_a_token_without_a_kid_is_refused_on_a_database_that_never_had_an_unnamed_key(nodes, db):
    first, _ = nodes
    _, secret = current_key(db)

    unnamed = jwt.encode(jwt_claims(registry_token(first)), secret, algorithm="HS256")

    assert_refused_at_v2(first, unnamed)


def test_the_tokens_of_a_removed_key_are_refused_on_every_node(nodes):
    first, second = nodes
    old = registry_token(first)
    session = Api(first.url).login("admin", first.admin_password)
    assert v2_status(second, old) == 200  # remembered as verified there too

    new_kid = rotate(first)["kid"]
    status, [line], stderr = keys_command(first, "remove", kid_of(old))
    token_signed_by_new_key(first, new_kid)

    assert status == 0 and line == {"kid": kid_of(old), "removed": True}, stderr
    assert wait_until(lambda: v2_status(first, old) == 401 and v2_status(second, old) == 401, KEY_REFRESH_BOUND)
    assert_refused_at_v2(second, old)
    refused(Api(second.url, token=session["access_token"]).get("/api/v1/users/me"), 30002)


# -- clock skew -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, accepted", [(50, True), (120, False)])
def test_a_registry_token_issued_in_the_future_by_a_skewed_clock(nodes, db, seconds, accepted):
    first, _ = nodes

    token = shifted(registry_token(first), db, seconds)

    if accepted:
        assert v2_status(first, token) == 200
    else:
        assert_refused_at_v2(first, token)


@pytest.mark.parametrize("seconds, accepted", [(50, True), (120, False)])
def test_an_api_token_issued_in_the_future_by_a_skewed_clock(nodes, db, seconds, accepted):
    first, _ = nodes
    session = Api(first.url).login("admin", first.admin_password)

    response = Api(first.url, token=shifted(session["access_token"], db, seconds)).get("/api/v1/users/me")

    if accepted:
        assert ok(response)["username"] == "admin"
    else:
        refused(response, 30002)


@pytest.mark.parametrize("seconds, accepted", [(30, True), (120, False)])
def test_a_token_just_expired_by_another_clock_is_accepted_within_the_skew(nodes, db, seconds, accepted):
    first, _ = nodes
    claims = jwt_claims(registry_token(first))
    now = int(time.time())
    claims.update(iat=now - 600, nbf=now - 600, exp=now - seconds, jti=secrets.token_hex(8))
    kid, secret = current_key(db)

    token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})

    assert v2_status(first, token) == (200 if accepted else 401)


# -- the command ----------------------------------------------------------------------------------------

def test_keys_list_shows_each_key_without_its_secret(nodes, db):
    first, _ = nodes
    rotate(first)

    status, lines, stderr = keys_command(first, "list")

    stored = db.meta.find_one({"_id": "token_keys"})
    assert status == 0, stderr
    assert [line["kid"] for line in lines] == [key["kid"] for key in stored["keys"]]
    assert [line["kid"] for line in lines if line["current"]] == [stored["current"]]
    assert all(line["retired_at"] and line["verifies_until"] for line in lines if not line["current"])
    assert not any(key["secret"] in json.dumps(lines) for key in stored["keys"])


def test_removing_the_current_key_exits_1_and_keeps_it(nodes, db):
    first, _ = nodes
    kid = current_key(db)[0]

    status, _, stderr = keys_command(first, "remove", kid)

    assert status == 1 and "current signing key" in stderr
    assert current_key(db)[0] == kid


def test_removing_an_unknown_key_exits_1_naming_it(nodes):
    status, _, stderr = keys_command(nodes[0], "remove", "no-such-kid")

    assert status == 1 and "no-such-kid" in stderr


@pytest.mark.parametrize("args", [(), ("rotate", "extra"), ("remove",), ("bogus",)])
def test_a_bad_keys_command_exits_2(nodes, args):
    assert keys_command(nodes[0], *args)[0] == 2


@pytest.mark.parametrize("action", ["list", "rotate", "remove"])
def test_help_of_each_keys_command_exits_0(action):
    result = run_server_cli("keys", action, "--help")

    assert result.returncode == 0 and "usage:" in result.stdout
