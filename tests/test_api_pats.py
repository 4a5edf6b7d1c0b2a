"""Personal access tokens: created once, stored hashed, scoped on /api/v1, usable as the registry password."""
import datetime
import hashlib
import secrets
import time

import pytest
import requests

from tests.support.api_client import fresh_address, jwt_claims, ok, refused
from tests.support.clients import Skopeo, layout_manifest
from tests.support.oci_layout import make_image_layout
from tests.support.registry_client import RegistryClient

PAT_FIELDS = {"id", "name", "scopes", "prefix", "expires_at", "created_at", "last_used_at"}


def list_pats(api):
    return api.get("/api/v1/users/me/pat")


# -- creating and listing -------------------------------------------------------------------------

def test_creating_a_pat_answers_its_secret_once_with_the_cyp_prefix(user):
    created = user.api.create_pat(["api:read", "registry:pull"], name="laptop")

    assert created["token"].startswith("cyp_") and len(created["token"]) >= 36
    assert created["name"] == "laptop"
    assert sorted(created["scopes"]) == ["api:read", "registry:pull"]
    assert created["expires_at"] is None and created["last_used_at"] is None
    assert created["created_at"]
    listed = ok(list_pats(user.api))
    assert [pat["id"] for pat in listed] == [created["id"]]
    assert "token" not in listed[0]


def test_the_pat_list_never_contains_a_secret_or_its_hash(user):
    secrets_ = [user.api.create_pat([scope])["token"] for scope in ("api:read", "registry:push")]

    response = list_pats(user.api)

    pats = ok(response)
    assert len(pats) == 2
    for pat in pats:
        assert set(pat) == PAT_FIELDS
    for secret in secrets_:
        assert secret not in response.text
        assert secret[4:] not in response.text
        assert hashlib.sha256(secret.encode()).hexdigest() not in response.text
    assert "secret" not in response.text and "hash" not in response.text


def test_only_a_hash_of_the_secret_is_stored(user, db):
    created = user.api.create_pat(["api:read"])
    secret = created["token"]

    stored = db.personal_access_tokens.find_one({"_id": created["id"]})

    assert stored["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    text = repr(stored)
    assert secret not in text and secret[4:] not in text
    for value in stored.values():
        if isinstance(value, str) and value != stored["secret_hash"]:
            assert len(value) < 12 or value not in secret, (value, "a piece of the secret is stored")


def test_each_user_lists_only_their_own_pats(make_user):
    alice, bob = make_user(), make_user()
    alice.api.create_pat(["api:read"])

    assert ok(list_pats(bob.api)) == []


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "scopes": ["root"]}, "scopes"),
    ({"name": "x", "scopes": []}, "scopes"),
    ({"name": "x", "scopes": ["api:read", "api:read"]}, "scopes"),
    ({"name": "x", "scopes": "api:read"}, "scopes"),
    ({"name": "", "scopes": ["api:read"]}, "name"),
    ({"name": "n" * 65, "scopes": ["api:read"]}, "name"),
    ({"scopes": ["api:read"]}, "name"),
    ({"name": "x", "scopes": ["api:read"], "owner": "admin"}, "owner"),
    ({"name": "x", "scopes": ["api:read"], "expires_at": True}, "expires_at"),
])
def test_an_invalid_pat_request_answers_10001_naming_the_field_and_creates_nothing(user, db, body, field):
    message = refused(user.api.post("/api/v1/users/me/pat", json=body), 10001)

    assert field in message
    assert db.personal_access_tokens.count_documents({"user_id": user.id}) == 0


@pytest.mark.parametrize("expires_at", [
    "2020-01-01T00:00:00Z", "2020-01-01T00:00:00+00:00", 946684800, "tomorrow", "2030-01-01T00:00:00",
])
def test_a_pat_expiry_in_the_past_or_unreadable_answers_10001_and_creates_nothing(user, db, expires_at):
    response = user.api.post("/api/v1/users/me/pat", json={"name": "x", "scopes": ["api:read"],
                                                           "expires_at": expires_at})

    assert "expires_at" in refused(response, 10001)
    assert db.personal_access_tokens.count_documents({"user_id": user.id}) == 0


@pytest.mark.parametrize("expires_at", ["9999-12-31T23:59:59-14:00", 10 ** 12, 2 ** 62])
def test_a_pat_expiry_beyond_what_can_be_stored_answers_10001_never_500(user, db, expires_at):
    response = user.api.post("/api/v1/users/me/pat", json={"name": "x", "scopes": ["api:read"],
                                                           "expires_at": expires_at})

    assert "expires_at" in refused(response, 10001)
    assert db.personal_access_tokens.count_documents({"user_id": user.id}) == 0


def test_a_pat_with_a_future_expiry_reports_it(user):
    created = user.api.create_pat(["api:read"], expires_at="2099-01-01T00:00:00Z")

    assert created["expires_at"].startswith("2099-01-01T00:00:00")
    assert ok(list_pats(user.api))[0]["expires_at"].startswith("2099-01-01T00:00:00")


# -- using a PAT on /api/v1 -----------------------------------------------------------------------

def test_a_pat_with_api_read_can_read_but_not_write(api, user, db):
    pat = user.api.create_pat(["api:read"])
    before = db.users.find_one({"_id": user.id})

    assert ok(api.get("/api/v1/users/me", token=pat["token"]))["id"] == user.id
    refused(api.put("/api/v1/users/me", token=pat["token"], json={"display_name": "changed by pat"}), 30003)

    after = db.users.find_one({"_id": user.id})
    assert after["display_name"] == before["display_name"]


def test_a_pat_with_api_write_can_write(api, user, db):
    pat = user.api.create_pat(["api:read", "api:write"])

    ok(api.put("/api/v1/users/me", token=pat["token"], json={"display_name": "changed by pat"}))

    assert db.users.find_one({"_id": user.id})["display_name"] == "changed by pat"


@pytest.mark.parametrize("scopes", [["registry:pull"], ["registry:push"], ["api:write"]])
def test_a_pat_without_api_read_cannot_read_the_api(api, user, scopes):
    pat = user.api.create_pat(scopes)

    refused(api.get("/api/v1/users/me", token=pat["token"]), 30003)


def test_using_a_pat_records_last_used_at(api, user, db):
    pat = user.api.create_pat(["api:read"])
    assert ok(list_pats(user.api))[0]["last_used_at"] is None
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)

    ok(api.get("/api/v1/users/me", token=pat["token"]))

    listed = ok(list_pats(user.api))[0]["last_used_at"]
    assert listed is not None
    assert datetime.datetime.fromisoformat(listed.replace("Z", "+00:00")) >= started
    assert db.personal_access_tokens.find_one({"_id": pat["id"]})["last_used_at"] >= started


def test_deleting_a_pat_revokes_it_at_once(api, user, db):
    pat = user.api.create_pat(["api:read"])
    ok(api.get("/api/v1/users/me", token=pat["token"]))

    assert ok(user.api.delete(f"/api/v1/users/me/pat/{pat['id']}")) is None

    refused(api.get("/api/v1/users/me", token=pat["token"]), 30002)
    assert ok(list_pats(user.api)) == []
    assert db.personal_access_tokens.find_one({"_id": pat["id"]})["revoked"] is True


def test_deleting_a_pat_twice_or_an_unknown_one_answers_20001(user):
    pat = user.api.create_pat(["api:read"])
    ok(user.api.delete(f"/api/v1/users/me/pat/{pat['id']}"))

    refused(user.api.delete(f"/api/v1/users/me/pat/{pat['id']}"), 20001)
    refused(user.api.delete("/api/v1/users/me/pat/no-such-pat"), 20001)


def test_a_user_cannot_revoke_another_users_pat(api, make_user):
    owner, other = make_user(), make_user()
    pat = owner.api.create_pat(["api:read"])

    refused(other.api.delete(f"/api/v1/users/me/pat/{pat['id']}"), 20001)

    assert ok(api.get("/api/v1/users/me", token=pat["token"]))["id"] == owner.id


def test_an_expired_pat_is_refused(api, user):
    expires = int(time.time()) + 3
    pat = user.api.create_pat(["api:read"], expires_at=expires)
    ok(api.get("/api/v1/users/me", token=pat["token"]))

    time.sleep(max(0.0, expires - time.time()) + 0.5)

    refused(api.get("/api/v1/users/me", token=pat["token"]), 30002)


def test_a_made_up_pat_is_refused(api):
    refused(api.get("/api/v1/users/me", token="cyp_" + secrets.token_urlsafe(32)), 30002)


# -- PATs at the registry -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def skopeo(tmp_path_factory):
    return Skopeo(tmp_path_factory.mktemp("pat-skopeo"))


@pytest.fixture
def layout(tmp_path):
    path = tmp_path / "image"
    make_image_layout(path, [1024 * 1024], seed=secrets.token_hex(4))
    descriptor, _, manifest = layout_manifest(path)
    return path, descriptor, manifest


def skopeo_push(skopeo, registry, layout_path, repo, creds):
    return skopeo.run("copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds,
                      f"oci:{layout_path}:v1", f"docker://{registry.host}/{repo}:v1", check=False)


def assert_nothing_pushed(admin, repo, manifest):
    scope = f"repository:{repo}:pull"
    assert admin.request("GET", f"/v2/{repo}/manifests/v1", scope).status_code == 404
    for blob in [manifest["config"], *manifest["layers"]]:
        assert admin.request("HEAD", f"/v2/{repo}/blobs/{blob['digest']}", scope).status_code == 404


def token_endpoint(registry, credentials, *scopes):
    return RegistryClient(registry.url, *credentials, address=fresh_address()).token_response(*scopes)


def granted_actions(token, repo):
    return sorted({action for entry in jwt_claims(token).get("access") or [] if entry["name"] == repo
                   for action in entry["actions"]})


def test_skopeo_pushes_with_a_registry_push_pat_as_the_password(registry, admin, admin_api, skopeo, layout, repo):
    path, descriptor, _ = layout
    pat = admin_api.create_pat(["registry:push"])

    result = skopeo_push(skopeo, registry, path, repo, f"admin:{pat['token']}")

    assert result.returncode == 0, result.stderr
    response = admin.request("GET", f"/v2/{repo}/manifests/v1", f"repository:{repo}:pull",
                             headers={"Accept": descriptor["mediaType"]})
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == descriptor["digest"]
    listed = {p["id"]: p for p in ok(list_pats(admin_api))}
    assert listed[pat["id"]]["last_used_at"] is not None


def test_skopeo_cannot_push_with_a_pull_only_pat_and_nothing_is_stored(registry, admin, admin_api, skopeo,
                                                                        layout, repo):
    path, _, manifest = layout
    pat = admin_api.create_pat(["registry:pull"])

    result = skopeo_push(skopeo, registry, path, repo, f"admin:{pat['token']}")

    assert result.returncode != 0
    assert "denied" in result.stderr.lower() or "unauthorized" in result.stderr.lower(), result.stderr
    assert_nothing_pushed(admin, repo, manifest)


def test_skopeo_cannot_push_with_a_revoked_pat_and_nothing_is_stored(registry, admin, admin_api, skopeo,
                                                                      layout, repo):
    path, _, manifest = layout
    pat = admin_api.create_pat(["registry:push"])
    ok(admin_api.delete(f"/api/v1/users/me/pat/{pat['id']}"))

    result = skopeo_push(skopeo, registry, path, repo, f"admin:{pat['token']}")

    assert result.returncode != 0
    assert "unauthorized" in result.stderr.lower(), result.stderr
    assert_nothing_pushed(admin, repo, manifest)


def test_the_token_endpoint_refuses_a_revoked_pat_with_401(registry, admin_api, repo):
    pat = admin_api.create_pat(["registry:push"])
    assert token_endpoint(registry, ("admin", pat["token"]), f"repository:{repo}:pull").status_code == 200
    ok(admin_api.delete(f"/api/v1/users/me/pat/{pat['id']}"))

    response = token_endpoint(registry, ("admin", pat["token"]), f"repository:{repo}:pull")

    assert response.status_code == 401
    assert "token" not in response.json()


def test_the_token_endpoint_grants_a_pull_only_pat_no_push(registry, admin_api, repo):
    pat = admin_api.create_pat(["registry:pull"])

    response = token_endpoint(registry, ("admin", pat["token"]), f"repository:{repo}:pull,push")

    assert response.status_code == 200
    assert granted_actions(response.json()["token"], repo) == ["pull"]


def test_the_token_endpoint_grants_an_api_only_pat_nothing_in_the_registry(registry, admin_api, repo):
    pat = admin_api.create_pat(["api:read", "api:write"])

    response = token_endpoint(registry, ("admin", pat["token"]), f"repository:{repo}:pull,push")

    assert response.status_code == 200
    assert granted_actions(response.json()["token"], repo) == []


def test_a_registry_token_from_a_pat_stops_working_when_the_pat_is_revoked(registry, admin_api, repo):
    pat = admin_api.create_pat(["registry:push"])
    token = token_endpoint(registry, ("admin", pat["token"]), f"repository:{repo}:pull").json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{registry.url}/v2/{repo}/tags/list", headers=headers, timeout=30).status_code in (200, 404)
    ok(admin_api.delete(f"/api/v1/users/me/pat/{pat['id']}"))

    response = requests.get(f"{registry.url}/v2/{repo}/tags/list", headers=headers, timeout=30)

    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_a_pat_is_not_a_password_for_another_user(registry, make_user, repo):
    owner, other = make_user(), make_user()
    pat = owner.api.create_pat(["registry:push"])

    response = token_endpoint(registry, (other.username, pat["token"]), f"repository:{repo}:pull")

    assert response.status_code == 401
