"""What an operator sees: the command line, settings errors, the embedded database, health, graceful
shutdown, and the one-time bootstrap password. Tests that stop or restart things use their own processes."""
import json
import os
import signal
import socket
import ssl
import time

import pymongo
import pytest
import requests

from tests.support.clients import (
    SlowPatch,
    connection_refused,
    ensure_project,
    log_records,
    run_server_cli,
    server_env,
    wait_until,
)
from tests.support.manifests import sha256
from tests.support.processes import MongoServer, RegistryServer, free_port
from tests.support.registry_client import RegistryClient

def envelope(response, status):
    body = response.json()
    assert response.status_code == status, (response.status_code, response.text)
    assert set(body) >= {"code", "message", "data", "timestamp", "trace_id"}, body
    assert body["trace_id"] and body["trace_id"] == response.headers.get("X-Trace-Id"), (body, response.headers)
    return body


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


def test_an_unknown_cyp_environment_variable_is_named_in_a_warning_at_start(mongo, tmp_path):
    server = RegistryServer(mongo.uri, tmp_path / "registry", env={"CYP_STORGE_BACKEND": "s3"}).start()
    server.stop()

    warnings = [record for record in log_records(server.log_text()) if record["level"] == "WARNING"]
    assert any("CYP_STORGE_BACKEND" in record["msg"] for record in warnings), server.log_text()


def test_an_unknown_key_in_the_config_file_exits_2_with_one_line_naming_it(tmp_path):
    config = tmp_path / "cyp.json"
    config.write_text(json.dumps({"port": free_port(), "no_such_setting": 1}))

    result = run_server_cli("--config", str(config), "--data-dir", str(tmp_path), env=server_env())

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no_such_setting" in result.stderr


# --- logs -----------------------------------------------------------------------------------------

def test_each_request_is_logged_once_with_its_route_template_user_bytes_and_trace_id(registry, admin):
    trace_id = "log0test0route01"
    response = admin.request("GET", "/v2/_catalog", "registry:catalog:*", headers={"X-Request-Id": trace_id})
    assert response.status_code == 200

    [line] = wait_until(lambda: [record for record in log_records(registry.log_text())
                                 if record.get("trace_id") == trace_id and record["logger"] == "cyp.access"], timeout=10)
    assert (line["method"], line["path"], line["status"]) == ("GET", "/v2/_catalog", 200)
    assert line["route"] == "/v2/_catalog"
    assert line["user"] == "admin"
    assert line["bytes_out"] == len(response.content)
    assert line["remote_ip"] and line["duration_ms"] >= 0


def test_the_text_log_format_writes_readable_lines_with_the_same_fields(mongo, tmp_path):
    server = RegistryServer(mongo.uri, tmp_path / "registry", env={"CYP_LOG_FORMAT": "text"}).start()
    requests.get(f"{server.url}/health", headers={"X-Request-Id": "text0format0log1"}, timeout=10)
    server.stop()

    text = server.log_text()
    assert log_records(text) == []
    [line] = [line for line in text.splitlines() if "trace_id=text0format0log1" in line]
    assert " INFO cyp.access GET /health 200 " in line
    assert "route=/health" in line and "status=200" in line


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


def test_a_blob_read_failing_mid_response_cuts_it_short_and_does_not_hold_up_shutdown(mongo, tmp_path):
    server = RegistryServer(mongo.uri, tmp_path / "registry", env={"CYP_SHUTDOWN_GRACE_SECONDS": "30"}).start()
    try:
        ensure_project(server, "cut/app")
        client = RegistryClient(server.url, "admin", server.admin_password)
        data = os.urandom(12 * 1024 * 1024)
        assert client.push_blob("cut/app", data).status_code == 201
        with pymongo.MongoClient(mongo.uri) as database:  # the blob's second half lost from GridFS
            chunks = database[server.db_name]["fs.chunks"]
            last = chunks.find_one(sort=[("n", -1)])["n"]
            assert chunks.delete_many({"n": {"$gt": last // 2}}).deleted_count > 0

        received = bytearray()
        with pytest.raises(requests.RequestException):
            response = client.request("GET", f"/v2/cut/app/blobs/{sha256(data)}", "repository:cut/app:pull",
                                      stream=True)
            for piece in response.iter_content(1024 * 1024):
                received += piece
        server.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        status = server.process.wait(60)
    finally:
        server.stop()

    assert 0 < len(received) < len(data)
    assert status == 0
    assert time.monotonic() - started < 10, "shutdown waited for a request that was already over"
