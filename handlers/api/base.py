"""ApiHandler: the /api/v1 base: the envelope, authentication, scopes, and schema-checked JSON bodies."""
import decimal
import json
import time

import tornado.web

from handlers.api.errors import SUCCESS, ApiError, api_error_for
from handlers.base import BaseHandler, BoundedBody, bearer_token
from services.validation import InvalidBody, validate

# JSON bodies above this are refused (with the envelope) instead of being read into memory.
MAX_JSON_BODY = 256 * 1024
OVERSIZE_READ_BYTES = 1024 * 1024
MAX_PAGE = 1_000_000


def _not_json(constant):
    raise ValueError(f"{constant} is not JSON")


@tornado.web.stream_request_body
class ApiHandler(BaseHandler):
    """Every answer is the envelope ``{code, message, data, timestamp, trace_id}``."""

    auth_required = True
    # Anonymous callers pass too (a public project is readable by anyone); a token sent must be valid.
    auth_optional = False
    admin_required = False
    max_body = MAX_JSON_BODY

    def set_default_headers(self):
        super().set_default_headers()
        # Answers carry tokens, one-time passwords and private data: never kept by a cache.
        self.set_header("Cache-Control", "no-store")

    def compute_etag(self):
        return None

    async def prepare(self):
        self.body = BoundedBody(self.max_body)
        self.principal = None
        await super().prepare()
        anonymous = self.auth_optional and not self.request.headers.get("Authorization")
        try:
            length = self.request.headers.get("Content-Length", "")
            if length.isascii() and length.isdigit() and int(length) > self.max_body:
                raise ApiError(10003, f"request body exceeds {self.max_body} bytes")
            # A body of unknown length is read (and dropped) up to twice the limit (at least 1 MiB more) so the
            # client still gets its answer, then cut off: nobody makes the server read without end.
            self.request.connection.set_max_body_size(self.max_body + max(self.max_body, OVERSIZE_READ_BYTES))
            if self.auth_required and not anonymous:
                self.principal = await self.authenticate()
        finally:
            # As the user once authenticated; as the address without credentials, with refused ones or with a
            # body refused for its announced size.
            self.admit(self.user, "api")
        if self.principal is not None:
            self.require_scope("api:read" if self.request.method in ("GET", "HEAD") else "api:write")
            if self.admin_required and not self.principal.user.get("is_admin"):
                raise ApiError(30003, "administrator rights required")

    def data_received(self, chunk):
        self.body.feed(chunk)

    def audit_subject(self):
        """The path's parts but its project (a PAT's, user's, webhook's id...)."""
        return {"resource": {key: value for key, value in self.path_kwargs.items() if key != "project_id"}}

    @property
    def user(self):
        """The calling user, or None for an anonymous caller."""
        return self.principal.user if self.principal else None

    async def authenticate(self):
        token = bearer_token(self.request.headers)
        if token is None:
            raise ApiError(30001, "authentication required: send Authorization: Bearer <token>")
        return await self.auth.authenticate(token)

    def require_scope(self, scope):
        if scope not in self.principal.scopes:
            raise ApiError(30003, f"token lacks the {scope} scope")

    def json_body(self, schema):
        """The request's JSON body, validated against ``schemas/api/<schema>.json``."""
        if self.body.oversize:
            raise ApiError(10003, f"request body exceeds {self.max_body} bytes")
        try:
            # Numbers with a fraction or exponent stay Decimal, so an integer field refuses 1000.0 and 1e30;
            # NaN and Infinity are not JSON.
            value = json.loads(bytes(self.body) or b"null", parse_float=decimal.Decimal, parse_constant=_not_json)
            # Lone surrogates parse but cannot be stored as UTF-8.
            json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
        except (UnicodeError, ValueError, RecursionError):
            raise ApiError(10002, "request body is not valid JSON in UTF-8") from None
        if value is None:
            raise ApiError(10002, "a JSON body is required")
        try:
            return validate(schema, value)
        except InvalidBody as exc:
            raise ApiError(10001, str(exc)) from None

    def bool_arg(self, name, default=None):
        """A ``true`` / ``false`` query argument; ``default`` when it is absent."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        if raw not in ("true", "false"):
            raise ApiError(10001, f"{name} must be true or false")
        return raw == "true"

    def page_args(self, default_size=20, max_size=100):
        """``(page, page_size)`` from the query, 1-based."""
        values = []
        for name, default, ceiling in (("page", 1, MAX_PAGE), ("page_size", default_size, max_size)):
            raw = self.get_query_argument(name, str(default))
            if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(ceiling))) or not 1 <= int(raw) <= ceiling:
                raise ApiError(10001, f"{name} must be an integer from 1 to {ceiling}")
            values.append(int(raw))
        return tuple(values)

    def write_page(self, items, total, page, page_size):
        self.write_data({"items": items, "total": total, "page": page, "page_size": page_size})

    def envelope(self, code, message, data):
        return {"code": code, "message": message, "data": data, "timestamp": int(time.time()),
                "trace_id": self.trace_id}

    def write_data(self, data, status=200):
        self.write_json(self.envelope(SUCCESS, "success", data), status=status)

    def is_expected_error(self, exc):
        return isinstance(exc, ApiError) and exc.status < 500 or super().is_expected_error(exc)

    def write_error(self, status_code, **kwargs):
        error = api_error_for(kwargs.get("exc_info", (None, None, None))[1], self.request.method)
        self.error_code = error.code
        self.announce_close_if_body_unread()
        for name, value in error.headers.items():
            self.set_header(name, value)
        self.write_json(self.envelope(error.code, error.message, None), status=error.status)


class ApiFallbackHandler(ApiHandler):
    """Unknown /api/ routes answer in the envelope too."""

    auth_required = False

    async def prepare(self):
        await super().prepare()
        raise ApiError(20001, f"no such endpoint: {self.request.method} {self.request.path}")
