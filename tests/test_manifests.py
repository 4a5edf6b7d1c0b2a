"""Manifests: byte-exact PUT/GET by tag and digest, the media types, references, limits, Accept, deletes."""
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.manifests import (
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, EMPTY_JSON_DIGEST, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, assert_registry_error,
    delete, encode, get_manifest, image_blobs, image_manifest, index_manifest, list_tags, pull, push_artifact,
    push_blob, push_image, put_manifest, sha256, sha512,
)

MAX_MANIFEST = 4 * 1024 * 1024


def oddly_spaced(document):
    """The document as valid JSON with whitespace no serializer would produce."""
    return json.dumps(document, indent="\t", separators=(" ,  ", " :\n")).encode() + b"\n\n  "


def delete_manifest(client, repo, reference):
    return client.request("DELETE", f"/v2/{repo}/manifests/{reference}", delete(repo))


def padded(document, size):
    """``document`` encoded to exactly ``size`` bytes by an annotation of filler."""
    document = {**document, "annotations": {"filler": ""}}
    filler = size - len(encode(document))
    document["annotations"]["filler"] = "x" * filler
    body = encode(document)
    assert len(body) == size
    return body


# -- pushing and pulling --------------------------------------------------------------------------

def test_putting_a_manifest_by_tag_answers_201_with_the_digest_of_the_exact_bytes(admin, repo):
    config, layers = image_blobs(admin, repo)
    body = oddly_spaced(image_manifest(config, layers))

    response = admin.put_manifest(repo, "v1", body, OCI_MANIFEST)

    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(body)
    assert response.headers["Location"].endswith(f"/v2/{repo}/manifests/{sha256(body)}")


def test_a_manifest_reads_back_byte_for_byte_with_its_media_type(admin, repo):
    config, layers = image_blobs(admin, repo)
    pushed = put_manifest(admin, repo, "v1", oddly_spaced(image_manifest(config, layers)), OCI_MANIFEST)

    response = get_manifest(admin, repo, "v1")

    assert response.status_code == 200
    assert response.content == pushed.body
    assert response.headers["Content-Type"] == OCI_MANIFEST
    assert response.headers["Docker-Content-Digest"] == pushed.digest
    assert response.headers["Content-Length"] == str(len(pushed.body))


def test_the_location_of_a_pushed_manifest_is_pullable(admin, repo):
    config, layers = image_blobs(admin, repo)
    response = admin.put_manifest(repo, "v1", encode(image_manifest(config, layers)), OCI_MANIFEST)

    pulled = admin.request("GET", response.headers["Location"], pull(repo))

    assert pulled.status_code == 200
    assert sha256(pulled.content) == response.headers["Docker-Content-Digest"]


def test_putting_a_manifest_by_digest_stores_it_without_a_tag(admin, repo):
    config, layers = image_blobs(admin, repo)
    body = oddly_spaced(image_manifest(config, layers))

    response = admin.put_manifest(repo, sha256(body), body, OCI_MANIFEST)

    assert response.status_code == 201
    assert response.headers["Docker-Content-Digest"] == sha256(body)
    assert get_manifest(admin, repo, sha256(body)).content == body
    assert list_tags(admin, repo).json()["tags"] == []


def test_putting_a_manifest_under_a_digest_it_does_not_have_is_digest_invalid(admin, repo):
    config, layers = image_blobs(admin, repo)
    body = encode(image_manifest(config, layers))
    wrong = sha256(body + b" ")

    response = admin.put_manifest(repo, wrong, body, OCI_MANIFEST)

    assert_registry_error(response, 400, "DIGEST_INVALID")
    assert_registry_error(get_manifest(admin, repo, wrong), 404, "MANIFEST_UNKNOWN")
    assert_registry_error(get_manifest(admin, repo, sha256(body)), 404, "MANIFEST_UNKNOWN")


def test_a_manifest_can_be_pushed_and_pulled_by_a_sha512_digest(admin, repo):
    config, layers = image_blobs(admin, repo)
    body = encode(image_manifest(config, layers))
    digest = sha512(body)

    response = admin.put_manifest(repo, digest, body, OCI_MANIFEST)
    pulled = get_manifest(admin, repo, digest)

    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    assert pulled.content == body
    assert pulled.headers["Docker-Content-Digest"] == digest


def test_a_manifest_cannot_reference_a_blob_only_another_repository_holds(admin, repo):
    config, layers = image_blobs(admin, f"{repo}-elsewhere")
    push_blob(admin, repo, b"this repository exists")
    body = encode(image_manifest(config, layers))

    response = admin.put_manifest(repo, "v1", body, OCI_MANIFEST)

    assert_registry_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_registry_error(get_manifest(admin, repo, "v1"), 404, "MANIFEST_UNKNOWN")


def test_putting_a_tag_again_moves_it_to_the_new_manifest(admin, repo):
    push_image(admin, repo, "latest")
    second = push_image(admin, repo, "latest")

    response = get_manifest(admin, repo, "latest")

    assert response.headers["Docker-Content-Digest"] == second.digest
    assert list_tags(admin, repo).json()["tags"] == ["latest"]


def test_concurrent_puts_of_one_tag_all_succeed_each_with_its_event_and_the_tag_ends_on_one_of_them(admin, repo, db):
    config, layers = image_blobs(admin, repo)
    bodies = [encode({**image_manifest(config, layers), "annotations": {"n": str(n)}}) for n in range(16)]

    with ThreadPoolExecutor(len(bodies)) as pool:
        statuses = list(pool.map(lambda body: admin.put_manifest(repo, "latest", body, OCI_MANIFEST).status_code,
                                 bodies))

    assert statuses == [201] * len(bodies)
    assert get_manifest(admin, repo, "latest").headers["Docker-Content-Digest"] in {sha256(body) for body in bodies}
    assert db.events.count_documents({"type": "PUSH_ARTIFACT", "data.repository": repo}) == len(bodies)


def test_a_tag_read_by_many_clients_at_once_answers_each_with_the_manifest_pushed_before_it_asked(admin, repo):
    config, layers = image_blobs(admin, repo)
    bodies = [encode({**image_manifest(config, layers), "annotations": {"n": str(n)}}) for n in range(2)]
    put_manifest(admin, repo, "hot", bodies[0])
    stop, seen = threading.Event(), []

    def pull_in_a_loop():
        while not stop.is_set():
            response = get_manifest(admin, repo, "hot")
            seen.append((response.status_code, response.headers.get("Docker-Content-Digest")))

    # Reads of the tag overlap all along, so the server shares them; each answer after a push must be that push's.
    with ThreadPoolExecutor(8) as pool:
        pullers = [pool.submit(pull_in_a_loop) for _ in range(8)]
        try:
            stale = []
            for round_number in range(40):
                body = bodies[round_number % 2]
                put_manifest(admin, repo, "hot", body)
                answered = get_manifest(admin, repo, "hot").headers["Docker-Content-Digest"]
                if answered != sha256(body):
                    stale.append(round_number)
        finally:
            stop.set()
        for puller in pullers:
            puller.result()

    assert stale == []
    assert {answer for answer in seen} <= {(200, sha256(body)) for body in bodies}
    assert len(seen) > 40


def test_a_docker_schema2_manifest_round_trips_with_its_media_type(admin, repo):
    pushed = push_image(admin, repo, "v1", media_type=DOCKER_MANIFEST)

    response = get_manifest(admin, repo, "v1", accept=DOCKER_MANIFEST)

    assert response.status_code == 200
    assert response.content == pushed.body
    assert response.headers["Content-Type"] == DOCKER_MANIFEST


@pytest.mark.parametrize("index_type, child_type", [(DOCKER_MANIFEST_LIST, DOCKER_MANIFEST), (OCI_INDEX, OCI_MANIFEST)])
def test_an_index_of_pushed_manifests_round_trips_with_its_media_type(admin, repo, index_type, child_type):
    children = [push_image(admin, repo, f"arch{i}", media_type=child_type) for i in range(2)]
    platforms = [{"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}]
    document = index_manifest([{**child.descriptor, "platform": platform}
                               for child, platform in zip(children, platforms)], index_type)
    body = oddly_spaced(document)

    response = admin.put_manifest(repo, "multi", body, index_type)
    pulled = get_manifest(admin, repo, "multi", accept=index_type)

    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(body)
    assert pulled.content == body
    assert pulled.headers["Content-Type"] == index_type


@pytest.mark.parametrize("index_type, child_type", [(DOCKER_MANIFEST_LIST, DOCKER_MANIFEST), (OCI_INDEX, OCI_MANIFEST)])
def test_an_index_of_a_missing_manifest_is_manifest_blob_unknown_and_not_stored(admin, repo, index_type, child_type):
    present = push_image(admin, repo, "present", media_type=child_type)
    missing = {"mediaType": child_type, "digest": sha256(b"no such manifest"), "size": 16}
    body = encode(index_manifest([present.descriptor, missing], index_type))

    response = admin.put_manifest(repo, "multi", body, index_type)

    assert_registry_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_registry_error(get_manifest(admin, repo, "multi"), 404, "MANIFEST_UNKNOWN")
    assert_registry_error(get_manifest(admin, repo, sha256(body)), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("missing", ["config", "layer"])
def test_a_manifest_referencing_a_missing_blob_is_manifest_blob_unknown_and_not_stored(admin, repo, missing):
    config, layers = image_blobs(admin, repo)
    absent = {"mediaType": config["mediaType"], "digest": sha256(b"never pushed"), "size": 12}
    document = image_manifest(absent, layers) if missing == "config" else image_manifest(config, layers + [absent])
    body = encode(document)

    response = admin.put_manifest(repo, "v1", body, OCI_MANIFEST)

    assert_registry_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_registry_error(get_manifest(admin, repo, "v1"), 404, "MANIFEST_UNKNOWN")
    assert_registry_error(get_manifest(admin, repo, sha256(body)), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("body", [
    b"{not json",
    b"[]",
    b'{"mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": "x", "layers": []}',
    b"\xff\xfe\x00",
], ids=["truncated", "array", "no-schema-version", "config-not-descriptor", "not-utf8"])
def test_a_malformed_manifest_is_manifest_invalid(admin, repo, body):
    image_blobs(admin, repo)

    response = admin.put_manifest(repo, "v1", body, OCI_MANIFEST)

    assert_registry_error(response, 400, "MANIFEST_INVALID")
    assert_registry_error(get_manifest(admin, repo, "v1"), 404, "MANIFEST_UNKNOWN")


def test_a_manifest_of_exactly_4_mib_is_accepted(admin, repo):
    config, layers = image_blobs(admin, repo)
    body = padded(image_manifest(config, layers), MAX_MANIFEST)

    response = admin.put_manifest(repo, "big", body, OCI_MANIFEST)

    assert response.status_code == 201, response.text
    assert get_manifest(admin, repo, "big").content == body


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_manifest_over_4_mib_is_size_invalid_with_413(admin, repo, framing):
    config, layers = image_blobs(admin, repo)
    body = padded(image_manifest(config, layers), MAX_MANIFEST + 1)
    data = body if framing == "content-length" else (body[i:i + 65536] for i in range(0, len(body), 65536))

    response = admin.put_manifest(repo, "big", data, OCI_MANIFEST)

    assert_registry_error(response, 413, "SIZE_INVALID")
    assert_registry_error(get_manifest(admin, repo, "big"), 404, "MANIFEST_UNKNOWN")


def test_an_oci_artifact_with_an_empty_config_is_accepted(admin, repo):
    pushed = push_artifact(admin, repo, reference="sbom", artifact_type="application/vnd.example.sbom.v1")

    response = get_manifest(admin, repo, "sbom")

    assert response.status_code == 200
    assert response.content == pushed.body
    document = response.json()
    assert document["artifactType"] == "application/vnd.example.sbom.v1"
    assert document["config"] == {"mediaType": OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2}


@pytest.mark.parametrize("tag", ["-leading-dash", ".leading-dot", "x" * 129, "bad!tag"])
def test_an_invalid_tag_is_tag_invalid(admin, repo, tag):
    config, layers = image_blobs(admin, repo)

    response = admin.put_manifest(repo, tag, encode(image_manifest(config, layers)), OCI_MANIFEST)

    assert_registry_error(response, 400, "TAG_INVALID")
    assert list_tags(admin, repo).json()["tags"] == []


def test_the_longest_valid_tag_is_accepted(admin, repo):
    tag = "T" + "a_.-" * 31 + "zzz"

    push_image(admin, repo, tag)

    assert list_tags(admin, repo).json()["tags"] == [tag]


# -- HEAD and Accept ------------------------------------------------------------------------------

def test_head_answers_the_digest_and_length_without_a_body(admin, repo):
    pushed = push_image(admin, repo, "v1")

    response = get_manifest(admin, repo, "v1", method="HEAD")

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Docker-Content-Digest"] == pushed.digest
    assert response.headers["Content-Length"] == str(len(pushed.body))
    assert response.headers["Content-Type"] == OCI_MANIFEST


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_an_unknown_tag_is_manifest_unknown(admin, repo, method):
    push_image(admin, repo, "v1")

    response = get_manifest(admin, repo, "v2", method=method)

    assert response.status_code == 404
    if method == "GET":
        assert_registry_error(response, 404, "MANIFEST_UNKNOWN")


def test_a_manifest_of_an_unknown_repository_is_name_unknown(admin, repo):
    response = get_manifest(admin, repo, "latest")

    assert_registry_error(response, 404, "NAME_UNKNOWN")


def test_a_manifest_of_another_repository_is_unknown_here(admin, repo):
    elsewhere = push_image(admin, f"{repo}-elsewhere", "v1")
    push_image(admin, repo, "v1")

    response = get_manifest(admin, repo, elsewhere.digest)

    assert_registry_error(response, 404, "MANIFEST_UNKNOWN")


def test_a_client_accepting_only_docker_manifests_does_not_get_an_oci_manifest(admin, repo):
    push_image(admin, repo, "v1", media_type=OCI_MANIFEST)

    response = get_manifest(admin, repo, "v1", accept=DOCKER_MANIFEST)

    assert_registry_error(response, 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("accept", ["*/*", f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5", f"{OCI_INDEX},{OCI_MANIFEST}"])
def test_a_client_accepting_the_manifest_type_gets_it(admin, repo, accept):
    pushed = push_image(admin, repo, "v1", media_type=OCI_MANIFEST)

    response = get_manifest(admin, repo, "v1", accept=accept)

    assert response.status_code == 200
    assert response.content == pushed.body
    assert response.headers["Content-Type"] == OCI_MANIFEST


# -- deletes --------------------------------------------------------------------------------------

def test_deleting_a_manifest_by_digest_removes_it_and_its_tags(admin, repo):
    pushed = push_image(admin, repo, "v1")
    put_manifest(admin, repo, "stable", pushed.body, OCI_MANIFEST)
    kept = push_image(admin, repo, "other")

    response = delete_manifest(admin, repo, pushed.digest)

    assert response.status_code == 202
    assert_registry_error(get_manifest(admin, repo, pushed.digest), 404, "MANIFEST_UNKNOWN")
    assert_registry_error(get_manifest(admin, repo, "v1"), 404, "MANIFEST_UNKNOWN")
    assert list_tags(admin, repo).json()["tags"] == ["other"]
    assert get_manifest(admin, repo, kept.digest).status_code == 200


def test_deleting_a_tag_removes_only_the_tag(admin, repo):
    pushed = push_image(admin, repo, "v1")
    put_manifest(admin, repo, "stable", pushed.body, OCI_MANIFEST)

    response = delete_manifest(admin, repo, "v1")

    assert response.status_code == 202
    assert_registry_error(get_manifest(admin, repo, "v1"), 404, "MANIFEST_UNKNOWN")
    assert list_tags(admin, repo).json()["tags"] == ["stable"]
    assert get_manifest(admin, repo, pushed.digest).content == pushed.body


@pytest.mark.parametrize("reference", ["no-such-tag", sha256(b"no such manifest")])
def test_deleting_an_unknown_manifest_is_manifest_unknown(admin, repo, reference):
    push_image(admin, repo, "v1")

    response = delete_manifest(admin, repo, reference)

    assert_registry_error(response, 404, "MANIFEST_UNKNOWN")
