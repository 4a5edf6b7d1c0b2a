"""The /api/v1 error table: envelope codes by range (1xxxx parameters, 2xxxx resources, 3xxxx auth,
5xxxx server), each registered once with its HTTP status, and the mapping of the domain's refusals."""
import pymongo.errors
import tornado.web

from services import errors as domain
from storage.blobstore import StorageUnavailable

API_ERRORS = {
    10001: (400, "invalid parameter"),
    10002: (400, "malformed JSON body"),
    10003: (413, "request body too large"),
    20001: (404, "resource not found"),
    20002: (409, "conflict with the current state (already exists, still in use)"),
    20003: (410, "resource is gone"),
    20004: (405, "method not allowed"),
    30001: (401, "authentication required"),
    30002: (401, "invalid or expired token"),
    30003: (403, "permission denied"),
    30004: (429, "too many attempts; try again later"),
    50001: (500, "internal server error"),
    50003: (503, "service unavailable"),
}
SUCCESS = 20000
# Seconds a client is asked to wait before retrying a 50003 answer.
RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """An /api/v1 error answered in the envelope."""

    def __init__(self, code, message=None, headers=None):
        status, default_message = API_ERRORS[code]
        super().__init__(message or default_message)
        self.code = code
        self.status = status
        self.message = message or default_message
        self.headers = headers or {}


# The first class of an exception's MRO listed here decides, so specific refusals come before families.
_BY_CLASS = {
    domain.WrongCredentials: 30001,
    domain.AccountDisabled: 30003,
    domain.Unauthenticated: 30002,
    domain.Throttled: 30004,
    domain.Forbidden: 30003,
    domain.TooLarge: 10003,
    domain.Invalid: 10001,
    domain.NotFound: 20001,
    domain.Conflict: 20002,
    domain.Gone: 20003,
    domain.Unavailable: 50003,
}


def _unavailable(message):
    return ApiError(50003, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def api_error_for(exc, method):
    """The envelope error for any exception an /api/v1 request raised."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, domain.Throttled):
        return ApiError(30004, exc.message, headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, domain.DomainError):
        code = next((_BY_CLASS[cls] for cls in type(exc).__mro__ if cls in _BY_CLASS), 50001)
        return _unavailable(exc.message) if code == 50003 else ApiError(code, exc.message)
    if isinstance(exc, StorageUnavailable):
        return _unavailable("storage backend unavailable")
    if isinstance(exc, pymongo.errors.ConnectionFailure):
        return _unavailable("database unavailable")
    if isinstance(exc, tornado.web.HTTPError):
        if exc.status_code == 405:
            return ApiError(20004, f"method {method} not allowed")
        if exc.status_code == 404:
            return ApiError(20001, "no such endpoint")
        if exc.status_code < 500:
            return ApiError(10001, exc.log_message or "bad request")
    return ApiError(50001)
