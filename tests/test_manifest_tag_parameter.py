"""A manifest PUT by digest may tag it too: ``?tag=`` once or more, each tag applied echoed in OCI-Tag."""
from tests.support.manifests import (
    assert_registry_error,
    encode,
    get_manifest,
    image_blobs,
    image_manifest,
    list_tags,
    sha256,
    sha512,
)


def image_body(admin, repo):
    config, layers = image_blobs(admin, repo)
    return encode(image_manifest(config, layers))


def put_by_digest(admin, repo, digest, body, tags):
    return admin.request("PUT", f"/v2/{repo}/manifests/{digest}", f"repository:{repo}:pull,push", data=body,
                         params={"tag": tags}, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})


def test_each_tag_parameter_tags_the_manifest_and_is_echoed(admin, repo):
    body = image_body(admin, repo)

    response = put_by_digest(admin, repo, sha256(body), body, ["v1", "stable"])

    assert response.status_code == 201, response.text
    assert sorted(response.headers["OCI-Tag"].replace(" ", "").split(",")) == ["stable", "v1"]
    for tag in ("v1", "stable"):
        assert get_manifest(admin, repo, tag).headers["Docker-Content-Digest"] == sha256(body)


def test_a_manifest_tagged_by_a_sha512_digest_keeps_that_digest(admin, repo):
    body = image_body(admin, repo)

    response = put_by_digest(admin, repo, sha512(body), body, ["v512"])

    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == sha512(body)
    fetched = get_manifest(admin, repo, "v512")
    assert fetched.headers["Docker-Content-Digest"] == sha512(body)
    assert fetched.content == body


def test_an_invalid_tag_parameter_stores_nothing(admin, repo):
    body = image_body(admin, repo)

    response = put_by_digest(admin, repo, sha256(body), body, ["ok", "-bad"])

    assert_registry_error(response, 400, "TAG_INVALID")
    assert get_manifest(admin, repo, sha256(body)).status_code == 404
    assert list_tags(admin, repo).json()["tags"] == []


def test_a_put_without_tag_parameters_sends_no_oci_tag(admin, repo):
    body = image_body(admin, repo)

    response = put_by_digest(admin, repo, sha256(body), body, [])

    assert response.status_code == 201
    assert "OCI-Tag" not in response.headers
