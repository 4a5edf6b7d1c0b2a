"""The oras Python SDK against a real server: an artifact of several files pushed with chunked uploads, pulled back."""
import json
import math
import secrets

import pytest

from tests.support.clients import (
    ensure_project,
    log_records,
    oras_client,
    prime_oras_push_token,
    random_file,
    sha256_file,
)

CHUNK = 4 * 1024 * 1024
BIG = 12 * 1024 * 1024 + 12345


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """The files of the artifact: one of ~12 MiB (four 4 MiB chunks) and two small ones."""
    src = tmp_path_factory.mktemp("oras-src")
    random_file(src / "model.bin", BIG, "oras-big")
    (src / "notes.txt").write_text("chunked upload through the oras SDK\n")
    (src / "meta.json").write_text(json.dumps({"name": "artifact", "seed": 1}))
    return [src / "model.bin", src / "notes.txt", src / "meta.json"]


@pytest.fixture(scope="module")
def pushed(registry, artifact, tmp_path_factory):
    """The artifact pushed with ``do_chunked=True``; answers ``(repo, push response)``."""
    repo = f"oras{secrets.token_hex(4)}/artifact"
    ensure_project(registry, repo)
    config = tmp_path_factory.mktemp("oras-push") / "config.json"
    client = oras_client(registry, config)
    prime_oras_push_token(client, registry, repo)
    response = client.push(target=f"{registry.host}/{repo}:v1", files=[str(path) for path in artifact],
                           do_chunked=True, chunk_size=CHUNK, disable_path_validation=True,
                           config_path=str(config), quiet=True)
    return repo, response


def test_oras_chunked_push_answers_201_with_the_digest_the_tag_resolves_to(admin, pushed):
    repo, response = pushed

    head = admin.request("HEAD", f"/v2/{repo}/manifests/v1", f"repository:{repo}:pull",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})

    assert response.status_code == 201
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == response.headers["Docker-Content-Digest"]


def test_oras_chunked_push_sends_each_file_as_chunk_sized_patches(registry, pushed):
    repo, _ = pushed

    patches = [record for record in log_records(registry.log_text())
               if record.get("method") == "PATCH" and record.get("path", "").startswith(f"/v2/{repo}/blobs/uploads/")]

    assert [record["status"] for record in patches] == [202] * (math.ceil(BIG / CHUNK) + 2)


def test_oras_pull_with_the_sdk_token_flow_returns_the_same_bytes(registry, pushed, artifact, tmp_path):
    repo, _ = pushed
    client = oras_client(registry, tmp_path / "config.json")

    files = client.pull(target=f"{registry.host}/{repo}:v1", outdir=str(tmp_path / "out"),
                        config_path=str(tmp_path / "config.json"))

    assert sorted(path.rsplit("/", 1)[1] for path in files) == sorted(path.name for path in artifact)
    assert {path.name: sha256_file(path) for path in artifact} == \
        {name: sha256_file(tmp_path / "out" / name) for name in (path.name for path in artifact)}


def test_oras_manifest_lists_every_file_with_its_digest_and_title(registry, pushed, artifact, tmp_path):
    repo, _ = pushed
    client = oras_client(registry, tmp_path / "config.json")

    manifest = client.get_manifest(f"{registry.host}/{repo}:v1")

    assert {layer["annotations"]["org.opencontainers.image.title"]: layer["digest"] for layer in manifest["layers"]} \
        == {path.name: sha256_file(path) for path in artifact}


def test_oras_get_tags_lists_the_pushed_tag(registry, pushed, tmp_path):
    repo, _ = pushed
    client = oras_client(registry, tmp_path / "config.json")

    assert client.get_tags(f"{registry.host}/{repo}") == ["v1"]
