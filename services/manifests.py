"""Manifest parsing and validation: Docker schema2, Docker manifest lists, OCI manifests and indexes."""
import json
from dataclasses import dataclass, field

from services.digests import digest_bytes, parse_digest
from services.errors import DigestInvalid
from services.errors import ManifestInvalid, ManifestTooLarge

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
SUPPORTED_TYPES = IMAGE_TYPES + INDEX_TYPES
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass
class ParsedManifest:
    digest: str
    media_type: str
    blobs: list = field(default_factory=list)
    children: list = field(default_factory=list)
    subject: str = None
    artifact_type: str = None
    annotations: dict = None

    @property
    def references(self):
        return self.blobs + self.children


def _invalid(message, **detail):
    return ManifestInvalid(message, **detail)


def _descriptor(value, where):
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType must be a non-empty string")
    if not isinstance(digest, str):
        raise _invalid(f"{where}.digest must be a string")
    try:
        parse_digest(digest)
    except DigestInvalid:
        raise _invalid(f"{where}.digest is not a valid digest", digest=digest) from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    return value


def _descriptors(body, key, required):
    items = body.get(key)
    if items is None and not required:
        return []
    if not isinstance(items, list):
        raise _invalid(f"{key} must be an array")
    return [_descriptor(item, f"{key}[{i}]") for i, item in enumerate(items)]


def _media_type(body, content_type):
    declared = body.get("mediaType")
    content_type = (content_type or "").split(";")[0].strip()
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    if declared and content_type and content_type != declared and content_type in SUPPORTED_TYPES:
        raise _invalid("Content-Type does not match the manifest's mediaType",
                       content_type=content_type, media_type=declared)
    media_type = declared or (content_type if content_type in SUPPORTED_TYPES else None)
    if media_type is None:
        media_type = OCI_INDEX if "manifests" in body else OCI_MANIFEST
    if media_type not in SUPPORTED_TYPES:
        raise _invalid(f"unsupported manifest media type {media_type}", media_type=media_type)
    return media_type


def _json_object(content):
    """The manifest's JSON object; refused when it is not JSON in UTF-8, nests beyond reason, or holds
    text that cannot be stored (lone surrogates)."""
    try:
        body = json.loads(content.decode("utf-8"))
        # Round-trips only when every string is real Unicode (``\\ud800`` escapes decode to lone surrogates).
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError) as exc:
        raise _invalid(f"manifest is not valid JSON in UTF-8: {exc}") from None
    except RecursionError:
        raise _invalid("manifest nests too deeply") from None
    if not isinstance(body, dict):
        raise _invalid("manifest must be a JSON object")
    return body


def parse_manifest(content, content_type, algorithm="sha256"):
    """Validate a manifest's bytes; the digest is of exactly these bytes."""
    if len(content) > MAX_MANIFEST_BYTES:
        raise ManifestTooLarge(f"manifest exceeds the limit of {MAX_MANIFEST_BYTES} bytes", limit=MAX_MANIFEST_BYTES)
    body = _json_object(content)
    if body.get("schemaVersion") == 1:
        raise _invalid("Docker schema 1 manifests are not supported (deprecated since 2017); use schema 2 or OCI")
    if body.get("schemaVersion") != 2:
        raise _invalid("only schemaVersion 2 manifests are supported")
    media_type = _media_type(body, content_type)
    annotations = body.get("annotations")
    if annotations is not None and not (isinstance(annotations, dict)
                                        and all(isinstance(v, str) for v in annotations.values())):
        raise _invalid("annotations must map strings to strings")
    artifact_type = body.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    subject = _descriptor(body["subject"], "subject")["digest"] if body.get("subject") is not None else None
    parsed = ParsedManifest(digest=digest_bytes(content, algorithm), media_type=media_type, subject=subject,
                            annotations=annotations)
    if media_type in IMAGE_TYPES:
        config = _descriptor(body.get("config"), "config")
        layers = _descriptors(body, "layers", required=media_type == DOCKER_MANIFEST)
        # Foreign (non-distributable) layers live at their URLs, not in this registry.
        parsed.blobs = [config["digest"]] + [layer["digest"] for layer in layers if not layer.get("urls")]
        parsed.artifact_type = artifact_type or config["mediaType"]
    else:
        parsed.children = [item["digest"] for item in _descriptors(body, "manifests", required=True)]
        parsed.artifact_type = artifact_type
    return parsed


def platforms_of(content):
    """The children of stored (already validated) index bytes, each with its platform: ``{digest, media_type,
    size, os, architecture, variant}`` (a field the index does not give is None)."""
    platforms = []
    for child in json.loads(content).get("manifests") or []:
        platform = child.get("platform") or {}
        platforms.append({"digest": child["digest"], "media_type": child["mediaType"], "size": child["size"],
                          "os": platform.get("os"), "architecture": platform.get("architecture"),
                          "variant": platform.get("variant")})
    return platforms


def annotations_of(content):
    """The annotations of stored (already validated) manifest bytes."""
    return json.loads(content).get("annotations")


def accepts(accept_header, media_type):
    """Whether a client's Accept header admits ``media_type`` (no header admits everything)."""
    if not accept_header:
        return True
    offered = {part.split(";")[0].strip() for part in accept_header.split(",")}
    return bool(offered & {media_type, "*/*", "application/*"}) or not (offered & set(SUPPORTED_TYPES))
