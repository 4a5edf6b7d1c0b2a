"""The web console: the static files of console/ (plain ES modules, a stylesheet, no build step), served at ``/``
and ``/console/…``. The console is a client of /api/v1 only; nothing here reads or writes data."""
from pathlib import Path

import tornado.web

from handlers.base import BaseHandler

CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console"

# Everything the console loads comes from this origin: no inline script or style, no third party. Avatars are
# fetched with the bearer token and shown from blob: URLs.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


# Paths outside /console/ that are console files: the page itself, and the icon browsers ask for on their own.
ROOT_FILES = {"/": "index.html", "/favicon.ico": "icon.svg"}


class ConsoleHandler(BaseHandler, tornado.web.StaticFileHandler):
    """A file of console/ (``/console/<path>``, or one of ROOT_FILES)."""

    def initialize(self, route="(unmatched)"):
        BaseHandler.initialize(self, route)
        tornado.web.StaticFileHandler.initialize(self, path=str(CONSOLE_DIR))

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cross-Origin-Opener-Policy", "same-origin")

    def set_extra_headers(self, path):
        # Unversioned module URLs: the browser revalidates each (a 304 by ETag), so an upgrade is seen at once.
        self.set_header("Cache-Control", "no-cache")

    async def get(self, path=None, include_body=True):
        await super().get(path or ROOT_FILES[self.request.path], include_body)

    async def head(self, path=None):
        await self.get(path, include_body=False)
