"""Any request on any node: three nodes on one database behind nginx (runtime/cluster.py, tests/support/cluster.py)
serve one upload across nodes, see each other's writes at once, and name the balancer, not themselves, in what they
answer; the /v2/ behaviour modules of the suite pass through the balancer."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import requests

from tests.support.clients import child_processes, process_alive, wait_until
from tests.support.cluster import UNDER_TEST_ENV, TestCluster
from tests.support.manifests import (
    get_blob,
    get_manifest,
    list_tags,
    patch_chunk,
    push,
    push_image,
    random_bytes,
    sha256,
    start_upload,
)
from tests.support.processes import ROOT, free_port
from tests.support.projects import api_login, create_project
from tests.support.registry_client import cached_client

# The registry's /v2/ behaviour, module by module, as the suite checks it against one server.
# Sized to CI's budget: uploads, reads, mounts, manifests, referrers, tokens and a real client.
V2_BEHAVIOUR_MODULES = ["test_blob_uploads.py", "test_blob_reads.py", "test_blob_mounts.py", "test_manifests.py",
                        "test_referrers.py", "test_registry_auth.py", "test_client_skopeo.py"]
# nginx itself answers a path climbing out of / with its own 400 before any node sees it.
ANSWERED_BY_NGINX = "not test_a_malformed_or_traversing_repository_name_is_refused"


@pytest.fixture(scope="module")
def cluster(mongo, tmp_path_factory):
    cluster = TestCluster(tmp_path_factory.mktemp("cluster"), mongo.uri, nodes=3).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def project(cluster):
    create_project(cluster.url, api_login(cluster.url, "admin", cluster.admin_password), "spread")
    return "spread"


@pytest.fixture(scope="module")
def clients(cluster):
    """The administrator's client of the balancer, then one of each node, talked to directly."""
    return [cached_client(url, "admin", cluster.admin_password)
            for url in [cluster.url, *(node.url for node in cluster.nodes)]]


def test_every_patch_of_one_upload_can_land_on_a_different_node(cluster, clients, project):
    balancer, *nodes = clients
    repo = f"{project}/chunks"
    data = random_bytes(3 * 1024 * 1024 + 17)
    pieces = [data[i:i + 1024 * 1024] for i in range(0, len(data), 1024 * 1024)]

    location = start_upload(nodes[0], repo).headers["Location"]
    offset = 0
    for index, piece in enumerate(pieces):
        response = patch_chunk(nodes[(index + 1) % 3], repo, location, piece, offset)
        assert response.status_code == 202, response.text
        offset += len(piece)
        location = response.headers["Location"]
        assert response.headers["Range"] == f"0-{offset - 1}"
    closed = nodes[2].request("PUT", location, push(repo), params={"digest": sha256(data)})
    fetched = get_blob(balancer, repo, sha256(data))

    assert len(pieces) == 4
    assert closed.status_code == 201, closed.text
    assert fetched.status_code == 200 and fetched.content == data


def test_a_manifest_put_on_one_node_is_answered_at_once_by_the_others(clients, project):
    _, *nodes = clients
    repo = f"{project}/fresh"
    seen = []
    for round_number in range(6):
        writer = nodes[round_number % 3]
        pushed = push_image(writer, repo, "moving")
        for reader in nodes:
            response = get_manifest(reader, repo, "moving", accept=pushed.media_type)
            seen.append((response.status_code, response.headers.get("Docker-Content-Digest"), pushed.digest))
        seen.append((200, list_tags(nodes[(round_number + 1) % 3], repo).json()["tags"], ["moving"]))

    assert [(status, got) for status, got, _ in seen] == [(200, wanted) for _, _, wanted in seen]


def test_the_token_realm_names_the_balancer_and_locations_stay_relative(cluster, clients, project):
    balancer = clients[0]
    repo = f"{project}/where"

    challenge = requests.get(f"{cluster.url}/v2/", timeout=30)
    started = start_upload(balancer, repo)
    status = balancer.request("GET", started.headers["Location"], push(repo))

    assert challenge.status_code == 401
    assert f'realm="{cluster.url}/auth/token"' in challenge.headers["WWW-Authenticate"]
    assert all(str(node.port) not in challenge.headers["WWW-Authenticate"] for node in cluster.nodes)
    assert started.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert status.status_code == 204


def test_behind_a_balancer_that_drops_the_port_the_public_url_is_the_realm(mongo, tmp_path):
    # nginx's $host leaves out the port clients used: only public_url can tell the node where it is reached.
    public = "http://registry.example.test:8443"
    cluster = TestCluster(tmp_path / "public", mongo.uri, nodes=1, public_url=public, host_header="$host").start()
    try:
        challenge = requests.get(f"{cluster.url}/v2/", timeout=30)
        token = requests.get(f"{cluster.url}/auth/token", params={"service": "cyp-registry"},
                             auth=("admin", cluster.admin_password), timeout=30)
    finally:
        cluster.stop()

    assert f'realm="{public}/auth/token"' in challenge.headers["WWW-Authenticate"]
    assert token.status_code == 200


def test_a_forwarded_https_scheme_is_the_realm_scheme_on_a_node_that_trusts_the_balancer(cluster):
    node = cluster.nodes[0]

    challenge = requests.get(f"{node.url}/v2/", timeout=30, headers={
        "Host": "registry.example.test", "X-Forwarded-Proto": "https"})

    assert 'realm="https://registry.example.test/auth/token"' in challenge.headers["WWW-Authenticate"]


def test_requests_through_the_balancer_are_spread_over_every_node(cluster, clients, project):
    push_image(clients[0], f"{project}/counted", "v1")
    marks = [len(node.process.log_path.read_text()) for node in cluster.nodes]

    def served():
        return [sum("/v2/spread/counted/tags/list" in line
                    for line in node.process.log_path.read_text()[mark:].splitlines())
                for node, mark in zip(cluster.nodes, marks)]

    for _ in range(12):
        assert list_tags(clients[0], f"{project}/counted").status_code == 200
    served = wait_until(lambda: sum(served()) == 12 and served(), timeout=5) or served()

    assert sum(served) == 12 and all(count >= 3 for count in served), served


def test_the_v2_behaviour_modules_pass_through_the_balancer(tmp_path):
    """The suite's own /v2/ modules, with their ``registry`` three nodes behind nginx (tests/support/cluster.py)."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "-k", ANSWERED_BY_NGINX,
             "--basetemp", str(tmp_path / "run"), *(f"tests/{module}" for module in V2_BEHAVIOUR_MODULES)],
            cwd=ROOT, env={**os.environ, UNDER_TEST_ENV: "cluster"}, capture_output=True, text=True, timeout=600,
            stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(tmp_path / "run", ignore_errors=True)  # its database (a few hundred MiB) on a small CI disk

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1], result.stdout[-500:]


def test_the_cluster_commands_start_nodes_with_workers_and_stop_every_process(tmp_path):
    directory, port = tmp_path / "cli", free_port()

    def command(*args):
        return subprocess.run([sys.executable, "-m", "runtime.cluster", *args, "--dir", str(directory)], cwd=ROOT,
                              capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
                              env={**os.environ, "CYP_BOOTSTRAP_ADMIN_PASSWORD": "Cluster-cli-pass-9"})

    started = command("start", "--nodes", "2", "--workers", "2", "--backend", "filesystem", "--port", str(port))
    try:
        recorded = json.loads((directory / "cluster.json").read_text())["processes"]
        nodes = [record["pid"] for record in recorded if record["name"].startswith("node")]
        workers = [pid for node in nodes for pid, cmdline in child_processes(node) if "--worker-pipe" in cmdline]
        client = cached_client(f"http://127.0.0.1:{port}", "admin", "Cluster-cli-pass-9")
        create_project(client.url, api_login(client.url, "admin", "Cluster-cli-pass-9"), "cli")
        pushed = push_image(client, "cli/app", "v1")
        pulled = get_manifest(client, "cli/app", "v1", accept=pushed.media_type)
    finally:
        stopped = command("stop")
    everything = [record["pid"] for record in recorded] + workers

    assert started.returncode == 0, started.stderr
    assert f"http://127.0.0.1:{port}" in started.stdout and "Cluster-cli-pass-9" in started.stdout
    assert len(nodes) == 2 and len(workers) == 4
    assert pulled.status_code == 200 and pulled.headers["Docker-Content-Digest"] == pushed.digest
    assert stopped.returncode == 0, stopped.stderr
    assert not any(process_alive(pid) for pid in everything)
    assert not (directory / "cluster.json").exists()


def test_a_refused_oversized_manifest_is_answered_413_through_the_balancer_not_502(clients, project):
    # nginx buffers the body, then sends it with a Content-Length the node refuses at once: a node closing with the
    # body unread would reset the connection and nginx would lose the 413 (answering 502).
    repo = f"{project}/oversized"
    body = b'{"schemaVersion":2,"pad":"' + b"x" * (4 * 1024 * 1024) + b'"}'

    statuses = [clients[0].put_manifest(repo, "big", iter([body])).status_code for _ in range(20)]

    assert statuses == [413] * 20
