"""BaseHandler: typed access to the services in the application settings, trace ids, request
tracking for shutdown, the audit record of what a request did, and the small pieces of request parsing
every API shares."""
import json
import logging
import re
import uuid

import tornado.web

from services.audit import new_record
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


def has_body_in(headers):
    """Whether a request with these headers may carry a body: Tornado reads one when either header is there;
    anything but a Content-Length of exactly 0 counts, so a doubtful request is taken as having one."""
    return "Transfer-Encoding" in headers or headers.get("Content-Length", "0") != "0"


class BaseHandler(tornado.web.RequestHandler):
    """Typed access to what server.py put into the application settings: settings and services only."""

    # The audit log's operation (services/audit.py OPERATIONS) of each method this handler records; once the
    # answer is sent, on_finish records it with its outcome, failures included.
    audited = {}

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
        # Tornado sets these once the path is decoded; a request refused before that (a method it does not
        # support, a path that is not UTF-8) has none, and its audit record names nothing of the path.
        self.path_args, self.path_kwargs = [], {}
        # What only handling the request learns, for its audit record (new_record's arguments: ``project`` once
        # the caller passed the check that lets them see it, ``user`` a login verified, ``claimed_username``,
        # ``resource``...); never a secret.
        self.audit_notes = {}
        # The error table's code of an error answer.
        self.error_code = None

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
        operation = self.audit_operation()
        if operation is not None:
            self.services.audit.submit(self.audit_record(operation))

    def audit_operation(self):
        """The operation this request records, None for none. A request refused by a throttle (429) did nothing
        and is not recorded, so a flood cannot grow the log; the rate limiter counts its refusals in
        cyp_rate_limited_requests_total."""
        if self.get_status() == 429:
            return None
        return self.audited.get(self.request.method)

    def audit_subject(self):
        """new_record's arguments naming what the request's path names (its resource; never its project, which
        the path names whether or not the caller may see it)."""
        return {}

    def audit_record(self, operation):
        subject, notes = self.audit_subject(), self.audit_notes
        resource = {**subject.get("resource", {}), **notes.get("resource", {})}
        return new_record(operation, self.get_status(), address=self.request.remote_ip, trace_id=self.trace_id,
                          error_code=self.error_code,
                          **{"user": self.acting_user(), **subject, **notes, "resource": resource})

    def acting_user(self):
        """The account the request was answered for, when one authenticated."""
        try:
            return self.user
        except AttributeError:  # a handler without callers, or one that ended before authenticating anyone
            return None

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
        if prepared is not None and not prepared.done() and has_body_in(self.request.headers):
            self.set_header("Connection", "close")

    def is_expected_error(self, exc):
        """Refusals answered as such are not logged as failures."""
        return isinstance(exc, DomainError) or (isinstance(exc, tornado.web.HTTPError) and exc.status_code < 500)

    def log_exception(self, typ, value, tb):
        if self.is_expected_error(value):
            return
        log.error("request failed", exc_info=(typ, value, tb),
                  extra={"trace_id": self.trace_id, "method": self.request.method, "path": self.request.path})
