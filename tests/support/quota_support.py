"""Helpers for the project, quota, visibility, GC and accounting tests (issue 4).

Projects are created through /api/v1 as the administrator with unique names; usage is read both
through the API and straight from MongoDB; ``recount`` is the admin API that recomputes usage.
"""
import functools
import hashlib
import json
import secrets

import pymongo

from tests.support.api_client import Api, ok
from tests.support.manifests import delete, pull, push  # noqa: F401 (re-exported scope helpers)
from tests.support.registry_client import RegistryClient

MiB = 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
GC_NOW_ENV = {"CYP_GC_GRACE_SECONDS": "0", "CYP_GC_INTERVAL_SECONDS": "3600"}


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unique_name(prefix="q"):
    """A fresh project name (lowercase letters and digits, as the grammar wants)."""
    return f"{prefix}{secrets.token_hex(5)}"


def new_project(api, prefix="q", **fields):
    """Create a project through POST /api/v1/projects; answers its data."""
    return ok(api.post("/api/v1/projects", json={"name": unique_name(prefix), **fields}))


def project_data(api, key):
    return ok(api.get(f"/api/v1/projects/{key}"))


def storage_used(api, key):
    return project_data(api, key)["storage_used"]


def recount(api, key, fix=False):
    return ok(api.post(f"/api/v1/projects/{key}/recount", params={"fix": "true"} if fix else None))


def set_quota(api, key, quota):
    return ok(api.put(f"/api/v1/projects/{key}/quota", json={"storage_quota": quota}))


def run_gc(api):
    return ok(api.post("/api/v1/system/gc"))


def admin_api_for(server):
    return Api(server.url).session("admin", server.admin_password)


def cached_client(url, username=None, password=None):
    """A RegistryClient that fetches one token per scope (each fetch costs an argon2 verification)."""
    client = RegistryClient(url, username, password)
    client.token = functools.lru_cache(maxsize=None)(client.token)
    return client


def push_bytes(client, repo, data):
    """Monolithic upload (POST ?digest= with the body); answers the response."""
    return client.push_blob(repo, data, sha256(data))


def push_ok(client, repo, data, media_type=OCI_LAYER):
    response = push_bytes(client, repo, data)
    assert response.status_code == 201, response.text
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def manifest_bytes(config, layers, **annotations):
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}
    if annotations:
        document["annotations"] = annotations
    return json.dumps(document, sort_keys=True).encode()


def put_manifest(client, repo, reference, body):
    return client.put_manifest(repo, reference, body, OCI_MANIFEST)


def push_image(client, repo, tag, layer_sizes=(64,), layers=None):
    """Push a fresh config, fresh layers (or the given layer byte strings) and a manifest tagged ``tag``.

    Answers ``{"digest", "size", "blobs": {digest: size}}`` (blobs: the config and layers).
    """
    config = push_ok(client, repo, json.dumps({"architecture": "amd64", "os": "linux",
                                               "nonce": secrets.token_hex(8)}).encode(), OCI_CONFIG)
    datas = layers if layers is not None else [secrets.token_bytes(size) for size in layer_sizes]
    descriptors = [push_ok(client, repo, data) for data in datas]
    body = manifest_bytes(config, descriptors)
    response = put_manifest(client, repo, tag, body)
    assert response.status_code == 201, response.text
    blobs = {config["digest"]: config["size"], **{d["digest"]: d["size"] for d in descriptors}}
    return {"digest": sha256(body), "size": len(body), "blobs": blobs, "body": body}


def registry_errors(response):
    """The ``errors`` array of a /v2/ error body."""
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    return response.json()["errors"]


def assert_registry_error(response, status, code):
    assert response.status_code == status, (response.request.method, response.url, response.status_code,
                                            response.text[:500])
    errors = registry_errors(response)
    assert code in [error["code"] for error in errors], errors
    return errors


class Db:
    """Synchronous access to a server's database for checks of stored state."""

    def __init__(self, uri, name):
        self.client = pymongo.MongoClient(uri, tz_aware=True)
        self.db = self.client[name]

    def __getitem__(self, collection):
        return self.db[collection]

    def project(self, project_id):
        return self.db["projects"].find_one({"_id": project_id})

    def used(self, project_id):
        return self.project(project_id)["storage_used"]

    def counted(self, project_id):
        """``{digest: size}`` of what the accounting counts for the project."""
        return {doc["digest"]: doc["size"] for doc in self.db["project_objects"].find({"project_id": project_id})}

    def close(self):
        self.client.close()


def create_user(admin_api, is_admin=False):
    """A new user created through POST /api/v1/users by an administrator, logged in (an api_client.User)."""
    from tests.support.api_client import User, strong_password

    username = unique_name("user")
    password = strong_password()
    data = ok(admin_api.post("/api/v1/users", json={"username": username, "password": password,
                                                    "is_admin": is_admin}))
    return User(data["id"], username, password, Api(admin_api.url).session(username, password))
