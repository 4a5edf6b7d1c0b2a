"""Base handlers: shared objects from the application settings, trace ids, and each API's error format."""
import json
import logging
import re
import uuid

import tornado.web

from services.api_errors import ApiError
from services.auth import AuthFailed, Throttled
from services.domain import DomainError
from services.errors import RegistryError
from services.logs import trace_id_var
from storage.blobstore import StorageUnavailable

log = logging.getLogger("cyp.http")

_TRACE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class BaseHandler(tornado.web.RequestHandler):
    """Typed access to what server.py put into the application settings."""

    @property
    def config(self):
        return self.settings["config"]

    @property
    def collections(self):
        return self.settings["collections"]

    @property
    def blob_store(self):
        return self.settings["blob_store"]

    @property
    def registry(self):
        return self.settings["registry"]

    @property
    def uploads(self):
        return self.settings["uploads"]

    @property
    def tokens(self):
        return self.settings["tokens"]

    @property
    def tracker(self):
        return self.settings["tracker"]

    def initialize(self):
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

    def log_exception(self, typ, value, tb):
        expected = (RegistryError, ApiError, DomainError, AuthFailed, Throttled)
        if isinstance(value, expected) or (isinstance(value, tornado.web.HTTPError) and value.status_code < 500):
            return
        log.error("request failed", exc_info=(typ, value, tb),
                  extra={"trace_id": self.trace_id, "method": self.request.method, "path": self.request.path})


class RegistryErrorsMixin:
    """Every error as the distribution spec's ``{"errors": [...]}`` body."""

    def registry_error_for(self, exc):
        if isinstance(exc, RegistryError):
            return exc
        if isinstance(exc, StorageUnavailable):
            return RegistryError("UNAVAILABLE", "storage backend unavailable")
        if isinstance(exc, tornado.web.HTTPError):
            if exc.status_code == 405:
                return RegistryError("UNSUPPORTED", f"method {self.request.method} not supported here")
            if exc.status_code == 400:
                return RegistryError("BLOB_UPLOAD_INVALID", exc.log_message or "bad request")
            if exc.status_code == 404:
                return RegistryError("NAME_UNKNOWN", "no such endpoint", status=404)
        return None

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error = self.registry_error_for(exc) or RegistryError("UNKNOWN", status=status_code)
        if error.status == 401:
            self.set_challenge(error)
        for name, value in error.headers.items():
            self.set_header(name, value)
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(error.body(), separators=(",", ":")))

    def set_challenge(self, error):
        """Overridden where a 401 must carry WWW-Authenticate."""

