"""Durable before acknowledged: an answer that says something is stored survives the database being
killed the moment after, and every write that backs such an answer asks MongoDB for the journal."""
import asyncio
import subprocess
import sys
import threading
import time

import pymongo
import pytest
import requests
from pymongo import monitoring

from config import load_settings
from runtime.backend import open_backend
from runtime.serve import make_app
from services.bootstrap import ensure_bootstrap_admin
from services.container import build_services
from services.tokens import JwtCodec, open_key_ring
from tests.support.api_client import Api, ok, strong_password
from tests.support.clients import wait_until
from tests.support.manifests import get_blob, get_manifest, patch_chunk, push_image, random_bytes, sha256
from tests.support.processes import MongoServer, RegistryServer, free_port
from tests.support.projects import api_login, create_project
from tests.support.registry_client import RegistryClient, cached_client

MiB = 1024 * 1024


def healthy(server):
    try:
        return requests.get(f"{server.url}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def killable(tmp_path):
    """A database of its own that the test may kill, and a server on it."""
    mongo = MongoServer(tmp_path / "mongo" / "db").start()
    server = RegistryServer(mongo.uri, tmp_path / "registry").start()
    yield mongo, server
    server.stop()
    mongo.stop()


def test_pushes_answered_201_survive_the_database_killed_at_once(killable):
    mongo, server = killable
    client = cached_client(server.url, "admin", server.admin_password)
    token = api_login(server.url, "admin", server.admin_password)
    create_project(server.url, token, "durable")
    pushed = []
    for round_ in range(3):
        layer = random_bytes(8 * MiB)
        image = push_image(client, "durable/app", f"v{round_}", layers=[layer])
        mongo.kill()
        pushed.append((f"v{round_}", image, layer))
        mongo.start()
        assert wait_until(lambda: healthy(server), timeout=30), server.log_text()

    for tag, image, layer in pushed:
        assert get_manifest(client, "durable/app", tag).headers["Docker-Content-Digest"] == image.digest
        assert get_blob(client, "durable/app", sha256(layer)).content == layer
    report = ok(Api(server.url, token).post("/api/v1/projects/durable/recount"))
    assert report["drift"] == 0, report


def test_a_user_and_a_pat_answered_survive_the_database_killed_at_once(killable):
    mongo, server = killable
    admin = Api(server.url).session("admin", server.admin_password)
    password = strong_password()
    created = ok(admin.post("/api/v1/users", json={"username": "durableuser", "password": password}))
    pat = Api(server.url).session("durableuser", password).create_pat(["api:read"])

    mongo.kill()
    mongo.start()
    assert wait_until(lambda: healthy(server), timeout=30)

    assert ok(Api(server.url, pat["token"]).get("/api/v1/users/me"))["id"] == created["id"]


# --- the write concern of every write -----------------------------------------------------------

WRITES = {"insert", "update", "delete", "findAndModify", "commitTransaction"}
# Bulk data may go unjournaled: the durable write that commits or checkpoints it follows.
BULK_COLLECTIONS = {"fs.chunks"}


class WriteRecorder(monitoring.CommandListener):
    def __init__(self):
        self.writes = []
        self.lock = threading.Lock()

    def started(self, event):
        # A write inside a transaction carries no write concern of its own: its commit's covers it.
        in_transaction = event.command.get("autocommit") is False and event.command_name != "commitTransaction"
        if event.command_name in WRITES and not in_transaction:
            with self.lock:
                self.writes.append((event.command[event.command_name], event.command.get("writeConcern")))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture
async def in_process(mongo, tmp_path):
    """The server's own parts (backend, services, handlers) in this process with a command listener on both
    MongoDB clients, serving on loopback."""
    recorder = WriteRecorder()
    port = free_port()
    config = load_settings(environ={}, overrides={
        "mongo_uri": mongo.uri, "mongo_db": f"wc_{port}", "data_dir": str(tmp_path), "host": "127.0.0.1",
        "port": port, "bootstrap_admin_password": "Wc-admin-pw-1"})
    async with open_backend(config, listeners=[recorder]) as backend:
        await ensure_bootstrap_admin(backend.collections, config["bootstrap_admin_password"])
        await backend.collections.token_keys.ensure()
        codec = JwtCodec(await open_key_ring(backend.collections, config))
        app = make_app(config, build_services(config, backend, codec))
        server = app.listen(port, "127.0.0.1")
        recorder.writes.clear()
        yield f"http://127.0.0.1:{port}", recorder
        server.stop()


def exercise_every_acknowledging_write(url):
    """Push (monolithic and chunked), tag, delete, and the API's writes that matter."""
    admin = Api(url).session("admin", "Wc-admin-pw-1")
    client = RegistryClient(url, "admin", "Wc-admin-pw-1")
    ok(admin.post("/api/v1/projects", json={"name": "wc"}))
    image = push_image(client, "wc/app", "v1", layer_sizes=(3 * MiB,))
    scope = "repository:wc/app:pull,push,delete"
    started = client.request("POST", "/v2/wc/app/blobs/uploads/", scope)
    data = random_bytes(2 * MiB)
    location = patch_chunk(client, "wc/app", started.headers["Location"], data, 0).headers["Location"]
    assert client.request("PUT", location, scope, params={"digest": sha256(data)}).status_code == 201
    assert client.request("DELETE", "/v2/wc/app/manifests/v1", scope).status_code == 202
    assert client.request("DELETE", f"/v2/wc/app/manifests/{image.digest}", scope).status_code == 202
    project = ok(admin.get("/api/v1/projects/wc"))
    ok(admin.put(f"/api/v1/projects/{project['id']}/quota", json={"storage_quota": 100 * MiB}))
    ok(admin.post("/api/v1/users", json={"username": "wcuser", "password": "Wc-user-pw-1"}))
    ok(admin.post("/api/v1/users/me/pat", json={"name": "wc", "scopes": ["api:read"]}))


async def test_every_acknowledging_write_asks_for_the_journal_on_a_majority(in_process):
    url, recorder = in_process

    await asyncio.to_thread(exercise_every_acknowledging_write, url)

    assert recorder.writes
    unjournaled = [(collection, concern) for collection, concern in recorder.writes
                   if collection not in BULK_COLLECTIONS and concern != {"w": "majority", "j": True}]
    assert unjournaled == []
    assert {"fs.chunks"} <= {collection for collection, _ in recorder.writes}


# --- the database unreachable -------------------------------------------------------------------

@pytest.fixture(scope="module")
def database_down(tmp_path_factory):
    """A server whose database has just died: ``(server, api token, registry token)`` from before."""
    base = tmp_path_factory.mktemp("outage")
    mongo = MongoServer(base / "mongo" / "db").start()
    server = RegistryServer(mongo.uri, base / "registry").start()
    token = api_login(server.url, "admin", server.admin_password)
    create_project(server.url, token, "durable")
    bearer = RegistryClient(server.url, "admin", server.admin_password).token("repository:durable/app:pull")
    mongo.kill()
    yield server, token, bearer
    server.stop()


def outage_request(name, server, token, bearer):
    return {
        "registry token": lambda: requests.get(f"{server.url}/auth/token", auth=("admin", server.admin_password),
                                               params={"service": "cyp-registry"}, timeout=10),
        "manifest": lambda: requests.get(f"{server.url}/v2/durable/app/manifests/v1", timeout=10,
                                         headers={"Authorization": f"Bearer {bearer}"}),
        "login": lambda: Api(server.url).login_response("admin", server.admin_password),
        "projects": lambda: Api(server.url, token).get("/api/v1/projects"),
    }[name]()


@pytest.mark.parametrize("name", ["registry token", "manifest", "login", "projects"])
def test_with_the_database_down_requests_answer_503_with_retry_after_within_3_seconds(database_down, name):
    started = time.monotonic()
    response = outage_request(name, *database_down)
    elapsed = time.monotonic() - started

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    body = response.json()
    assert body.get("code") == 50003 or body["errors"][0]["code"] == "UNAVAILABLE", body
    assert elapsed < 3


HOLD_A_TRANSACTION = """
import sys, time, pymongo
client = pymongo.MongoClient(sys.argv[1])
held = client[sys.argv[2]]["held"]
with client.start_session() as session:
    session.start_transaction()
    held.update_one({"_id": "doc"}, {"$set": {"by": "the dead transaction"}}, session=session)
    print("holding", flush=True)
    time.sleep(3600)
"""


def test_a_transaction_left_open_by_a_killed_process_is_ended_so_its_writes_stop_blocking(killable):
    mongo, server = killable
    client = pymongo.MongoClient(mongo.uri, socketTimeoutMS=5000)
    held = client[server.db_name]["held"]
    held.insert_one({"_id": "doc", "by": "nobody"})
    holder = subprocess.Popen([sys.executable, "-c", HOLD_A_TRANSACTION, mongo.uri, server.db_name],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    holder.kill()
    holder.wait()

    # Left alone past the server's 60 s limit for an idle transaction; the registry's periodic
    # transaction (every 15 s) is what lets SecantusDB act on that limit.
    time.sleep(80)
    assert held.update_one({"_id": "doc"}, {"$set": {"by": "a live client"}}).modified_count == 1
    assert held.find_one({"_id": "doc"})["by"] == "a live client"
    client.close()
