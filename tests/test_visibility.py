"""Visibility: a private project exists only for its owner and administrators; a public one is readable by all.

A stranger (another ordinary user) gets exactly the answer a nonexistent project gets, through the API
and under /v2/; public projects are pulled anonymously but never pushed to by strangers.
"""
import pytest
import requests

from tests.support.api_client import admin_api_for, create_user, jwt_claims, ok, refused, unique_name
from tests.support.manifests import OCI_MANIFEST, assert_registry_error, pull, push, push_image, sha256
from tests.support.quota_support import new_project
from tests.support.registry_client import RegistryClient, cached_client

CATALOG = "registry:catalog:*"


@pytest.fixture(scope="module")
def module_admin_api(registry):
    return admin_api_for(registry)


@pytest.fixture(scope="module")
def owner(module_admin_api):
    return create_user(module_admin_api)


@pytest.fixture(scope="module")
def stranger(module_admin_api):
    return create_user(module_admin_api)


@pytest.fixture(scope="module")
def owner_registry(registry, owner):
    return cached_client(registry.url, owner.username, owner.password)


@pytest.fixture(scope="module")
def stranger_registry(registry, stranger):
    return cached_client(registry.url, stranger.username, stranger.password)


@pytest.fixture(scope="module")
def private_image(owner, owner_registry):
    """A private project of ``owner`` holding one image; answers ``(project, repo, image)``."""
    project = new_project(owner.api, "priv")
    repo = f"{project['name']}/app"
    return project, repo, push_image(owner_registry, repo, "v1")


@pytest.fixture(scope="module")
def public_image(owner, owner_registry):
    project = new_project(owner.api, "pub", is_public=True)
    repo = f"{project['name']}/app"
    return project, repo, push_image(owner_registry, repo, "v1")


def comparable(response, *keys):
    """Status and body without trace id and timestamp, each of ``keys`` replaced by a placeholder."""
    body = response.json()
    body.pop("trace_id", None)
    body.pop("timestamp", None)
    text = str(body)
    for key in keys:
        text = text.replace(key, "<KEY>")
    return response.status_code, dict(response.headers).get("Content-Type"), text


# -- /api/v1 --------------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "", None, 20001),
    ("PUT", "", {"description": "taken over"}, 20001),
    ("PATCH", "", {"is_public": True}, 20001),
    ("DELETE", "", None, 20001),
    ("DELETE", "?force=true", None, 20001),
    ("GET", "/storage", None, 20001),
    # Administrator-only endpoints: a stranger is refused the same way whatever the project.
    ("PUT", "/quota", {"storage_quota": -1}, 30003),
    ("POST", "/recount", None, 30003),
    ("POST", "/recount?fix=true", None, 30003),
    ("GET", "/members", None, 20003),
]


@pytest.mark.parametrize("by", ["id", "name"])
@pytest.mark.parametrize("method,suffix,body,code", ENDPOINTS)
def test_a_stranger_gets_the_same_answer_for_a_private_project_as_for_a_missing_one(
        stranger, private_image, store, method, suffix, body, code, by):
    project, _, _ = private_image
    key = project[by]
    missing = unique_name("nothere") if by == "name" else "00000000-0000-4000-8000-000000000000"

    on_private = stranger.api.request(method, f"/api/v1/projects/{key}{suffix}", json=body)
    on_missing = stranger.api.request(method, f"/api/v1/projects/{missing}{suffix}", json=body)

    refused(on_private, code)
    assert comparable(on_private, key) == comparable(on_missing, missing)
    assert project["name"] not in on_private.text and project["id"] not in on_private.text
    stored = store.project(project["id"])
    assert stored is not None and stored["is_public"] is False and stored["description"] == ""
    assert stored["storage_quota"] == project["storage_quota"]


def test_a_private_project_is_not_in_a_strangers_list(stranger, private_image):
    project, _, _ = private_image

    listed = ok(stranger.api.get("/api/v1/projects", params={"search": project["name"]}))

    assert listed["total"] == 0 and listed["items"] == []


def test_a_private_project_is_in_its_owners_and_the_administrators_lists(owner, module_admin_api, private_image):
    project, _, _ = private_image

    mine = ok(owner.api.get("/api/v1/projects", params={"search": project["name"]}))
    admins = ok(module_admin_api.get("/api/v1/projects", params={"search": project["name"]}))

    assert [p["id"] for p in mine["items"]] == [project["id"]]
    assert [p["id"] for p in admins["items"]] == [project["id"]]


def test_a_private_project_does_not_count_in_a_strangers_statistics(stranger, owner, owner_registry):
    before = ok(stranger.api.get("/api/v1/projects/statistics"))
    project = new_project(owner.api, "privstat", storage_quota=1 << 30)
    push_image(owner_registry, f"{project['name']}/app", "v1")

    after = ok(stranger.api.get("/api/v1/projects/statistics"))

    assert after == before


def test_a_public_project_counts_in_a_strangers_statistics(stranger, owner, owner_registry):
    before = ok(stranger.api.get("/api/v1/projects/statistics"))
    project = new_project(owner.api, "pubstat", is_public=True, storage_quota=1 << 30)
    image = push_image(owner_registry, f"{project['name']}/app", "v1")

    after = ok(stranger.api.get("/api/v1/projects/statistics"))

    delta = {key: after[key] - before[key] for key in after}
    assert delta == {"total_projects": 1, "public_projects": 1, "private_projects": 0, "repository_count": 1,
                     "image_count": 1, "tag_count": 1, "storage_used": sum(image.blobs.values()) + image.size,
                     "storage_quota": 1 << 30, "unlimited_projects": 0}


def test_a_public_project_is_listed_and_read_by_a_stranger(stranger, public_image):
    project, repo, image = public_image

    listed = ok(stranger.api.get("/api/v1/projects", params={"search": project["name"]}))
    data = ok(stranger.api.get(f"/api/v1/projects/{project['name']}"))
    storage = ok(stranger.api.get(f"/api/v1/projects/{project['id']}/storage"))

    assert [p["id"] for p in listed["items"]] == [project["id"]]
    assert data["id"] == project["id"] and data["image_count"] == 1
    assert storage["storage_used"] == sum(image.blobs.values()) + image.size
    assert [r["name"] for r in storage["repositories"]] == [repo]


@pytest.mark.parametrize("method,body", [("PUT", {"description": "x"}), ("PATCH", {"is_public": False}),
                                         ("DELETE", None)])
def test_a_stranger_may_not_change_a_public_project(stranger, public_image, store, method, body):
    project, _, _ = public_image

    refused(stranger.api.request(method, f"/api/v1/projects/{project['id']}", json=body), 30003)

    stored = store.project(project["id"])
    assert stored is not None and stored["is_public"] is True and stored["description"] == ""


# -- /v2/ -----------------------------------------------------------------------------------------

def registry_comparable(response, *names):
    text = response.text
    for name in names:
        text = text.replace(name, "<NAME>")
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("date", "x-trace-id", "content-length")}
    for name in names:
        headers = {k: v.replace(name, "<NAME>") for k, v in headers.items()}
    return response.status_code, headers, text


@pytest.mark.parametrize("what", ["manifest", "blob", "tags"])
def test_a_strangers_pull_of_a_private_repository_is_name_unknown_like_a_missing_project(
        stranger_registry, private_image, what):
    project, repo, image = private_image
    missing_repo = f"{unique_name('nothere')}/app"
    digest = next(iter(image.blobs))
    paths = {"manifest": "manifests/v1", "blob": f"blobs/{digest}", "tags": "tags/list"}

    on_private = stranger_registry.request("GET", f"/v2/{repo}/{paths[what]}", pull(repo))
    on_missing = stranger_registry.request("GET", f"/v2/{missing_repo}/{paths[what]}", pull(missing_repo))

    assert_registry_error(on_private, 404, "NAME_UNKNOWN")
    assert registry_comparable(on_private, repo, project["name"]) == \
        registry_comparable(on_missing, missing_repo, missing_repo.split("/")[0])


def test_a_stranger_gets_no_pull_right_on_a_private_repository_from_the_token_endpoint(
        registry, stranger, private_image):
    _, repo, _ = private_image

    response = RegistryClient(registry.url, stranger.username, stranger.password).token_response(pull(repo))

    assert response.status_code == 200
    assert jwt_claims(response.json()["token"])["access"] == []


def test_an_anonymous_pull_of_a_private_repository_is_challenged(registry, private_image):
    _, repo, _ = private_image

    response = requests.get(f"{registry.url}/v2/{repo}/manifests/v1", timeout=30)

    assert_registry_error(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"] == \
        f'Bearer realm="{registry.url}/auth/token",service="cyp-registry",scope="{pull(repo)}"'


def test_an_anonymous_pull_with_an_anonymous_token_of_a_private_repository_is_refused(registry, private_image):
    _, repo, _ = private_image
    anonymous = cached_client(registry.url)

    response = anonymous.request("GET", f"/v2/{repo}/manifests/v1", pull(repo))

    assert_registry_error(response, 401, "UNAUTHORIZED")


def test_a_public_repository_is_pulled_anonymously(registry, public_image):
    _, repo, image = public_image
    anonymous = cached_client(registry.url)

    manifest = anonymous.request("GET", f"/v2/{repo}/manifests/v1", pull(repo), headers={"Accept": OCI_MANIFEST})
    digest, size = next(iter(image.blobs.items()))
    blob = anonymous.request("GET", f"/v2/{repo}/blobs/{digest}", pull(repo))

    assert manifest.status_code == 200 and manifest.content == image.body
    assert blob.status_code == 200 and len(blob.content) == size and sha256(blob.content) == digest


def test_a_public_repository_is_pulled_by_a_stranger(stranger_registry, public_image):
    _, repo, image = public_image

    response = stranger_registry.request("GET", f"/v2/{repo}/manifests/v1", pull(repo),
                                         headers={"Accept": OCI_MANIFEST})

    assert response.status_code == 200 and response.content == image.body


def test_a_stranger_may_not_push_to_a_public_repository(stranger_registry, public_image, store):
    project, repo, _ = public_image
    used = store.used(project["id"])
    data = b"stranger data"

    response = stranger_registry.push_blob(repo, data, sha256(data))

    assert_registry_error(response, 403, "DENIED")
    assert store.used(project["id"]) == used
    assert store["repository_blobs"].find_one({"repo": repo, "digest": sha256(data)}) is None


def test_a_stranger_may_not_delete_from_a_public_repository(stranger_registry, public_image, store):
    _, repo, image = public_image

    response = stranger_registry.request("DELETE", f"/v2/{repo}/manifests/{image.digest}",
                                         f"repository:{repo}:pull,delete")

    assert_registry_error(response, 403, "DENIED")
    assert store["manifests"].find_one({"repo": repo, "digest": image.digest}) is not None


def test_an_anonymous_push_to_a_public_repository_is_challenged(registry, public_image):
    _, repo, _ = public_image
    anonymous = cached_client(registry.url)

    response = anonymous.request("POST", f"/v2/{repo}/blobs/uploads/", push(repo))

    assert_registry_error(response, 401, "UNAUTHORIZED")


def test_a_stranger_may_not_push_to_a_private_repository_and_learns_nothing(stranger_registry, private_image):
    project, repo, _ = private_image
    missing_repo = f"{unique_name('nothere')}/app"
    data = b"stranger data"

    on_private = stranger_registry.push_blob(repo, data, sha256(data))
    on_missing = stranger_registry.push_blob(missing_repo, data, sha256(data))

    assert_registry_error(on_private, 404, "NAME_UNKNOWN")
    assert registry_comparable(on_private, repo, project["name"]) == \
        registry_comparable(on_missing, missing_repo, missing_repo.split("/")[0])


# -- catalog --------------------------------------------------------------------------------------

def catalog(client):
    response = client.request("GET", "/v2/_catalog", CATALOG)
    assert response.status_code == 200, response.text
    return set(response.json()["repositories"])


def test_the_catalog_lists_only_the_repositories_each_caller_may_see(
        registry, admin, owner_registry, stranger_registry, private_image, public_image):
    _, private_repo, _ = private_image
    _, public_repo, _ = public_image

    for_admin = catalog(admin)
    for_owner = catalog(owner_registry)
    for_stranger = catalog(stranger_registry)
    for_anonymous = catalog(cached_client(registry.url))

    assert {private_repo, public_repo} <= for_admin
    assert {private_repo, public_repo} <= for_owner
    assert public_repo in for_stranger and private_repo not in for_stranger
    assert public_repo in for_anonymous and private_repo not in for_anonymous
