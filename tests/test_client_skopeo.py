"""skopeo against a real server: a 200 MiB image pushed and pulled with digests preserved, tags, inspect, delete."""
import json
import secrets
import shutil

import pytest

from tests.support.clients import (
    Skopeo,
    ensure_project,
    layout_blob_files,
    layout_manifest,
    push_layout_over_http,
    require_tool,
    sha256_file,
)
from tests.support.manifests import sha256
from tests.support.oci_layout import make_image_layout

require_tool("skopeo")

BIG_LAYER = 200 * 1024 * 1024


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory):
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


@pytest.fixture(scope="module")
def big_layout(tmp_path_factory):
    path = tmp_path_factory.mktemp("skopeo-layout") / "image"
    make_image_layout(path, [BIG_LAYER, 4096], seed="skopeo-big")
    yield path
    shutil.rmtree(path)  # the suite's disk use stays small on a small CI disk


@pytest.fixture(scope="module")
def pushed(registry, skopeo, big_layout):
    """The big layout pushed once with skopeo; answers ``(repo, manifest digest)``."""
    repo = f"skopeo{secrets.token_hex(4)}/app"
    ensure_project(registry, repo)
    skopeo.run("copy", "--preserve-digests", "--dest-tls-verify=false",
               "--dest-creds", f"admin:{registry.admin_password}",
               f"oci:{big_layout}:v1", f"docker://{registry.host}/{repo}:v1")
    return repo, layout_manifest(big_layout)[0]["digest"]


@pytest.fixture(scope="module")
def pulled(registry, skopeo, pushed, tmp_path_factory):
    """The pushed image copied back into a new OCI layout with skopeo."""
    repo, _ = pushed
    out = tmp_path_factory.mktemp("skopeo-pulled") / "image"
    skopeo.run("copy", "--preserve-digests", "--src-tls-verify=false",
               "--src-creds", f"admin:{registry.admin_password}",
               f"docker://{registry.host}/{repo}:v1", f"oci:{out}:v1")
    yield out
    shutil.rmtree(out)


def creds(registry):
    return ["--tls-verify=false", "--creds", f"admin:{registry.admin_password}"]


def test_skopeo_push_stores_the_tag_under_the_manifest_digest_of_the_layout(admin, pushed):
    repo, digest = pushed

    response = admin.request("HEAD", f"/v2/{repo}/manifests/v1", f"repository:{repo}:pull",
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})

    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == digest


def test_skopeo_inspect_raw_returns_the_manifest_bytes_that_were_pushed(registry, skopeo, pushed, big_layout):
    repo, digest = pushed

    result = skopeo.run("inspect", "--raw", *creds(registry), f"docker://{registry.host}/{repo}:v1")

    assert sha256(result.stdout.encode()) == digest
    assert result.stdout.encode() == layout_manifest(big_layout)[1]


def test_skopeo_pull_with_preserved_digests_keeps_the_manifest_digest(pulled, pushed):
    _, digest = pushed

    descriptor, raw, _ = layout_manifest(pulled)

    assert descriptor["digest"] == digest
    assert sha256(raw) == digest


def test_skopeo_pull_returns_every_blob_byte_for_byte(pulled, big_layout):
    source = layout_blob_files(big_layout)
    copied = layout_blob_files(pulled)

    assert sorted(copied) == sorted(source)
    assert {digest: sha256_file(path) for digest, path in copied.items()} == {digest: digest for digest in source}
    assert max(path.stat().st_size for path in copied.values()) > 200 * 1024 * 1024


def test_skopeo_list_tags_shows_the_pushed_tag(registry, skopeo, pushed):
    repo, _ = pushed

    result = skopeo.run("list-tags", *creds(registry), f"docker://{registry.host}/{repo}")

    assert json.loads(result.stdout)["Tags"] == ["v1"]


def test_skopeo_inspect_reports_the_digest_layers_and_labels(registry, skopeo, pushed, big_layout):
    repo, digest = pushed
    _, _, manifest = layout_manifest(big_layout)

    result = skopeo.run("inspect", *creds(registry), f"docker://{registry.host}/{repo}:v1")
    info = json.loads(result.stdout)

    assert info["Digest"] == digest
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    assert info["Labels"] == {"seed": "skopeo-big"}
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")


def test_skopeo_delete_by_digest_removes_the_manifest_and_its_tags(registry, skopeo, admin, repo, tmp_path):
    layout = tmp_path / "image"
    make_image_layout(layout, [64 * 1024], seed="skopeo-delete")
    digest = push_layout_over_http(admin, repo, layout, "v1")
    assert admin.put_manifest(repo, "v2", layout_manifest(layout)[1],
                              "application/vnd.oci.image.manifest.v1+json").status_code == 201

    skopeo.run("delete", *creds(registry), f"docker://{registry.host}/{repo}@{digest}")

    scope = f"repository:{repo}:pull"
    by_tag = admin.request("GET", f"/v2/{repo}/manifests/v1", scope)
    by_digest = admin.request("GET", f"/v2/{repo}/manifests/{digest}", scope)
    tags = admin.request("GET", f"/v2/{repo}/tags/list", scope)
    assert (by_tag.status_code, by_digest.status_code) == (404, 404)
    assert by_tag.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert tags.status_code == 200
    assert not tags.json()["tags"]


def test_skopeo_push_with_a_wrong_password_fails_and_stores_nothing(registry, skopeo, admin, repo, big_layout):
    _, _, manifest = layout_manifest(big_layout)

    result = skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", "admin:not-the-password",
                        f"oci:{big_layout}:v1", f"docker://{registry.host}/{repo}:v1", check=False)

    assert result.returncode != 0
    assert "unauthorized" in result.stderr.lower() or "authentication required" in result.stderr.lower(), \
        result.stderr
    scope = f"repository:{repo}:pull"
    assert admin.request("GET", f"/v2/{repo}/tags/list", scope).status_code == 404
    for blob in [manifest["config"], *manifest["layers"]]:
        assert admin.request("HEAD", f"/v2/{repo}/blobs/{blob['digest']}", scope).status_code == 404
    catalog = admin.request("GET", "/v2/_catalog", "registry:catalog:*")
    assert repo not in catalog.json()["repositories"]
