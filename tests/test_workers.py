"""Several worker processes on one port: one parent binds it and runs the database, each worker is a node of
its own, a worker that dies is restarted, and nothing outlives the parent."""
import os
import signal
import time

import pytest
import requests

from tests.support.api_client import Api, ok
from tests.support.clients import (
    EmbeddedRegistryServer,
    SlowPatch,
    connection_refused,
    databases_of,
    log_records,
    process_alive,
    run_server_cli,
    running_with_workers,
    server_env,
    wait_until,
    workers_of,
)
from tests.support.manifests import push_image
from tests.support.registry_client import RegistryClient


def everything_of(server):
    return workers_of(server) + databases_of(server)


@pytest.fixture
def two_workers(tmp_path):
    with running_with_workers(EmbeddedRegistryServer(tmp_path / "data", env={"CYP_WORKERS": "2"})) as server:
        yield server


def test_the_parent_runs_the_database_and_two_workers_that_both_serve(two_workers):
    client = RegistryClient(two_workers.url, "admin", two_workers.admin_password)
    for _ in range(40):
        assert client.token_response().status_code == 200

    serving = {record["pid"] for record in log_records(two_workers.log_text()) if record.get("logger") == "cyp.access"}
    assert len(databases_of(two_workers)) == 1
    assert serving == set(workers_of(two_workers))


def test_a_worker_that_dies_is_restarted_while_the_other_serves(two_workers):
    [victim, survivor] = workers_of(two_workers)

    os.kill(victim, signal.SIGKILL)
    answers = [requests.get(f"{two_workers.url}/health", timeout=10).status_code for _ in range(20)]
    restarted = wait_until(lambda: len(workers_of(two_workers)) == 2 and victim not in workers_of(two_workers),
                           timeout=15)

    assert set(answers) == {200}
    assert restarted and survivor in workers_of(two_workers)


def test_sigterm_stops_the_workers_and_the_database_with_status_0(two_workers):
    children = everything_of(two_workers)

    two_workers.process.send_signal(signal.SIGTERM)
    status = two_workers.process.wait(60)

    assert status == 0, two_workers.log_text()
    assert not any(process_alive(pid) for pid in children)


def test_after_sigterm_new_connections_are_refused_while_an_upload_in_flight_finishes(two_workers):
    upload = SlowPatch(two_workers, "drain/app").start()

    two_workers.process.send_signal(signal.SIGTERM)
    refused = wait_until(lambda: connection_refused("127.0.0.1", two_workers.port), timeout=10)
    response = upload.finish()

    assert refused
    assert response is not None and response.status_code == 202, upload.error
    assert two_workers.process.wait(60) == 0


def test_killing_the_parent_takes_the_workers_and_the_database_with_it(two_workers):
    children = everything_of(two_workers)

    two_workers.process.kill()
    two_workers.process.wait()
    # Each is told to stop (SIGTERM) when the parent dies; a worker drains first, closing an idle keep-alive
    # connection once it has been idle for shutdown_idle_seconds (5 s).
    gone = wait_until(lambda: not any(process_alive(pid) for pid in children), timeout=10, interval=0.1)

    assert len(children) == 3 and gone, [pid for pid in children if process_alive(pid)]


def test_a_second_instance_cannot_bind_the_same_port(two_workers, tmp_path):
    result = run_server_cli("--data-dir", str(tmp_path / "other"), "--host", "127.0.0.1", "--port",
                            str(two_workers.port), env=server_env(CYP_WORKERS="2"))

    assert result.returncode == 1
    assert f"127.0.0.1:{two_workers.port}" in result.stderr


def test_workers_share_every_state_like_nodes(two_workers):
    admin = Api(two_workers.url).session("admin", two_workers.admin_password)
    ok(admin.post("/api/v1/projects", json={"name": "shared"}))
    client = RegistryClient(two_workers.url, "admin", two_workers.admin_password)
    image = push_image(client, "shared/app", "v1")

    digests = {requests.get(f"{two_workers.url}/v2/shared/app/manifests/v1", timeout=10, headers={
        "Authorization": f"Bearer {client.token('repository:shared/app:pull')}",
        "Accept": image.media_type}).headers["Docker-Content-Digest"] for _ in range(10)}
    ok(admin.post("/api/v1/auth/logout"))
    after_logout = {admin.get("/api/v1/users/me").status_code for _ in range(10)}

    assert digests == {image.digest}
    assert after_logout == {401}


def test_a_revoked_pat_is_refused_by_every_worker_within_5_seconds(two_workers):
    admin = Api(two_workers.url).session("admin", two_workers.admin_password)
    ok(admin.post("/api/v1/projects", json={"name": "revoke"}))
    pat = admin.create_pat(["registry:pull"])
    token = RegistryClient(two_workers.url, "admin", pat["token"]).token("repository:revoke/app:pull")

    def statuses():
        return {requests.get(f"{two_workers.url}/v2/revoke/app/tags/list", timeout=10,
                             headers={"Authorization": f"Bearer {token}"}).status_code for _ in range(10)}

    before = statuses()
    ok(admin.delete(f"/api/v1/users/me/pat/{pat['id']}"))
    revoked_at = time.monotonic()
    refused = wait_until(lambda: statuses() == {401}, timeout=6, interval=0.2)

    assert 401 not in before
    assert refused and time.monotonic() - revoked_at < 6
