"""Pulling blobs: GET/HEAD headers, byte ranges (across storage chunks), unknown blobs, deletes, and a reader
that stops reading."""
import os
import socket
import time

import pytest

from tests.support.api_client import Api, ok
from tests.support.clients import ensure_project, wait_until
from tests.support.manifests import assert_registry_error, blob_url, delete, get_blob, push_blob, random_bytes, sha256
from tests.support.processes import started_server
from tests.support.registry_client import RegistryClient

STORAGE_CHUNK = 1024 * 1024


@pytest.fixture
def small_blob(admin, repo):
    data = random_bytes(100)
    return data, push_blob(admin, repo, data)["digest"]


def test_get_returns_the_blob_with_its_digest_etag_and_length(admin, repo, small_blob):
    data, digest = small_blob

    response = get_blob(admin, repo, digest)

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Content-Length"] == "100"
    assert digest in response.headers["ETag"]


def test_head_answers_the_headers_of_get_without_a_body(admin, repo, small_blob):
    _, digest = small_blob

    response = get_blob(admin, repo, digest, method="HEAD")

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Content-Length"] == "100"
    assert digest in response.headers["ETag"]


def test_a_byte_range_answers_206_with_those_bytes(admin, repo, small_blob):
    data, digest = small_blob

    response = get_blob(admin, repo, digest, byte_range="bytes=10-19")

    assert response.status_code == 206
    assert response.content == data[10:20]
    assert response.headers["Content-Range"] == "bytes 10-19/100"
    assert response.headers["Content-Length"] == "10"


def test_an_open_ended_range_runs_to_the_end_of_the_blob(admin, repo, small_blob):
    data, digest = small_blob

    response = get_blob(admin, repo, digest, byte_range="bytes=90-")

    assert response.status_code == 206
    assert response.content == data[90:]
    assert response.headers["Content-Range"] == "bytes 90-99/100"


def test_a_suffix_range_answers_the_last_bytes(admin, repo, small_blob):
    data, digest = small_blob

    response = get_blob(admin, repo, digest, byte_range="bytes=-7")

    assert response.status_code == 206
    assert response.content == data[-7:]
    assert response.headers["Content-Range"] == "bytes 93-99/100"


@pytest.mark.parametrize("byte_range, start", [("bytes=95-500", 95), ("bytes=-500", 0)])
def test_a_range_past_the_blob_is_clipped_to_it(admin, repo, small_blob, byte_range, start):
    data, digest = small_blob

    response = get_blob(admin, repo, digest, byte_range=byte_range)

    assert response.status_code == 206
    assert response.content == data[start:]
    assert response.headers["Content-Range"] == f"bytes {start}-99/100"


@pytest.mark.parametrize("byte_range", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_an_unsatisfiable_range_answers_416_with_the_blob_size(admin, repo, small_blob, byte_range):
    _, digest = small_blob

    response = get_blob(admin, repo, digest, byte_range=byte_range)

    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */100"


def test_a_range_whose_end_precedes_its_start_is_ignored(admin, repo, small_blob):
    # RFC 9110 section 14.1.1: a syntactically invalid byte-range-spec makes the recipient ignore the header.
    data, digest = small_blob

    response = get_blob(admin, repo, digest, byte_range="bytes=50-10")

    assert response.status_code == 200
    assert response.content == data


@pytest.mark.parametrize("start, end", [
    (STORAGE_CHUNK - 10, STORAGE_CHUNK + 9),
    (STORAGE_CHUNK, STORAGE_CHUNK),
    (STORAGE_CHUNK - 1, 2 * STORAGE_CHUNK),
    (5, 3 * STORAGE_CHUNK - 5),
])
def test_ranges_crossing_storage_chunk_boundaries_are_exact(admin, repo, start, end):
    data = random_bytes(3 * STORAGE_CHUNK + 12345)
    digest = push_blob(admin, repo, data)["digest"]

    response = get_blob(admin, repo, digest, byte_range=f"bytes={start}-{end}")

    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    assert response.content == data[start:end + 1]


def test_a_whole_multi_chunk_blob_reads_back_exactly(admin, repo):
    data = random_bytes(3 * STORAGE_CHUNK + 1)
    digest = push_blob(admin, repo, data)["digest"]

    response = get_blob(admin, repo, digest)

    assert response.status_code == 200
    assert response.content == data


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_an_unknown_blob_is_blob_unknown(admin, repo, small_blob, method):
    response = get_blob(admin, repo, sha256(b"never pushed"), method=method)

    assert response.status_code == 404
    if method == "GET":
        assert_registry_error(response, 404, "BLOB_UNKNOWN")


def test_a_blob_of_another_repository_is_unknown_here(admin, repo):
    digest = push_blob(admin, f"{repo}-elsewhere", random_bytes(64))["digest"]
    push_blob(admin, repo, random_bytes(64))

    response = get_blob(admin, repo, digest)

    assert_registry_error(response, 404, "BLOB_UNKNOWN")


def test_a_malformed_digest_is_digest_invalid(admin, repo, small_blob):
    response = get_blob(admin, repo, "sha256:nothex")

    assert_registry_error(response, 400, "DIGEST_INVALID")


def test_deleting_a_blob_answers_202_and_it_is_gone(admin, repo, small_blob):
    _, digest = small_blob

    deleted = admin.request("DELETE", blob_url(repo, digest), delete(repo))

    assert deleted.status_code == 202
    assert_registry_error(get_blob(admin, repo, digest), 404, "BLOB_UNKNOWN")


def test_deleting_a_blob_in_one_repository_leaves_it_readable_in_another(admin, repo):
    other = f"{repo}-other"
    data = random_bytes(300)
    digest = push_blob(admin, repo, data)["digest"]
    push_blob(admin, other, data)

    deleted = admin.request("DELETE", blob_url(repo, digest), delete(repo))

    assert deleted.status_code == 202
    assert_registry_error(get_blob(admin, repo, digest), 404, "BLOB_UNKNOWN")
    assert get_blob(admin, other, digest).content == data


def test_deleting_an_unknown_blob_is_blob_unknown(admin, repo, small_blob):
    response = admin.request("DELETE", blob_url(repo, sha256(b"never pushed")), delete(repo))

    assert_registry_error(response, 404, "BLOB_UNKNOWN")


# -- a reader that stops reading -------------------------------------------------------------------

SEND_TIMEOUT = 2


@pytest.fixture(scope="module", params=["gridfs", "filesystem"])
def backend_registry(mongo, tmp_path_factory, request):
    """A server per streaming backend, cutting off a download whose client took nothing for SEND_TIMEOUT seconds;
    on the filesystem backend, the kernel sends the blob from its file."""
    with started_server(mongo, tmp_path_factory.mktemp("impatient"),
                        env={"CYP_BLOB_SEND_TIMEOUT_SECONDS": str(SEND_TIMEOUT),
                             "CYP_STORAGE_BACKEND": request.param}) as server:
        yield server


@pytest.mark.parametrize("asked,status,expected", [
    (None, 200, slice(None)),
    ("bytes=0-0", 206, slice(0, 1)),
    ("bytes=4194300-4194310", 206, slice(4194300, 4194311)),
    ("bytes=9000000-", 206, slice(9000000, None)),
])
def test_a_blob_and_its_ranges_are_served_byte_exact(backend_registry, asked, status, expected):
    server = backend_registry
    ensure_project(server, "ranges/app")
    client = RegistryClient(server.url, "admin", server.admin_password)
    data = random_bytes(9 * 1024 * 1024 + 123)
    client.push_blob("ranges/app", data)

    response = client.request("GET", f"/v2/ranges/app/blobs/{sha256(data)}", "repository:ranges/app:pull",
                              headers={"Range": asked} if asked else {})

    assert response.status_code == status
    assert response.content == data[expected]
    assert int(response.headers["Content-Length"]) == len(data[expected])


def test_a_download_whose_client_stops_reading_is_cut_off_after_the_send_timeout(backend_registry):
    server = backend_registry
    ok(Api(server.url).session("admin", server.admin_password).post("/api/v1/projects", json={"name": "stall"}))
    client = RegistryClient(server.url, "admin", server.admin_password)
    data = random_bytes(32 * 1024 * 1024)
    assert client.push_blob("stall/app", data).status_code == 201
    token = client.token("repository:stall/app:pull")
    logged_before = len(server.log_text())

    with socket.create_connection(("127.0.0.1", server.port)) as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        reader.sendall(f"GET /v2/stall/app/blobs/{sha256(data)} HTTP/1.1\r\nHost: {server.host}\r\n"
                       f"Authorization: Bearer {token}\r\n\r\n".encode())
        time.sleep(SEND_TIMEOUT + 3)  # reading nothing meanwhile: the server's writes stall
        reader.settimeout(30)
        received = 0
        while piece := reader.recv(1024 * 1024):  # what the kernels held, then the end the server made
            received += len(piece)

    assert received < len(data)
    assert wait_until(lambda: "blob download stalled" in server.log_text()[logged_before:], 10)
    assert "Traceback" not in server.log_text()[logged_before:]


@pytest.mark.parametrize("backend_registry", ["filesystem"], indirect=True)
@pytest.mark.parametrize("asked", [None, "bytes=50000-50009"])
def test_a_blob_file_found_short_is_answered_unavailable_not_cut_short(backend_registry, asked):
    server = backend_registry
    ensure_project(server, "short/app")
    client = RegistryClient(server.url, "admin", server.admin_password)
    data = random_bytes(100_000)
    client.push_blob("short/app", data)
    [path] = (server.data_dir / "blobs" / "blobs").glob(f"sha256/*/{sha256(data).split(':')[1]}.*")
    os.truncate(path, 10)

    response = client.request("GET", f"/v2/short/app/blobs/{sha256(data)}", "repository:short/app:pull",
                              headers={"Range": asked} if asked else {})

    assert_registry_error(response, 503, "UNAVAILABLE")
