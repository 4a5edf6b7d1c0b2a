"""ApiHandler: the /api/v1 base: the envelope, authentication, scopes, and schema-checked JSON bodies."""
import json
import time

import tornado.web

from handlers.base import BaseHandler
from services.api_errors import SUCCESS, ApiError
from services.auth import AccountDisabled, AuthFailed, Throttled
from services.domain import CONFLICT, FORBIDDEN, INVALID, NOT_FOUND, TOO_LARGE, DomainError
from services.validation import InvalidBody, validate
from storage.blobstore import StorageUnavailable

# JSON bodies above this are refused (with the envelope) instead of being read into memory.
MAX_JSON_BODY = 256 * 1024
MAX_PAGE = 1_000_000


_DOMAIN_CODES = {NOT_FOUND: 20001, CONFLICT: 20002, INVALID: 10001, FORBIDDEN: 30003, TOO_LARGE: 10003}


def _error_for(exc, method):
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DomainError):
        return ApiError(_DOMAIN_CODES[exc.kind], str(exc))
    if isinstance(exc, Throttled):
        return ApiError(30004, str(exc))
    if isinstance(exc, AccountDisabled):
        return ApiError(30003, str(exc))
    if isinstance(exc, AuthFailed):
        return ApiError(30002, str(exc))
    if isinstance(exc, StorageUnavailable):
        return ApiError(50003, "storage backend unavailable")
    if isinstance(exc, tornado.web.HTTPError):
        if exc.status_code == 405:
            return ApiError(20004, f"method {method} not allowed")
        if exc.status_code == 404:
            return ApiError(20001, "no such endpoint")
        if exc.status_code < 500:
            return ApiError(10001, exc.log_message or "bad request")
    return ApiError(50001)


@tornado.web.stream_request_body
class ApiHandler(BaseHandler):
    """Every answer is the envelope ``{code, message, data, timestamp, trace_id}``."""

    auth_required = True
    # Anonymous callers pass too (a public project is readable by anyone); a token sent must be valid.
    auth_optional = False
    admin_required = False
    max_body = MAX_JSON_BODY

    async def prepare(self):
        self.body = bytearray()
        self.oversize = False
        self.principal = None
        await super().prepare()
        self.request.connection.set_max_body_size(1 << 40)
        anonymous = self.auth_optional and not self.request.headers.get("Authorization")
        if self.auth_required and not anonymous:
            self.principal = await self.authenticate()
            self.require_scope("api:read" if self.request.method in ("GET", "HEAD") else "api:write")
            if self.admin_required and not self.principal.user.get("is_admin"):
                raise ApiError(30003, "administrator rights required")

    def data_received(self, chunk):
        # Past the limit the rest is read and dropped, so the client still gets its envelope.
        if not self.oversize:
            self.body += chunk
            if len(self.body) > self.max_body:
                self.oversize = True
                self.body = bytearray()

    @property
    def auth(self):
        return self.settings["auth"]

    async def authenticate(self):
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(30001, "authentication required: send Authorization: Bearer <token>")
        return await self.auth.authenticate(token.strip())

    def require_scope(self, scope):
        if scope not in self.principal.scopes:
            raise ApiError(30003, f"token lacks the {scope} scope")

    def json_body(self, schema):
        """The request's JSON body, validated against ``schemas/api/<schema>.json``."""
        if self.oversize:
            raise ApiError(10003, f"request body exceeds {self.max_body} bytes")
        try:
            value = json.loads(bytes(self.body) or b"null")
            # Lone surrogates parse but cannot be stored as UTF-8.
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except (UnicodeError, ValueError, RecursionError):
            raise ApiError(10002, "request body is not valid JSON in UTF-8") from None
        if value is None:
            raise ApiError(10002, "a JSON body is required")
        try:
            return validate(schema, value)
        except InvalidBody as exc:
            raise ApiError(10001, str(exc)) from None

    def page_args(self, default_size=20, max_size=100):
        """``(page, page_size)`` from the query, 1-based."""
        values = []
        for name, default, ceiling in (("page", 1, MAX_PAGE), ("page_size", default_size, max_size)):
            raw = self.get_query_argument(name, str(default))
            if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= ceiling:
                raise ApiError(10001, f"{name} must be an integer from 1 to {ceiling}")
            values.append(int(raw))
        return tuple(values)

    def envelope(self, code, message, data):
        return {"code": code, "message": message, "data": data, "timestamp": int(time.time()),
                "trace_id": self.trace_id}

    def write_data(self, data, status=200):
        self.write_json(self.envelope(SUCCESS, "success", data), status=status)

    def write_error(self, status_code, **kwargs):
        error = _error_for(kwargs.get("exc_info", (None, None, None))[1], self.request.method)
        self.write_json(self.envelope(error.code, error.message, None), status=error.status)


class ApiFallbackHandler(ApiHandler):
    """Unknown /api/ routes answer in the envelope too."""

    auth_required = False

    async def prepare(self):
        await super().prepare()
        raise ApiError(20001, f"no such endpoint: {self.request.method} {self.request.path}")
