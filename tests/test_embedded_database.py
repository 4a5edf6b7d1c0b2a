"""The embedded database: run by the server as its child, never outliving it, brought back if it dies,
refused to a second server on the same data directory, and shared with the commands run beside it."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from pymongo.uri_parser import parse_uri

from tests.support.api_client import Api, ok
from tests.support.clients import (
    EmbeddedRegistryServer,
    child_processes,
    databases_of,
    kill_all,
    process_alive,
    run_server_cli,
    server_env,
    wait_until,
)
from tests.support.processes import ROOT, free_port


def lock_record(data_dir):
    return json.loads((data_dir / "cyp.lock").read_text())


# --- one server, one database -------------------------------------------------------------------

@pytest.fixture
def embedded(tmp_path):
    server = EmbeddedRegistryServer(tmp_path / "data")
    server.start()
    databases = databases_of(server)
    yield server, databases
    server.stop()
    kill_all(databases)


def test_a_server_without_a_mongo_uri_runs_its_own_database_under_the_data_dir(embedded):
    server, databases = embedded

    health = requests.get(f"{server.url}/health", timeout=10)

    assert health.status_code == 200
    assert (server.data_dir / "mongo").is_dir()
    assert len(databases) == 1, child_processes(server.process.pid)
    assert str(server.data_dir / "mongo") in dict(child_processes(server.process.pid))[databases[0]]


def test_the_embedded_database_is_written_to_without_retryable_writes(embedded):
    """Why: storage/embedded_mongo.py URI_OPTIONS."""
    server, _ = embedded

    recorded = lock_record(server.data_dir)["mongo_uri"]  # what the workers and the commands beside them use

    assert parse_uri(recorded)["options"]["retryWrites"] is False


def test_sigterm_stops_the_embedded_server_with_status_0_and_its_database_with_it(embedded):
    server, databases = embedded

    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(60)

    assert status == 0, server.log_text()
    assert databases and not any(process_alive(pid) for pid in databases)


def test_a_server_killed_with_sigkill_takes_its_database_with_it_and_the_next_start_works(tmp_path):
    server = EmbeddedRegistryServer(tmp_path / "data").start()
    databases = databases_of(server)
    try:
        server.process.kill()
        server.process.wait(10)
        gone = wait_until(lambda: not any(process_alive(pid) for pid in databases), timeout=5, interval=0.1)
        restarted = EmbeddedRegistryServer(tmp_path / "data").start()
        health = requests.get(f"{restarted.url}/health", timeout=10).status_code
        restarted.stop()
    finally:
        kill_all(databases)

    assert gone, "the database outlived its server by more than 5 s"
    assert health == 200


def test_a_second_server_on_the_same_data_directory_exits_at_once_naming_the_holder(embedded):
    server, _ = embedded
    started = time.monotonic()

    result = run_server_cli("--data-dir", str(server.data_dir), "--port", str(free_port()),
                            env=server_env(CYP_BOOTSTRAP_ADMIN_PASSWORD=server.admin_password))

    assert result.returncode == 1
    assert time.monotonic() - started < 5
    [line] = result.stderr.strip().splitlines()
    assert str(server.data_dir) in line and str(server.process.pid) in line and "mongo.log" in line


def test_sigint_during_start_up_leaves_nothing_running(tmp_path):
    process = subprocess.Popen([sys.executable, str(ROOT / "server.py"), "--data-dir", str(tmp_path / "data"),
                                "--port", str(free_port()), "--host", "127.0.0.1"], cwd=ROOT, env=server_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: (tmp_path / "data" / "cyp.lock").exists(), timeout=10, interval=0.05)
    time.sleep(0.3)
    children = [pid for pid, _ in child_processes(process.pid)]

    process.send_signal(signal.SIGINT)
    process.wait(30)
    gone = wait_until(lambda: not any(process_alive(pid) for pid in children), timeout=5, interval=0.1)

    kill_all(children)
    assert gone, "a child of the interrupted server kept running"


def test_a_database_that_dies_under_the_server_is_restarted_and_keeps_the_data(embedded):
    server, databases = embedded
    admin = Api(server.url).session("admin", server.admin_password)
    ok(admin.post("/api/v1/projects", json={"name": "kept"}))

    os.kill(databases[0], signal.SIGKILL)
    back = wait_until(lambda: lock_record(server.data_dir).get("mongo_pid") not in (None, databases[0]), timeout=20)
    healthy = wait_until(lambda: requests.get(f"{server.url}/health", timeout=10).status_code == 200, timeout=20)

    kill_all([lock_record(server.data_dir)["mongo_pid"]] if back else [])
    assert back and healthy, server.log_text()
    assert [p["name"] for p in ok(admin.get("/api/v1/projects"))["items"]] == ["kept"]
    assert "embedded SecantusDB restarted" in server.log_text()


def test_a_server_whose_database_cannot_come_back_exits_non_zero(embedded):
    server, databases = embedded
    storage = server.data_dir / "mongo"

    os.kill(databases[0], signal.SIGKILL)
    os.rename(storage, server.data_dir / "mongo-moved")
    storage.write_text("not a directory: the database cannot start here")
    status = server.process.wait(60)

    assert status == 1, server.log_text()
    assert "could not be restarted" in server.log_text()


def test_a_taken_port_fails_the_start_naming_it_before_any_password_is_made(tmp_path, registry):
    result = run_server_cli("--data-dir", str(tmp_path / "data"), "--host", "127.0.0.1",
                            "--port", str(registry.port), env=server_env())

    assert result.returncode == 1
    assert f"127.0.0.1:{registry.port}" in result.stderr
    assert "one-time password" not in result.stdout + result.stderr
    assert not (tmp_path / "data" / "mongo").exists()


# --- commands beside a running server -----------------------------------------------------------

def test_recount_beside_a_running_server_uses_its_database(embedded):
    server, databases = embedded
    ok(Api(server.url).session("admin", server.admin_password).post("/api/v1/projects", json={"name": "counted"}))

    result = run_server_cli("--data-dir", str(server.data_dir), "recount", env=server_env())

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["project"] == "counted"
    assert databases_of(server) == databases


def test_reset_password_prints_a_one_time_password_that_logs_in_and_must_be_changed(embedded):
    server, _ = embedded
    admin = Api(server.url).session("admin", server.admin_password)

    result = run_server_cli("--data-dir", str(server.data_dir), "user", "reset-password", "admin", env=server_env())
    password = result.stdout.split("New one-time password for admin: ")[1].split()[0]

    assert result.returncode == 0, result.stderr
    assert admin.get("/api/v1/users/me").status_code == 401  # the user's sessions ended
    assert ok(Api(server.url).session("admin", password).get("/api/v1/users/me"))["must_change_password"] is True
    assert Api(server.url).login_response("admin", server.admin_password).status_code == 401


def test_reset_password_of_an_unknown_user_exits_1(embedded):
    server, _ = embedded

    result = run_server_cli("--data-dir", str(server.data_dir), "user", "reset-password", "nobody", env=server_env())

    assert result.returncode == 1
    assert "no user named nobody" in result.stderr
