"""A rolling restart behind nginx fails no client: each of three nodes in turn gets SIGTERM and is started again
while clients with no retries of their own push and pull without pause (the tests' HTTP client, skopeo with
--retry-times 0). What makes it so is the drain of a stopping node (handlers/http_server.py) with the balancer's
settings (runtime/balancer.py)."""
import hashlib
import http.client
import json
import secrets
import signal
import threading
import time

import pytest
import requests

from tests.support.clients import Skopeo, SlowPatch, connection_refused, require_tool, wait_until
from tests.support.cluster import TestCluster
from tests.support.manifests import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, pull, push, sha256
from tests.support.oci_layout import make_image_layout
from tests.support.processes import RegistryServer
from tests.support.projects import api_login, create_project
from tests.support.registry_client import cached_client

require_tool("skopeo")

HTTP_CLIENTS = 3
LAYER_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def cluster(mongo, tmp_path_factory):
    cluster = TestCluster(tmp_path_factory.mktemp("rolling"), mongo.uri, nodes=3).start()
    create_project(cluster.url, api_login(cluster.url, "admin", cluster.admin_password), "rolling")
    yield cluster
    cluster.stop()


class Load(threading.Thread):
    """A client doing one operation after another until told to stop; every failure is kept, none retried."""

    def __init__(self, name):
        super().__init__(daemon=True, name=name)
        self.stopping = threading.Event()
        self.done = 0
        self.failures = []

    def run(self):
        while not self.stopping.is_set():
            try:
                self.operation()
                self.done += 1
            except Exception as exc:  # a failed client operation, whatever failed: the test reports it
                self.failures.append(f"{self.name}: {exc!r}"[:600])


class Step(Exception):
    pass


def expect(response, status, what):
    if response.status_code != status:
        raise Step(f"{what}: {response.request.method} answered {response.status_code}: {response.text[:200]}")
    return response


class HttpClient(Load):
    """Pushes a fresh layer (POST, streamed PATCH, PUT), its config and a tagged manifest, then pulls the manifest by
    tag and the layer, checking both; one new connection per request (the tests' registry client)."""

    def __init__(self, cluster, index):
        super().__init__(f"http client {index}")
        self.client = cached_client(cluster.url, "admin", cluster.admin_password)
        self.repo = f"rolling/http{index}"

    def push_blob(self, data):
        started = expect(self.client.request("POST", f"/v2/{self.repo}/blobs/uploads/", push(self.repo),
                                             headers={"Content-Length": "0"}), 202, "upload start")
        patched = expect(self.client.request("PATCH", started.headers["Location"], push(self.repo),
                                             data=iter([data[:len(data) // 2], data[len(data) // 2:]]),
                                             headers={"Content-Type": "application/octet-stream"}), 202, "PATCH")
        expect(self.client.request("PUT", patched.headers["Location"], push(self.repo),
                                   params={"digest": sha256(data)}), 201, "upload close")
        return {"digest": sha256(data), "size": len(data)}

    def operation(self):
        layer = secrets.token_bytes(LAYER_BYTES)
        config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": secrets.token_hex(8)}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, **self.push_blob(config)},
                               "layers": [{"mediaType": OCI_LAYER, **self.push_blob(layer)}]}).encode()
        tag = f"t{self.done}"
        expect(self.client.put_manifest(self.repo, tag, manifest), 201, "manifest PUT")
        got = expect(self.client.request("GET", f"/v2/{self.repo}/manifests/{tag}", pull(self.repo),
                                         headers={"Accept": OCI_MANIFEST}), 200, "manifest GET")
        blob = expect(self.client.request("GET", f"/v2/{self.repo}/blobs/{sha256(layer)}", pull(self.repo)),
                      200, "blob GET")
        if got.content != manifest or hashlib.sha256(blob.content).digest() != hashlib.sha256(layer).digest():
            raise Step("pulled bytes differ from the pushed ones")


class SkopeoClient(Load):
    """skopeo (with its own keep-alive connections) copying a small image in and out, never retrying."""

    def __init__(self, cluster, workdir):
        super().__init__("skopeo")
        self.skopeo = Skopeo(workdir / "skopeo")
        self.layout = workdir / "layout"
        make_image_layout(self.layout, [LAYER_BYTES, 1024], seed="rolling")
        self.creds = f"admin:{cluster.admin_password}"
        self.target = f"docker://{cluster.host}/rolling/skopeo"

    def operation(self):
        tag = f"s{self.done}"
        self.skopeo.run("copy", "--retry-times", "0", "--preserve-digests", "--dest-tls-verify=false",
                        "--dest-creds", self.creds, f"oci:{self.layout}:v1", f"{self.target}:{tag}")
        self.skopeo.run("inspect", "--retry-times", "0", "--tls-verify=false", "--creds", self.creds, "--raw",
                        f"{self.target}:{tag}")


def test_sigterm_and_restart_of_each_node_in_turn_fails_no_client_operation(cluster, tmp_path):
    clients = [HttpClient(cluster, index) for index in range(HTTP_CLIENTS)] + [SkopeoClient(cluster, tmp_path)]
    for client in clients:
        client.start()
    time.sleep(2)
    done_before = [client.done for client in clients]
    restarted = []
    try:
        for index, node in enumerate(cluster.nodes):
            node.stop()
            restarted.append(node.process.popen.returncode)
            cluster.restart_node(index)
            time.sleep(1)
    finally:
        for client in clients:
            client.stopping.set()
        for client in clients:
            client.join(120)
    failures = [failure for client in clients for failure in client.failures]
    drained = [node.process.log_path.read_text().count("shutting down") for node in cluster.nodes]

    assert failures == [], f"{len(failures)} failed operations: {failures[:5]}"
    assert restarted == [0, 0, 0] and drained == [1, 1, 1]
    assert all(client.done > before for client, before in zip(clients, done_before)), \
        [(client.name, before, client.done) for client, before in zip(clients, done_before)]
    assert requests.get(f"{cluster.url}/health", timeout=10).status_code == 200


# -- the drain, on one server ---------------------------------------------------------------------

def keep_alive_request(connection):
    """GET /health on an open keep-alive connection; ``(status, Connection header)``."""
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    return response.status, response.getheader("Connection")


def stop_listening(server):
    server.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: connection_refused("127.0.0.1", server.port), timeout=10)


def test_a_stopping_server_answers_a_request_on_an_idle_keep_alive_connection_then_closes_it(own_registry):
    # A balancer may send a request on its idle connection to a node at any moment: closing that connection right
    # after SIGTERM would fail the request (nginx resends no POST or PATCH, nor a streamed body, that failed so).
    connection = http.client.HTTPConnection("127.0.0.1", own_registry.port, timeout=30)
    before = keep_alive_request(connection)

    stop_listening(own_registry)
    time.sleep(1)  # idle, but for less than shutdown_idle_seconds (5)
    during = keep_alive_request(connection)

    assert before == (200, None)
    assert during == (200, "close")
    assert own_registry.process.wait(30) == 0


def test_a_request_in_flight_at_sigterm_is_answered_with_connection_close(own_registry):
    upload = SlowPatch(own_registry, "drain/app").start()

    stop_listening(own_registry)
    response = upload.finish()

    assert response is not None and response.status_code == 202, upload.error
    assert response.headers.get("Connection") == "close"
    assert own_registry.process.wait(30) == 0


def test_a_stopping_server_closes_a_connection_idle_for_shutdown_idle_seconds(mongo, tmp_path):
    server = RegistryServer(mongo.uri, tmp_path / "idle", env={"CYP_SHUTDOWN_IDLE_SECONDS": "1"}).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        keep_alive_request(connection)
        started = time.monotonic()

        stop_listening(server)
        status = server.process.wait(30)
    finally:
        server.stop()

    assert status == 0
    assert time.monotonic() - started < 10
