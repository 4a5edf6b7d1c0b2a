"""Cross-repository mounts: a client with pull rights on the source gets 201, whatever token it started with;
anyone else uploads the blob (202) and learns nothing of the source."""
import re

import requests

from tests.support.api_client import ok, unique_name
from tests.support.manifests import assert_registry_error, get_blob, push, push_blob, random_bytes
from tests.support.registry_client import RegistryClient


def own_repo(user):
    name = unique_name("mnt")
    ok(user.api.post("/api/v1/projects", json={"name": name}))
    return f"{name}/app"


def registry_client(registry, user):
    return RegistryClient(registry.url, user.username, user.password)


def follow_challenge(client, response):
    """What a client does with a 401: ask the token endpoint for the challenge's scopes, once."""
    scopes = re.search(r'scope="([^"]*)"', response.headers["WWW-Authenticate"]).group(1).split()
    return client.token(*scopes)


def mount(client, repo, digest, source=None, token=None):
    params = {"mount": digest, **({"from": source} if source else {})}
    headers = {"Content-Length": "0", **({"Authorization": f"Bearer {token}"} if token else {})}
    return requests.post(f"{client.url}/v2/{repo}/blobs/uploads/", params=params, headers=headers, timeout=30)


def test_the_challenge_of_a_mount_asks_for_the_source_too(admin, repo):
    response = mount(admin, repo, "sha256:" + "0" * 64, source="other/repo")

    assert response.status_code == 401
    assert f'scope="repository:{repo}:pull,push repository:other/repo:pull"' in response.headers["WWW-Authenticate"]


def test_a_client_following_the_challenge_mounts_with_201(registry, make_user):
    user = make_user()
    source, target = own_repo(user), own_repo(user)
    client = registry_client(registry, user)
    digest = push_blob(client, source, random_bytes(256))["digest"]
    challenge = mount(client, target, digest, source)

    response = mount(client, target, digest, source, token=follow_challenge(client, challenge))

    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"/v2/{target}/blobs/{digest}"
    assert get_blob(client, target, digest).status_code == 200


def test_a_token_short_of_the_source_is_told_to_fetch_another_then_mounts(registry, make_user):
    user = make_user()
    source, target = own_repo(user), own_repo(user)
    client = registry_client(registry, user)
    digest = push_blob(client, source, random_bytes(256))["digest"]

    refused = mount(client, target, digest, source, token=client.token(push(target)))
    response = mount(client, target, digest, source, token=follow_challenge(client, refused))

    assert_registry_error(refused, 401, "UNAUTHORIZED")
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    assert response.status_code == 201


def test_a_mount_from_a_project_the_caller_cannot_see_uploads_instead(registry, admin, make_user):
    owner, outsider = make_user(), make_user()
    source, target = own_repo(owner), own_repo(outsider)
    digest = push_blob(registry_client(registry, owner), source, random_bytes(256))["digest"]
    client = registry_client(registry, outsider)
    challenge = mount(client, target, digest, source)

    response = mount(client, target, digest, source, token=follow_challenge(client, challenge))

    assert response.status_code == 202
    assert "Docker-Upload-UUID" in response.headers
    assert get_blob(admin, target, digest).status_code == 404


def test_a_mount_without_a_source_finds_one_the_caller_may_pull(registry, make_user):
    user = make_user()
    source, target = own_repo(user), own_repo(user)
    client = registry_client(registry, user)
    digest = push_blob(client, source, random_bytes(256))["digest"]

    response = mount(client, target, digest, token=client.token(push(target)))

    assert response.status_code == 201
    assert get_blob(client, target, digest).status_code == 200


def test_a_mount_without_a_source_never_takes_a_blob_from_another_users_private_project(registry, admin, make_user):
    owner, outsider = make_user(), make_user()
    source, target = own_repo(owner), own_repo(outsider)
    digest = push_blob(registry_client(registry, owner), source, random_bytes(256))["digest"]
    client = registry_client(registry, outsider)

    response = mount(client, target, digest, token=client.token(push(target)))

    assert response.status_code == 202
    assert get_blob(admin, target, digest).status_code == 404
