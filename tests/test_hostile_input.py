"""The hostile inputs that once answered 500 or a silent close, each now a precise 4xx that stores nothing."""
import json
import socket

import pytest

from tests.support.api_client import refused, unique_name
from tests.support.manifests import (
    EMPTY_JSON,
    EMPTY_JSON_DIGEST,
    OCI_EMPTY,
    assert_registry_error,
    get_manifest,
    list_tags,
    push,
    push_blob,
    push_image,
    start_upload,
)

HUGE = "9" * 5000


def test_a_content_range_of_thousands_of_digits_is_refused_with_416(admin, repo):
    location = start_upload(admin, repo).headers["Location"]

    response = admin.request("PATCH", location, push(repo), data=b"abc",
                             headers={"Content-Range": f"0-{HUGE}", "Content-Type": "application/octet-stream"})

    assert_registry_error(response, 416, "RANGE_INVALID")


@pytest.mark.parametrize("n", ["²", "٣", "-1", "1e3"])
def test_a_page_size_that_is_not_an_ascii_number_is_refused(admin, repo, n):
    push_image(admin, repo, "v1")

    assert_registry_error(list_tags(admin, repo, n=n), 400, "PAGINATION_NUMBER_INVALID")


@pytest.mark.parametrize("n", ["9223372036854775808", HUGE])
def test_a_page_size_beyond_any_limit_is_served_as_the_largest_page(admin, repo, n):
    push_image(admin, repo, "v1")

    response = list_tags(admin, repo, n=n)

    assert response.status_code == 200
    assert response.json()["tags"] == ["v1"]


def artifact(**fields):
    body = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2}, "layers": [], **fields}
    return json.dumps(body)


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,
    artifact(annotations={"k": "\ud800"}),
    artifact(artifactType="application/x\udfff"),
], ids=["nested 100000 deep", "lone surrogate in an annotation", "lone surrogate in artifactType"])
def test_a_manifest_that_cannot_be_stored_as_text_is_refused_as_invalid(admin, repo, body):
    push_blob(admin, repo, EMPTY_JSON, OCI_EMPTY)

    response = admin.put_manifest(repo, "v1", body.encode("utf-8", "surrogatepass"))

    assert_registry_error(response, 400, "MANIFEST_INVALID")
    assert get_manifest(admin, repo, "v1").status_code == 404


def test_a_manifest_with_a_nul_in_an_annotation_key_is_stored_byte_exact(admin, repo):
    push_blob(admin, repo, EMPTY_JSON, OCI_EMPTY)
    body = artifact(annotations={"key\u0000with-nul": "v"}).encode()

    response = admin.put_manifest(repo, "v1", body)

    assert response.status_code == 201, response.text
    assert get_manifest(admin, repo, "v1").content == body


@pytest.mark.parametrize("quota, code", [("9223372036854775808", 10001), ("1e30", 10001), ("1000.0", 10001),
                                         ("NaN", 10002), ("Infinity", 10002)])
def test_a_quota_that_is_not_a_bounded_integer_is_refused_and_nothing_is_created(admin_api, quota, code):
    name = unique_name("quota")

    response = admin_api.post("/api/v1/projects", data=f'{{"name": "{name}", "storage_quota": {quota}}}',
                              headers={"Content-Type": "application/json"})

    refused(response, code)
    refused(admin_api.get(f"/api/v1/projects/{name}"), 20001)


def raw_request(registry, head):
    with socket.create_connection(("127.0.0.1", registry.port), timeout=10) as sock:
        sock.sendall(head)
        return sock.recv(200).split(b"\r\n", 1)[0]


def test_a_request_line_over_the_limit_is_answered_414(registry):
    assert raw_request(registry, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n") == \
        b"HTTP/1.1 414 URI Too Long"


def test_headers_over_the_limit_are_answered_431(registry):
    assert raw_request(registry, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n") == \
        b"HTTP/1.1 431 Request Header Fields Too Large"
