"""BaseHandler: typed access to the services in the application settings, trace ids, request
tracking for shutdown, and the small pieces of request parsing every API shares."""
import json
import logging
import re
import uuid

import tornado.web

from services.container import Services
from services.errors import DomainError
from services.logs import trace_id_var

log = logging.getLogger("cyp.http")

_TRACE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def bearer_token(headers):
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class BoundedBody:
    """A request body gathered up to ``limit`` bytes; past it the rest is read and dropped, so the
    client still gets its answer instead of a closed connection."""

    def __init__(self, limit):
        self.limit = limit
        self.data = bytearray()
        self.oversize = False

    def feed(self, chunk):
        if not self.oversize:
            self.data += chunk
            if len(self.data) > self.limit:
                self.oversize = True
                self.data = bytearray()

    def __bytes__(self):
        return bytes(self.data)


class BaseHandler(tornado.web.RequestHandler):
    """Typed access to what server.py put into the application settings: settings and services only."""

    @property
    def config(self):
        return self.settings["config"]

    @property
    def services(self) -> Services:
        return self.settings["services"]

    @property
    def registry(self):
        return self.services.registry

    @property
    def uploads(self):
        return self.services.uploads

    @property
    def access(self):
        return self.services.access

    @property
    def auth(self):
        return self.services.auth

    @property
    def users(self):
        return self.services.users

    @property
    def pats(self):
        return self.services.pats

    @property
    def projects(self):
        return self.services.projects

    @property
    def health(self):
        return self.services.health

    @property
    def tracker(self):
        return self.settings["tracker"]

    def initialize(self, route="(unmatched)"):
        # The route table's template this request matched (handlers/metrics.py labelled_routes): a metrics label.
        self.route = route
        incoming = self.request.headers.get("X-Request-Id", "")
        self.trace_id = incoming if _TRACE_ID_RE.match(incoming) else uuid.uuid4().hex[:16]
        self.set_header("X-Trace-Id", self.trace_id)
        self._tracked = False

    async def prepare(self):
        trace_id_var.set(self.trace_id)
        self.tracker.enter()
        self._tracked = True

    def _untrack(self):
        if self._tracked:
            self._tracked = False
            self.tracker.leave()

    def on_finish(self):
        self._untrack()

    def on_connection_close(self):
        self._untrack()

    def admit(self, user, api):
        """Count this request against its caller's rate limit (``user``, or the client's address when None)."""
        self.services.rate_limits.admit(user, self.request.remote_ip, api)

    def write_json(self, value, status=200, content_type="application/json; charset=UTF-8"):
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        self.finish(json.dumps(value, separators=(",", ":")))

    def set_default_headers(self):
        # Also runs when an error clears the headers, so the trace id survives into error answers.
        self.set_header("X-Content-Type-Options", "nosniff")
        self.clear_header("Server")
        if getattr(self, "trace_id", None):
            self.set_header("X-Trace-Id", self.trace_id)

    def announce_close_if_body_unread(self):
        """A streamed body the request was refused before reading is not read at all: Tornado closes the
        connection after this answer, and HTTP/1.1 asks the server to say so (clients reusing connections
        would otherwise send their next request into a closed one)."""
        prepared = getattr(self, "_prepared_future", None)
        has_body = self.request.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.request.headers
        if prepared is not None and not prepared.done() and has_body:
            self.set_header("Connection", "close")

    def is_expected_error(self, exc):
        """Refusals answered as such are not logged as failures."""
        return isinstance(exc, DomainError) or (isinstance(exc, tornado.web.HTTPError) and exc.status_code < 500)

    def log_exception(self, typ, value, tb):
        if self.is_expected_error(value):
            return
        log.error("request failed", exc_info=(typ, value, tb),
                  extra={"trace_id": self.trace_id, "method": self.request.method, "path": self.request.path})
