"""Repository names and tags, by the distribution-spec grammar.

A repository is ``<project>/<path>``: the first component names the project.
"""
import re

from services.errors import RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})+$")
_TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


def check_repository_name(name):
    """Return ``(project, name)``; NAME_INVALID for anything off the grammar (so no traversal)."""
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise RegistryError(
            "NAME_INVALID",
            "repository name must be <project>/<repository> in lowercase letters, digits and separators",
            detail={"name": name},
        )
    return name.split("/", 1)[0], name


def is_valid_tag(tag):
    return bool(_TAG_RE.match(tag))
