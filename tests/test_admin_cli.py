"""The operator's command line (`python server.py user|project|gc|imports|webhooks …`), run beside a live server
on the same database (CYP_MONGO_URI, and the embedded database of a data directory): what each command
changes is what the API then shows, and its output, exit status and stderr are a script's to rely on."""
import contextlib
import datetime
import json
import socket

import pymongo

import pytest

from tests.support.api_client import Api, admin_api_for, ok, unique_name
from tests.support.clients import (
    EmbeddedRegistryServer,
    databases_of,
    kill_all,
    run_server_cli,
    server_env,
    wait_until,
)
from tests.support.processes import RegistryServer
from tests.support.quota_support import gc_lease, gc_lease_held_elsewhere
from tests.support.webhook_receiver import Receiver

SETTINGS = {"CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "CYP_IMPORT_INSECURE_REGISTRIES": "127.0.0.1",
            "CYP_WEBHOOK_TIMEOUT_SECONDS": "2", "CYP_TRUST_PROXY_HEADERS": "true"}

COMMANDS = [("user", "create"), ("user", "list"), ("user", "disable"), ("user", "enable"),
            ("user", "reset-password"), ("project", "create"), ("project", "quota"), ("gc", "run"),
            ("imports", "list"), ("imports", "cancel"), ("webhooks", "deliveries"), ("webhooks", "redeliver")]


@pytest.fixture
def admin(server):
    return admin_api_for(server)


@pytest.fixture(scope="module")
def server(mongo, tmp_path_factory):
    """A server of the module's own (on the session's SecantusDB) that lets imports and webhooks reach loopback."""
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("admin-cli"), env=SETTINGS).start()
    yield server
    server.stop()


def cli(server, *args):
    """The command beside ``server``, on its database; ``(exit status, JSON lines, stderr)``."""
    env = server_env(CYP_MONGO_URI=server.env["CYP_MONGO_URI"], CYP_MONGO_DB=server.db_name, **SETTINGS)
    result = run_server_cli(*args, env=env)
    lines = [json.loads(line) for line in result.stdout.splitlines()] if result.returncode == 0 else []
    return result.returncode, lines, result.stderr


@contextlib.contextmanager
def server_db(server):
    """The server's database, for checks of stored state."""
    client = pymongo.MongoClient(server.env["CYP_MONGO_URI"], tz_aware=True)
    try:
        yield client[server.db_name]
    finally:
        client.close()


def created_user(server, *flags):
    username = unique_name("cli")
    status, lines, stderr = cli(server, "user", "create", username, *flags)
    assert status == 0, stderr
    return username, lines[0]


def test_user_create_prints_a_one_time_password_that_logs_in_and_must_be_changed(server):
    username, created = created_user(server, "--email", "ops@example.com")

    me = ok(Api(server.url).session(username, created["one_time_password"]).get("/api/v1/users/me"))

    assert (me["username"], me["email"], me["is_admin"]) == (username, "ops@example.com", False)
    assert me["must_change_password"] is True
    assert server.admin_password not in json.dumps(created)
    assert created["one_time_password"] not in server.log_text()


def test_user_create_beside_a_server_on_its_embedded_database(tmp_path):
    embedded = EmbeddedRegistryServer(tmp_path / "data")
    embedded.start()
    databases = databases_of(embedded)
    try:
        result = run_server_cli("--data-dir", str(embedded.data_dir), "user", "create", "ops-embedded", "--admin",
                                env=server_env())
        assert result.returncode == 0, result.stderr
        created = json.loads(result.stdout)
        me = ok(Api(embedded.url).session("ops-embedded", created["one_time_password"]).get("/api/v1/users/me"))
        assert (me["is_admin"], me["must_change_password"]) == (True, True)
        assert databases_of(embedded) == databases  # the command used the server's database, started none
    finally:
        embedded.stop()
        kill_all(databases)


def test_user_list_shows_a_created_user(server):
    username, created = created_user(server)

    status, lines, _ = cli(server, "user", "list")

    assert status == 0
    listed = {line["username"]: line for line in lines}
    assert listed[username]["id"] == created["id"] and "admin" in listed
    assert all("password" not in key for line in lines for key in line if key != "must_change_password")


def test_user_disable_refuses_the_users_logins_and_enable_restores_them(server):
    username, created = created_user(server)
    password = created["one_time_password"]

    status, lines, _ = cli(server, "user", "disable", username)
    assert (status, lines[0]["disabled"]) == (0, True)
    refused = Api(server.url).login_response(username, password)
    assert refused.status_code == 403 and "disabled" in refused.json()["message"]

    status, lines, _ = cli(server, "user", "enable", username)
    assert (status, lines[0]["disabled"]) == (0, False)
    assert Api(server.url).login_response(username, password).status_code == 200


def test_an_unknown_user_exits_1_with_one_line_naming_it(server):
    status, lines, stderr = cli(server, "user", "disable", "nobody-here")

    assert (status, lines) == (1, [])
    assert len(stderr.strip().splitlines()) == 1
    assert "no user named nobody-here" in stderr


def test_project_create_is_visible_through_the_api(server, admin):
    name = unique_name("cliproj")

    status, lines, stderr = cli(server, "project", "create", name, "--quota", "5000")

    assert status == 0, stderr
    shown = ok(admin.get(f"/api/v1/projects/{name}"))
    assert (shown["id"], shown["is_public"], shown["storage_quota"]) == (lines[0]["id"], False, 5000)
    assert shown["owner_id"] == ok(admin.get("/api/v1/users/me"))["id"]


def test_project_create_of_an_existing_name_exits_1(server):
    name = unique_name("cliproj")
    assert cli(server, "project", "create", name)[0] == 0

    status, _, stderr = cli(server, "project", "create", name)

    assert status == 1 and f"project {name} already exists" in stderr


def test_project_quota_is_what_the_api_shows(server, admin):
    project = ok(admin.post("/api/v1/projects", json={"name": unique_name("cliquota")}))

    assert cli(server, "project", "quota", project["name"], "123456")[0] == 0
    assert ok(admin.get(f"/api/v1/projects/{project['id']}"))["storage_quota"] == 123456
    assert cli(server, "project", "quota", project["name"], "-1")[0] == 0
    assert ok(admin.get(f"/api/v1/projects/{project['id']}"))["storage_quota"] == -1


def test_project_quota_below_unlimited_is_refused(server, admin):
    project = ok(admin.post("/api/v1/projects", json={"name": unique_name("cliquota")}))

    status, _, stderr = cli(server, "project", "quota", project["name"], "-2")

    assert status == 1 and "storage_quota must be at least -1" in stderr


def test_gc_run_prints_its_result_and_records_when_it_finished(server):
    with server_db(server) as db:
        assert gc_lease(db["meta"])["done_at"] < (before := datetime.datetime.now(datetime.UTC))

    status, lines, stderr = cli(server, "gc", "run")

    assert status == 0, stderr
    assert set(lines[0]) == {"unlinked", "deleted_blobs", "freed_bytes"}
    with server_db(server) as db:
        lease = db["meta"].find_one({"_id": "lease:gc"})
    assert lease["owner"] is None and lease["done_at"] >= before


def test_gc_run_while_another_collection_holds_the_lease_exits_75_and_leaves_the_lease_alone(server):
    with server_db(server) as db, gc_lease_held_elsewhere(db["meta"]) as owner:
        status, lines, stderr = cli(server, "gc", "run")
        lease = db["meta"].find_one({"_id": "lease:gc"})

    assert status == 75 and lines == []
    assert f"a garbage collection is already running (held by {owner})" in stderr
    assert lease["token"] == "elsewhere" and lease["owner"] == owner


@pytest.fixture
def silent_registry():
    """A loopback address that accepts connections and never answers: an import of it stays unfinished."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_imports_list_and_cancel_a_task_created_through_the_api(server, admin, silent_registry):
    project = ok(admin.post("/api/v1/projects", json={"name": unique_name("cliimp")}))
    task = ok(admin.post(f"/api/v1/projects/{project['id']}/images/import",
                         json={"image": f"{silent_registry}/library/app:v1"}))

    status, lines, _ = cli(server, "imports", "list", "--project", project["name"])
    assert status == 0
    assert [(line["task_id"], line["project"]) for line in lines] == [(task["task_id"], project["name"])]

    status, lines, stderr = cli(server, "imports", "cancel", task["task_id"])
    assert status == 0, stderr
    assert lines[0]["task_id"] == task["task_id"]
    assert wait_until(lambda: ok(admin.get(f"/api/v1/projects/{project['id']}/images/import/{task['task_id']}"))[
        "status"] == "cancelled", timeout=60)


def test_imports_cancel_of_an_unknown_task_exits_1(server):
    status, _, stderr = cli(server, "imports", "cancel", "no-such-task")

    assert status == 1 and "import task not found" in stderr


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def test_webhooks_deliveries_and_redeliver_of_a_webhook_created_through_the_api(server, admin, receiver):
    project = ok(admin.post("/api/v1/projects", json={"name": unique_name("clihook")}))
    webhook = ok(admin.post("/api/v1/webhooks", json={"name": unique_name("wh"), "url": receiver.url,
                                                      "events": ["PING"], "project_id": project["id"]}))
    first = ok(admin.post(f"/api/v1/webhooks/{webhook['id']}/test"))

    status, lines, _ = cli(server, "webhooks", "deliveries", webhook["id"])
    assert status == 0 and [line["id"] for line in lines] == [first["id"]]

    status, lines, stderr = cli(server, "webhooks", "redeliver", webhook["id"], first["id"])
    assert status == 0, stderr
    assert (lines[0]["event_id"], lines[0]["redelivery"]) == (first["event_id"], 1)
    listed = ok(admin.get(f"/api/v1/webhooks/{webhook['id']}/deliveries"))["items"]
    assert {item["id"] for item in listed} == {first["id"], lines[0]["id"]}


def test_webhooks_deliveries_of_an_unknown_webhook_exits_1(server):
    status, _, stderr = cli(server, "webhooks", "deliveries", "wh_unknown")

    assert status == 1 and "webhook not found" in stderr


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_of_each_command_exits_0(command):
    result = run_server_cli(*command, "--help")

    assert result.returncode == 0 and result.stdout.startswith(f"usage: server.py {' '.join(command)}")


def test_a_bad_argument_exits_2(server):
    status, _, stderr = cli(server, "imports", "list", "--status", "bogus")

    assert status == 2 and "invalid choice" in stderr
