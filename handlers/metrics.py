"""/metrics: the Prometheus exposition, and the labels requests are counted under."""
import asyncio
import hmac
import re

import tornado.web
from prometheus_client.exposition import choose_encoder

from handlers.base import BaseHandler, bearer_token

_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def api_of(path):
    """The ``api`` label: ``v2``, ``api`` or ``other``."""
    if path.startswith("/v2/") or path.partition("?")[0] == "/v2":
        return "v2"
    return "api" if path.startswith("/api/") else "other"


def route_label(pattern):
    """A route's pattern as a readable template: ``/v2/{name}/manifests/{reference}``."""
    return _NAMED_GROUP.sub(r"{\1}", pattern)


def labelled_routes(routes):
    """The route table with each handler told its route's label (BaseHandler.initialize)."""
    return [(pattern, handler, {"route": route_label(pattern)}) for pattern, handler in routes]


class MetricsHandler(BaseHandler):
    def compute_etag(self):
        return None

    async def get(self):
        if not self.config["metrics_enabled"]:
            raise tornado.web.HTTPError(404)
        expected = self.config["metrics_token"]
        if expected and not hmac.compare_digest((bearer_token(self.request.headers) or "").encode(), expected.encode()):
            # Written here: an HTTPError would clear the challenge header.
            self.set_status(401)
            self.set_header("WWW-Authenticate", 'Bearer realm="metrics"')
            self.finish("GET /metrics requires Authorization: Bearer <metrics_token>\n")
            return
        encode, content_type = choose_encoder(self.request.headers.get("Accept"))
        # With workers this reads every worker's files: off the event loop.
        body = await asyncio.get_running_loop().run_in_executor(None, encode, self.settings["metrics_registry"])
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)
