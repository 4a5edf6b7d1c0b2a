"""The domain's one vocabulary of refusals, free of HTTP.

Services raise these; each API maps them in its own table (handlers/registry/errors.py for the
OCI codes, handlers/api/errors.py for the envelope codes). ``detail`` holds facts for the caller
(names, digests, sizes), never wire headers; messages are safe to show.
"""
import datetime
import math


class DomainError(Exception):
    default_message = "request refused"

    def __init__(self, message=None, **detail):
        self.message = message or self.default_message
        super().__init__(self.message)
        self.detail = detail or None


# --- the families every API knows -----------------------------------------------------------------

class Invalid(DomainError):
    default_message = "invalid parameter"


class NotFound(DomainError):
    default_message = "not found"


class Conflict(DomainError):
    default_message = "conflict with the current state"


class Forbidden(DomainError):
    default_message = "permission denied"


class TooLarge(DomainError):
    default_message = "too large"


class Gone(DomainError):
    default_message = "gone"


class Unavailable(DomainError):
    """A backing service (database, blob store) cannot answer now; the caller may retry."""

    default_message = "service unavailable"


class Unauthenticated(DomainError):
    """Credentials or a token were refused."""

    default_message = "authentication required"


class WrongCredentials(Unauthenticated):
    default_message = "invalid username or password"


class AccountDisabled(Unauthenticated):
    default_message = "this account is disabled"


class Throttled(DomainError):
    """Refused until ``until``; ``reason`` says what ran out."""

    def __init__(self, until, reason="too many failed logins"):
        super().__init__(f"{reason}; try again after {until.isoformat(timespec='seconds')}")
        self.until = until

    @property
    def retry_after(self):
        """Whole seconds until the lock ends (at least 1)."""
        return max(1, math.ceil((self.until - datetime.datetime.now(datetime.timezone.utc)).total_seconds()))


class RateLimited(Throttled):
    """A caller's requests went over its rate limit for the current window (services/rate_limits.py)."""


# --- the registry's own ---------------------------------------------------------------------------

class NameInvalid(Invalid):
    default_message = "invalid repository name"


class NameUnknown(NotFound):
    default_message = "repository name not known to registry"


class ProjectGone(NameUnknown):
    default_message = "the project was deleted"


class BlobUnknown(NotFound):
    default_message = "blob unknown to registry"


class ManifestUnknown(NotFound):
    default_message = "manifest unknown to registry"


class UploadUnknown(NotFound):
    default_message = "blob upload unknown to registry"


class UploadInvalid(Invalid):
    default_message = "blob upload invalid"


class UploadBusy(Conflict):
    default_message = "upload is busy with another request"


class CollectionRunning(Conflict):
    """A garbage collection was asked for while one runs (on this node or another); ``holder`` names its process."""

    def __init__(self, holder=None):
        where = f" (held by {holder})" if holder else ""
        super().__init__(f"a garbage collection is already running{where}; try again when it has finished",
                         reason="gc_running", holder=holder)


class UploadOffsetMismatch(Invalid):
    """A chunk that does not start where the upload stands; detail holds ``upload_id`` and ``size``."""

    def __init__(self, upload_id, size, start):
        super().__init__(f"chunk must start at offset {size}, not {start}", uuid=upload_id, size=size)
        self.upload_id, self.size = upload_id, size


class ContentRangeInvalid(Invalid):
    """An upload chunk's Content-Range that is malformed or disagrees with its length."""


class RangeNotSatisfiable(Invalid):
    def __init__(self, requested, size):
        super().__init__(f"range not satisfiable for a blob of {size} bytes", range=requested, size=size)
        self.size = size


class DigestInvalid(Invalid):
    default_message = "provided digest did not match uploaded content"


class ManifestInvalid(Invalid):
    default_message = "manifest invalid"


class ManifestBlobUnknown(Invalid):
    default_message = "manifest references a manifest or blob unknown to registry"


class ManifestTooLarge(TooLarge):
    pass


class TagInvalid(Invalid):
    default_message = "invalid tag"


class PaginationInvalid(Invalid):
    default_message = "invalid number of results requested"


class AccessDenied(Forbidden):
    default_message = "requested access to the resource is denied"


class TokenRequired(Unauthenticated):
    """The request needs a (new) registry token; ``detail["reason"]`` says why when there is one."""


def mib(size):
    return f"{size / (1024 * 1024):.1f} MiB"


class QuotaExceeded(Forbidden):
    def __init__(self, project, adding):
        used, quota = project["storage_used"], project["storage_quota"]
        super().__init__(f"adding {mib(adding)} to project {project['name']} (using {mib(used)}) "
                         f"exceeds the limit of {mib(quota)}",
                         reason="quota_exceeded", adding=adding, storage_used=used, storage_quota=quota)
        self.adding, self.used, self.quota = adding, used, quota
