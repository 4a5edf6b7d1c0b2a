"""Names by the distribution-spec grammar: projects, repositories and tags.

A repository is ``<project>/<path>``: its first component names the project, so a project name is
one path component of the same grammar.
"""
import re

from services.errors import Invalid, NameInvalid, TagInvalid

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_PROJECT_RE = re.compile(rf"^{_COMPONENT}$")
_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})+$")
_TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255
MAX_PROJECT_NAME = 64
# /api/v1/projects/<these> are routes of their own, so a project by that name could not be addressed.
RESERVED_PROJECT_NAMES = frozenset({"statistics"})


def check_repository_name(name):
    """Return ``(project, name)``; NameInvalid for anything off the grammar (so no traversal)."""
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise NameInvalid("repository name must be <project>/<repository> in lowercase letters, digits and "
                          "separators", name=name)
    return name.split("/", 1)[0], name


def check_project_name(name):
    if len(name) > MAX_PROJECT_NAME or not _PROJECT_RE.match(name):
        raise Invalid("name must be lowercase letters and digits, optionally separated by . _ __ or -, "
                      f"at most {MAX_PROJECT_NAME} characters")
    if name in RESERVED_PROJECT_NAMES:
        raise Invalid(f"name {name} is reserved (it is a route of /api/v1/projects)")


def is_valid_tag(tag):
    return bool(_TAG_RE.match(tag))


def check_tag(tag):
    if not is_valid_tag(tag):
        raise TagInvalid("tag must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", tag=tag)
    return tag
