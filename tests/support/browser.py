"""Headless Chromium (Debian's ``chromium``) driven by Playwright for the web console's tests.

Playwright's own browser download is not used: the browser is the system's, started with its executable path.
Each page is watched for what must never happen: an uncaught error, a console error (a failed load of anything
but an expected /api/v1 refusal), a Content-Security-Policy violation, a 5xx answer. axe-core (vendored in
tests/support/axe/, see its README) scans pages for accessibility violations.
"""
import json
import os
import re
import shutil
from pathlib import Path

from tests.support.processes import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE_SOURCE = (Path(__file__).parent / "axe" / "axe.min.js").read_text()
ARTIFACTS = ROOT / "tests" / "artifacts" / "console"
SESSION_KEY = "cyp-registry.session"
BLOCKING_IMPACTS = ("serious", "critical")

# Every document reports its CSP violations on the console too, so one listener sees every page's.
WATCH_CSP = """
document.addEventListener('securitypolicyviolation', (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || 'inline'} ` +
                `(${event.sourceFile}:${event.lineNumber}) ${event.sample}`);
});
"""
_API_REFUSAL = re.compile(r"^Failed to load resource: the server responded with a status of 4\d\d ")


def launch(playwright):
    # Chromium's sandbox needs user namespaces it cannot have as root (CI runs as root).
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args)


class WatchedPage:
    """A page and everything that went wrong on it; ``problems()`` lists them."""

    def __init__(self, page, base_url):
        self.page = page
        self.base_url = base_url
        self.errors = []
        page.add_init_script(WATCH_CSP)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("response", self._response)
        page.on("requestfailed", self._failed)

    def _console(self, message):
        if message.type != "error":
            return
        url = message.location.get("url", "")
        # A refusal of the API (a 404 of a missing project, the 410 of the one-time hint) is shown by the page
        # itself; the browser also logs it. Anything else on the console is a defect.
        if _API_REFUSAL.match(message.text) and url.startswith(f"{self.base_url}/api/v1/"):
            return
        self.errors.append(f"console: {message.text} at {url}")

    def _response(self, response):
        if response.status >= 500:
            self.errors.append(f"{response.status} from {response.url}")

    def _failed(self, request):
        failure = request.failure or ""
        # Requests of a page that was left are aborted on purpose.
        if "ERR_ABORTED" not in failure:
            self.errors.append(f"request failed: {request.url} {failure}")

    def problems(self):
        return list(self.errors)


def sign_in_tokens(page, base_url, tokens):
    """Put a session's tokens where the console keeps them (this tab's sessionStorage), as a sign-in does, without
    loading the console first."""
    page.goto(f"{base_url}/console/icon.svg")
    page.evaluate("([key, value]) => sessionStorage.setItem(key, value)",
                  [SESSION_KEY, json.dumps({key: tokens[key] for key in ("access_token", "refresh_token", "expires_at")})])


def stored_session(page):
    raw = page.evaluate("(key) => sessionStorage.getItem(key)", SESSION_KEY)
    return json.loads(raw) if raw else None


def axe_violations(page):
    """Serious and critical axe-core violations of the page as it is now: ``[(rule, impact, [targets])]``."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(AXE_SOURCE)
    found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .map((v) => [v.id, v.impact, v.nodes.map((n) => n.target.join(' ')).slice(0, 5)])""")
    return [tuple(v) for v in found if v[1] in BLOCKING_IMPACTS]


def screenshot(page, name):
    """A full-page screenshot under tests/artifacts/console/ (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
