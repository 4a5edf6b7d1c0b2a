"""The Docker token flow under /v2/: challenges, the token endpoint, forged tokens, names, the API version header."""
import http.client
import json

import jwt
import pytest
import requests

from tests.support.api_client import b64url, jwt_claims
from tests.support.manifests import API_VERSION_HEADER, assert_registry_error, pull, push, push_blob, push_image, sha256
from tests.support.registry_client import RegistryClient


def with_token(client, path, token, method="GET"):
    return client.request(method, path, headers={"Authorization": f"Bearer {token}"})


def challenge(registry, scope):
    return f'Bearer realm="{registry.url}/auth/token",service="cyp-registry",scope="{scope}"'


# -- challenges -----------------------------------------------------------------------------------

def test_an_anonymous_pull_of_a_private_repository_is_challenged_for_a_pull_token(admin, anonymous, registry, repo):
    push_image(admin, repo, "v1")

    response = anonymous.request("GET", f"/v2/{repo}/manifests/v1")

    assert_registry_error(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"] == challenge(registry, pull(repo))


def test_an_anonymous_client_cannot_tell_a_missing_project_from_a_private_one(anonymous, registry, repo):
    missing = repo.replace("/", "-missing/", 1)

    response = anonymous.request("GET", f"/v2/{missing}/manifests/v1")

    assert_registry_error(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"] == challenge(registry, pull(missing))


def test_an_anonymous_push_is_challenged_for_a_push_token(admin, anonymous, registry, repo):
    push_blob(admin, repo, b"the project exists")

    response = anonymous.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})

    assert_registry_error(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"] == challenge(registry, push(repo))


def test_a_token_for_one_repository_does_not_open_another(admin, repo):
    other = f"{repo}-other"
    pushed = push_image(admin, other, "v1")

    response = admin.request("GET", f"/v2/{other}/manifests/{pushed.digest}", pull(repo))

    assert_registry_error(response, 401, "UNAUTHORIZED")
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_a_pull_token_does_not_allow_a_push(admin, repo):
    push_blob(admin, repo, b"the project exists")

    response = admin.request("POST", f"/v2/{repo}/blobs/uploads/", pull(repo), headers={"Content-Length": "0"})

    assert_registry_error(response, 401, "UNAUTHORIZED")
    assert f'scope="{push(repo)}"' in response.headers["WWW-Authenticate"]


# -- the token endpoint ---------------------------------------------------------------------------

@pytest.mark.parametrize("username, password", [("admin", "wrong password"), ("nobody", "whatever")])
def test_the_token_endpoint_refuses_wrong_credentials(registry, repo, username, password):
    response = RegistryClient(registry.url, username, password).token_response(pull(repo))

    assert_registry_error(response, 401, "UNAUTHORIZED")
    assert "token" not in response.json()


def test_the_token_endpoint_grants_the_administrator_what_it_asked_for(admin, repo):
    response = admin.token_response(push(repo))

    assert response.status_code == 200
    claims = jwt_claims(response.json()["token"])
    assert claims["access"] == [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]


def test_the_token_endpoint_answers_the_oauth2_password_grant(admin, registry, repo):
    username, password = admin.auth
    response = requests.post(f"{registry.url}/auth/token", timeout=30, data={
        "grant_type": "password", "service": "cyp-registry", "client_id": "tests",
        "username": username, "password": password, "scope": pull(repo)})

    assert response.status_code == 200
    assert jwt_claims(response.json()["access_token"])["access"] == [
        {"type": "repository", "name": repo, "actions": ["pull"]}]


def test_an_anonymous_token_for_a_private_repository_grants_nothing(admin, anonymous, repo):
    pushed = push_image(admin, repo, "v1")

    token = anonymous.token(pull(repo))
    response = with_token(anonymous, f"/v2/{repo}/manifests/{pushed.digest}", token)

    assert jwt_claims(token)["access"] == []
    assert_registry_error(response, 401, "UNAUTHORIZED")


# -- forged tokens --------------------------------------------------------------------------------

def forge(kind, genuine):
    header, payload, signature = genuine.split(".")
    claims = jwt_claims(genuine)
    if kind == "garbage":
        return "not-a-jwt-at-all"
    if kind == "altered-signature":
        return f"{header}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    if kind == "altered-payload":
        forged = {**claims, "access": [{"type": "repository", "name": "*", "actions": ["*"]}], "exp": claims["exp"] + 1}
        return f"{header}.{b64url(json.dumps(forged).encode())}.{signature}"
    if kind == "alg-none":
        none_header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{none_header}.{payload}."
    if kind == "other-key":
        return jwt.encode(claims, "a key the registry does not hold", algorithm="HS256")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["garbage", "altered-signature", "altered-payload", "alg-none", "other-key"])
def test_a_token_the_registry_did_not_sign_is_refused(admin, registry, repo, kind):
    pushed = push_image(admin, repo, "v1")
    token = forge(kind, admin.token(pull(repo)))

    response = with_token(admin, f"/v2/{repo}/manifests/{pushed.digest}", token)

    assert_registry_error(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"].startswith(f'Bearer realm="{registry.url}/auth/token"')


@pytest.mark.parametrize("kind", ["garbage", "alg-none"])
def test_a_forged_token_does_not_open_the_base_endpoint(admin, kind):
    response = with_token(admin, "/v2/", forge(kind, admin.token()))

    assert_registry_error(response, 401, "UNAUTHORIZED")


# -- repository names -----------------------------------------------------------------------------

def raw_get(registry, path, token):
    """GET ``path`` exactly as written (no client-side normalisation of dot segments or escapes)."""
    connection = http.client.HTTPConnection(registry.host.split(":")[0], int(registry.host.split(":")[1]),
                                            timeout=30)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path", [
    "/v2/../../etc/blobs/" + sha256(b"x"),
    "/v2/../../etc/passwd/manifests/latest",
    "/v2/%2e%2e/%2e%2e/etc/manifests/latest",
    "/v2/project/%2e%2e/%2e%2e/etc/blobs/" + sha256(b"x"),
    "/v2/project/app/..%2f..%2fsecret/tags/list",
    "/v2/Project/App/manifests/latest",
    "/v2/single/manifests/latest",
    "/v2/project//app/manifests/latest",
    "/v2/project/app./manifests/latest",
    "/v2/project/-app/tags/list",
    "/v2/project/" + "a" * 300 + "/tags/list",
])
def test_a_malformed_or_traversing_repository_name_is_refused(admin, registry, path):
    status, _, body = raw_get(registry, path, admin.token())

    assert status in (400, 404), (status, body)
    errors = json.loads(body)["errors"]
    if status == 400:
        assert errors[0]["code"] == "NAME_INVALID"


# -- the API version header -----------------------------------------------------------------------

REQUESTS = {
    "base with token": lambda c, a, r: c.request("GET", "/v2/", ""),
    "base without token": lambda c, a, r: a.request("GET", "/v2/"),
    "unknown manifest": lambda c, a, r: c.request("GET", f"/v2/{r}/manifests/nope", pull(r)),
    "head unknown blob": lambda c, a, r: c.request("HEAD", f"/v2/{r}/blobs/{sha256(b'')}", pull(r)),
    "start upload": lambda c, a, r: c.request("POST", f"/v2/{r}/blobs/uploads/", push(r)),
    "invalid name": lambda c, a, r: c.request("GET", "/v2/UPPER/case/tags/list", ""),
    "unknown endpoint": lambda c, a, r: c.request("GET", "/v2/nothing-here", ""),
    "unsupported method": lambda c, a, r: c.request("POST", f"/v2/{r}/tags/list", push(r)),
    "catalog": lambda c, a, r: c.request("GET", "/v2/_catalog", "registry:catalog:*"),
}


@pytest.mark.parametrize("name", REQUESTS)
def test_every_v2_response_carries_the_api_version_header(admin, anonymous, repo, name):
    response = REQUESTS[name](admin, anonymous, repo)

    assert response.headers.get(API_VERSION_HEADER[0]) == API_VERSION_HEADER[1], (response.status_code, name)
    assert response.status_code < 500, response.text
