"""Every storage backend behind a real server: skopeo push and pull, S3 redirects, and S3 going down."""
import contextlib
import secrets

import boto3
import pymongo
import pytest
import requests

from tests.support.clients import Skopeo, ensure_project, layout_blob_files, layout_manifest, require_tool, sha256_file
from tests.support.manifests import sha256
from tests.support.oci_layout import make_image_layout
from tests.support.processes import RegistryServer
from tests.support.registry_client import RegistryClient
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer

require_tool("skopeo")

# Larger than one 8 MiB S3 part, so the S3 push is a real multipart upload.
LAYER_SIZE = 12 * 1024 * 1024


class GridFSSetup:
    def __init__(self, request, tmp_path):
        self.mongo = request.getfixturevalue("mongo")

    def env(self):
        return {"CYP_STORAGE_BACKEND": "gridfs"}

    def stored_blobs(self, server):
        with pymongo.MongoClient(self.mongo.uri) as client:
            return client[server.db_name]["fs.files"].count_documents({})


class S3Setup:
    def __init__(self, request, tmp_path):
        self.moto = request.getfixturevalue("moto")
        self.bucket = f"e2e-{secrets.token_hex(4)}"

    def env(self):
        return self.moto.registry_env(self.bucket)

    def stored_blobs(self, server):
        s3 = boto3.client("s3", endpoint_url=self.moto.endpoint_url, region_name=REGION,
                          aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)
        return s3.list_objects_v2(Bucket=self.bucket).get("KeyCount", 0)


class FilesystemSetup:
    def __init__(self, request, tmp_path):
        self.root = tmp_path / "fs-root"

    def env(self):
        return {"CYP_STORAGE_BACKEND": "filesystem", "CYP_FILESYSTEM_ROOT": str(self.root)}

    def stored_blobs(self, server):
        return sum(1 for path in (self.root / "blobs").rglob("*") if path.is_file())


SETUPS = {"gridfs": GridFSSetup, "s3": S3Setup, "filesystem": FilesystemSetup}


@contextlib.contextmanager
def running_server(mongo, tmp_path, env):
    server = RegistryServer(mongo.uri, tmp_path / "server", env=env).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    path = tmp_path_factory.mktemp("backends-layout") / "image"
    make_image_layout(path, [LAYER_SIZE, 4096], seed="backends")
    return path


@pytest.fixture
def skopeo(tmp_path):
    return Skopeo(tmp_path / "skopeo")


def skopeo_push_and_pull(skopeo, server, layout, repo, out):
    skopeo.run("copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds",
               f"admin:{server.admin_password}", f"oci:{layout}:v1", f"docker://{server.host}/{repo}:v1")
    skopeo.run("copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds",
               f"admin:{server.admin_password}", f"docker://{server.host}/{repo}:v1", f"oci:{out}:v1")


def assert_same_image(pulled, pushed):
    assert layout_manifest(pulled)[0]["digest"] == layout_manifest(pushed)[0]["digest"]
    pulled_blobs = layout_blob_files(pulled)
    assert set(pulled_blobs) >= set(layout_blob_files(pushed))
    for digest, path in pulled_blobs.items():
        assert sha256_file(path) == digest


@pytest.mark.parametrize("backend", sorted(SETUPS))
def test_skopeo_push_and_pull_through_each_backend(backend, request, mongo, tmp_path, skopeo, layout):
    setup = SETUPS[backend](request, tmp_path)
    with running_server(mongo, tmp_path, setup.env()) as server:
        repo = f"backend-{backend}/app"
        ensure_project(server, repo)

        skopeo_push_and_pull(skopeo, server, layout, repo, tmp_path / "pulled")

        assert_same_image(tmp_path / "pulled", layout)
        assert setup.stored_blobs(server) >= 3  # layer, small layer and config
        assert requests.get(f"{server.url}/health", timeout=30).json()["checks"]["storage"] == "ok"


@pytest.fixture(scope="module")
def redirecting(moto, mongo, tmp_path_factory):
    """A registry on S3 with redirect switched on."""
    env = moto.registry_env(f"redirect-{secrets.token_hex(4)}", redirect=True)
    with running_server(mongo, tmp_path_factory.mktemp("redirect"), env) as server:
        ensure_project(server, "redirect/app")
        yield server


def test_s3_redirect_mode_answers_blob_gets_with_a_presigned_url(moto, redirecting):
    server = redirecting
    repo, scope = "redirect/app", "repository:redirect/app:pull"
    client = RegistryClient(server.url, "admin", server.admin_password)
    data = secrets.token_bytes(100_000)
    digest = sha256(data)
    assert client.push_blob(repo, data, digest).status_code == 201

    head = client.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope)
    get = client.request("GET", f"/v2/{repo}/blobs/{digest}", scope)
    direct = requests.get(get.headers["Location"], timeout=30)
    ranged = requests.get(get.headers["Location"], headers={"Range": "bytes=10-19"}, timeout=30)

    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == len(data)
    assert get.status_code == 307
    assert get.headers["Location"].startswith(f"{moto.endpoint_url}/")
    assert "X-Amz-Signature=" in get.headers["Location"]
    assert "X-Amz-Expires=300" in get.headers["Location"]
    assert get.headers["Docker-Content-Digest"] == digest
    assert direct.status_code == 200 and direct.content == data
    assert ranged.status_code == 206 and ranged.content == data[10:20]


def test_skopeo_pulls_through_s3_redirects(redirecting, skopeo, layout, tmp_path):
    skopeo_push_and_pull(skopeo, redirecting, layout, "redirect/app", tmp_path / "pulled")

    assert_same_image(tmp_path / "pulled", layout)


def test_s3_down_answers_503_and_leaves_no_upload_half_committed(mongo, tmp_path):
    moto = MotoServer(tmp_path / "moto").start()  # a server of its own: this test stops it
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(moto.stop)
        server = cleanup.enter_context(running_server(mongo, tmp_path, moto.registry_env("going-down")))
        repo = "down/app"
        ensure_project(server, repo)
        client = RegistryClient(server.url, "admin", server.admin_password)
        scope = f"repository:{repo}:pull,push"
        stored = secrets.token_bytes(1000)
        stored_digest = sha256(stored)
        assert client.push_blob(repo, stored, stored_digest).status_code == 201
        # An upload with one 8 MiB part in S3 and its tail in MongoDB, then the rest sent while S3 is down.
        pending = secrets.token_bytes(9 * 1024 * 1024)
        pending_digest = sha256(pending)
        location = client.request("POST", f"/v2/{repo}/blobs/uploads/", scope).headers["Location"]
        patched = client.request("PATCH", location, scope, data=pending[:-1000],
                                 headers={"Content-Type": "application/octet-stream"})
        assert patched.status_code == 202, patched.text

        moto.stop()
        blob = client.request("GET", f"/v2/{repo}/blobs/{stored_digest}", scope)
        health = requests.get(f"{server.url}/health", timeout=60)
        finish = client.request("PUT", patched.headers["Location"], scope, params={"digest": pending_digest},
                                data=pending[-1000:], headers={"Content-Type": "application/octet-stream"})

        assert blob.status_code == 503
        assert blob.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        assert health.json()["checks"]["storage"].startswith("unavailable")
        assert health.json()["checks"]["database"] == "ok"
        assert finish.status_code == 503
        assert finish.json()["errors"][0]["code"] == "UNAVAILABLE"
        # Nothing was recorded for the failed commit, and the upload can still be resumed from its checkpoint.
        assert client.request("HEAD", f"/v2/{repo}/blobs/{pending_digest}", scope).status_code == 404
        status = client.request("GET", patched.headers["Location"], scope)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{len(pending) - 1000 - 1}"
        assert SECRET_ACCESS_KEY not in server.log_text()  # the failures were logged, the secret never
