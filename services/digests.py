"""Content digests: parsing, and hashers whose state can move between requests and nodes."""
import hashlib
import re

import rehashes

from services.errors import DigestInvalid

_HASHERS = {"sha256": (rehashes.PySha256, 64), "sha512": (rehashes.PySha512, 128)}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


def parse_digest(value):
    """Split ``algorithm:hex``; raise DigestInvalid for anything this registry cannot verify."""
    match = _DIGEST_RE.match(value or "")
    if not match:
        raise DigestInvalid("invalid digest format", digest=value)
    algorithm, encoded = match.groups()
    if algorithm not in _HASHERS:
        raise DigestInvalid(f"unsupported digest algorithm {algorithm}", digest=value)
    length = _HASHERS[algorithm][1]
    if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
        raise DigestInvalid(f"{algorithm} digest must be {length} lowercase hex characters", digest=value)
    return algorithm, encoded


def is_digest(reference):
    return ":" in reference


def new_hasher(algorithm="sha256"):
    return _HASHERS[algorithm][0]()


def restore_hasher(algorithm, state):
    return _HASHERS[algorithm][0].deserialize(state)


def digest_bytes(data, algorithm="sha256"):
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
