"""podman against a real server: an image pushed from podman's own storage, removed, pulled back and unpacked.

podman runs as root with vfs storage, cgroupfs and file events under a temporary directory (see
tests.support.clients.Podman), so it needs no systemd, no overlay mounts and leaves the machine's storage alone.
"""
import json
import secrets
from pathlib import Path

import pytest

from tests.support.clients import (
    Podman,
    ensure_project,
    layer_file_bytes,
    layout_manifest,
    require_tool,
)
from tests.support.oci_layout import make_image_layout

require_tool("podman")

SEED = "podman"
LAYER_SIZES = [3 * 1024 * 1024, 64 * 1024]


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    path = tmp_path_factory.mktemp("podman-layout") / "image"
    make_image_layout(path, LAYER_SIZES, seed=SEED)
    return path


@pytest.fixture(scope="module")
def image_id(layout):
    """podman's image ID of the layout's image: the digest of its config, without the algorithm."""
    return layout_manifest(layout)[2]["config"]["digest"].split(":", 1)[1]


@pytest.fixture(scope="module")
def pushed(registry, layout, image_id, tmp_path_factory):
    """The layout imported into a podman store, pushed, then removed locally; answers ``(repo, digest)``."""
    podman = Podman(tmp_path_factory.mktemp("podman-push"))
    imported = podman.run("pull", "--signature-policy", podman.policy, f"oci:{layout}:v1")
    assert imported.stdout.split()[-1] == image_id
    repo = f"podman{secrets.token_hex(4)}/app"
    ensure_project(registry, repo)
    digest_file = podman.base / "digest"
    podman.run("push", "--signature-policy", podman.policy, "--tls-verify=false",
               "--creds", f"admin:{registry.admin_password}", "--digestfile", str(digest_file),
               image_id, f"docker://{registry.host}/{repo}:v1")
    podman.run("rmi", "--force", image_id)
    assert podman.run("images", "--quiet").stdout.strip() == ""
    return repo, digest_file.read_text().strip()


@pytest.fixture(scope="module")
def pulled(registry, pushed, tmp_path_factory):
    """A podman store into which the pushed tag was pulled; answers ``(podman, image reference)``."""
    repo, _ = pushed
    podman = Podman(tmp_path_factory.mktemp("podman-pull"))
    reference = f"{registry.host}/{repo}:v1"
    podman.run("pull", "--signature-policy", podman.policy, "--tls-verify=false",
               "--creds", f"admin:{registry.admin_password}", reference)
    return podman, reference


def test_podman_push_reports_the_digest_the_registry_serves_for_the_tag(admin, pushed):
    repo, digest = pushed

    response = admin.request("HEAD", f"/v2/{repo}/manifests/v1", f"repository:{repo}:pull")

    assert digest.startswith("sha256:")
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == digest


def test_podman_pull_restores_the_image_id_and_digest_that_were_pushed(pulled, pushed, image_id):
    podman, reference = pulled
    _, digest = pushed

    result = podman.run("image", "inspect", "--format", "{{.Id}} {{.Digest}}", reference)

    assert result.stdout.split() == [image_id, digest]


def test_podman_pulled_layers_unpack_to_the_original_files(pulled):
    podman, reference = pulled

    root = podman.run("image", "mount", reference).stdout.strip()
    try:
        files = {path.name: path.read_bytes() for path in Path(root).iterdir()}
    finally:
        podman.run("image", "unmount", reference)

    assert files == {f"data-{SEED}-{i}.bin": layer_file_bytes(size, SEED, i) for i, size in enumerate(LAYER_SIZES)}


def test_podman_login_with_the_admin_password_succeeds(registry, tmp_path):
    podman = Podman(tmp_path)

    result = podman.run("login", "--tls-verify=false", "--username", "admin",
                        "--password", registry.admin_password, registry.host)

    assert "Login Succeeded" in result.stdout


def test_podman_login_with_a_wrong_password_fails(registry, tmp_path):
    podman = Podman(tmp_path)

    result = podman.run("login", "--tls-verify=false", "--username", "admin", "--password", "not-the-password",
                        registry.host, check=False)

    assert result.returncode != 0
    assert "invalid username/password" in result.stderr
    assert json.loads((tmp_path / "auth.json").read_text())["auths"] == {}
