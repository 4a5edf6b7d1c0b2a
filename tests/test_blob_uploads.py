"""Pushing blobs: single POST, POST then PUT, chunked PATCH uploads, status, cancel, digests and mounts."""
import pytest

from tests.support.manifests import (
    assert_registry_error, bearer, blob_url, get_blob, patch_chunk, pull, push, push_blob, random_bytes, sha256, sha512,
    start_upload,
)


def upload_status(client, repo, location):
    return client.request("GET", location, push(repo))


def finish_upload(client, repo, location, digest, data=b"", headers=None):
    return client.request("PUT", location, push(repo), params={"digest": digest}, data=data,
                          headers={"Content-Type": "application/octet-stream", **(headers or {})})


def head_blob(client, repo, digest):
    return get_blob(client, repo, digest, method="HEAD")


def chunks_of(data, size):
    return [data[i:i + size] for i in range(0, len(data), size)]


def patch_all(client, repo, location, chunks):
    """PATCH chunks in order, following each response's Location; returns the last response."""
    offset, response = 0, None
    for chunk in chunks:
        response = patch_chunk(client, repo, location, chunk, offset)
        assert response.status_code == 202, response.text
        location, offset = response.headers["Location"], offset + len(chunk)
    return response


def assert_created(response, repo, digest):
    assert response.status_code == 201, response.text
    assert response.headers["Location"].endswith(blob_url(repo, digest))
    assert response.headers["Docker-Content-Digest"] == digest


# -- monolithic -----------------------------------------------------------------------------------

def test_a_single_post_with_a_digest_stores_the_blob_at_its_location(admin, repo):
    data = random_bytes(1000)
    digest = sha256(data)

    response = admin.push_blob(repo, data, digest)
    pulled = admin.request("GET", response.headers["Location"], pull(repo))

    assert_created(response, repo, digest)
    assert response.headers["Content-Length"] == "0"
    assert pulled.status_code == 200
    assert pulled.content == data


def test_a_post_then_a_put_with_the_whole_blob_stores_it(admin, repo):
    data = random_bytes(3000)
    digest = sha256(data)
    location = start_upload(admin, repo).headers["Location"]

    response = finish_upload(admin, repo, location, digest, data)

    assert_created(response, repo, digest)
    assert get_blob(admin, repo, digest).content == data


def test_a_single_post_with_a_wrong_digest_is_digest_invalid_and_stores_nothing(admin, repo):
    data = random_bytes(500)
    claimed = sha256(b"something else")

    response = admin.push_blob(repo, data, claimed)

    assert_registry_error(response, 400, "DIGEST_INVALID")
    assert head_blob(admin, repo, claimed).status_code == 404
    assert head_blob(admin, repo, sha256(data)).status_code == 404


@pytest.mark.parametrize("digest", [
    "sha256:xyz",
    "sha256:" + "A" * 64,
    "sha256:" + "a" * 63,
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "not-a-digest",
])
def test_a_single_post_with_a_malformed_digest_is_digest_invalid(admin, repo, digest):
    response = admin.push_blob(repo, b"data", digest)

    assert_registry_error(response, 400, "DIGEST_INVALID")


def test_an_empty_blob_round_trips(admin, repo):
    digest = sha256(b"")

    response = admin.push_blob(repo, b"", digest)
    pulled = get_blob(admin, repo, digest)

    assert_created(response, repo, digest)
    assert pulled.status_code == 200
    assert pulled.content == b""
    assert pulled.headers["Content-Length"] == "0"


def test_the_same_blob_pushed_twice_is_accepted_both_times(admin, repo):
    data = random_bytes(700)

    first, second = admin.push_blob(repo, data, sha256(data)), admin.push_blob(repo, data, sha256(data))

    assert_created(first, repo, sha256(data))
    assert_created(second, repo, sha256(data))
    assert get_blob(admin, repo, sha256(data)).content == data


def test_a_single_post_with_a_sha512_digest_stores_the_blob(admin, repo):
    data = random_bytes(2048)
    digest = sha512(data)

    response = admin.push_blob(repo, data, digest)

    assert_created(response, repo, digest)
    pulled = get_blob(admin, repo, digest)
    assert pulled.content == data
    assert pulled.headers["Docker-Content-Digest"] == digest


def test_pushing_into_a_project_that_does_not_exist_is_name_unknown(admin, repo):
    response = admin.push_blob(repo.replace("/", "-missing/", 1), b"data", sha256(b"data"))

    assert_registry_error(response, 404, "NAME_UNKNOWN")


# -- sessions and chunks --------------------------------------------------------------------------

def test_a_post_without_a_digest_opens_an_upload_session(admin, repo):
    response = admin.request("POST", f"/v2/{repo}/blobs/uploads/", push(repo), headers={"Content-Length": "0"})

    assert response.status_code == 202
    upload_id = response.headers["Docker-Upload-UUID"]
    assert upload_id
    assert f"/v2/{repo}/blobs/uploads/{upload_id}" in response.headers["Location"]
    assert response.headers["Range"] == "0-0"
    assert response.headers["Content-Length"] == "0"


def test_chunks_patched_in_order_then_a_put_with_the_digest_make_the_blob(admin, repo):
    data = random_bytes(10_000)
    digest = sha256(data)
    location = start_upload(admin, repo).headers["Location"]

    offset = 0
    for chunk in chunks_of(data, 4_000):
        response = patch_chunk(admin, repo, location, chunk, offset)
        offset += len(chunk)
        assert response.status_code == 202, response.text
        assert response.headers["Range"] == f"0-{offset - 1}"
        assert response.headers["Content-Length"] == "0"
        location = response.headers["Location"]
    finished = finish_upload(admin, repo, location, digest)

    assert_created(finished, repo, digest)
    assert get_blob(admin, repo, digest).content == data


def test_a_patch_without_content_range_appends_its_body(admin, repo):
    data = random_bytes(5000)
    location = start_upload(admin, repo).headers["Location"]

    first = admin.request("PATCH", location, push(repo), data=data[:3000])
    second = admin.request("PATCH", first.headers["Location"], push(repo), data=data[3000:])
    finished = finish_upload(admin, repo, second.headers["Location"], sha256(data))

    assert (first.status_code, first.headers["Range"]) == (202, "0-2999")
    assert (second.status_code, second.headers["Range"]) == (202, "0-4999")
    assert_created(finished, repo, sha256(data))
    assert get_blob(admin, repo, sha256(data)).content == data


def test_the_final_chunk_can_travel_in_the_closing_put(admin, repo):
    data = random_bytes(9000)
    digest = sha256(data)
    location = patch_all(admin, repo, start_upload(admin, repo).headers["Location"], [data[:6000]]).headers["Location"]

    response = finish_upload(admin, repo, location, digest, data[6000:], headers={"Content-Range": "6000-8999"})

    assert_created(response, repo, digest)
    assert get_blob(admin, repo, digest).content == data


def test_a_final_chunk_out_of_order_in_the_closing_put_is_refused_with_416(admin, repo):
    data = random_bytes(300)
    location = patch_all(admin, repo, start_upload(admin, repo).headers["Location"], [data[:100]]).headers["Location"]

    response = finish_upload(admin, repo, location, sha256(data), data[200:], headers={"Content-Range": "200-299"})

    assert_registry_error(response, 416)
    assert head_blob(admin, repo, sha256(data)).status_code == 404
    assert upload_status(admin, repo, location).headers["Range"] == "0-99"


def test_upload_status_reports_the_bytes_received_so_far(admin, repo):
    location = patch_all(admin, repo, start_upload(admin, repo).headers["Location"],
                         [random_bytes(700), random_bytes(300)]).headers["Location"]

    response = upload_status(admin, repo, location)

    assert response.status_code == 204
    assert response.headers["Range"] == "0-999"
    upload_id = response.headers["Docker-Upload-UUID"]
    assert response.headers["Location"].endswith(f"/v2/{repo}/blobs/uploads/{upload_id}")


def test_a_chunk_that_does_not_start_where_the_upload_ends_is_refused_with_416(admin, repo):
    location = patch_all(admin, repo, start_upload(admin, repo).headers["Location"],
                         [random_bytes(100)]).headers["Location"]

    response = patch_chunk(admin, repo, location, random_bytes(50), 150)

    assert_registry_error(response, 416, "RANGE_INVALID")
    assert response.headers["Range"] == "0-99"
    assert upload_status(admin, repo, location).headers["Range"] == "0-99"


def test_a_chunk_with_a_malformed_content_range_is_refused_with_416(admin, repo):
    location = start_upload(admin, repo).headers["Location"]

    response = admin.request("PATCH", location, push(repo), data=b"abc",
                             headers={"Content-Type": "application/octet-stream", "Content-Range": "zero-two"})

    assert_registry_error(response, 416, "RANGE_INVALID")
    assert upload_status(admin, repo, location).headers["Range"] == "0-0"


def test_an_upload_resumes_after_a_refused_chunk(admin, repo):
    data = random_bytes(300)
    location = patch_all(admin, repo, start_upload(admin, repo).headers["Location"], [data[:100]]).headers["Location"]
    assert patch_chunk(admin, repo, location, data[200:], 200).status_code == 416

    resumed = patch_chunk(admin, repo, location, data[100:], 100)
    finished = finish_upload(admin, repo, resumed.headers["Location"], sha256(data))

    assert (resumed.status_code, resumed.headers["Range"]) == (202, "0-299")
    assert_created(finished, repo, sha256(data))
    assert get_blob(admin, repo, sha256(data)).content == data


def test_a_closing_put_with_a_wrong_digest_is_digest_invalid_and_discards_the_upload(admin, repo):
    data = random_bytes(2000)
    claimed = sha256(b"not these bytes")
    location = patch_all(admin, repo, start_upload(admin, repo).headers["Location"], [data]).headers["Location"]

    response = finish_upload(admin, repo, location, claimed)

    assert_registry_error(response, 400, "DIGEST_INVALID")
    assert head_blob(admin, repo, claimed).status_code == 404
    assert head_blob(admin, repo, sha256(data)).status_code == 404
    assert_registry_error(upload_status(admin, repo, location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_a_closing_put_with_a_malformed_digest_is_digest_invalid(admin, repo):
    location = patch_all(admin, repo, start_upload(admin, repo).headers["Location"], [b"payload"]).headers["Location"]

    response = finish_upload(admin, repo, location, "sha256:not-hex")

    assert_registry_error(response, 400, "DIGEST_INVALID")
    assert head_blob(admin, repo, sha256(b"payload")).status_code == 404


def test_a_closing_put_without_a_digest_does_not_complete_the_upload(admin, repo):
    location = patch_all(admin, repo, start_upload(admin, repo).headers["Location"], [b"payload"]).headers["Location"]

    response = admin.request("PUT", location, push(repo))

    assert_registry_error(response, 400, "DIGEST_INVALID")
    assert head_blob(admin, repo, sha256(b"payload")).status_code == 404


def test_a_chunked_upload_announced_as_sha512_is_closed_with_a_sha512_digest(admin, repo):
    data = random_bytes(6000)
    digest = sha512(data)
    location = start_upload(admin, repo, **{"digest-algorithm": "sha512"}).headers["Location"]
    location = patch_all(admin, repo, location, chunks_of(data, 2500)).headers["Location"]

    response = finish_upload(admin, repo, location, digest)

    assert_created(response, repo, digest)
    assert get_blob(admin, repo, digest).content == data


def test_a_chunked_upload_closed_with_a_wrong_sha512_digest_is_digest_invalid_and_stores_nothing(admin, repo):
    data = random_bytes(3000)
    claimed = sha512(b"other bytes")
    location = patch_all(admin, repo, start_upload(admin, repo).headers["Location"], [data]).headers["Location"]

    response = finish_upload(admin, repo, location, claimed)

    assert_registry_error(response, 400, "DIGEST_INVALID")
    assert head_blob(admin, repo, claimed).status_code == 404
    assert head_blob(admin, repo, sha512(data)).status_code == 404
    assert_registry_error(upload_status(admin, repo, location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_a_finished_upload_is_gone(admin, repo):
    data = random_bytes(400)
    location = patch_all(admin, repo, start_upload(admin, repo).headers["Location"], [data]).headers["Location"]
    assert finish_upload(admin, repo, location, sha256(data)).status_code == 201

    response = upload_status(admin, repo, location)

    assert_registry_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_registry_error(patch_chunk(admin, repo, location, b"more", len(data)), 404, "BLOB_UPLOAD_UNKNOWN")


def test_cancelling_an_upload_forgets_it(admin, repo):
    location = patch_all(admin, repo, start_upload(admin, repo).headers["Location"], [b"partial"]).headers["Location"]

    cancelled = admin.request("DELETE", location, push(repo))

    assert cancelled.status_code == 204
    assert_registry_error(upload_status(admin, repo, location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_registry_error(patch_chunk(admin, repo, location, b" more", 7), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_an_unknown_upload_id_is_blob_upload_unknown(admin, repo, method):
    start_upload(admin, repo)
    location = f"/v2/{repo}/blobs/uploads/00000000-0000-4000-8000-000000000000"

    response = admin.request(method, location, push(repo), params={"digest": sha256(b"")} if method == "PUT" else None)

    assert_registry_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


def test_an_upload_cannot_be_reached_through_another_repository(admin, repo):
    other = f"{repo}-other"
    start_upload(admin, other)
    upload_id = start_upload(admin, repo).headers["Docker-Upload-UUID"]

    response = admin.request("GET", f"/v2/{other}/blobs/uploads/{upload_id}", push(other))

    assert_registry_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


def test_a_blob_of_20_mib_sent_in_chunks_unaligned_with_storage_round_trips_exactly(admin, repo):
    data = random_bytes(20 * 1024 * 1024)
    digest = sha256(data)
    location = start_upload(admin, repo).headers["Location"]

    last = patch_all(admin, repo, location, chunks_of(data, 5_000_001))
    finished = finish_upload(admin, repo, last.headers["Location"], digest)
    pulled = get_blob(admin, repo, digest)

    assert last.headers["Range"] == f"0-{len(data) - 1}"
    assert_created(finished, repo, digest)
    assert pulled.headers["Content-Length"] == str(len(data))
    assert sha256(pulled.content) == digest


# -- cross-repository mounts ----------------------------------------------------------------------

def mount(client, repo, digest, source):
    return client.request("POST", f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": source},
                          headers={"Content-Length": "0", **bearer(client, push(repo), pull(source))})


def test_mounting_a_blob_from_another_repository_makes_it_readable_there(admin, repo):
    source = f"{repo}-source"
    data = random_bytes(4096)
    digest = push_blob(admin, source, data)["digest"]

    response = mount(admin, repo, digest, source)

    assert_created(response, repo, digest)
    assert get_blob(admin, repo, digest).content == data


def test_mounting_into_a_project_that_does_not_exist_is_name_unknown(admin, repo):
    digest = push_blob(admin, repo, random_bytes(512))["digest"]

    response = mount(admin, repo.replace("/", "-missing/", 1), digest, repo)

    assert_registry_error(response, 404, "NAME_UNKNOWN")


def test_mounting_a_blob_the_source_lacks_falls_back_to_an_upload_session(admin, repo):
    source = f"{repo}-source"
    push_blob(admin, source, b"the source holds something else")
    push_blob(admin, repo, b"the target exists too")
    digest = sha256(b"never pushed anywhere")

    response = mount(admin, repo, digest, source)

    assert response.status_code == 202
    assert "/blobs/uploads/" in response.headers["Location"]
    assert upload_status(admin, repo, response.headers["Location"]).status_code == 204
    assert head_blob(admin, repo, digest).status_code == 404


def test_a_mount_whose_token_lacks_the_source_asks_for_a_token_that_has_it(admin, repo):
    source = f"{repo}-source"
    digest = push_blob(admin, source, random_bytes(128))["digest"]

    response = admin.request("POST", f"/v2/{repo}/blobs/uploads/", push(repo),
                             params={"mount": digest, "from": source}, headers={"Content-Length": "0"})

    assert_registry_error(response, 401, "UNAUTHORIZED")
    challenge = response.headers["WWW-Authenticate"]
    assert f"repository:{repo}:pull,push repository:{source}:pull" in challenge
    assert 'error="insufficient_scope"' in challenge
    assert head_blob(admin, repo, digest).status_code == 404
