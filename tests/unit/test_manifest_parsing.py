"""Manifest parsing and validation, in-process: what a manifest PUT accepts and how it refuses."""
import hashlib
import json

import pytest

from services.errors import ManifestInvalid, ManifestTooLarge
from services.manifests import (
    DOCKER_MANIFEST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
    accepts,
    annotations_of,
    parse_manifest,
    platforms_of,
)

CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "a" * 64, "size": 2}
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "b" * 64, "size": 9}


def encode(document):
    return json.dumps(document).encode()


def image(**fields):
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": CONFIG, "layers": [LAYER], **fields}


def test_the_digest_is_of_the_exact_bytes():
    content = encode(image())

    parsed = parse_manifest(content, OCI_MANIFEST)

    assert parsed.digest == "sha256:" + hashlib.sha256(content).hexdigest()


def test_a_sha512_reference_digests_with_sha512():
    content = encode(image())

    assert parse_manifest(content, OCI_MANIFEST, "sha512").digest == "sha512:" + hashlib.sha512(content).hexdigest()


def test_an_image_references_its_config_and_layers():
    parsed = parse_manifest(encode(image()), OCI_MANIFEST)

    assert parsed.blobs == [CONFIG["digest"], LAYER["digest"]]
    assert parsed.children == []
    assert parsed.artifact_type == CONFIG["mediaType"]


def test_foreign_layers_with_urls_are_not_required_here():
    foreign = {**LAYER, "digest": "sha256:" + "c" * 64, "urls": ["https://example.invalid/layer"]}

    parsed = parse_manifest(encode(image(layers=[LAYER, foreign])), OCI_MANIFEST)

    assert parsed.blobs == [CONFIG["digest"], LAYER["digest"]]


def test_an_index_references_its_children():
    child = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "d" * 64, "size": 10}

    parsed = parse_manifest(encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child]}), OCI_INDEX)

    assert (parsed.media_type, parsed.children, parsed.blobs) == (OCI_INDEX, [child["digest"]], [])


def test_the_media_type_comes_from_the_content_type_when_the_body_has_none():
    body = image()
    del body["mediaType"]

    assert parse_manifest(encode(body), DOCKER_MANIFEST).media_type == DOCKER_MANIFEST


def test_a_subject_is_recorded():
    subject = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "e" * 64, "size": 3}

    assert parse_manifest(encode(image(subject=subject)), OCI_MANIFEST).subject == subject["digest"]


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    (encode({"schemaVersion": 1, "name": "x", "fsLayers": []}), "schema 1"),
    (encode({"schemaVersion": 3}), "schemaVersion 2"),
    (encode(image(config={"mediaType": "x", "digest": "md5:00", "size": 1})), "config.digest"),
    (encode(image(layers=[{**LAYER, "size": -1}])), "layers[0].size"),
    (encode(image(annotations={"k": 1})), "annotations"),
    (encode(image(artifactType=7)), "artifactType"),
])
def test_malformed_manifests_are_refused_naming_the_problem(content, message):
    with pytest.raises(ManifestInvalid) as refused:
        parse_manifest(content, OCI_MANIFEST)

    assert message in refused.value.message


def test_an_unknown_media_type_is_refused():
    with pytest.raises(ManifestInvalid, match="unsupported manifest media type"):
        parse_manifest(encode(image(mediaType="application/x-unknown")), None)


@pytest.mark.parametrize("text", ['"\\ud800"', '"a\\udfffb"'])
def test_lone_surrogates_in_annotations_or_artifact_type_are_refused(text):
    content = ('{"schemaVersion":2,"mediaType":"%s","config":%s,"layers":[],"artifactType":%s}'
               % (OCI_MANIFEST, json.dumps(CONFIG), text)).encode()

    with pytest.raises(ManifestInvalid):
        parse_manifest(content, OCI_MANIFEST)


def test_a_content_type_that_contradicts_the_body_is_refused():
    with pytest.raises(ManifestInvalid):
        parse_manifest(encode(image()), DOCKER_MANIFEST)


def test_a_manifest_over_the_limit_is_too_large():
    with pytest.raises(ManifestTooLarge):
        parse_manifest(b" " * (MAX_MANIFEST_BYTES + 1), OCI_MANIFEST)


def test_annotations_are_read_back_from_the_stored_bytes():
    assert annotations_of(encode(image(annotations={"org.example": "v"}))) == {"org.example": "v"}


def test_an_indexs_platforms_are_read_back_with_absent_fields_as_none():
    child = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "c" * 64, "size": 7}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**child, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}, child]}

    assert platforms_of(encode(index)) == [
        {"digest": child["digest"], "media_type": OCI_MANIFEST, "size": 7, "os": "linux", "architecture": "arm",
         "variant": "v7"},
        {"digest": child["digest"], "media_type": OCI_MANIFEST, "size": 7, "os": None, "architecture": None,
         "variant": None},
    ]


@pytest.mark.parametrize("header, admitted", [
    (None, True),
    (OCI_MANIFEST, True),
    ("application/json, */*", True),
    (DOCKER_MANIFEST, False),
    (f"{DOCKER_MANIFEST}; q=0.9, {OCI_INDEX}", False),
    ("text/plain", True),
])
def test_accept_negotiation(header, admitted):
    assert accepts(header, OCI_MANIFEST) is admitted
