"""Quotas and exact accounting: what counts, refusals that leave nothing, early refusals, releases, events."""
import http.client
import re
import secrets

import pytest

from tests.support.api_client import ok
from tests.support.manifests import (
    OCI_INDEX, OCI_MANIFEST, assert_registry_error, delete, encode, image_manifest, index_manifest, pull, push,
    push_blob, push_image, sha256,
)
from tests.support.quota_support import MiB, new_project, recount, set_quota


@pytest.fixture
def project(admin_api):
    """A fresh unlimited project of the administrator (set a quota in the test)."""
    return new_project(admin_api, "quota")


def quota_project(admin_api, quota):
    return new_project(admin_api, "quota", storage_quota=quota)


def orphan_chunks(store):
    """GridFS chunks that belong to neither a committed blob file nor a live upload."""
    files = set(store["fs.files"].distinct("_id"))
    uploads = {doc["store_state"]["file_id"] for doc in store["uploads"].find({}, {"store_state.file_id": 1})}
    return store["fs.chunks"].count_documents({"files_id": {"$nin": list(files | uploads)}})


def streamed(data, piece=256 * 1024):
    """A generator body: requests sends it with Transfer-Encoding: chunked and no Content-Length."""
    def gen():
        for offset in range(0, len(data), piece):
            yield data[offset:offset + piece]
    return gen()


def assert_left_nothing(admin, store, project_id, repo, digest, used_before):
    head = admin.request("HEAD", f"/v2/{repo}/blobs/{digest}", pull(repo))
    assert head.status_code == 404
    assert store["blobs"].find_one({"_id": digest}) is None
    assert store["repository_blobs"].find_one({"digest": digest}) is None
    assert store["project_objects"].find_one({"project_id": project_id, "digest": digest}) is None
    assert store.used(project_id) == used_before


def quota_message(response):
    return " ".join(error["message"] for error in assert_registry_error(response, 403, "DENIED"))


# -- what counts ----------------------------------------------------------------------------------

def test_a_blob_pushed_to_two_repositories_counts_once(admin, admin_api, project, store):
    data = secrets.token_bytes(5000)

    push_blob(admin, f"{project['name']}/a", data)
    push_blob(admin, f"{project['name']}/b", data)

    assert ok(admin_api.get(f"/api/v1/projects/{project['id']}"))["storage_used"] == 5000
    assert store.counted(project["id"]) == {sha256(data): 5000}


def test_a_mounted_blob_counts_once(admin, admin_api, project, store):
    data = secrets.token_bytes(7000)
    a, b = f"{project['name']}/a", f"{project['name']}/b"
    push_blob(admin, a, data)

    response = admin.request("POST", f"/v2/{b}/blobs/uploads/", None,
                             params={"mount": sha256(data), "from": a},
                             headers={"Authorization": f"Bearer {admin.token(push(b), pull(a))}"})

    assert response.status_code == 201, response.text
    assert ok(admin_api.get(f"/api/v1/projects/{project['id']}"))["storage_used"] == 7000
    assert store["repository_blobs"].count_documents({"digest": sha256(data), "project_id": project["id"]}) == 2


def test_a_manifest_counts_with_its_own_size_once_whatever_its_tags(admin, admin_api, project, store):
    repo = f"{project['name']}/a"
    config = push_blob(admin, repo, b'{"os":"linux"}')
    layer = push_blob(admin, repo, secrets.token_bytes(1000))
    body = encode(image_manifest(config, [layer]))

    assert admin.put_manifest(repo, "v1", body).status_code == 201
    assert admin.put_manifest(repo, "v2", body).status_code == 201

    assert ok(admin_api.get(f"/api/v1/projects/{project['id']}"))["storage_used"] == \
        config["size"] + layer["size"] + len(body)
    assert store.counted(project["id"])[sha256(body)] == len(body)


def test_the_same_manifest_in_two_repositories_counts_once(admin, admin_api, project):
    source, other = f"{project['name']}/a", f"{project['name']}/b"
    image = push_image(admin, source, "v1")
    token = admin.token(push(other), pull(source))
    for digest in image.blobs:
        response = admin.request("POST", f"/v2/{other}/blobs/uploads/", None,
                                 params={"mount": digest, "from": source}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201, response.text

    assert admin.put_manifest(other, "v1", image.body).status_code == 201

    assert ok(admin_api.get(f"/api/v1/projects/{project['id']}"))["storage_used"] == \
        sum(image.blobs.values()) + image.size


def test_a_push_that_exactly_fills_the_quota_is_accepted(admin, admin_api, store):
    project = quota_project(admin_api, 4096)

    push_blob(admin, f"{project['name']}/a", secrets.token_bytes(4096))

    assert store.used(project["id"]) == 4096
    assert ok(admin_api.get(f"/api/v1/projects/{project['id']}/storage"))["percent"] == 100


# -- refusals -------------------------------------------------------------------------------------

def test_a_push_over_the_quota_is_denied_with_the_sizes_and_leaves_nothing(admin, admin_api, store):
    project = quota_project(admin_api, 3 * MiB)
    repo = f"{project['name']}/a"
    push_blob(admin, repo, secrets.token_bytes(MiB + MiB // 2))
    data = secrets.token_bytes(2 * MiB)
    orphans = orphan_chunks(store)

    response = admin.push_blob(repo, data)

    message = quota_message(response)
    assert re.search(r"adding 2\.0 MiB .*exceeds the limit of 3\.0 MiB", message), message
    assert "using 1.5 MiB" in message and project["name"] in message
    assert_left_nothing(admin, store, project["id"], repo, sha256(data), MiB + MiB // 2)
    assert orphan_chunks(store) == orphans


def test_a_monolithic_push_with_content_length_over_the_quota_is_refused_before_its_body(admin, admin_api,
                                                                                         registry, store):
    project = quota_project(admin_api, MiB)
    repo = f"{project['name']}/a"
    digest = "sha256:" + "ab" * 32
    connection = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=10)
    try:
        connection.putrequest("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}")
        connection.putheader("Authorization", f"Bearer {admin.token(push(repo))}")
        connection.putheader("Content-Type", "application/octet-stream")
        connection.putheader("Content-Length", str(100 * MiB))
        connection.endheaders()  # not one byte of the body is sent

        response = connection.getresponse()  # times out if the server waits for the body
        status, body = response.status, response.read().decode()
    finally:
        connection.close()

    assert status == 403, body
    assert "DENIED" in body and "adding 100.0 MiB" in body and "exceeds the limit of 1.0 MiB" in body
    assert store["uploads"].count_documents({"repo": repo}) == 0
    assert store.used(project["id"]) == 0


def test_a_streamed_monolithic_push_over_the_quota_is_refused_at_its_end_and_its_data_discarded(
        admin, admin_api, store):
    project = quota_project(admin_api, 3 * MiB)
    repo = f"{project['name']}/a"
    data = secrets.token_bytes(5 * MiB)
    orphans = orphan_chunks(store)

    response = admin.request("POST", f"/v2/{repo}/blobs/uploads/", push(repo), params={"digest": sha256(data)},
                             data=streamed(data), headers={"Content-Type": "application/octet-stream"})

    message = quota_message(response)
    assert "adding 5.0 MiB" in message and "exceeds the limit of 3.0 MiB" in message
    assert_left_nothing(admin, store, project["id"], repo, sha256(data), 0)
    assert store["uploads"].count_documents({"repo": repo}) == 0
    assert orphan_chunks(store) == orphans


def test_a_chunked_session_finishing_over_the_quota_is_refused_at_put_and_its_data_discarded(
        admin, admin_api, store):
    project = quota_project(admin_api, 3 * MiB)
    repo = f"{project['name']}/a"
    data = secrets.token_bytes(5 * MiB)
    start = admin.request("POST", f"/v2/{repo}/blobs/uploads/", push(repo), headers={"Content-Length": "0"})
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    patched = admin.request("PATCH", location, push(repo), data=streamed(data),
                            headers={"Content-Type": "application/octet-stream"})
    assert patched.status_code == 202, patched.text
    upload_id = start.headers["Docker-Upload-UUID"]
    file_id = store["uploads"].find_one({"_id": upload_id})["store_state"]["file_id"]
    assert store["fs.chunks"].count_documents({"files_id": file_id}) > 0

    response = admin.request("PUT", location, push(repo), params={"digest": sha256(data)})

    message = quota_message(response)
    assert "adding 5.0 MiB" in message and "exceeds the limit of 3.0 MiB" in message
    assert_left_nothing(admin, store, project["id"], repo, sha256(data), 0)
    status = admin.request("GET", location, push(repo))
    assert_registry_error(status, 404, "BLOB_UPLOAD_UNKNOWN")
    assert store["uploads"].find_one({"_id": upload_id}) is None
    assert store["fs.chunks"].count_documents({"files_id": file_id}) == 0


def test_a_chunk_whose_content_length_would_pass_the_quota_is_refused_and_the_session_kept(admin, admin_api, store):
    project = quota_project(admin_api, 2 * MiB)
    repo = f"{project['name']}/a"
    start = admin.request("POST", f"/v2/{repo}/blobs/uploads/", push(repo), headers={"Content-Length": "0"})
    location = start.headers["Location"]
    first = secrets.token_bytes(MiB + 1000)
    assert admin.request("PATCH", location, push(repo), data=first,
                         headers={"Content-Range": f"0-{len(first) - 1}"}).status_code == 202

    second = secrets.token_bytes(MiB)
    response = admin.request("PATCH", location, push(repo), data=second,
                             headers={"Content-Range": f"{len(first)}-{len(first) + len(second) - 1}"})

    assert "exceeds the limit of 2.0 MiB" in quota_message(response)
    status = admin.request("GET", location, push(repo))
    assert status.status_code == 204 and status.headers["Range"] == f"0-{len(first) - 1}"
    assert store.used(project["id"]) == 0


def test_a_manifest_over_the_quota_is_denied_and_neither_it_nor_its_tag_appears(admin, admin_api, store):
    repo_blobs = secrets.token_bytes(3000)
    project = quota_project(admin_api, 3000 + 20 + 50)
    repo = f"{project['name']}/a"
    config = push_blob(admin, repo, b'{"architecture":"amd64","os":"linux"}')  # 38 bytes
    layer = push_blob(admin, repo, repo_blobs)
    body = encode(image_manifest(config, [layer]))
    used = store.used(project["id"])
    assert used + len(body) > project["storage_quota"]

    response = admin.put_manifest(repo, "v1", body)

    assert "exceeds the limit" in quota_message(response)
    assert admin.request("GET", f"/v2/{repo}/manifests/v1", pull(repo),
                         headers={"Accept": OCI_MANIFEST}).status_code == 404
    assert admin.request("GET", f"/v2/{repo}/manifests/{sha256(body)}", pull(repo),
                         headers={"Accept": OCI_MANIFEST}).status_code == 404
    tags = admin.request("GET", f"/v2/{repo}/tags/list", pull(repo))
    assert tags.status_code == 200 and tags.json()["tags"] == []
    assert store["manifests"].find_one({"repo": repo}) is None
    assert store.used(project["id"]) == used


def test_a_mount_from_another_project_over_the_quota_is_denied_and_links_nothing(admin, admin_api, store):
    source = new_project(admin_api, "src")
    source_repo = f"{source['name']}/a"
    data = secrets.token_bytes(4000)
    push_blob(admin, source_repo, data)
    project = quota_project(admin_api, 1000)
    target = f"{project['name']}/a"

    response = admin.request("POST", f"/v2/{target}/blobs/uploads/", None,
                             params={"mount": sha256(data), "from": source_repo},
                             headers={"Authorization": f"Bearer {admin.token(push(target), pull(source_repo))}"})

    assert "exceeds the limit" in quota_message(response)
    assert store["repository_blobs"].find_one({"repo": target}) is None
    assert store.used(project["id"]) == 0
    assert admin.request("HEAD", f"/v2/{target}/blobs/{sha256(data)}", pull(target)).status_code == 404


def test_a_mount_from_another_project_counts_in_the_target_project(admin, admin_api, store):
    source = new_project(admin_api, "src")
    source_repo = f"{source['name']}/a"
    data = secrets.token_bytes(4000)
    push_blob(admin, source_repo, data)
    project = new_project(admin_api, "dst")
    target = f"{project['name']}/a"

    response = admin.request("POST", f"/v2/{target}/blobs/uploads/", None,
                             params={"mount": sha256(data), "from": source_repo},
                             headers={"Authorization": f"Bearer {admin.token(push(target), pull(source_repo))}"})

    assert response.status_code == 201, response.text
    assert store.used(project["id"]) == 4000
    assert store.used(source["id"]) == 4000


# -- lowering the quota ---------------------------------------------------------------------------

def test_lowering_the_quota_below_usage_blocks_new_pushes_and_keeps_the_data_readable(admin, admin_api, store):
    project = new_project(admin_api, "lower")
    repo = f"{project['name']}/a"
    image = push_image(admin, repo, "v1", layer_sizes=(20000,))
    used = store.used(project["id"])

    set_quota(admin_api, project["id"], 1000)
    refused_data = secrets.token_bytes(10)
    response = admin.push_blob(repo, refused_data)

    assert "exceeds the limit" in quota_message(response)
    manifest = admin.request("GET", f"/v2/{repo}/manifests/v1", pull(repo), headers={"Accept": OCI_MANIFEST})
    assert manifest.status_code == 200 and manifest.content == image.body
    for digest, size in image.blobs.items():
        blob = admin.request("GET", f"/v2/{repo}/blobs/{digest}", pull(repo))
        assert blob.status_code == 200 and len(blob.content) == size
    storage = ok(admin_api.get(f"/api/v1/projects/{project['id']}/storage"))
    assert storage["storage_used"] == used and storage["storage_quota"] == 1000
    assert storage["percent"] > 100
    assert store.used(project["id"]) == used


def test_a_blob_already_counted_can_be_pushed_again_after_the_quota_was_lowered(admin, admin_api, store):
    project = new_project(admin_api, "lower")
    data = secrets.token_bytes(5000)
    push_blob(admin, f"{project['name']}/a", data)
    set_quota(admin_api, project["id"], 100)

    response = admin.push_blob(f"{project['name']}/b", data)

    assert response.status_code == 201, response.text
    assert store.used(project["id"]) == 5000


def test_raising_the_quota_again_lets_pushes_through(admin, admin_api, store):
    project = quota_project(admin_api, 100)
    data = secrets.token_bytes(500)
    assert admin.push_blob(f"{project['name']}/a", data).status_code == 403

    set_quota(admin_api, project["id"], 1000)

    assert admin.push_blob(f"{project['name']}/a", data).status_code == 201
    assert store.used(project["id"]) == 500


# -- releases -------------------------------------------------------------------------------------

def test_deleting_a_blob_from_its_only_repository_releases_its_bytes(admin, admin_api, project, store):
    repo = f"{project['name']}/a"
    keep = push_blob(admin, repo, secrets.token_bytes(300))
    gone = push_blob(admin, repo, secrets.token_bytes(4000))

    response = admin.request("DELETE", f"/v2/{repo}/blobs/{gone['digest']}", delete(repo))

    assert response.status_code == 202, response.text
    assert ok(admin_api.get(f"/api/v1/projects/{project['id']}"))["storage_used"] == keep["size"]
    assert gone["digest"] not in store.counted(project["id"])
    assert admin.request("HEAD", f"/v2/{repo}/blobs/{gone['digest']}", pull(repo)).status_code == 404


def test_deleting_a_blob_from_one_of_two_repositories_keeps_its_bytes_counted(admin, admin_api, project, store):
    data = secrets.token_bytes(4000)
    a, b = f"{project['name']}/a", f"{project['name']}/b"
    push_blob(admin, a, data)
    push_blob(admin, b, data)

    response = admin.request("DELETE", f"/v2/{a}/blobs/{sha256(data)}", delete(a))

    assert response.status_code == 202, response.text
    assert ok(admin_api.get(f"/api/v1/projects/{project['id']}"))["storage_used"] == 4000
    assert admin.request("HEAD", f"/v2/{b}/blobs/{sha256(data)}", pull(b)).status_code == 200
    assert admin.request("HEAD", f"/v2/{a}/blobs/{sha256(data)}", pull(a)).status_code == 404


def test_deleting_a_manifest_releases_its_own_size(admin, admin_api, project, store):
    repo = f"{project['name']}/a"
    image = push_image(admin, repo, "v1")

    response = admin.request("DELETE", f"/v2/{repo}/manifests/{image.digest}", delete(repo))

    assert response.status_code == 202, response.text
    assert store.used(project["id"]) == sum(image.blobs.values())
    assert recount(admin_api, project["id"])["drift"] == 0


def test_deleting_a_tag_releases_nothing(admin, admin_api, project, store):
    repo = f"{project['name']}/a"
    image = push_image(admin, repo, "v1")

    response = admin.request("DELETE", f"/v2/{repo}/manifests/v1", delete(repo))

    assert response.status_code == 202, response.text
    assert store.used(project["id"]) == sum(image.blobs.values()) + image.size


def test_space_released_by_a_delete_can_be_used_again(admin, admin_api, store):
    project = quota_project(admin_api, 5000)
    repo = f"{project['name']}/a"
    first = push_blob(admin, repo, secrets.token_bytes(4000))
    assert admin.push_blob(repo, secrets.token_bytes(4000)).status_code == 403

    assert admin.request("DELETE", f"/v2/{repo}/blobs/{first['digest']}", delete(repo)).status_code == 202

    assert admin.push_blob(repo, secrets.token_bytes(4000)).status_code == 201
    assert store.used(project["id"]) == 4000


# -- events ---------------------------------------------------------------------------------------

def events(store, project_id, kind):
    return list(store["events"].find({"project_id": project_id, "type": kind}))


def test_crossing_eighty_percent_emits_one_quota_warning(admin, admin_api, store):
    project = quota_project(admin_api, 10000)
    repo = f"{project['name']}/a"
    push_blob(admin, repo, secrets.token_bytes(7000))
    assert events(store, project["id"], "QUOTA_WARNING") == []

    push_blob(admin, repo, secrets.token_bytes(1500))
    push_blob(admin, repo, secrets.token_bytes(500))

    warnings = events(store, project["id"], "QUOTA_WARNING")
    assert len(warnings) == 1
    assert warnings[0]["data"]["storage_used"] == 8500
    assert warnings[0]["data"]["storage_quota"] == 10000
    assert warnings[0]["data"]["project"] == {"id": project["id"], "name": project["name"]}
    assert events(store, project["id"], "QUOTA_EXCEEDED") == []


def test_reaching_the_quota_emits_quota_exceeded(admin, admin_api, store):
    project = quota_project(admin_api, 10000)

    push_blob(admin, f"{project['name']}/a", secrets.token_bytes(10000))

    exceeded = events(store, project["id"], "QUOTA_EXCEEDED")
    assert len(exceeded) == 1 and exceeded[0]["data"]["storage_used"] == 10000


def test_a_push_refused_at_its_end_emits_quota_exceeded(admin, admin_api, store):
    project = quota_project(admin_api, 10000)
    repo = f"{project['name']}/a"
    data = secrets.token_bytes(20000)

    response = admin.request("POST", f"/v2/{repo}/blobs/uploads/", push(repo), params={"digest": sha256(data)},
                             data=streamed(data, 4096), headers={"Content-Type": "application/octet-stream"})

    assert response.status_code == 403
    exceeded = events(store, project["id"], "QUOTA_EXCEEDED")
    assert len(exceeded) == 1
    assert exceeded[0]["data"]["refused_bytes"] == 20000 and exceeded[0]["data"]["storage_quota"] == 10000


def test_a_push_refused_early_from_its_content_length_emits_quota_exceeded(admin, admin_api, store):
    project = quota_project(admin_api, 10000)

    response = admin.push_blob(f"{project['name']}/a", secrets.token_bytes(20000))

    assert response.status_code == 403
    exceeded = events(store, project["id"], "QUOTA_EXCEEDED")
    assert len(exceeded) == 1 and exceeded[0]["data"]["storage_quota"] == 10000


def image_body(admin, repo, layer_size):
    """Push a config and a layer of ``layer_size`` random bytes into ``repo``; the manifest referencing them."""
    config = push_blob(admin, repo, b'{"architecture":"amd64","os":"linux"}')
    return encode(image_manifest(config, [push_blob(admin, repo, secrets.token_bytes(layer_size))]))


def test_a_manifest_crossing_eighty_percent_emits_one_quota_warning(admin, admin_api, store):
    project = quota_project(admin_api, -1)
    repo = f"{project['name']}/a"
    body = image_body(admin, repo, 1000)
    used = store.used(project["id"])
    set_quota(admin_api, project["id"], (used + len(body)) * 5 // 4)  # 80 % of it falls within the manifest
    assert events(store, project["id"], "QUOTA_WARNING") == []

    assert admin.put_manifest(repo, "v1", body).status_code == 201

    warnings = events(store, project["id"], "QUOTA_WARNING")
    assert len(warnings) == 1 and warnings[0]["data"]["storage_used"] == used + len(body)


def test_a_manifest_refused_over_the_quota_emits_quota_exceeded(admin, admin_api, store):
    project = quota_project(admin_api, -1)
    repo = f"{project['name']}/a"
    body = image_body(admin, repo, 1000)
    used = store.used(project["id"])
    set_quota(admin_api, project["id"], used + len(body) - 1)

    assert "exceeds the limit" in quota_message(admin.put_manifest(repo, "v1", body))

    exceeded = events(store, project["id"], "QUOTA_EXCEEDED")
    assert len(exceeded) == 1
    assert exceeded[0]["data"]["refused_bytes"] == len(body) and exceeded[0]["data"]["digest"] == sha256(body)
    assert store.used(project["id"]) == used and sha256(body) not in store.counted(project["id"])


def test_a_manifest_refused_over_the_quota_leaves_no_repository_behind(admin, admin_api, store):
    project = quota_project(admin_api, 10)
    repo = f"{project['name']}/empty"
    body = encode(index_manifest([]))  # references nothing, so nothing else made the repository

    assert "exceeds the limit" in quota_message(admin.put_manifest(repo, "v1", body, OCI_INDEX))

    assert_registry_error(admin.request("GET", f"/v2/{repo}/tags/list", pull(repo)), 404, "NAME_UNKNOWN")
    assert store["repositories"].find_one({"_id": repo}) is None
