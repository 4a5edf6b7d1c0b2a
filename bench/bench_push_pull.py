#!/usr/bin/env python3
"""Push/pull throughput benchmark: CYP-Registry per storage backend vs raw backend vs reference.

One run starts SecantusDB (and moto_server when S3 is measured), measures
Debian's docker-registry (CNCF distribution, filesystem storage) once, then for
each backend (GridFS, S3, filesystem) measures a raw write/read of the test
layer driven directly and pushes and pulls that layer through a fresh
CYP-Registry server (server.py) on that backend, with plain HTTP and another of
the same size with skopeo.  It reads each server's peak RSS, prints a table
with the ratios and targets, and stops every process it started.  See
bench/README.md.

Units: 1 MB = 1e6 bytes, for throughput and memory alike.
"""

import argparse
import hashlib
import json
import operator
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import boto3
import bson
import gridfs
import pymongo
import requests
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_REGISTRY = "/usr/bin/docker-registry"
SKOPEO = "/usr/bin/skopeo"

PIECE = 1 << 20  # every read and write moves 1 MiB
MB = 1e6
# Fixed seeds, so every run pushes the same bytes.  Two layers, so that each
# push into a registry stores a new blob: a registry that already holds the
# digest may take a different (dedup) path, which real clients skip anyway.
HTTP_LAYER_SEED = 20240601
SKOPEO_LAYER_SEED = 20240602

HTTP_TIMEOUT = (10, 300)  # (connect, each socket read) seconds
STARTUP_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
SKOPEO_TIMEOUT_S = 1800
DEFAULT_TIME_LIMIT_S = 3600  # the whole run; the cleanup still runs when it expires
# Raw GridFS: fail instead of hanging when SecantusDB stops answering.
MONGO_TIMEOUTS = {"serverSelectionTimeoutMS": 10_000, "connectTimeoutMS": 10_000, "socketTimeoutMS": 300_000}

BACKENDS = ("gridfs", "s3", "filesystem")
PROJECT = "bench"  # cyp only takes pushes into an existing project
RAW_REPO = "bench/big"
SKOPEO_REPO = "bench/skopeo"
SKOPEO_TAG = "v1"
ADMIN_USER = "admin"

# moto accepts any credentials; fixed ones so the raw client and the server sign alike.
S3_REGION = "us-east-1"
S3_ACCESS_KEY_ID = "bench"
S3_SECRET_ACCESS_KEY = "bench-secret"
S3_PART = 8 << 20  # multipart part size, the same as storage/s3_store.py's
# The raw client is configured like storage/s3_store.py's, so both speak to moto
# alike (path-style addressing, checksums only where required); the timeouts
# bound each request.  boto3's own concurrency (10 threads) is kept: the raw
# figure is what boto3 gets out of the server at its defaults.
S3_CLIENT_CONFIG = BotoConfig(
    s3={"addressing_style": "path"}, signature_version="s3v4",
    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=300,
    request_checksum_calculation="when_required", response_checksum_validation="when_required",
)
S3_TRANSFER = TransferConfig(multipart_threshold=S3_PART, multipart_chunksize=S3_PART)

# Targets: (backends, row key, comparison, limit); row keys as in backend_row().
TARGETS = [
    (("gridfs", "s3"), "push_over_raw", ">=", 0.9),
    (("gridfs", "s3"), "pull_over_raw", ">=", 0.9),
    (("filesystem",), "cyp_over_ref_push", ">=", 1.0),
    (("filesystem",), "cyp_over_ref_pull", ">=", 0.8),
    (BACKENDS, "cyp_peak_rss_mb", "<", 150),
]
COMPARE = {">=": operator.ge, "<": operator.lt}

# Table columns: (header, row key, format); "backend" is the row's name.
MAIN_COLUMNS = [
    ("backend", "backend", "s"),
    ("raw write MB/s", "raw_write", ".1f"),
    ("raw read MB/s", "raw_read", ".1f"),
    ("cyp push", "cyp_push", ".1f"),
    ("cyp pull", "cyp_pull", ".1f"),
    ("push/raw", "push_over_raw", ".2f"),
    ("pull/raw", "pull_over_raw", ".2f"),
    ("reference push", "ref_push", ".1f"),
    ("reference pull", "ref_pull", ".1f"),
    ("cyp/ref push", "cyp_over_ref_push", ".2f"),
    ("cyp/ref pull", "cyp_over_ref_pull", ".2f"),
    ("cyp peak RSS MB", "cyp_peak_rss_mb", ".1f"),
]
COLUMN_HEADERS = {key: header for header, key, _ in MAIN_COLUMNS}
SKOPEO_COLUMNS = [
    ("backend", "backend", "s"),
    ("cyp skopeo push", "cyp_skopeo_push", ".1f"),
    ("cyp skopeo pull", "cyp_skopeo_pull", ".1f"),
    ("reference skopeo push", "ref_skopeo_push", ".1f"),
    ("reference skopeo pull", "ref_skopeo_pull", ".1f"),
    ("cyp/ref push", "cyp_over_ref_skopeo_push", ".2f"),
    ("cyp/ref pull", "cyp_over_ref_skopeo_pull", ".2f"),
]


class BenchError(Exception):
    """A step failed or returned wrong data; the run's numbers cannot be trusted."""


# ---------------------------------------------------------------- helpers


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mb_per_s(nbytes, seconds):
    return nbytes / MB / seconds


def fresh_name(prefix):
    """A name no earlier run used, so no server starts on leftover data."""
    return prefix + secrets.token_hex(4)


def elapsed(func):
    """Run func(); return (its result, seconds taken)."""
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


def file_pieces(path):
    """Yield the file in 1 MiB pieces, so no body is ever held whole in memory."""
    with open(path, "rb") as f:
        while piece := f.read(PIECE):
            yield piece


def sha256_digest(pieces):
    h = hashlib.sha256()
    for piece in pieces:
        h.update(piece)
    return "sha256:" + h.hexdigest()


@dataclass
class Layer:
    path: Path
    digest: str
    size: int


def write_test_layer(path, size, seed):
    """Write `size` deterministic pseudo-random bytes to `path`."""
    rng = random.Random(seed)
    h = hashlib.sha256()
    start = time.perf_counter()
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            piece = rng.randbytes(min(PIECE, remaining))
            h.update(piece)
            f.write(piece)
            remaining -= len(piece)
    layer = Layer(path, "sha256:" + h.hexdigest(), size)
    print(f"test layer {path.name}: {size} bytes, {layer.digest}"
          f" (written in {time.perf_counter() - start:.1f} s)", flush=True)
    return layer


def check_digest(what, got, want):
    if got != want:
        raise BenchError(f"{what}: digest mismatch, got {got}, want {want}")


def expect_status(resp, status, what):
    if resp.status_code != status:
        raise BenchError(
            f"{what}: {resp.request.method} {resp.url} answered {resp.status_code},"
            f" want {status}: {resp.text[:300]!r}"
        )


def peak_rss_mb(pid):
    """VmHWM (peak resident set) of a live process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    kib = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))
    return kib * 1024 / MB


# ------------------------------------------------------- child processes


class Children:
    """Starts child processes with output to log files and stops them all.

    Each child leads its own process group, so stopping it also stops anything
    it spawned, and a Ctrl-C on the bench reaches only the bench, which then
    stops the children in order.
    """

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.procs = []  # (name, Popen), in start order

    def start(self, name, argv, **popen_kwargs):
        with open(self.log_dir / f"{name}.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **popen_kwargs,
            )
        self.procs.append((name, proc))
        return proc

    def print_log_tails(self, lines=20):
        for name, _ in self.procs:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
            tail = "\n".join(text.splitlines()[-lines:])
            print(f"--- last lines of {name} log ---\n{tail}", file=sys.stderr)

    def stop_all(self):
        """SIGTERM each child (last started first) and wait for it to exit."""
        for _, proc in reversed(self.procs):
            stop_process_group(proc)
        self.procs.clear()


def stop_process_group(proc):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def wait_until_ready(name, proc, is_ready):
    """Poll is_ready(); the caller prints the child's log if this raises."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with code {proc.returncode} while starting")
        if is_ready():
            return
        time.sleep(0.1)
    raise BenchError(f"{name} not ready after {STARTUP_TIMEOUT_S} s")


def http_answers(url, status):
    try:
        return requests.get(url, timeout=2).status_code == status
    except requests.RequestException:
        return False


# --------------------------------------------------------------- servers


@dataclass
class Registry:
    name: str
    base_url: str
    proc: subprocess.Popen
    credentials: tuple[str, str] | None = None  # None: the registry needs no auth

    @property
    def host_port(self):
        return self.base_url.split("://", 1)[1]


@dataclass
class S3Server:
    endpoint_url: str
    proc: subprocess.Popen

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=S3_REGION,
            aws_access_key_id=S3_ACCESS_KEY_ID, aws_secret_access_key=S3_SECRET_ACCESS_KEY,
            config=S3_CLIENT_CONFIG,
        )

    def registry_env(self, bucket):
        """The CYP_* settings of a server keeping its blobs in `bucket` here (it creates the bucket)."""
        return {
            "CYP_S3_ENDPOINT_URL": self.endpoint_url, "CYP_S3_BUCKET": bucket,
            "CYP_S3_REGION": S3_REGION, "CYP_S3_ACCESS_KEY_ID": S3_ACCESS_KEY_ID,
            "CYP_S3_SECRET_ACCESS_KEY": S3_SECRET_ACCESS_KEY, "CYP_S3_REDIRECT": "false",
        }


@dataclass
class Services:
    """What the raw measurements and the cyp servers of one run share."""
    run_dir: Path
    mongo_uri: str
    s3: S3Server | None  # None when S3 is not measured


def venv_program(name, package):
    """`name` next to the bench's Python (the venv), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise BenchError(f"{name} not found (pip install '{package}')")
    return found


def mongo_pings(uri):
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=500)
    try:
        client.admin.command("ping")
        return True
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()


def start_secantusdb(children, run_dir):
    """Start SecantusDB; return (process, mongodb uri)."""
    port = free_port()
    proc = children.start(
        "secantusd",
        [venv_program("secantusd-py", "secantusdb"), "--host", "127.0.0.1", "--port", str(port),
         "--storage-path", str(run_dir / "secantus-data")],
        cwd=run_dir,  # so it does not pick up a ./secantusd.toml from the caller's cwd
    )
    uri = f"mongodb://127.0.0.1:{port}/"
    wait_until_ready("secantusd", proc, lambda: mongo_pings(uri))
    return proc, uri


def start_moto(children, run_dir):
    port = free_port()
    proc = children.start(
        "moto_server",
        [venv_program("moto_server", "moto[server]"), "-H", "127.0.0.1", "-p", str(port)],
        cwd=run_dir,
    )
    endpoint_url = f"http://127.0.0.1:{port}"
    wait_until_ready("moto_server", proc, lambda: http_answers(endpoint_url + "/", 200))
    return S3Server(endpoint_url, proc)


def storage_env(backend, services):
    """The CYP_* storage settings of a cyp server on `backend`, each with fresh storage."""
    if backend == "s3":
        return services.s3.registry_env(fresh_name("cyp-bench-"))
    if backend == "filesystem":  # beside the reference registry's storage: the same disk
        return {"CYP_FILESYSTEM_ROOT": str(services.run_dir / "cyp-filesystem-blobs")}
    return {}


def start_cyp(children, services, backend):
    """A fresh server process (own database, own storage) on `backend`."""
    name = f"cyp-{backend}"
    port = free_port()
    password = secrets.token_urlsafe(16)
    env = {
        # Inherited CYP_* settings dropped: the bench sets every one it depends on.
        **{key: value for key, value in os.environ.items() if not key.startswith("CYP_")},
        "CYP_MONGO_URI": services.mongo_uri,
        "CYP_MONGO_DB": fresh_name(f"cyp_bench_{backend}_"),
        "CYP_BOOTSTRAP_ADMIN_PASSWORD": password,
        "CYP_STORAGE_BACKEND": backend,
        **storage_env(backend, services),
    }
    proc = children.start(
        name,
        [sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(services.run_dir / f"{name}-data")],
        cwd=REPO_ROOT,
        env=env,
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_until_ready(name, proc, lambda: http_answers(base_url + "/health", 200))
    create_cyp_project(base_url, ADMIN_USER, password, PROJECT)
    return Registry(name, base_url, proc, (ADMIN_USER, password))


def create_cyp_project(base_url, username, password, name):
    """Log in to the management API and create the project the pushes go to."""
    resp = requests.post(f"{base_url}/api/v1/auth/login",
                         json={"username": username, "password": password}, timeout=HTTP_TIMEOUT)
    expect_status(resp, 200, "API login")
    token = resp.json()["data"]["access_token"]
    resp = requests.post(f"{base_url}/api/v1/projects", json={"name": name},
                         headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT)
    expect_status(resp, 200, f"create project {name}")


def reference_config(storage_dir, port):
    # JSON is valid YAML, so no YAML library is needed.
    return json.dumps({
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage_dir)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},  # as in Debian's default config
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }, indent=2)


def start_reference(children, run_dir):
    port = free_port()
    config = run_dir / "reference-config.yml"
    config.write_text(reference_config(run_dir / "reference-data", port))
    proc = children.start("reference", [REFERENCE_REGISTRY, "serve", str(config)], cwd=run_dir)
    base_url = f"http://127.0.0.1:{port}"
    wait_until_ready("reference", proc, lambda: http_answers(base_url + "/v2/", 200))
    return Registry("reference", base_url, proc)


# ---------------------------------------------------------- raw backends
#
# Each writes the layer from its file in 1 MiB pieces and reads it back hashing
# as it goes, like the HTTP pull, so that client-side cost is on both sides of
# the cyp / raw ratios; then removes its copy before the server stores its own.


def measure_raw(name, layer, write, read):
    """Time write(), then read() (returning the digest of what it read); return MB/s by direction."""
    _, write_s = elapsed(write)
    got, read_s = elapsed(read)
    check_digest(f"raw {name} read", got, layer.digest)
    return {"write": mb_per_s(layer.size, write_s), "read": mb_per_s(layer.size, read_s)}


def bench_raw_gridfs(services, layer):
    """Plain sync pymongo GridFS, 1 MiB chunks (the server's default chunk size)."""
    db_name = fresh_name("cyp_bench_raw_")  # kept apart from the servers' databases
    client = pymongo.MongoClient(services.mongo_uri, **MONGO_TIMEOUTS)
    try:
        bucket = gridfs.GridFSBucket(client[db_name], chunk_size_bytes=PIECE)
        file_id = bson.ObjectId()

        def write():
            with bucket.open_upload_stream_with_id(file_id, "layer") as upload:
                for piece in file_pieces(layer.path):
                    upload.write(piece)

        def read():
            with bucket.open_download_stream(file_id) as download:
                return sha256_digest(iter(lambda: download.read(PIECE), b""))

        return measure_raw("GridFS", layer, write, read)
    finally:
        with suppress(pymongo.errors.PyMongoError):  # do not hide the error that got us here
            client.drop_database(db_name)
        client.close()


def bench_raw_s3(services, layer):
    """boto3 upload_fileobj (multipart, 8 MiB parts), then one streamed get_object.

    The read asks for the whole blob as a Range, as the server does.
    """
    client = services.s3.client()
    bucket, key = fresh_name("cyp-bench-raw-"), "layer"
    client.create_bucket(Bucket=bucket)
    try:
        def write():
            with open(layer.path, "rb") as f:
                client.upload_fileobj(f, bucket, key, Config=S3_TRANSFER)

        def read():
            body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{layer.size - 1}")["Body"]
            with closing(body):
                return sha256_digest(body.iter_chunks(PIECE))

        return measure_raw("S3", layer, write, read)
    finally:
        # moto keeps objects in memory: free it before the server uploads its copy
        with suppress(Exception):
            client.delete_object(Bucket=bucket, Key=key)
            client.delete_bucket(Bucket=bucket)
        client.close()


def bench_raw_filesystem(services, layer):
    """Plain file write + fsync, then a read in 1 MiB pieces, in the run dir (the servers' disk)."""
    path = services.run_dir / "raw-filesystem.bin"

    def write():
        with open(path, "wb") as f:
            f.writelines(file_pieces(layer.path))
            f.flush()
            os.fsync(f.fileno())  # the filesystem backend fsyncs every blob it commits

    try:
        return measure_raw("filesystem", layer, write, lambda: sha256_digest(file_pieces(path)))
    finally:
        path.unlink(missing_ok=True)


RAW_BENCHES = {"gridfs": bench_raw_gridfs, "s3": bench_raw_s3, "filesystem": bench_raw_filesystem}


# ------------------------------------------------------ raw HTTP (Docker)


def parse_challenge(header):
    """Split a WWW-Authenticate value into (scheme, {param: value})."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class RegistrySession:
    """requests.Session against one registry, authorized the way /v2/ asks."""

    def __init__(self, registry):
        self.registry = registry
        self.http = requests.Session()

    def url(self, path_or_location):
        """Absolute URL; upload Locations may be relative."""
        return urljoin(self.registry.base_url + "/", path_or_location)

    def authorize(self, scope):
        resp = self.http.get(self.url("/v2/"), timeout=HTTP_TIMEOUT)
        if resp.status_code == 200:
            return  # open registry
        expect_status(resp, 401, "registry API check")
        scheme, params = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if self.registry.credentials is None:
            raise BenchError(f"{self.registry.name} asks for auth ({scheme}) but has no credentials")
        if scheme == "basic":
            self.http.auth = self.registry.credentials
        elif scheme == "bearer":
            self.http.headers["Authorization"] = "Bearer " + self.fetch_token(params, scope)
        else:
            raise BenchError(f"{self.registry.name}: unsupported auth scheme {scheme!r}")

    def fetch_token(self, challenge, scope):
        query = {"scope": scope}
        if "service" in challenge:
            query["service"] = challenge["service"]
        resp = requests.get(
            self.url(challenge["realm"]), params=query,
            auth=self.registry.credentials, timeout=HTTP_TIMEOUT,
        )
        expect_status(resp, 200, "token request")
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise BenchError(f"token response has no token: {body}")
        return token


def upload_location(resp):
    if "Location" not in resp.headers:
        raise BenchError(f"{resp.request.method} {resp.url} answered without a Location header")
    return resp.headers["Location"]


def with_query(location, key, value):
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}{key}={value}"


def http_push_blob(session, repo, layer):
    """Monolithic-PATCH upload (chunked transfer, as docker and skopeo send); return seconds."""
    start = time.perf_counter()
    resp = session.http.post(session.url(f"/v2/{repo}/blobs/uploads/"), timeout=HTTP_TIMEOUT)
    expect_status(resp, 202, "start upload")
    resp = session.http.patch(
        session.url(upload_location(resp)),
        data=file_pieces(layer.path),
        headers={"Content-Type": "application/octet-stream"},
        timeout=HTTP_TIMEOUT,
    )
    expect_status(resp, 202, "upload data")
    resp = session.http.put(
        session.url(with_query(upload_location(resp), "digest", layer.digest)),
        timeout=HTTP_TIMEOUT,
    )
    expect_status(resp, 201, "finish upload")
    return time.perf_counter() - start


def http_pull_blob(session, repo, layer):
    """Stream the blob, hashing as it arrives; return seconds."""
    start = time.perf_counter()
    with session.http.get(
        session.url(f"/v2/{repo}/blobs/{layer.digest}"), stream=True, timeout=HTTP_TIMEOUT
    ) as resp:
        expect_status(resp, 200, "blob download")
        got = sha256_digest(resp.iter_content(PIECE))
    seconds = time.perf_counter() - start
    check_digest(f"raw-HTTP pull from {session.registry.name}", got, layer.digest)
    return seconds


# ---------------------------------------------------------------- skopeo


def write_blob(layout, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def build_oci_layout(layout, layer):
    """OCI image layout holding one image whose only layer is the test layer.

    The layer is hard-linked, not copied; its bytes are not a real tar, which
    copying with --preserve-digests never looks at.
    """
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    os.link(layer.path, blobs / layer.digest.split(":")[1])
    config = write_blob(layout, json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    }).encode())
    manifest = write_blob(layout, json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer.digest, "size": layer.size}],
    }).encode())
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **manifest,
            "annotations": {"org.opencontainers.image.ref.name": SKOPEO_TAG},
        }],
    }))


@dataclass
class SkopeoSource:
    policy: Path  # signature policy file passed to every skopeo call
    layout: Path  # OCI layout holding the image to push
    layer: Layer  # the image's only layer


def prepare_skopeo(run_dir, size):
    policy = run_dir / "policy.json"  # accept anything, whatever /etc/containers says
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    layer = write_test_layer(run_dir / "layer-skopeo.bin", size, SKOPEO_LAYER_SEED)
    layout = run_dir / "oci-src"
    build_oci_layout(layout, layer)
    return SkopeoSource(policy, layout, layer)


def run_skopeo(policy, args):
    """Run one skopeo command; return seconds."""
    start = time.perf_counter()
    done = subprocess.run(
        [SKOPEO, "--policy", str(policy), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=SKOPEO_TIMEOUT_S,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"skopeo {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds


def skopeo_credentials(flag, registry):
    if registry.credentials is None:
        return []
    return [flag, ":".join(registry.credentials)]


def skopeo_push(skopeo, registry):
    """Copy the OCI layout's image into the registry; return seconds."""
    return run_skopeo(skopeo.policy, [
        "copy", "--preserve-digests", "--dest-tls-verify=false",
        *skopeo_credentials("--dest-creds", registry),
        f"oci:{skopeo.layout}:{SKOPEO_TAG}",
        f"docker://{registry.host_port}/{SKOPEO_REPO}:{SKOPEO_TAG}",
    ])


def skopeo_pull(skopeo, registry, out_dir):
    """Pull into a fresh layout, check the layer's bytes, remove the copy; return seconds."""
    seconds = run_skopeo(skopeo.policy, [
        "copy", "--preserve-digests", "--src-tls-verify=false",
        *skopeo_credentials("--src-creds", registry),
        f"docker://{registry.host_port}/{SKOPEO_REPO}:{SKOPEO_TAG}",
        f"oci:{out_dir}:{SKOPEO_TAG}",
    ])
    digest = skopeo.layer.digest
    pulled = out_dir / "blobs" / "sha256" / digest.split(":")[1]
    if not pulled.exists():
        raise BenchError(f"skopeo pull from {registry.name}: layer {digest} missing in {out_dir}")
    check_digest(f"skopeo pull from {registry.name}", sha256_digest(file_pieces(pulled)), digest)
    shutil.rmtree(out_dir)
    return seconds


# ----------------------------------------------------------------- runs


def bench_registry(registry, run_dir, http_layer, skopeo):
    """Push and pull through one registry; return MB/s by path key.

    `skopeo` is a SkopeoSource, or None to skip the skopeo paths.
    """
    print(f"benchmarking {registry.name} at {registry.base_url} ...", flush=True)
    session = RegistrySession(registry)
    session.authorize(f"repository:{RAW_REPO}:pull,push")
    speeds = {
        "http_push": mb_per_s(http_layer.size, http_push_blob(session, RAW_REPO, http_layer)),
        "http_pull": mb_per_s(http_layer.size, http_pull_blob(session, RAW_REPO, http_layer)),
    }
    if skopeo:
        size = skopeo.layer.size
        speeds["skopeo_push"] = mb_per_s(size, skopeo_push(skopeo, registry))
        out_dir = run_dir / f"oci-pulled-{registry.name}"
        speeds["skopeo_pull"] = mb_per_s(size, skopeo_pull(skopeo, registry, out_dir))
    return speeds


def measure_registry(registry, run_dir, http_layer, skopeo):
    """Push and pull through a started registry, read its peak RSS, stop it.

    Stopped at once, so the next server measured runs alone.
    """
    try:
        speeds = bench_registry(registry, run_dir, http_layer, skopeo)
        return {"speeds": speeds, "peak_rss_mb": peak_rss_mb(registry.proc.pid)}
    finally:
        stop_process_group(registry.proc)  # still listed in `children`, for its log tail on failure


def bench_backend(children, services, backend, http_layer, skopeo):
    """Raw backend speed, then a fresh cyp server on that backend, back to back."""
    print(f"measuring raw {backend} ...", flush=True)
    raw = RAW_BENCHES[backend](services, http_layer)
    registry = start_cyp(children, services, backend)
    return {"raw": raw, "cyp": measure_registry(registry, services.run_dir, http_layer, skopeo)}


def make_run_dir(base):
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="cyp-bench-", dir=base))


def arm_time_limit(stack, seconds):
    """Raise BenchError after `seconds`; disarmed before the cleanup, which must not be cut short."""
    def expire(*_):
        raise BenchError(f"run exceeded the time limit of {seconds} s")

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    stack.callback(signal.alarm, 0)


def run(args):
    size = args.size_mib * PIECE
    results = {
        "size_bytes": size,
        "load_average_start": os.getloadavg(),  # other work on the machine skews the numbers
        "backends": {},
        "reference": None,
        "peak_rss_mb": {},  # the helper servers'
    }
    with ExitStack() as stack:
        run_dir = make_run_dir(args.workdir)
        stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
        log_dir = run_dir / "logs"
        log_dir.mkdir()
        children = Children(log_dir)
        stack.callback(children.stop_all)  # runs before the rmtree above
        arm_time_limit(stack, args.time_limit)  # registered last, so disarmed first
        try:
            http_layer = write_test_layer(run_dir / "layer-http.bin", size, HTTP_LAYER_SEED)
            skopeo = None if args.skip_skopeo else prepare_skopeo(run_dir, size)

            mongo, mongo_uri = start_secantusdb(children, run_dir)
            s3 = start_moto(children, run_dir) if "s3" in args.backends else None
            services = Services(run_dir, mongo_uri, s3)

            if not args.skip_reference:
                results["reference"] = measure_registry(
                    start_reference(children, run_dir), run_dir, http_layer, skopeo
                )
            for backend in args.backends:
                results["backends"][backend] = bench_backend(children, services, backend, http_layer, skopeo)

            results["peak_rss_mb"]["secantusd"] = peak_rss_mb(mongo.pid)
            if s3:
                results["peak_rss_mb"]["moto_server"] = peak_rss_mb(s3.proc.pid)
        except Exception:
            children.print_log_tails()
            raise
    results["load_average_end"] = os.getloadavg()
    return results


# --------------------------------------------------------------- report


def ratio(numerator, denominator):
    if numerator is None or denominator is None:
        return None
    return numerator / denominator


def fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def backend_row(results, backend):
    """One backend's speeds (MB/s), ratios and peak RSS, keyed as in the column lists."""
    measured = results["backends"][backend]
    raw, cyp = measured["raw"], measured["cyp"]["speeds"]
    ref = results["reference"]["speeds"] if results["reference"] else {}
    row = {
        "backend": backend,
        "raw_write": raw["write"],
        "raw_read": raw["read"],
        "push_over_raw": ratio(cyp["http_push"], raw["write"]),
        "pull_over_raw": ratio(cyp["http_pull"], raw["read"]),
        "cyp_peak_rss_mb": measured["cyp"]["peak_rss_mb"],
    }
    for key, short in (("http_push", "push"), ("http_pull", "pull"),
                       ("skopeo_push", "skopeo_push"), ("skopeo_pull", "skopeo_pull")):
        row[f"cyp_{short}"] = cyp.get(key)
        row[f"ref_{short}"] = ref.get(key)
        row[f"cyp_over_ref_{short}"] = ratio(cyp.get(key), ref.get(key))
    return row


def target_checks(rows):
    """Each target that applies to a measured backend, with its value and verdict (None: not measured)."""
    checks = []
    for backend, row in rows.items():
        for backends, key, comparison, limit in TARGETS:
            if backend in backends:
                value = row[key]
                ok = None if value is None else COMPARE[comparison](value, limit)
                checks.append({"backend": backend, "what": COLUMN_HEADERS[key], "value": value,
                               "target": f"{comparison} {limit}", "ok": ok})
    return checks


def print_table(columns, rows):
    cells = [[fmt(row[key], spec) for _, key, spec in columns] for row in rows]
    widths = [max(len(header), *(len(line[i]) for line in cells)) for i, (header, _, _) in enumerate(columns)]
    print(" | ".join(f"{header:>{width}}" for (header, _, _), width in zip(columns, widths)))
    print("-+-".join("-" * width for width in widths))
    for line in cells:
        print(" | ".join(f"{cell:>{width}}" for cell, width in zip(line, widths)))


def print_report(results, rows, checks):
    load = f"{results['load_average_start'][0]:.2f} -> {results['load_average_end'][0]:.2f}"
    print(f"\nlayer size: {results['size_bytes'] / MB:.1f} MB; speeds in MB/s (1 MB = 1e6 bytes);"
          f" 1-min load average {load}\n")
    print_table(MAIN_COLUMNS, rows.values())
    if any(row["cyp_skopeo_push"] is not None for row in rows.values()):
        print("\nskopeo copy of a one-layer image of the same size (process start included):\n")
        print_table(SKOPEO_COLUMNS, rows.values())

    print("\ntargets:")
    for check in checks:
        verdict = {True: "ok", False: "MISSED", None: "not measured"}[check["ok"]]
        print(f"  {check['backend']:<10} {check['what']:<15} {fmt(check['value'], '.2f'):>7}"
              f"  (target {check['target']}): {verdict}")

    helpers = dict(results["peak_rss_mb"])
    if results["reference"]:
        helpers["reference"] = results["reference"]["peak_rss_mb"]
    print("\nother servers' peak RSS (VmHWM), MB: "
          + ", ".join(f"{name} {mb:.1f}" for name, mb in helpers.items()))


def parse_backends(text):
    backends = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown or not backends:
        raise argparse.ArgumentTypeError(f"choose from {','.join(BACKENDS)}; got {text!r}")
    return backends


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024,
                        help="test layer size in MiB (default 1024)")
    parser.add_argument("--backends", type=parse_backends, default=list(BACKENDS),
                        help=f"comma-separated storage backends to measure (default {','.join(BACKENDS)})")
    parser.add_argument("--workdir",
                        help="directory to make the run's temp dir in (default: system temp);"
                             " the run's dir is removed at the end")
    parser.add_argument("--skip-skopeo", action="store_true", help="no skopeo push/pull")
    parser.add_argument("--skip-reference", action="store_true",
                        help="do not start or measure the reference registry")
    parser.add_argument("--time-limit", type=int, default=DEFAULT_TIME_LIMIT_S, metavar="SECONDS",
                        help=f"abort the run (cleaning up) after this long (default {DEFAULT_TIME_LIMIT_S})")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers to FILE as JSON")
    args = parser.parse_args(argv)
    if args.size_mib < 1:
        parser.error("--size-mib must be at least 1")
    if args.time_limit < 1:
        parser.error("--time-limit must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    # Turn SIGTERM into an exception so the cleanup stops the children too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        results = run(args)
    except BenchError as err:
        print(f"benchmark failed: {err}", file=sys.stderr)
        return 1
    rows = {backend: backend_row(results, backend) for backend in results["backends"]}
    checks = target_checks(rows)
    print_report(results, rows, checks)
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "rows": rows, "targets": checks}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
