"""Real registry clients for end-to-end tests (skopeo, podman, the oras SDK) and helpers for operator tests.

skopeo and podman are run with their configuration in a private directory: credentials, registries.conf, the
signature policy, and for podman its containers.conf and storage.conf (vfs driver, graph root and run root), so
the machine's container configuration, credentials and image storage are neither read nor changed. Two traces
remain that these tools cannot move: skopeo (as root) keeps its blob-info cache in
/var/lib/containers/cache/blob-info-cache-v1.boltdb, and rootful podman creates an empty /run/containers/networks.
"""
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.manifests import format_digest
from tests.support.oci_layout import RandomReader
from tests.support.processes import ROOT, RegistryServer
from tests.support.projects import api_login
from tests.support.registry_client import RegistryClient

CLIENT_TIMEOUT = 300


class CommandFailed(AssertionError):
    pass


def sha256_file(path):
    """The sha256 digest of a file's content, read a MiB at a time."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1024 * 1024), b""):
            hasher.update(piece)
    return format_digest(hasher)


def layer_file_bytes(size, seed, index):
    """The bytes of the one file inside layer ``index`` of ``make_image_layout(..., seed=seed)``."""
    return io.BufferedReader(RandomReader(size, f"{seed}-{index}"), 1024 * 1024).read()


def layout_manifest(layout):
    """``(descriptor, manifest bytes, manifest)`` of the single image in an OCI layout."""
    root = Path(layout)
    descriptor = json.loads((root / "index.json").read_text())["manifests"][0]
    raw = (root / "blobs" / "sha256" / descriptor["digest"].split(":", 1)[1]).read_bytes()
    return descriptor, raw, json.loads(raw)


def layout_blob_files(layout):
    """``{digest: path}`` for every blob file of an OCI layout."""
    return {f"sha256:{path.name}": path for path in (Path(layout) / "blobs" / "sha256").iterdir()}


def ensure_project(registry, repo):
    """Create the project of ``repo`` as the administrator, as a user does before pushing; a project that
    already exists is fine. For names made up by module fixtures or on servers of a test's own (the ``repo``
    fixture creates its project itself)."""
    token = api_login(registry.url, "admin", registry.admin_password)
    response = requests.post(f"{registry.url}/api/v1/projects", json={"name": repo.split("/", 1)[0]},
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert response.status_code in (200, 409), response.text


def push_layout_over_http(client, repo, layout, tag):
    """Push the image of a (small) OCI layout with plain /v2/ requests; answers the manifest digest."""
    descriptor, raw, manifest = layout_manifest(layout)
    blobs = layout_blob_files(layout)
    for blob in [manifest["config"], *manifest["layers"]]:
        response = client.push_blob(repo, blobs[blob["digest"]].read_bytes(), blob["digest"])
        assert response.status_code == 201, response.text
    response = client.put_manifest(repo, tag, raw, manifest["mediaType"])
    assert response.status_code == 201, response.text
    return descriptor["digest"]


def _write_containers_files(base):
    """registries.conf, policy.json and an empty auth file in ``base``; answers their environment."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "registries.conf").write_text('unqualified-search-registries = []\n')
    (base / "policy.json").write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    (base / "auth.json").write_text(json.dumps({"auths": {}}))  # podman refuses a REGISTRY_AUTH_FILE that is missing
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CONTAINERS_", "REGISTRY_AUTH_FILE", "DOCKER_"))}
    env.update({"REGISTRY_AUTH_FILE": str(base / "auth.json"),
                "CONTAINERS_REGISTRIES_CONF": str(base / "registries.conf"),
                "TMPDIR": str(base / "tmp")})
    (base / "tmp").mkdir(exist_ok=True)
    return env


def _run(argv, env, check, timeout=CLIENT_TIMEOUT):
    result = subprocess.run(argv, check=False, env=env, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} exited {result.returncode}\nstdout: {result.stdout}\n"
                            f"stderr: {result.stderr}")
    return result


class Skopeo:
    """skopeo with a private policy, registries.conf and auth file."""

    def __init__(self, base):
        self.base = Path(base)
        self.env = _write_containers_files(self.base)
        self.policy = str(self.base / "policy.json")

    def run(self, *args, check=True):
        return _run(["skopeo", "--policy", self.policy, *args], self.env, check)


class Podman:
    """podman as root with everything under ``base``: vfs storage, cgroupfs, file events.

    This needs no systemd (cgroup manager, journald events), no overlay mounts and no /var/lib/containers,
    so pull, push, login and image mount work in a bare container or CI machine; no container is ever run.
    """

    def __init__(self, base):
        self.base = Path(base)
        self.env = _write_containers_files(self.base)
        (self.base / "containers.conf").write_text(
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.base / "events.log"}"\n'
            f'tmp_dir = "{self.base / "libpod-tmp"}"\n'
            "[network]\n"
            f'network_config_dir = "{self.base / "networks"}"\n')
        (self.base / "storage.conf").write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f'graphroot = "{self.base / "root"}"\n'
            f'runroot = "{self.base / "run"}"\n')
        self.env.update({"CONTAINERS_CONF": str(self.base / "containers.conf"),
                         "CONTAINERS_STORAGE_CONF": str(self.base / "storage.conf")})
        self.policy = str(self.base / "policy.json")

    def run(self, *args, check=True):
        return _run(["podman", *args], self.env, check)


def require_tool(name):
    """Skip (with the reason) when a client program is not installed on this machine."""
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed (Debian package '{name}'; test.sh installs it)",
                    allow_module_level=True)


# --- oras SDK ------------------------------------------------------------------------------------

def oras_client(registry, config_path, username="admin", password=None):
    """An ``oras.client.OrasClient`` for the registry over plain HTTP, logged in with ``config_path`` as its
    Docker config (so ~/.docker/config.json is neither read for this host nor written)."""
    import oras.client

    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    client.login(username, password or registry.admin_password, hostname=registry.host,
                 config_path=str(config_path))
    return client


def prime_oras_push_token(client, registry, repo):
    """Have the SDK answer the registry's push challenge for ``repo`` before it pushes.

    oras-py 0.2.43 caches the first bearer token it gets and reuses it for every later request; it only
    asks again on 403 (oras-project/oras-py#187). Its push starts with a HEAD (a pull challenge), so the
    cached token is pull-only and the following POST gets the spec's 401 insufficient_scope. Here the
    SDK's own token code answers the server's real challenge for a push (an unauthenticated POST, which
    the server refuses before creating anything), so the cached token carries pull and push.
    """
    import oras.auth.utils

    challenge = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/", timeout=30)
    assert challenge.status_code == 401, challenge.text
    token = client.auth.request_token(oras.auth.utils.parse_auth_header(challenge.headers["WWW-Authenticate"]))
    assert token, "the token endpoint gave the oras SDK no token"
    client.auth.set_token_auth(token)


def random_file(path, size, seed):
    Path(path).write_bytes(random.Random(seed).randbytes(size))
    return Path(path)


# --- server processes for operator tests --------------------------------------------------------

def server_env(**overrides):
    """The test environment without any CYP_* setting but one process per server, plus ``overrides`` (None
    removes a key)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CYP_")}
    env["CYP_WORKERS"] = "1"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_server_cli(*args, env=None, timeout=60):
    """``python server.py ARGS`` to completion (for --help and settings errors)."""
    return subprocess.run([sys.executable, str(ROOT / "server.py"), *args], check=False, cwd=ROOT,
                          env=env or server_env(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class EmbeddedRegistryServer(RegistryServer):
    """A server started with no CYP_MONGO_URI at all: it runs its own SecantusDB under its data dir."""

    def __init__(self, data_dir, env=None):
        super().__init__("", data_dir, env=env)
        self.env.pop("CYP_MONGO_URI", None)
        self.env.pop("CYP_MONGO_DB", None)


def log_records(text):
    """The JSON log records in a server log (lines that are not JSON, like the bootstrap banner, are skipped)."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def process_alive(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def connection_refused(host, port):
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def wait_until(predicate, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


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


def databases_of(server):
    """The embedded databases a server process runs."""
    return [pid for pid, cmdline in child_processes(server.process.pid) if "secantusd" in cmdline]


def kill_all(pids):
    for pid in pids:  # never leave an orphaned database behind, whatever the test found
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)


def workers_of(server):
    """The worker processes of a server started with CYP_WORKERS above 1."""
    return [pid for pid, cmdline in child_processes(server.process.pid) if "--worker-pipe" in cmdline]


@contextlib.contextmanager
def running_with_workers(server, count=2):
    """``server`` started with its ``count`` workers up; afterwards stopped, leaving no process of it behind."""
    server.start()
    wait_until(lambda: len(workers_of(server)) == count, timeout=20)
    children = workers_of(server) + databases_of(server)
    try:
        yield server
    finally:
        server.stop()
        kill_all(children + workers_of(server) + databases_of(server))


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
