"""The referrers API: manifests with a subject, listed as an OCI index, filtered by artifactType."""
import pytest

from tests.support.manifests import (
    OCI_INDEX, OCI_MANIFEST, assert_registry_error, delete, encode, image_blobs, image_manifest, index_manifest, pull,
    push_artifact, push_image, put_manifest, sha256,
)

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"


def referrers(client, repo, digest, **params):
    return client.request("GET", f"/v2/{repo}/referrers/{digest}", pull(repo), params=params or None)


def test_pushing_a_manifest_with_a_subject_answers_the_oci_subject_header(admin, repo):
    subject = push_image(admin, repo, "v1")
    body = encode(image_manifest(*image_blobs(admin, repo), subject=subject.descriptor))

    response = admin.put_manifest(repo, sha256(body), body, OCI_MANIFEST)

    assert response.status_code == 201, response.text
    assert response.headers["OCI-Subject"] == subject.digest


def test_a_manifest_without_a_subject_answers_no_oci_subject_header(admin, repo):
    config, layers = image_blobs(admin, repo)

    response = admin.put_manifest(repo, "v1", encode(image_manifest(config, layers)), OCI_MANIFEST)

    assert response.status_code == 201
    assert "OCI-Subject" not in response.headers


def test_referrers_are_listed_as_an_oci_index_with_their_artifact_type_and_annotations(admin, repo):
    subject = push_image(admin, repo, "v1")
    sbom = push_artifact(admin, repo, subject.descriptor, SBOM, {"org.example.format": "spdx"})
    signature = push_artifact(admin, repo, subject.descriptor, SIGNATURE, {"org.example.key": "abcd"})

    response = referrers(admin, repo, subject.digest)

    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == OCI_INDEX
    index = response.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    expected = [
        {**sbom.descriptor, "artifactType": SBOM, "annotations": {"org.example.format": "spdx"}},
        {**signature.descriptor, "artifactType": SIGNATURE, "annotations": {"org.example.key": "abcd"}},
    ]
    assert sorted(index["manifests"], key=lambda d: d["digest"]) == sorted(expected, key=lambda d: d["digest"])


def test_a_referrer_without_artifact_type_is_listed_under_its_config_media_type(admin, repo):
    subject = push_image(admin, repo, "v1")
    config, layers = image_blobs(admin, repo)
    body = encode(image_manifest(config, layers, subject=subject.descriptor))
    referrer = put_manifest(admin, repo, sha256(body), body, OCI_MANIFEST)

    response = referrers(admin, repo, subject.digest)

    assert response.json()["manifests"] == [{**referrer.descriptor, "artifactType": config["mediaType"]}]


def test_an_index_referrer_without_artifact_type_is_listed_without_one(admin, repo):
    subject = push_image(admin, repo, "v1")
    child = push_image(admin, repo, "child")
    body = encode(index_manifest([child.descriptor], subject=subject.descriptor))
    referrer = put_manifest(admin, repo, sha256(body), body, OCI_INDEX)

    response = referrers(admin, repo, subject.digest)

    assert response.json()["manifests"] == [referrer.descriptor]


def test_filtering_by_artifact_type_lists_only_that_type_and_says_so(admin, repo):
    subject = push_image(admin, repo, "v1")
    sbom = push_artifact(admin, repo, subject.descriptor, SBOM)
    push_artifact(admin, repo, subject.descriptor, SIGNATURE)

    response = referrers(admin, repo, subject.digest, artifactType=SBOM)

    assert response.status_code == 200
    assert response.headers["OCI-Filters-Applied"] == "artifactType"
    assert [(d["digest"], d["artifactType"]) for d in response.json()["manifests"]] == [(sbom.digest, SBOM)]


def test_an_unfiltered_listing_does_not_claim_a_filter(admin, repo):
    subject = push_image(admin, repo, "v1")
    push_artifact(admin, repo, subject.descriptor, SBOM)

    response = referrers(admin, repo, subject.digest)

    assert "OCI-Filters-Applied" not in response.headers


def test_a_digest_without_referrers_lists_an_empty_index_not_404(admin, repo):
    subject = push_image(admin, repo, "v1")

    response = referrers(admin, repo, subject.digest)

    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == OCI_INDEX
    assert response.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def test_a_referrer_may_be_pushed_before_its_subject(admin, repo):
    absent = {"mediaType": OCI_MANIFEST, "digest": sha256(b"subject pushed later"), "size": 20}

    sbom = push_artifact(admin, repo, absent, SBOM)

    listed = referrers(admin, repo, absent["digest"]).json()["manifests"]
    assert [d["digest"] for d in listed] == [sbom.digest]


def test_referrers_of_other_subjects_are_not_listed(admin, repo):
    subject, other = push_image(admin, repo, "v1"), push_image(admin, repo, "v2")
    push_artifact(admin, repo, other.descriptor, SBOM)

    response = referrers(admin, repo, subject.digest)

    assert response.json()["manifests"] == []


def test_a_deleted_referrer_is_no_longer_listed(admin, repo):
    subject = push_image(admin, repo, "v1")
    sbom = push_artifact(admin, repo, subject.descriptor, SBOM)
    kept = push_artifact(admin, repo, subject.descriptor, SIGNATURE)

    deleted = admin.request("DELETE", f"/v2/{repo}/manifests/{sbom.digest}", delete(repo))

    assert deleted.status_code == 202
    assert [d["digest"] for d in referrers(admin, repo, subject.digest).json()["manifests"]] == [kept.digest]


@pytest.mark.parametrize("digest", ["sha256:short", "not-a-digest"])
def test_referrers_of_a_malformed_digest_is_400(admin, repo, digest):
    push_image(admin, repo, "v1")

    response = referrers(admin, repo, digest)

    assert_registry_error(response, 400, "DIGEST_INVALID")
