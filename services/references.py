"""Image references, normalised as the docker CLI does.

``nginx`` → ``docker.io/library/nginx:latest``; ``index.docker.io``, ``registry-1.docker.io`` and
``docker.io`` are one registry; the first path component is a registry when it has a ``.`` or a
``:`` or is ``localhost``; a reference names a tag, a digest, or both (``name:tag@digest``: the
digest decides what is fetched).
"""
import re
from dataclasses import dataclass

from services.digests import parse_digest
from services.errors import DigestInvalid, Invalid

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# Where Docker Hub's registry API actually answers.
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
MAX_REFERENCE_LENGTH = 512

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
# A host name or IPv4 address (or a bracketed IPv6 one), with an optional port.
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                      r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


@dataclass(frozen=True)
class ImageReference:
    registry: str
    repository: str
    tag: str = None
    digest: str = None

    @property
    def reference(self):
        """What to ask the registry's manifest endpoint for: the digest when there is one."""
        return self.digest or self.tag

    @property
    def api_host(self):
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def default_target(self):
        """The repository name an import lands in inside its project: the path, less Docker Hub's ``library/``."""
        if self.registry == DOCKER_HUB and self.repository.startswith("library/"):
            return self.repository[len("library/"):]
        return self.repository

    def __str__(self):
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _invalid(reference, why):
    return Invalid(f"image: {why}", field="image", image=reference)


def parse_reference(text):
    """The normalised ImageReference of ``text``; Invalid naming ``image`` when it cannot be one."""
    if not isinstance(text, str) or not text or len(text) > MAX_REFERENCE_LENGTH or text != text.strip():
        raise _invalid(text, "must be an image reference such as nginx:latest or registry.example.com/team/app:1.0")
    remainder, digest = text, None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        try:
            parse_digest(digest)
        except DigestInvalid:
            raise _invalid(text, f"{digest!r} is not a sha256 or sha512 digest") from None
    registry, path = DOCKER_HUB, remainder
    first, sep, rest = remainder.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST_RE.match(first):
            raise _invalid(text, f"{first!r} is not a registry host")
        registry, path = first.lower() if not first.startswith("[") else first, rest
    tag = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1:]
        if not _TAG_RE.match(tag):
            raise _invalid(text, f"{tag!r} is not a valid tag")
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not _PATH_RE.match(path):
        raise _invalid(text, f"{path!r} is not a repository path (lowercase letters, digits, separators)")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry, path, tag, digest)
