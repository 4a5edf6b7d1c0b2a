"""The /v2/ error table: OCI distribution-spec codes (and Docker's extras), each registered once with
its HTTP status, and the mapping of the domain's refusals onto them."""
import pymongo.errors
import tornado.web

from services import errors as domain
from services.uploads import range_header
from storage.blobstore import StorageUnavailable

REGISTRY_ERRORS = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "RANGE_INVALID": (416, "invalid content range"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "UNAVAILABLE": (503, "service unavailable"),
    "UNKNOWN": (500, "unknown error"),
}
# Seconds a client is asked to wait before retrying an UNAVAILABLE answer.
RETRY_AFTER_SECONDS = 5


class RegistryError(Exception):
    """An error answered under /v2/ as ``{"errors": [{"code", "message", "detail"}]}``."""

    def __init__(self, code, message=None, detail=None, status=None, headers=None):
        default_status, default_message = REGISTRY_ERRORS[code]
        super().__init__(message or default_message)
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.status = status or default_status
        # Response headers that belong to the error (an error response starts with cleared headers).
        self.headers = headers or {}

    def body(self):
        return {"errors": [{"code": self.code, "message": self.message, "detail": self.detail}]}


def _offset_headers(exc):
    return {"Range": range_header(exc.size), "Docker-Upload-UUID": exc.upload_id}


# Domain error class → (OCI code, HTTP status or None for the code's own, extra headers). The first
# class of an exception's MRO listed here decides, so specific refusals come before their families.
_BY_CLASS = {
    domain.NameInvalid: ("NAME_INVALID", None, None),
    domain.NameUnknown: ("NAME_UNKNOWN", None, None),
    domain.BlobUnknown: ("BLOB_UNKNOWN", None, None),
    domain.ManifestUnknown: ("MANIFEST_UNKNOWN", None, None),
    domain.UploadUnknown: ("BLOB_UPLOAD_UNKNOWN", None, None),
    domain.UploadInvalid: ("BLOB_UPLOAD_INVALID", None, None),
    domain.UploadBusy: ("BLOB_UPLOAD_INVALID", 409, None),
    domain.UploadOffsetMismatch: ("RANGE_INVALID", None, _offset_headers),
    domain.ContentRangeInvalid: ("RANGE_INVALID", None, None),
    domain.RangeNotSatisfiable: ("RANGE_INVALID", None, lambda exc: {"Content-Range": f"bytes */{exc.size}"}),
    domain.DigestInvalid: ("DIGEST_INVALID", None, None),
    domain.ManifestInvalid: ("MANIFEST_INVALID", None, None),
    domain.ManifestBlobUnknown: ("MANIFEST_BLOB_UNKNOWN", None, None),
    domain.ManifestTooLarge: ("SIZE_INVALID", 413, None),
    domain.TagInvalid: ("TAG_INVALID", None, None),
    domain.PaginationInvalid: ("PAGINATION_NUMBER_INVALID", None, None),
    domain.Throttled: ("TOOMANYREQUESTS", None, None),
    domain.Unauthenticated: ("UNAUTHORIZED", None, None),
    domain.Forbidden: ("DENIED", None, None),
    domain.NotFound: ("NAME_UNKNOWN", None, None),
    domain.Conflict: ("DENIED", 409, None),
    domain.TooLarge: ("SIZE_INVALID", 413, None),
    domain.Invalid: ("UNSUPPORTED", 400, None),
    domain.Gone: ("NAME_UNKNOWN", None, None),
    domain.Unavailable: ("UNAVAILABLE", None, None),
}


def _unavailable(message):
    return RegistryError("UNAVAILABLE", message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def registry_error_for(exc, method, status=500):
    """The wire error for any exception a /v2/ request raised (``status`` is Tornado's, for the rest)."""
    if isinstance(exc, RegistryError):
        return exc
    if isinstance(exc, domain.Throttled):
        return RegistryError("TOOMANYREQUESTS", exc.message, headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, domain.DomainError):
        for cls in type(exc).__mro__:
            if cls in _BY_CLASS:
                code, status, headers = _BY_CLASS[cls]
                if code == "UNAVAILABLE":
                    return _unavailable(exc.message)
                return RegistryError(code, exc.message, exc.detail, status, headers(exc) if headers else None)
    if isinstance(exc, StorageUnavailable):
        return _unavailable("storage backend unavailable")
    if isinstance(exc, pymongo.errors.ConnectionFailure):
        return _unavailable("database unavailable")
    if isinstance(exc, tornado.web.HTTPError):
        if exc.status_code == 405:
            return RegistryError("UNSUPPORTED", f"method {method} not supported here")
        if exc.status_code == 400:
            return RegistryError("BLOB_UPLOAD_INVALID", exc.log_message or "bad request")
        if exc.status_code == 404:
            return RegistryError("NAME_UNKNOWN", "no such endpoint", status=404)
    return RegistryError("UNKNOWN", status=status)
