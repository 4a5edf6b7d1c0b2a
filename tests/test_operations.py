"""What an operator sees: the command line, settings errors, the embedded database, health, graceful
shutdown, and the one-time bootstrap password. Tests that stop or restart things use their own processes."""
import json
import os
import re
import signal
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.clients import (
    EmbeddedRegistryServer,
    connection_refused,
    ensure_project,
    process_alive,
    run_server_cli,
    server_env,
    wait_until,
)
from tests.support.processes import MongoServer, RegistryServer, free_port
from tests.support.registry_client import RegistryClient

BANNER_RE = re.compile(r"one-time password: (\S+)")


def child_processes(pid):
    """``[(pid, command line)]`` of the live children of ``pid``."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append((int(entry.name), cmdline))
    return children


def envelope(response, status):
    body = response.json()
    assert response.status_code == status, (response.status_code, response.text)
    assert set(body) >= {"code", "message", "data", "timestamp", "trace_id"}, body
    assert body["trace_id"] and body["trace_id"] == response.headers.get("X-Trace-Id"), (body, response.headers)
    return body


@pytest.fixture
def own_registry(mongo, tmp_path):
    """A server of this test's own (its own database on the session's SecantusDB), free to be stopped."""
    server = RegistryServer(mongo.uri, tmp_path / "registry").start()
    yield server
    server.stop()


@pytest.fixture
def generated_password_server(mongo, tmp_path):
    """A first start with no configured administrator password: the server makes one up and prints it."""
    server = RegistryServer(mongo.uri, tmp_path / "registry", env={"CYP_BOOTSTRAP_ADMIN_PASSWORD": ""}).start()
    yield server
    server.stop()


def printed_passwords(server):
    return BANNER_RE.findall(server.log_text())


# --- command line and settings ------------------------------------------------------------------

def test_help_exits_0_and_lists_every_command_line_option():
    result = run_server_cli("--help")

    assert result.returncode == 0, result.stderr
    for option in ("--host", "--port", "--data-dir", "--config"):
        assert option in result.stdout


def test_a_non_integer_port_in_the_environment_exits_2_with_one_line_naming_it(tmp_path):
    result = run_server_cli("--data-dir", str(tmp_path), env=server_env(CYP_PORT="abc"))

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "CYP_PORT" in result.stderr or "port" in result.stderr


def test_an_unknown_key_in_the_config_file_exits_2_with_one_line_naming_it(tmp_path):
    config = tmp_path / "cyp.json"
    config.write_text(json.dumps({"port": free_port(), "no_such_setting": 1}))

    result = run_server_cli("--config", str(config), "--data-dir", str(tmp_path), env=server_env())

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no_such_setting" in result.stderr


# --- embedded SecantusDB ------------------------------------------------------------------------

@pytest.fixture
def embedded(tmp_path):
    server = EmbeddedRegistryServer(tmp_path / "data")
    server.start()
    databases = [pid for pid, cmdline in child_processes(server.process.pid) if "secantusd" in cmdline]
    yield server, databases
    server.stop()
    for pid in databases:  # never leave an orphaned database behind, whatever the test found
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_server_without_a_mongo_uri_runs_its_own_database_under_the_data_dir(embedded):
    server, databases = embedded

    health = requests.get(f"{server.url}/health", timeout=10)

    assert health.status_code == 200
    assert (server.data_dir / "mongo").is_dir()
    assert len(databases) == 1, child_processes(server.process.pid)
    assert str(server.data_dir / "mongo") in dict(child_processes(server.process.pid))[databases[0]]


def test_sigterm_stops_the_embedded_server_with_status_0_and_its_database_with_it(embedded):
    server, databases = embedded

    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(60)

    assert status == 0, server.log_text()
    assert databases and not any(process_alive(pid) for pid in databases)


# --- health -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/health", "/api/health"])
def test_health_answers_healthy_with_service_and_version(registry, path):
    response = requests.get(f"{registry.url}{path}", timeout=10)
    body = response.json()

    assert response.status_code == 200
    assert (body["status"], body["service"]) == ("healthy", "CYP-Registry")
    assert isinstance(body["version"], str) and body["version"]


def test_health_answers_503_unhealthy_within_10_seconds_of_the_database_stopping(tmp_path):
    mongo = MongoServer(tmp_path / "mongo" / "db").start()
    server = RegistryServer(mongo.uri, tmp_path / "registry").start()
    try:
        mongo.stop()
        stopped = time.monotonic()

        def unhealthy():
            try:
                response = requests.get(f"{server.url}/health", timeout=10)
            except requests.RequestException:
                return None
            return [response] if response.status_code == 503 else None  # a 503 Response is falsy

        answered = wait_until(unhealthy, timeout=10, interval=0.5)
        response = answered[0] if answered else None
        elapsed = time.monotonic() - stopped
    finally:
        server.stop()
        mongo.stop()

    assert response is not None, f"/health still not 503 after {elapsed:.1f} s"
    assert response.json()["status"] == "unhealthy"
    assert elapsed < 11


# --- graceful shutdown --------------------------------------------------------------------------

class SlowPatch:
    """A PATCH to an upload session whose body arrives in two halves; the second only on ``finish()``."""

    HALF = 64 * 1024

    def __init__(self, server, repo):
        client = RegistryClient(server.url, "admin", server.admin_password)
        ensure_project(server, repo)
        self.headers = {"Authorization": f"Bearer {client.token(f'repository:{repo}:pull,push')}"}
        started = requests.post(f"{server.url}/v2/{repo}/blobs/uploads/", headers=self.headers, timeout=30)
        assert started.status_code == 202, started.text
        self.url = server.url + started.headers["Location"]
        self.first_half_sent = threading.Event()
        self.released = threading.Event()
        self.response = None
        self.error = None
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _body(self):
        yield b"a" * self.HALF
        self.first_half_sent.set()
        self.released.wait(60)
        yield b"b" * self.HALF

    def _send(self):
        try:
            self.response = requests.patch(self.url, data=self._body(), timeout=120,
                                           headers={**self.headers, "Content-Type": "application/octet-stream"})
        except requests.RequestException as exc:
            self.error = exc

    def start(self):
        self.thread.start()
        assert self.first_half_sent.wait(30)
        time.sleep(1)  # the server has read the headers and the first half: the request is in flight
        return self

    def finish(self):
        self.released.set()
        self.thread.join(120)
        return self.response


def test_sigterm_lets_an_upload_in_flight_finish_with_202_before_exiting_0(own_registry, repo):
    upload = SlowPatch(own_registry, repo).start()

    own_registry.process.send_signal(signal.SIGTERM)
    time.sleep(1)
    running_during_upload = own_registry.process.poll() is None
    response = upload.finish()
    status = own_registry.process.wait(60)

    assert running_during_upload
    assert upload.error is None, upload.error
    assert response.status_code == 202, response.text
    assert response.headers["Range"] == f"0-{2 * SlowPatch.HALF - 1}"
    assert status == 0, own_registry.log_text()


def test_after_sigterm_a_new_connection_is_refused_while_an_upload_finishes(own_registry, repo):
    upload = SlowPatch(own_registry, repo).start()

    own_registry.process.send_signal(signal.SIGTERM)
    refused = wait_until(lambda: connection_refused("127.0.0.1", own_registry.port), timeout=10)
    still_running = own_registry.process.poll() is None
    upload.finish()

    assert refused
    assert still_running


def test_a_tls_handshake_on_the_plain_http_port_fails_at_once_so_clients_fall_back_to_http(registry):
    """skopeo, podman and other Go clients try HTTPS first even with --tls-verify=false; they give up only
    after a 10 s TLS handshake timeout unless the server answers or closes the connection."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = socket.create_connection(("127.0.0.1", registry.port), timeout=5)
    started = time.monotonic()
    try:
        context.wrap_socket(sock, server_hostname="127.0.0.1")
        outcome = "handshake succeeded"
    except TimeoutError:
        outcome = "timeout"
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        outcome = type(exc).__name__
    finally:
        sock.close()

    assert outcome != "timeout", "the server left a TLS ClientHello unanswered for 5 s"
    assert time.monotonic() - started < 2


# --- bootstrap administrator --------------------------------------------------------------------

def test_the_first_start_prints_the_generated_admin_password_exactly_once(generated_password_server):
    passwords = printed_passwords(generated_password_server)

    assert len(passwords) == 1, generated_password_server.log_text()
    assert generated_password_server.log_text().count(passwords[0]) == 1


def test_the_printed_bootstrap_password_logs_in_as_admin(generated_password_server):
    [password] = printed_passwords(generated_password_server)

    response = RegistryClient(generated_password_server.url, "admin", password).token_response()

    assert response.status_code == 200, response.text


def test_a_restart_against_the_same_database_prints_no_password(generated_password_server, mongo, tmp_path):
    [password] = printed_passwords(generated_password_server)
    generated_password_server.stop()
    restarted = RegistryServer(mongo.uri, tmp_path / "registry", db_name=generated_password_server.db_name,
                               env={"CYP_BOOTSTRAP_ADMIN_PASSWORD": ""}).start()
    try:
        log = restarted.log_text()
    finally:
        restarted.stop()

    assert "one-time password" not in log
    assert password not in log


def test_default_admin_once_answers_the_generated_password(generated_password_server):
    [password] = printed_passwords(generated_password_server)

    response = requests.get(f"{generated_password_server.url}/api/v1/auth/default-admin-once", timeout=30)
    body = envelope(response, 200)

    assert body["code"] == 20000
    assert (body["data"]["username"], body["data"]["password"]) == ("admin", password)


def test_default_admin_once_answers_410_the_second_time(generated_password_server):
    url = f"{generated_password_server.url}/api/v1/auth/default-admin-once"
    first = requests.get(url, timeout=30)

    second = requests.get(url, timeout=30)
    body = envelope(second, 410)

    assert first.status_code == 200
    assert 20000 < body["code"] < 30000
    assert body["data"] is None


def test_default_admin_once_gives_a_null_password_when_it_was_configured(own_registry):
    response = requests.get(f"{own_registry.url}/api/v1/auth/default-admin-once", timeout=30)
    body = envelope(response, 200)

    assert body["data"]["username"] == "admin"
    assert body["data"]["password"] is None


def test_default_admin_once_is_gone_after_a_restart_against_the_same_database(generated_password_server, mongo,
                                                                             tmp_path):
    generated_password_server.stop()
    restarted = RegistryServer(mongo.uri, tmp_path / "registry", db_name=generated_password_server.db_name,
                               env={"CYP_BOOTSTRAP_ADMIN_PASSWORD": ""}).start()
    try:
        response = requests.get(f"{restarted.url}/api/v1/auth/default-admin-once", timeout=30)
    finally:
        restarted.stop()

    assert envelope(response, 410)["code"] == 20003
