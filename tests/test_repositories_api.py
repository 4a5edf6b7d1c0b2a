"""/api/v1/projects/:id/repositories: a project's repositories and tags listed, a tag's detail, and deletes of
a tag or a whole repository that count and announce exactly as /v2/ deletes do."""
import datetime
import json
from urllib.parse import quote

import pytest

from tests.support.api_client import Api, ok, refused
from tests.support.manifests import (
    OCI_INDEX, encode, image_blobs, image_manifest, index_manifest, list_tags, pull, push_artifact, push_blob,
    push_image, put_manifest, sha256,
)
from tests.support.quota_support import new_project, recount, storage_used

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"
PLATFORMS = [{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm", "variant": "v7"}]


@pytest.fixture
def project(admin_api):
    """A fresh private project of the administrator."""
    return new_project(admin_api, "repos")


def repositories_path(project, repository=None, tag=None, encoded=False):
    """The route of the project's repositories, of one repository (its slashes as %2F when ``encoded``), of its
    tags or of one tag."""
    path = f"/api/v1/projects/{project['id']}/repositories"
    if repository is not None:
        path += "/" + (quote(repository, safe="") if encoded else repository)
        if tag is not None:
            path += "/tags" + ("" if tag == "" else f"/{tag}")
    return path


def tags_path(project, repository, encoded=False):
    return repositories_path(project, repository, "", encoded)


def full_size(image):
    """What a tag of a pushed image holds: the manifest and its config and layers."""
    return image.size + sum(image.blobs.values())


def push_index(client, repo, tag, platforms=PLATFORMS):
    """One image per platform pushed by digest, then an OCI index of them tagged ``tag``; answers
    ``(index, children)``, each child's ``blobs`` its config and layers."""
    children = []
    for _ in platforms:
        config, layers = image_blobs(client, repo)
        body = encode(image_manifest(config, layers))
        child = put_manifest(client, repo, sha256(body), body)
        child.blobs = {blob["digest"]: blob["size"] for blob in [config, *layers]}
        children.append(child)
    document = index_manifest([{**child.descriptor, "platform": platform}
                               for child, platform in zip(children, platforms)])
    return put_manifest(client, repo, tag, document, OCI_INDEX), children


def delete_events(db, repo):
    return list(db["events"].find({"type": "DELETE_ARTIFACT", "data.repository": repo}).sort("occurred_at", 1))


# -- the repository list --------------------------------------------------------------------------

def test_a_repository_is_listed_with_its_size_tags_and_last_push(admin, admin_api, project):
    repo = f"{project['name']}/app"
    image = push_image(admin, repo, "v1", layer_sizes=(3000, 1000))
    assert admin.put_manifest(repo, "v2", image.body).status_code == 201

    data = ok(admin_api.get(repositories_path(project)))

    assert data["total"] == 1 and data["page"] == 1 and data["page_size"] == 20
    [item] = data["items"]
    assert item["name"] == repo
    assert item["size"] == full_size(image)
    assert item["tag_count"] == 2 and item["manifest_count"] == 1 and item["blob_count"] == 3
    assert item["last_push"].endswith("Z") and item["created_at"].endswith("Z")
    assert item["pull_count"] == 0


def test_a_repositorys_size_is_its_row_of_the_storage_breakdown(admin, admin_api, project):
    shared = b"s" * 5000
    push_image(admin, f"{project['name']}/a", "v1", layers=[shared])
    push_image(admin, f"{project['name']}/b", "v1", layers=[shared, b"t" * 700])

    listed = ok(admin_api.get(repositories_path(project)))["items"]
    storage = ok(admin_api.get(f"/api/v1/projects/{project['id']}/storage"))["repositories"]

    assert {item["name"]: item["size"] for item in listed} == {row["name"]: row["size"] for row in storage}


def test_the_repository_list_pages_by_name(admin, admin_api, project):
    names = [f"{project['name']}/{path}" for path in ("c", "a", "b")]
    for name in names:
        push_blob(admin, name, name.encode())

    first = ok(admin_api.get(repositories_path(project), params={"page": 1, "page_size": 2}))
    second = ok(admin_api.get(repositories_path(project), params={"page": 2, "page_size": 2}))

    assert first["total"] == second["total"] == 3
    assert [item["name"] for item in first["items"] + second["items"]] == sorted(names)
    assert first["page_size"] == 2 and second["page"] == 2


def test_the_repository_list_is_searched_by_a_case_insensitive_substring(admin, admin_api, project):
    for path in ("frontend", "backend", "tools"):
        push_blob(admin, f"{project['name']}/{path}", path.encode())

    data = ok(admin_api.get(repositories_path(project), params={"search": "END"}))

    assert data["total"] == 2
    assert [item["name"] for item in data["items"]] == [f"{project['name']}/backend", f"{project['name']}/frontend"]


def test_a_page_size_out_of_range_is_refused(admin_api, project):
    message = refused(admin_api.get(repositories_path(project), params={"page_size": 101}), 10001)

    assert "page_size" in message


# -- tags -----------------------------------------------------------------------------------------

def test_a_tag_is_listed_with_its_digest_type_size_and_push_time(admin, admin_api, project):
    repo = f"{project['name']}/app"
    image = push_image(admin, repo, "v1", layer_sizes=(2048,))

    data = ok(admin_api.get(tags_path(project, "app")))

    assert data["total"] == 1
    [item] = data["items"]
    assert item["tag"] == "v1" and item["digest"] == image.digest and item["media_type"] == image.media_type
    assert item["size"] == full_size(image) and item["manifest_size"] == image.size
    assert item["platforms"] is None and item["referrers_count"] == 0 and item["last_pulled_at"] is None
    assert item["pushed_at"].endswith("Z")


def test_a_tag_pushed_again_onto_its_manifest_is_written_only_when_set_over_a_second_ago(
        admin, admin_api, project, db):
    repo = f"{project['name']}/app"
    image = push_image(admin, repo, "v1")
    tag = {"repo": repo, "tag": "v1"}
    now = datetime.datetime.now(datetime.UTC)
    just_set = now.replace(microsecond=now.microsecond // 1000 * 1000) + datetime.timedelta(minutes=1)
    db["tags"].update_one(tag, {"$set": {"updated_at": just_set}})  # within the last second, however slow the PUT
    assert admin.put_manifest(repo, "v1", image.body).status_code == 201
    left = db["tags"].find_one(tag)["updated_at"]
    db["tags"].update_one(tag, {"$set": {"updated_at": now - datetime.timedelta(seconds=2)}})

    assert admin.put_manifest(repo, "v1", image.body).status_code == 201

    [item] = ok(admin_api.get(tags_path(project, "app")))["items"]
    assert left == just_set
    assert datetime.datetime.fromisoformat(item["pushed_at"]) >= now - datetime.timedelta(milliseconds=1)
    assert item["digest"] == image.digest
    assert [event["data"]["tags"] for event in db["events"].find(
        {"type": "PUSH_ARTIFACT", "data.repository": repo, "data.digest": image.digest})] == [["v1"]] * 3


def test_tags_are_listed_by_name_a_page_at_a_time(admin, admin_api, project):
    image = push_image(admin, f"{project['name']}/app", "v3")
    for tag in ("v1", "v2"):
        assert admin.put_manifest(f"{project['name']}/app", tag, image.body).status_code == 201

    first = ok(admin_api.get(tags_path(project, "app"), params={"page_size": 2}))
    second = ok(admin_api.get(tags_path(project, "app"), params={"page": 2, "page_size": 2}))

    assert first["total"] == second["total"] == 3
    assert [item["tag"] for item in first["items"] + second["items"]] == ["v1", "v2", "v3"]


def test_a_multi_platform_index_lists_its_platforms_and_counts_its_children(admin, admin_api, project):
    index, children = push_index(admin, f"{project['name']}/app", "multi")

    [item] = ok(admin_api.get(tags_path(project, "app")))["items"]

    assert item["media_type"] == OCI_INDEX and item["digest"] == index.digest
    assert item["platforms"] == [
        {"digest": children[0].digest, "media_type": children[0].media_type, "size": children[0].size,
         "os": "linux", "architecture": "amd64", "variant": None},
        {"digest": children[1].digest, "media_type": children[1].media_type, "size": children[1].size,
         "os": "linux", "architecture": "arm", "variant": "v7"},
    ]
    assert item["size"] == index.size + sum(full_size(child) for child in children)


def test_a_tag_counts_the_referrers_of_its_manifest(admin, admin_api, project):
    repo = f"{project['name']}/app"
    image = push_image(admin, repo, "v1")
    push_artifact(admin, repo, image.descriptor, SBOM)
    push_artifact(admin, repo, image.descriptor, SIGNATURE)

    [item] = ok(admin_api.get(tags_path(project, "app")))["items"]

    assert item["referrers_count"] == 2


def test_a_tags_detail_holds_the_manifest_its_layers_and_referrers(admin, admin_api, project):
    repo = f"{project['name']}/app"
    image = push_image(admin, repo, "v1", layer_sizes=(100, 200))
    sbom = push_artifact(admin, repo, image.descriptor, SBOM, {"org.example.format": "spdx"})

    data = ok(admin_api.get(repositories_path(project, "app", "v1")))

    manifest = json.loads(image.body)
    assert data["manifest"] == manifest
    assert data["tag"] == "v1" and data["digest"] == image.digest and data["size"] == full_size(image)
    assert data["config"] == {"digest": manifest["config"]["digest"], "media_type": manifest["config"]["mediaType"],
                              "size": manifest["config"]["size"]}
    assert [(layer["digest"], layer["size"]) for layer in data["layers"]] == \
        [(layer["digest"], layer["size"]) for layer in manifest["layers"]]
    assert [layer["size"] for layer in data["layers"]] == [100, 200]
    assert data["referrers"] == [{"digest": sbom.digest, "media_type": sbom.media_type, "size": sbom.size,
                                  "artifact_type": SBOM, "annotations": {"org.example.format": "spdx"}}]
    assert data["referrers_count"] == 1 and data["platforms"] is None


def test_an_index_tags_detail_holds_its_platforms_and_no_layers(admin, admin_api, project):
    index, _ = push_index(admin, f"{project['name']}/app", "multi")

    data = ok(admin_api.get(repositories_path(project, "app", "multi")))

    assert data["manifest"] == json.loads(index.body)
    assert [(p["os"], p["architecture"], p["variant"]) for p in data["platforms"]] == \
        [("linux", "amd64", None), ("linux", "arm", "v7")]
    assert data["layers"] is None and data["config"] is None and data["referrers"] == []


def test_a_missing_tag_is_not_found(admin, admin_api, project):
    push_image(admin, f"{project['name']}/app", "v1")

    refused(admin_api.get(repositories_path(project, "app", "v9")), 20001)


def test_a_missing_repository_is_not_found(admin_api, project):
    refused(admin_api.get(tags_path(project, "nothing")), 20001)


# -- deletes --------------------------------------------------------------------------------------

def test_deleting_a_tag_keeps_the_other_tags_of_its_digest(admin, admin_api, project, db):
    repo = f"{project['name']}/app"
    image = push_image(admin, repo, "v1")
    assert admin.put_manifest(repo, "v2", image.body).status_code == 201
    used = storage_used(admin_api, project["id"])

    assert ok(admin_api.delete(repositories_path(project, "app", "v1"))) is None

    assert list_tags(admin, repo).json()["tags"] == ["v2"]
    assert admin.request("GET", f"/v2/{repo}/manifests/v2", pull(repo)).status_code == 200
    assert storage_used(admin_api, project["id"]) == used == recount(admin_api, project["id"])["actual"]
    [event] = delete_events(db, repo)
    assert event["data"]["digest"] == image.digest and event["data"]["tags"] == ["v1"]
    assert event["operator"] == "admin"


def test_deleting_a_repository_gives_back_its_quota_and_keeps_what_another_repository_holds(
        admin, admin_api, project, db):
    shared = b"shared layer" * 100
    push_image(admin, f"{project['name']}/keep", "v1", layers=[shared])
    before = storage_used(admin_api, project["id"])
    repo = f"{project['name']}/gone"
    image = push_image(admin, repo, "v1", layers=[shared, b"own layer" * 50])
    index, children = push_index(admin, repo, "multi")
    push_blob(admin, repo, b"an unreferenced blob")
    assert storage_used(admin_api, project["id"]) > before

    assert ok(admin_api.delete(repositories_path(project, "gone"))) is None

    assert storage_used(admin_api, project["id"]) == before
    assert recount(admin_api, project["id"])["drift"] == 0
    response = list_tags(admin, repo)
    assert response.status_code == 200 and response.json()["tags"] == []
    deleted = {event["data"]["digest"]: event["data"]["tags"] for event in delete_events(db, repo)}
    assert deleted == {image.digest: ["v1"], index.digest: ["multi"], children[0].digest: [], children[1].digest: []}
    assert admin.request("GET", f"/v2/{project['name']}/keep/manifests/v1", pull(f"{project['name']}/keep")) \
        .status_code == 200


def test_a_deleted_repository_stays_listed_empty(admin, admin_api, project):
    push_image(admin, f"{project['name']}/gone", "v1")

    ok(admin_api.delete(repositories_path(project, "gone")))

    [item] = ok(admin_api.get(repositories_path(project)))["items"]
    assert (item["size"], item["tag_count"], item["manifest_count"], item["blob_count"]) == (0, 0, 0, 0)


def test_a_tag_route_never_deletes_by_digest(admin, admin_api, project):
    repo = f"{project['name']}/app"
    image = push_image(admin, repo, "v1")

    refused(admin_api.delete(repositories_path(project, "app", quote(image.digest, safe=""))), 10001)

    assert admin.request("GET", f"/v2/{repo}/manifests/{image.digest}", pull(repo)).status_code == 200


# -- who may --------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,suffix", [("GET", ""), ("GET", "/app/tags"), ("GET", "/app/tags/v1"),
                                           ("DELETE", "/app/tags/v1"), ("DELETE", "/app")])
def test_a_private_project_is_invisible_to_another_user(admin, admin_api, project, user, method, suffix):
    push_image(admin, f"{project['name']}/app", "v1")
    missing = "00000000-0000-4000-8000-000000000000"

    on_private = user.api.request(method, f"{repositories_path(project)}{suffix}")
    on_missing = user.api.request(method, f"/api/v1/projects/{missing}/repositories{suffix}")

    assert refused(on_private, 20001) == refused(on_missing, 20001)
    assert project["name"] not in on_private.text
    assert list_tags(admin, f"{project['name']}/app").json()["tags"] == ["v1"]


def test_a_private_project_is_invisible_to_anonymous_callers(admin, project, registry):
    push_image(admin, f"{project['name']}/app", "v1")

    refused(Api(registry.url).get(repositories_path(project)), 20001)


def test_a_public_project_is_read_by_anyone_but_deleted_only_by_its_owner(admin, admin_api, user, registry):
    project = new_project(admin_api, "repos", is_public=True)
    push_image(admin, f"{project['name']}/app", "v1")

    anonymous = ok(Api(registry.url).get(tags_path(project, "app")))
    message = refused(user.api.delete(repositories_path(project, "app", "v1")), 30003)

    assert [item["tag"] for item in anonymous["items"]] == ["v1"]
    assert "owner" in message
    assert list_tags(admin, f"{project['name']}/app").json()["tags"] == ["v1"]


def test_a_pat_without_registry_delete_is_refused_a_delete(admin, admin_api, project, registry):
    push_image(admin, f"{project['name']}/app", "v1")
    pat = Api(registry.url, admin_api.create_pat(["api:read", "api:write", "registry:push"])["token"])

    message = refused(pat.delete(repositories_path(project, "app", "v1")), 30003)

    assert "registry:delete" in message
    assert list_tags(admin, f"{project['name']}/app").json()["tags"] == ["v1"]


def test_a_pat_with_registry_delete_deletes(admin, admin_api, project, registry):
    push_image(admin, f"{project['name']}/app", "v1")
    pat = Api(registry.url, admin_api.create_pat(["api:write", "registry:delete"])["token"])

    ok(pat.delete(repositories_path(project, "app")))

    assert list_tags(admin, f"{project['name']}/app").json()["tags"] == []


# -- nested names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["app", "app/backend", "app/backend/api"])
@pytest.mark.parametrize("encoded", [False, True], ids=["slashes", "percent-encoded"])
def test_a_repository_is_addressed_with_its_slashes_as_they_are_or_encoded(admin, admin_api, project, path, encoded):
    image = push_image(admin, f"{project['name']}/{path}", "v1")
    push_image(admin, f"{project['name']}/{path}/other", "v1")

    listed = ok(admin_api.get(tags_path(project, path, encoded)))
    detail = ok(admin_api.get(repositories_path(project, path, "v1", encoded)))

    assert [item["digest"] for item in listed["items"]] == [image.digest]
    assert detail["digest"] == image.digest


def test_a_nested_repository_is_deleted_alone(admin, admin_api, project):
    push_image(admin, f"{project['name']}/app", "v1")
    push_image(admin, f"{project['name']}/app/backend", "v1")

    ok(admin_api.delete(repositories_path(project, "app/backend")))

    assert list_tags(admin, f"{project['name']}/app/backend").json()["tags"] == []
    assert list_tags(admin, f"{project['name']}/app").json()["tags"] == ["v1"]


def test_a_repository_with_a_component_named_tags_is_reached_encoded(admin, admin_api, project):
    image = push_image(admin, f"{project['name']}/app/tags", "v1")

    listed = ok(admin_api.get(tags_path(project, "app/tags", encoded=True)))

    assert [item["digest"] for item in listed["items"]] == [image.digest]
