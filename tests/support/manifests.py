"""Shared helpers for the /v2/ behaviour tests: digests, scopes, error bodies, blob pushes and manifests."""
import hashlib
import json
import os
from dataclasses import dataclass, field

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
API_VERSION_HEADER = ("Docker-Distribution-Api-Version", "registry/2.0")


# -- digests and scopes ---------------------------------------------------------------------------

def format_digest(hasher):
    """The digest (``algorithm:hex``) of what a hashlib object was fed."""
    return f"{hasher.name}:{hasher.hexdigest()}"


def sha256(data):
    return format_digest(hashlib.sha256(data))


def sha512(data):
    return format_digest(hashlib.sha512(data))


def random_bytes(size):
    return os.urandom(size)


def pull(repo):
    return f"repository:{repo}:pull"


def push(repo):
    return f"repository:{repo}:pull,push"


def delete(repo):
    return f"repository:{repo}:pull,delete"


def bearer(client, *scopes):
    """An Authorization header carrying one token for several scopes."""
    return {"Authorization": f"Bearer {client.token(*scopes)}"}


# -- error bodies ---------------------------------------------------------------------------------

def assert_registry_error(response, status, code=None):
    """The spec's ``{"errors": [{"code", "message", "detail"}]}`` body with this status, ``code`` among the errors
    when given; answers the errors."""
    assert response.status_code == status, (response.request.method, response.url, response.status_code,
                                            response.text[:500])
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    errors = response.json()["errors"]
    assert errors and all({"code", "message", "detail"} <= set(error) for error in errors), errors
    assert code is None or code in [error["code"] for error in errors], errors
    return errors


# -- blobs ----------------------------------------------------------------------------------------

def push_blob(client, repo, data, media_type=OCI_LAYER):
    """Push ``data`` monolithically into ``repo``; returns its descriptor."""
    digest = sha256(data)
    response = client.push_blob(repo, data, digest)
    assert response.status_code == 201, response.text
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def start_upload(client, repo, **params):
    """Open an upload session; returns the POST response (202 with Location)."""
    response = client.request("POST", f"/v2/{repo}/blobs/uploads/", push(repo), params=params or None,
                              headers={"Content-Length": "0"})
    assert response.status_code == 202, response.text
    return response


def patch_chunk(client, repo, location, data, start):
    """PATCH one chunk to an upload URL with its inclusive Content-Range; returns the response."""
    headers = {"Content-Type": "application/octet-stream", "Content-Range": f"{start}-{start + len(data) - 1}"}
    return client.request("PATCH", location, push(repo), data=data, headers=headers)


def blob_url(repo, digest):
    return f"/v2/{repo}/blobs/{digest}"


def get_blob(client, repo, digest, method="GET", byte_range=None):
    headers = {"Range": byte_range} if byte_range else {}
    return client.request(method, blob_url(repo, digest), pull(repo), headers=headers)


# -- manifests ------------------------------------------------------------------------------------

@dataclass
class Pushed:
    """A manifest as sent: its exact bytes, digest and media type; ``blobs``: ``{digest: size}`` of the blobs
    pushed for it (by push_image: its config and layers)."""
    body: bytes
    digest: str
    media_type: str
    blobs: dict = field(default_factory=dict)

    @property
    def size(self):
        return len(self.body)

    @property
    def descriptor(self):
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def encode(document):
    return json.dumps(document).encode()


def image_manifest(config, layers, media_type=OCI_MANIFEST, **fields):
    return {"schemaVersion": 2, "mediaType": media_type, "config": config, "layers": layers, **fields}


def index_manifest(children, media_type=OCI_INDEX, **fields):
    return {"schemaVersion": 2, "mediaType": media_type, "manifests": children, **fields}


def put_manifest(client, repo, reference, body, media_type=OCI_MANIFEST):
    """PUT ``body`` (bytes, or a document to encode) and require 201; returns a Pushed."""
    body = body if isinstance(body, bytes) else encode(body)
    response = client.put_manifest(repo, reference, body, media_type)
    assert response.status_code == 201, response.text
    return Pushed(body, sha256(body), media_type)


def image_blobs(client, repo, config_type=OCI_CONFIG, layer_type=OCI_LAYER, layer_sizes=(64,), layers=None):
    """Push a unique config and the layers: the byte strings ``layers``, else fresh random ones of ``layer_sizes``;
    returns their descriptors."""
    config = push_blob(client, repo, encode({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}),
                       config_type)
    datas = layers if layers is not None else [random_bytes(size) for size in layer_sizes]
    return config, [push_blob(client, repo, data, layer_type) for data in datas]


def push_image(client, repo, reference="latest", media_type=OCI_MANIFEST, layer_sizes=(64,), layers=None, **fields):
    """Push a config and layers (see image_blobs) and an image manifest referencing them; returns the Pushed
    manifest, its ``blobs`` the config and layers."""
    docker = media_type == DOCKER_MANIFEST
    config, descriptors = image_blobs(client, repo, DOCKER_CONFIG if docker else OCI_CONFIG,
                                      DOCKER_LAYER if docker else OCI_LAYER, layer_sizes, layers)
    pushed = put_manifest(client, repo, reference, image_manifest(config, descriptors, media_type, **fields),
                          media_type)
    pushed.blobs = {blob["digest"]: blob["size"] for blob in [config, *descriptors]}
    return pushed


def push_artifact(client, repo, subject=None, artifact_type="application/vnd.example.sbom.v1", annotations=None,
                  reference=None):
    """Push an OCI artifact (empty config, one layer, optional subject); by digest unless ``reference``."""
    push_blob(client, repo, EMPTY_JSON, OCI_EMPTY)
    layer = push_blob(client, repo, random_bytes(32), "application/vnd.example.data")
    fields = {"artifactType": artifact_type}
    if subject is not None:
        fields["subject"] = subject
    if annotations is not None:
        fields["annotations"] = annotations
    document = image_manifest({"mediaType": OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2}, [layer], **fields)
    body = encode(document)
    return put_manifest(client, repo, reference or sha256(body), body, OCI_MANIFEST)


def get_manifest(client, repo, reference, accept=None, method="GET"):
    headers = {"Accept": accept} if accept else {}
    return client.request(method, f"/v2/{repo}/manifests/{reference}", pull(repo), headers=headers)


def list_tags(client, repo, **params):
    return client.request("GET", f"/v2/{repo}/tags/list", pull(repo), params=params or None)
