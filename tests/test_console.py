"""The web console in a real browser (Debian's headless Chromium, driven by Playwright) against a real server
holding images pushed by skopeo and plain /v2/ pushes, a real remote registry to import from and a real webhook
receiver.

Every test's page is watched: an uncaught error, a console error, a Content-Security-Policy violation or a 5xx
fails it (tests/support/browser.py). Screenshots of every page land in tests/artifacts/console/.
"""
import datetime
import re
import struct
import time
import zlib

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.support.api_client import Api, create_user, ok, refused, strong_password, unique_name
from tests.support.browser import (
    WatchedPage,
    axe_violations,
    launch,
    screenshot,
    sign_in_tokens,
    stored_session,
)
from tests.support.clients import CommandFailed, Skopeo, require_tool
from tests.support.manifests import get_manifest, push_artifact
from tests.support.oci_layout import make_image_layout
from tests.support.processes import RegistryServer
from tests.support.registry_client import RegistryClient
from tests.support.remotes import DockerRegistry, push_image, push_index
from tests.support.webhook_receiver import Receiver

require_tool("skopeo")
require_tool("chromium")

MiB = 1024 * 1024
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 740}
XSS = '<img src=x onerror="window.__xss=1">'

expect.set_options(timeout=20_000)


# -- servers, data, browser -------------------------------------------------------------------

@pytest.fixture(scope="module")
def source_registry(tmp_path_factory):
    """A registry to import from (Debian's docker-registry on loopback)."""
    remote = DockerRegistry(tmp_path_factory.mktemp("console-source")).start()
    yield remote
    remote.stop()


@pytest.fixture(scope="module")
def server(mongo, tmp_path_factory, source_registry):
    # Imports and webhooks may reach loopback: the remote registry and the webhook receiver.
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("console"), env={
        "CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "CYP_IMPORT_INSECURE_REGISTRIES": source_registry.host})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(server):
    return Api(server.url).session("admin", server.admin_password)


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def demo(server, admin, receiver):
    """A private project with a quota, an image, a multi-platform index with a referrer, and a webhook."""
    name = unique_name("demo")
    project = ok(admin.post("/api/v1/projects", json={"name": name, "description": "Images of the demo team",
                                                      "storage_quota": 100 * MiB}))
    auth = ("admin", server.admin_password)
    image = push_image(server.url, f"{name}/app", "v1", layer_sizes=(300_000, 40_000), auth=auth)
    index = push_index(server.url, f"{name}/multi", "latest", layer_sizes=(2048,), auth=auth)
    client = RegistryClient(server.url, "admin", server.admin_password)
    push_artifact(client, f"{name}/multi", subject=index.descriptor, annotations={"org.example.kind": "sbom"})
    webhook = ok(admin.post("/api/v1/webhooks", json={"name": "demo hook", "url": receiver.url, "project_id": project["id"],
                                                      "events": ["PUSH_ARTIFACT", "PING"]}))
    ok(admin.post(f"/api/v1/webhooks/{webhook['id']}/test"))
    return {"project": project, "name": name, "image": image, "index": index, "webhook": webhook}


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory):
    return Skopeo(tmp_path_factory.mktemp("console-skopeo"))


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    path = tmp_path_factory.mktemp("console-layout") / "image"
    make_image_layout(path, [200_000, 5_000], seed="console")
    return path


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


def watched_page(browser, base_url, **context_options):
    context = browser.new_context(viewport=context_options.pop("viewport", DESKTOP), **context_options)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    return WatchedPage(context.new_page(), base_url)


@pytest.fixture
def page(browser, server):
    """A page in a browser context of the test's own; whatever went wrong on it fails the test."""
    watched = watched_page(browser, server.url)
    yield watched.page
    problems = watched.problems()
    watched.page.context.close()
    assert not problems, problems


def sign_in(page, server, username="admin", password=None):
    tokens = Api(server.url).login(username, password or server.admin_password)
    sign_in_tokens(page, server.url, tokens)
    return tokens


def open_console(page, server, route):
    """Load the console at ``#/route`` and wait until every request of the page has been answered."""
    page.goto(f"{server.url}/#/{route}")
    settle(page)


def settle(page):
    expect(page.locator("main h1")).to_be_visible()
    expect(page.locator(".loading")).to_have_count(0)
    expect(page.locator("[aria-busy=true]")).to_have_count(0)


def project_path(name, tab=""):
    return f"projects/{name}" + (f"/{tab}" if tab else "")


def clipboard(page):
    return page.evaluate("navigator.clipboard.readText()")


def starting(text):
    """A pattern for an accessible name that starts with ``text`` (slashes escaped for Playwright's regex syntax)."""
    return re.compile("^" + re.escape(text).replace("/", r"\/") + " ")


def shown_size(size):
    """How the console writes a size in KiB: two decimals below 10, one from there."""
    kib = size / 1024
    return f"{kib:.2f} KiB" if kib < 10 else f"{kib:.1f} KiB"


def png(width=4, height=4):
    """A small valid PNG (solid colour), for the avatar."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x2a\x6f\xc8" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# -- serving ----------------------------------------------------------------------------------

def test_the_console_is_served_at_the_root_with_a_strict_content_security_policy(server):
    answer = requests.get(f"{server.url}/", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert '<script type="module" src="/console/app.js"></script>' in answer.text
    policy = dict(part.strip().split(" ", 1) for part in answer.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["img-src"] == "'self' data: blob:"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    for asset, kind in [("app.js", "javascript"), ("pages/project.js", "javascript"), ("style.css", "text/css")]:
        served = requests.get(f"{server.url}/console/{asset}", timeout=30)
        assert served.status_code == 200 and kind in served.headers["Content-Type"], (asset, served.headers)
        assert served.headers["Content-Security-Policy"] == answer.headers["Content-Security-Policy"]


def test_only_the_console_files_are_served_and_the_apis_keep_their_answers(server):
    assert requests.get(f"{server.url}/console/missing.js", timeout=30).status_code == 404
    assert requests.get(f"{server.url}/console/pages", timeout=30).status_code == 403  # a directory is no page
    assert requests.get(f"{server.url}/console/..%2Fserver.py", timeout=30).status_code in (403, 404)
    assert requests.post(f"{server.url}/", timeout=30).status_code == 405
    icon = requests.get(f"{server.url}/favicon.ico", timeout=30)
    assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/svg+xml"
    refused(requests.get(f"{server.url}/api/v1/nothing", timeout=30), 20001)
    refused(requests.get(f"{server.url}/elsewhere", timeout=30), 20001)
    v2 = requests.get(f"{server.url}/v2/", timeout=30)
    assert v2.status_code == 401 and v2.headers["WWW-Authenticate"].startswith("Bearer ")


# -- signing in and out -----------------------------------------------------------------------

def test_first_start_shows_the_one_time_password_once_and_asks_for_a_new_one(mongo, tmp_path, browser):
    own = RegistryServer(mongo.uri, tmp_path / "first-start", env={"CYP_BOOTSTRAP_ADMIN_PASSWORD": ""}).start()
    watched = watched_page(browser, own.url)
    page = watched.page
    try:
        printed = re.search(r"one-time password: (\S+)", own.log_text()).group(1)
        page.goto(f"{own.url}/#/signin")
        expect(page.locator(".hint-card code")).to_have_text(printed)
        expect(page.get_by_label("Username", exact=True)).to_have_value("admin")
        screenshot(page, "signin-first-start")
        page.get_by_label("Password", exact=True).fill(printed)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
        page.goto(f"{own.url}/#/projects")  # nothing else opens before the password is changed
        expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
        screenshot(page, "change-password")
        chosen = strong_password()
        page.get_by_label("Current password").fill(printed)
        page.get_by_label("New password", exact=True).fill(chosen)
        page.get_by_label("New password again").fill(chosen)
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
        me = ok(Api(own.url).session("admin", chosen).get("/api/v1/users/me"))
        assert me["must_change_password"] is False
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
        settle(page)
        assert page.locator(".hint-card").count() == 0  # forgotten once used
        page.reload()
        settle(page)
        assert page.locator(".hint-card").count() == 0  # and the server answers it only once
        assert not watched.problems(), watched.problems()
    finally:
        page.context.close()
        own.stop()


def test_a_refused_sign_in_shows_the_message_and_trace_id_and_sign_out_ends_the_session(page, server, admin):
    user = create_user(admin, display_name="Dana Tester")
    page.goto(f"{server.url}/#/signin")
    page.get_by_label("Username", exact=True).fill(user.username)
    page.get_by_label("Password", exact=True).fill("Wrong-password-1")
    with page.expect_response("**/api/v1/auth/login") as refusal:
        page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("invalid username or password")
    expect(alert.locator(".trace-id")).to_have_text(refusal.value.headers["x-trace-id"])

    page.get_by_label("Password", exact=True).fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="My account: Dana Tester")).to_be_visible()
    tokens = stored_session(page)
    assert tokens["access_token"] not in page.url and tokens["refresh_token"] not in page.url

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    assert stored_session(page) is None
    refused(Api(server.url).post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 30002)


def test_the_sign_in_form_works_from_the_keyboard_with_a_visible_focus(page, server):
    page.goto(f"{server.url}/#/signin")
    settle(page)
    username = page.get_by_label("Username", exact=True)
    expect(username).to_be_focused()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    page.keyboard.type(server.admin_password)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    heading = page.get_by_role("heading", name="Projects", exact=True)
    expect(heading).to_be_focused()  # a new page puts the focus on its heading
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.closest('header') !== null")


def test_an_access_token_near_its_end_is_renewed_and_an_ended_session_asks_to_sign_in_again(page, server):
    tokens = Api(server.url).login("admin", server.admin_password)
    sign_in_tokens(page, server.url, {**tokens, "expires_at": 0})  # as if it had expired
    open_console(page, server, "projects")
    renewed = stored_session(page)
    assert renewed["access_token"] != tokens["access_token"]
    assert renewed["refresh_token"] != tokens["refresh_token"]
    ok(Api(server.url, renewed["access_token"]).post("/api/v1/auth/logout"))  # ended elsewhere
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    expect(page.get_by_text("Your session has ended")).to_be_visible()
    assert stored_session(page) is None


def test_an_api_error_shows_its_message_and_trace_id(page, server):
    sign_in(page, server)
    with page.expect_response("**/api/v1/projects/no-such-project") as missing:
        page.goto(f"{server.url}/#/projects/no-such-project")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("project not found")
    expect(alert).to_contain_text("20001")
    expect(alert.locator(".trace-id")).to_have_text(missing.value.headers["x-trace-id"])
    screenshot(page, "error")


# -- projects, repositories, tags -------------------------------------------------------------

def test_projects_show_usage_against_the_quota_their_badge_and_search(page, server, admin, demo):
    public = ok(admin.post("/api/v1/projects", json={"name": unique_name("pub"), "is_public": True}))
    sign_in(page, server)
    open_console(page, server, "projects")
    card = page.locator(".project-item", has=page.get_by_role("link", name=demo["name"], exact=True))
    expect(card.locator(".badge")).to_have_text("Private")
    used = ok(admin.get(f"/api/v1/projects/{demo['name']}"))["storage_used"]
    meter = card.locator("meter")
    expect(meter).to_have_attribute("value", str(used))
    expect(meter).to_have_attribute("max", str(100 * MiB))
    expect(card).to_contain_text("of 100.0 MiB")
    expect(page.locator(".project-item", has=page.get_by_role("link", name=public["name"]))
           .locator(".badge")).to_have_text("Public")
    page.get_by_label("Search by name").fill(demo["name"])
    expect(page.locator(".project-item")).to_have_count(1)
    page.get_by_label("Visibility").select_option("Public")
    expect(page.get_by_text("No project matches.")).to_be_visible()
    screenshot(page, "projects-search")


def test_an_anonymous_visitor_browses_public_projects_only(page, server, admin, demo):
    name = unique_name("open")
    ok(admin.post("/api/v1/projects", json={"name": name, "is_public": True}))
    push_image(server.url, f"{name}/app", "v1", auth=("admin", server.admin_password), seed=6)
    page.goto(f"{server.url}/")
    settle(page)
    expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=demo["name"], exact=True)).to_have_count(0)  # private
    page.get_by_role("link", name=name, exact=True).click()
    settle(page)
    page.get_by_role("link", name=f"{name}/app").click()
    settle(page)
    expect(page.get_by_role("row", name=re.compile(r"^v1 "))).to_be_visible()
    expect(page.get_by_role("button", name="Delete repository")).to_have_count(0)
    page.goto(f"{server.url}/#/account")
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    assert page.url.endswith("#/signin?next=account")


def test_a_project_is_created_from_the_form(page, server, admin):
    name = unique_name("made")
    sign_in(page, server)
    open_console(page, server, "projects")
    page.get_by_text("New project").click()
    form = page.get_by_role("form", name="New project")
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_label("Description").fill("Made in the console")
    form.get_by_label("Public: anyone may pull its images").check()
    form.get_by_label("Quota (empty: the default)", exact=True).fill("2")
    form.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    project = ok(admin.get(f"/api/v1/projects/{name}"))
    assert (project["description"], project["is_public"], project["storage_quota"]) == ("Made in the console", True,
                                                                                         2 * 1024 ** 3)


def test_an_image_pushed_with_skopeo_appears_with_its_tag_size_and_pull_commands(page, server, admin, skopeo, layout):
    name = unique_name("sko")
    ok(admin.post("/api/v1/projects", json={"name": name}))
    sign_in(page, server)
    open_console(page, server, project_path(name))
    expect(page.get_by_text("No repositories yet")).to_be_visible()

    skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{server.admin_password}",
               f"oci:{layout}:v1", f"docker://{server.host}/{name}/app:v1")
    page.reload()
    settle(page)
    row = page.get_by_role("row", name=f"{name}/app")
    repository = ok(admin.get(f"/api/v1/projects/{name}/repositories"))["items"][0]
    expect(row).to_contain_text(shown_size(repository["size"]))
    row.get_by_role("link").click()
    settle(page)
    tag_row = page.get_by_role("row", name=re.compile(r"^v1 "))
    tag = ok(admin.get(f"/api/v1/projects/{name}/repositories/app/tags/v1"))
    expect(tag_row).to_contain_text(tag["digest"][:19])
    expect(tag_row).to_contain_text("image")
    docker = f"docker pull {server.host}/{name}/app:v1"
    expect(page.locator(".pull-commands code").first).to_have_text(docker)
    expect(page.locator(".pull-commands code").nth(1)).to_have_text(f"podman pull --tls-verify=false {server.host}/{name}/app:v1")
    page.get_by_role("button", name="Copy the docker pull command").click()
    assert clipboard(page) == docker

    tag_row.get_by_role("link", name="v1").click()
    settle(page)
    detail = ok(admin.get(f"/api/v1/projects/{name}/repositories/app/tags/v1"))
    layers = page.get_by_role("region", name="Layers of this image")
    for layer in detail["layers"]:
        expect(layers.get_by_role("row", name=re.compile(layer["digest"][:19]))).to_contain_text(shown_size(layer["size"]))
    page.get_by_text("Show the manifest").click()
    expect(page.locator("pre.manifest")).to_contain_text(detail["config"]["digest"])
    screenshot(page, "tag-image")


def test_pulls_are_shown_per_repository_and_per_tag(page, server, admin):
    name = unique_name("pull")
    ok(admin.post("/api/v1/projects", json={"name": name}))
    push_image(server.url, f"{name}/app", "v1", auth=("admin", server.admin_password), seed=7)
    client = RegistryClient(server.url, "admin", server.admin_password)
    assert get_manifest(client, f"{name}/app", "v1").status_code == 200
    deadline = time.monotonic() + 20  # pulls are counted in batches, about a second after them
    while ok(admin.get(f"/api/v1/projects/{name}/repositories"))["items"][0]["pull_count"] != 1:
        assert time.monotonic() < deadline, "the pull was not counted"
        time.sleep(0.2)
    sign_in(page, server)
    open_console(page, server, project_path(name))
    expect(page.get_by_role("row", name=f"{name}/app").locator("td").last).to_have_text("1")
    page.get_by_role("link", name=f"{name}/app").click()
    settle(page)
    expect(page.get_by_role("row", name=re.compile(r"^v1 ")).locator("td").nth(5).locator("time")).to_be_visible()


def test_a_tag_page_shows_an_index_platforms_and_its_referrers(page, server, demo):
    sign_in(page, server)
    open_console(page, server, f"projects/{demo['name']}/repositories/multi/tags/latest")
    platforms = page.get_by_role("region", name="Platforms of this index")
    for platform in ("linux/amd64", "linux/arm64", "linux/arm/v7"):
        expect(platforms.get_by_role("row", name=starting(platform))).to_be_visible()
    referrers = page.get_by_role("region", name=re.compile("Referrers"))
    expect(referrers.get_by_role("row", name="application/vnd.example.sbom.v1")).to_contain_text(
        "org.example.kind = sbom")
    expect(page.locator(".pull-commands code").nth(2)).to_have_text(
        f"docker pull {server.host}/{demo['name']}/multi@{demo['index'].digest}")
    screenshot(page, "tag-index")


def test_deleting_a_tag_asks_first_and_then_removes_it(page, server, admin):
    name = unique_name("del")
    ok(admin.post("/api/v1/projects", json={"name": name}))
    auth = ("admin", server.admin_password)
    push_image(server.url, f"{name}/app", "keep", auth=auth, seed=1)
    push_image(server.url, f"{name}/app", "gone", auth=auth, seed=2)
    sign_in(page, server)
    open_console(page, server, f"projects/{name}/repositories/app/tags/gone")
    page.get_by_role("button", name="Delete tag").click()
    dialog = page.get_by_role("dialog", name="Delete tag gone?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice is the default
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    page.get_by_role("button", name="Delete tag").click()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    ok(admin.get(f"/api/v1/projects/{name}/repositories/app/tags/gone"))

    page.get_by_role("button", name="Delete tag").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete tag").click()
    expect(page.get_by_role("heading", name=f"{name}/app")).to_be_visible()
    settle(page)
    expect(page.get_by_role("row", name=re.compile(r"^keep "))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile(r"^gone "))).to_have_count(0)
    refused(admin.get(f"/api/v1/projects/{name}/repositories/app/tags/gone"), 20001)


def test_settings_switch_visibility_and_set_the_quota_and_storage_is_charted_per_repository(page, server, admin):
    name = unique_name("set")
    ok(admin.post("/api/v1/projects", json={"name": name}))
    auth = ("admin", server.admin_password)
    push_image(server.url, f"{name}/big", "v1", layer_sizes=(200_000,), auth=auth, seed=3)
    push_image(server.url, f"{name}/small", "v1", layer_sizes=(2_000,), auth=auth, seed=4)
    sign_in(page, server)
    open_console(page, server, project_path(name, "settings"))
    switch = page.get_by_role("switch", name=re.compile("Public"))
    switch.check()
    expect(page.get_by_text("The project is public.")).to_be_visible()
    expect(page.locator(".page-heading .badge")).to_have_text("Public")
    assert ok(admin.get(f"/api/v1/projects/{name}"))["is_public"] is True

    page.get_by_label("Storage quota (empty: unlimited)", exact=True).fill("5")
    page.get_by_label("Storage quota (empty: unlimited): unit").select_option("MiB")
    page.get_by_role("button", name="Save quota").click()
    expect(page.get_by_text("Quota set to 5.00 MiB.")).to_be_visible()
    assert ok(admin.get(f"/api/v1/projects/{name}"))["storage_quota"] == 5 * MiB

    page.get_by_role("link", name="Storage").click()
    settle(page)
    bars = page.locator(".bar-row .bar-label")
    expect(bars).to_have_text([f"{name}/big", f"{name}/small"])  # largest first
    widths = [float(w) for w in page.locator(".bar-fill").evaluate_all("(rects) => rects.map((r) => r.getAttribute('width'))")]
    assert widths[0] == 100 and 0 < widths[1] < 10
    screenshot(page, "project-storage")


# -- tokens and account -----------------------------------------------------------------------

def test_a_personal_access_token_is_shown_once_works_with_skopeo_and_stops_when_revoked(page, server, admin, skopeo,
                                                                                        layout):
    name = unique_name("pat")
    ok(admin.post("/api/v1/projects", json={"name": name}))
    sign_in(page, server)
    open_console(page, server, "account")
    page.get_by_text("New token").click()
    form = page.get_by_role("form", name="New personal access token")
    token_name = unique_name("ci-")
    form.get_by_label("Name", exact=True).fill(token_name)
    form.get_by_label("registry:push").check()
    expiry = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    form.get_by_label("Expires on (optional)").fill(expiry)
    form.get_by_role("button", name="Create token").click()
    dialog = page.get_by_role("dialog", name="Your new token")
    secret = dialog.get_by_role("textbox").input_value()
    assert secret.startswith("cyp_")
    dialog.get_by_role("button", name="Copy the secret").click()
    assert clipboard(page) == secret
    assert not axe_violations(page)
    screenshot(page, "pat-created")
    dialog.get_by_role("button", name="Done").click()
    expect(dialog).to_have_count(0)
    row = page.get_by_role("row", name=re.compile(token_name))
    expect(row).to_contain_text(f"{secret[:8]}…")
    expect(row).to_contain_text("registry:pull, registry:push")
    assert secret not in page.content()
    assert secret not in page.evaluate("JSON.stringify({...sessionStorage}) + JSON.stringify({...localStorage})")
    pat = next(p for p in ok(admin.get("/api/v1/users/me/pat")) if p["name"] == token_name)
    assert pat["expires_at"].startswith(expiry)

    skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{secret}",
               f"oci:{layout}:v1", f"docker://{server.host}/{name}/app:v1")
    row.get_by_role("button", name=f"Revoke {token_name}").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke token").click()
    expect(page.get_by_role("row", name=re.compile(token_name))).to_have_count(0)
    with pytest.raises(CommandFailed):
        skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{secret}",
                   f"oci:{layout}:v1", f"docker://{server.host}/{name}/app:v2")


def test_my_account_edits_the_profile_avatar_notifications_and_password(page, server, admin):
    user = create_user(admin)
    sign_in(page, server, user.username, user.password)
    open_console(page, server, "account")
    page.get_by_label("Display name").fill("Robin Example")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_text("Profile saved.")).to_be_visible()
    expect(page.get_by_role("link", name="My account: Robin Example")).to_be_visible()

    page.get_by_label("Image file").set_input_files({"name": "me.png", "mimeType": "image/png", "buffer": png()})
    page.get_by_role("button", name="Upload avatar").click()
    expect(page.get_by_text("Avatar uploaded.")).to_be_visible()
    expect(page.get_by_role("img", name="Your avatar")).to_have_attribute("src", re.compile("^blob:"))
    assert page.get_by_role("img", name="Your avatar").evaluate("(img) => img.naturalWidth") == 4

    page.get_by_label("Pushes").uncheck()
    page.get_by_role("button", name="Save notifications").click()
    expect(page.get_by_text("Notification settings saved.")).to_be_visible()
    assert ok(user.api.get("/api/v1/users/me/notification-settings"))["events"]["push"] is False

    chosen = strong_password()
    page.get_by_label("Current password").fill(user.password)
    page.get_by_label("New password", exact=True).fill(chosen)
    page.get_by_label("New password again").fill(chosen)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Password changed.")).to_be_visible()
    ok(Api(server.url).login_response(user.username, chosen))
    screenshot(page, "account")


# -- imports and webhooks ---------------------------------------------------------------------

def test_an_import_shows_live_progress_until_it_completes_and_a_failure_is_explained(page, server, admin,
                                                                                     source_registry):
    push_image(source_registry.url, "src/app", "v1", layer_sizes=(1 * MiB, 300_000), seed="console-import")
    name = unique_name("imp")
    ok(admin.post("/api/v1/projects", json={"name": name}))
    sign_in(page, server)
    open_console(page, server, project_path(name, "imports"))
    form = page.get_by_role("form", name="Import an image")
    form.get_by_label("Image").fill(f"{source_registry.host}/src/app:v1")
    form.get_by_label("Repository in this project (optional)").fill("copied")
    form.get_by_role("button", name="Import").click()
    expect(form.get_by_text(re.compile("Import of .* started"))).to_be_visible()
    row = page.get_by_role("row", name=f"{source_registry.host}/src/app:v1")
    expect(row.locator(".badge")).to_have_text("completed", timeout=90_000)  # polled, never reloaded
    expect(row.locator("progress")).to_have_attribute("value", "100")
    expect(row.get_by_role("link", name=f"{name}/copied:v1")).to_be_visible()

    form.get_by_label("Image").fill(f"{source_registry.host}/src/app:missing")
    form.get_by_label("Repository in this project (optional)").fill("")
    form.get_by_role("button", name="Import").click()
    failed = page.get_by_role("row", name=f"{source_registry.host}/src/app:missing")
    expect(failed.locator(".badge")).to_have_text("failed", timeout=90_000)
    task = next(t for t in ok(admin.get(f"/api/v1/projects/{name}/images/import"))["items"]
                if t["image"].endswith(":missing"))
    assert "not found" in task["message"]
    expect(failed).to_contain_text(task["message"])
    screenshot(page, "imports")


def test_a_webhook_is_created_with_its_events_tested_and_a_delivery_redelivered(page, server, admin, receiver):
    name = unique_name("hook")
    ok(admin.post("/api/v1/projects", json={"name": name}))
    sign_in(page, server)
    open_console(page, server, project_path(name, "webhooks"))
    page.get_by_text("New webhook").click()
    form = page.get_by_role("form", name="New webhook")
    form.get_by_label("Name", exact=True).fill("deploy hook")
    form.get_by_label("URL").fill(receiver.url)
    form.get_by_label(re.compile(r"^Ping")).check()
    form.get_by_label(re.compile(r"^Delete")).check()
    form.get_by_role("button", name="Create webhook").click()
    dialog = page.get_by_role("dialog", name="Webhook secret")
    assert dialog.get_by_role("textbox").input_value().startswith("whsec_")
    dialog.get_by_role("button", name="Done").click()
    expect(page.get_by_role("heading", name="deploy hook")).to_be_visible()
    webhook_id = page.url.rsplit("/", 1)[1]
    assert sorted(ok(admin.get(f"/api/v1/webhooks/{webhook_id}"))["events"]) == ["DELETE_ARTIFACT", "PING", "PUSH_ARTIFACT"]

    seen = len(receiver.received)
    page.get_by_role("button", name="Send a test (PING)").click()
    expect(page.get_by_text("Test delivery succeeded: the receiver answered 200.")).to_be_visible()
    row = page.get_by_role("row", name=re.compile("^PING"))
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text("200")
    row.locator("summary").click()  # the response excerpt opens on the body
    expect(row.locator("pre")).to_have_text("ok")
    row.get_by_role("button", name=re.compile("^Redeliver")).click()
    expect(page.get_by_role("row", name=re.compile("^PING"))).to_have_count(2)
    pings = [d for d in receiver.received[seen:] if d["document"]["type"] == "PING"]
    assert len(pings) == 2 and pings[0]["document"]["id"] == pings[1]["document"]["id"]

    push_image(server.url, f"{name}/app", "v1", auth=("admin", server.admin_password), seed=5)
    push_row = page.get_by_role("row", name=re.compile("^PUSH_ARTIFACT"))
    # Reloaded until the delivery is listed with its outcome: one listed while its send is still under way
    # says "sending", and the page does not refresh itself.
    for _ in range(40):
        page.get_by_role("button", name="Reload").click()
        settle(page)
        if push_row.count() and "succeeded" in push_row.inner_text():
            break
        page.wait_for_timeout(500)
    expect(push_row).to_contain_text("succeeded")
    screenshot(page, "webhook-deliveries")


# -- administration ---------------------------------------------------------------------------

def test_administrators_create_users_make_them_administrators_and_disable_them(page, server, admin):
    username = unique_name("new")
    sign_in(page, server)
    open_console(page, server, "admin/users")
    page.get_by_text("New user").click()
    form = page.get_by_role("form", name="New user")
    form.get_by_label("Username", exact=True).fill(username)
    form.get_by_label("Password", exact=True).fill(strong_password())
    form.get_by_label("Display name (optional)").fill("New Person")
    form.get_by_role("button", name="Create user").click()
    expect(form.get_by_text(f"User {username} created.")).to_be_visible()
    row = page.get_by_role("row", name=re.compile(f"^{username} "))
    expect(row).to_contain_text("active")

    row.get_by_role("button", name=f"Make admin {username}").click()
    expect(row.locator(".badge", has_text="administrator")).to_be_visible()
    row.get_by_role("button", name=f"Disable {username}").click()
    expect(row.locator(".badge", has_text="disabled")).to_be_visible()
    user = next(u for u in ok(admin.get("/api/v1/users", params={"search": username}))["items"])
    assert (user["is_admin"], user["disabled"]) == (True, True)
    screenshot(page, "users")


def test_markup_in_names_and_descriptions_stays_text(page, server, admin):
    name = unique_name("xss")
    project = ok(admin.post("/api/v1/projects", json={"name": name, "description": XSS, "is_public": True}))
    ok(admin.post("/api/v1/webhooks", json={"name": XSS, "url": "http://127.0.0.1:9/hook", "project_id": project["id"],
                                            "events": ["PING"]}))
    user = create_user(admin, display_name=XSS)
    sign_in(page, server)
    for route, shown in [(project_path(name), page.locator(".description")),
                         (project_path(name, "webhooks"), page.get_by_role("link", name=XSS)),
                         ("admin/users", page.get_by_role("row", name=re.compile(user.username)).get_by_text(XSS))]:
        open_console(page, server, route)
        expect(shown.first).to_have_text(XSS)
    sign_in(page, server, user.username, user.password)
    open_console(page, server, "projects")
    expect(page.get_by_role("link", name=f"My account: {XSS}")).to_be_visible()
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src=x]").count() == 0


def test_the_audit_log_lists_what_happened_and_finds_failed_sign_ins(page, server, admin):
    user = create_user(admin)
    refused(Api(server.url).login_response(user.username, "Wrong-password-1"), 30001)
    sign_in(page, server)
    open_console(page, server, "audit")
    records = page.get_by_role("region", name="Audit records")
    expect(records.get_by_role("row").filter(has_text="user.create").filter(has_text=user.username).first).to_be_visible()

    page.get_by_role("button", name="Show failed sign-ins").click()
    settle(page)
    failed = records.get_by_role("row").filter(has_text=user.username)
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("auth.login")
    expect(failed).to_contain_text("failure")
    expect(failed).to_contain_text("30001")
    outcomes = records.locator("tbody tr .badge").all_text_contents()
    assert outcomes and set(outcomes) == {"failure"}

    page.get_by_role("button", name="Clear").click()
    settle(page)
    form = page.get_by_role("form", name="Filter the audit log")
    form.get_by_label("Username").fill(user.username)
    form.get_by_role("button", name="Apply filters").click()
    settle(page)
    users = records.locator("tbody tr td:nth-child(4)").all_text_contents()
    assert users and set(users) == {user.username}
    screenshot(page, "audit")


# -- every page: accessibility, small screens, dark scheme, screenshots -------------------------

def console_pages(demo):
    name = demo["name"]
    return [
        ("projects", "projects"),
        ("project", project_path(name)),
        ("project-storage-tab", project_path(name, "storage")),
        ("project-imports-tab", project_path(name, "imports")),
        ("project-webhooks-tab", project_path(name, "webhooks")),
        ("project-settings-tab", project_path(name, "settings")),
        ("repository", f"projects/{name}/repositories/app"),
        ("tag", f"projects/{name}/repositories/app/tags/v1"),
        ("index-tag", f"projects/{name}/repositories/multi/tags/latest"),
        ("webhooks", "webhooks"),
        ("webhook", f"webhooks/{demo['webhook']['id']}"),
        ("account", "account"),
        ("users", "admin/users"),
        ("audit", "audit"),
    ]


@pytest.mark.parametrize("scheme, viewport", [("light", DESKTOP), ("dark", PHONE)], ids=["light-desktop", "dark-phone"])
def test_every_page_renders_without_serious_accessibility_violations(browser, server, demo, scheme, viewport):
    watched = watched_page(browser, server.url, viewport=viewport, color_scheme=scheme)
    page = watched.page
    found = {}
    try:
        open_console(page, server, "signin")
        pages = [("signin", None), *console_pages(demo)]
        for index, (name, route) in enumerate(pages):
            if route is None:
                violations = axe_violations(page)
            else:
                if index == 1:
                    sign_in(page, server)
                open_console(page, server, route)
                for summary in page.locator("main details > summary").all():
                    summary.click()  # the forms folded away are scanned too
                violations = axe_violations(page)
            if violations:
                found[name] = violations
            # At 360 px nothing makes the page scroll sideways: wide tables scroll inside their own region.
            if viewport == PHONE:
                assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
            screenshot(page, f"{name}-{scheme}-{viewport['width']}")
        assert not found, found
        assert not watched.problems(), watched.problems()
    finally:
        page.context.close()
