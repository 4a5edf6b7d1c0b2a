"""Building blocks shared by the benchmarks in bench/.

- units, test layers and digests: PIECE, MB, mb_per_s, write_test_layer, file_pieces, sha256_digest;
- child processes: Children (own process group each, log files, stop in reverse order), free_port,
  peak_rss_mb, reset_peak_rss, cpu_seconds, machine_cpu_ticks, wait_until_ready; a server's
  processes (supervisor and workers): process_tree, tree_peak_rss_mb, tree_cpu_seconds, CpuMeter;
- servers on loopback: start_secantusdb, start_moto (S3Server), start_cyp (a fresh server.py with its
  own database and storage, a random admin password and the project `bench`), start_reference
  (Debian's /usr/bin/docker-registry, filesystem storage in the run dir);
- the registry API as a client: RegistrySession (the Docker token flow), http_push_blob,
  http_pull_blob (timing the first byte too, with FirstByte), manifest_digest, check_blob; the
  management API: api_login, create_cyp_project;
- a small image pushed over HTTP: push_small_image (SmallImage), write_file_blob;
- hey (Debian): run_hey, parse_hey;
- skopeo: write_skopeo_policy, build_oci_layout, skopeo_copy;
- a run: bench_run (temp dir, children, time limit, cleanup on error, Ctrl-C and SIGTERM),
  bench_main, the shared command-line options, print_table.

Every helper raises BenchError when a step fails.  Units: 1 MB = 1e6 bytes.
"""

import argparse
import hashlib
import json
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import boto3
import pymongo
import requests
from botocore.config import Config as BotoConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # to start SecantusDB the way the server's embedded database is started
from storage.embedded_mongo import OPLOG_OPTIONS, embedded_uri  # noqa: E402
REFERENCE_REGISTRY = "/usr/bin/docker-registry"
SKOPEO = "/usr/bin/skopeo"
HEY = "/usr/bin/hey"

PIECE = 1 << 20  # every read and write moves 1 MiB
MB = 1e6

HTTP_TIMEOUT = (10, 300)  # (connect, each socket read) seconds
STARTUP_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
SKOPEO_TIMEOUT_S = 1800
DEFAULT_TIME_LIMIT_S = 3600  # the whole run; the cleanup still runs when it expires

BACKENDS = ("gridfs", "s3", "filesystem")  # cyp's storage backends
PROJECT = "bench"  # cyp only takes pushes into an existing project
ADMIN_USER = "admin"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

# moto accepts any credentials; fixed ones so a raw client and the server sign alike.
S3_REGION = "us-east-1"
S3_ACCESS_KEY_ID = "bench"
S3_SECRET_ACCESS_KEY = "bench-secret"
# A raw client speaks to moto as storage/s3_client.py does (path-style
# addressing, no checksums beyond SigV4's payload hash); the timeouts bound
# each request.
S3_CLIENT_CONFIG = BotoConfig(
    s3={"addressing_style": "path"}, signature_version="s3v4",
    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=300,
    request_checksum_calculation="when_required", response_checksum_validation="when_required",
)


class BenchError(Exception):
    """A step failed or returned wrong data; the run's numbers cannot be trusted."""


# ---------------------------------------------------------------- helpers


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mb_per_s(nbytes, seconds):
    """Throughput in MB/s (1 MB = 1e6 bytes)."""
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
    """`sha256:<hex>` of the concatenated pieces."""
    h = hashlib.sha256()
    for piece in pieces:
        h.update(piece)
    return "sha256:" + h.hexdigest()


@dataclass
class Layer:
    """A test layer on disk: its path, `sha256:` digest and size in bytes."""
    path: Path
    digest: str
    size: int


def write_test_layer(path, size, seed):
    """Write `size` deterministic pseudo-random bytes to `path`, 1 MiB at a time; return its Layer."""
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
    """Raise BenchError unless got == want."""
    if got != want:
        raise BenchError(f"{what}: digest mismatch, got {got}, want {want}")


def expect_status(resp, status, what):
    """Raise BenchError unless the requests response has that status."""
    if resp.status_code != status:
        raise BenchError(
            f"{what}: {resp.request.method} {resp.url} answered {resp.status_code},"
            f" want {status}: {resp.text[:300]!r}"
        )


def peak_rss_mb(pid):
    """VmHWM (peak resident set) of a live process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    kib = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))
    return kib * 1024 / MB


def cpu_seconds(pid):
    """User + system CPU time a live process has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_ticks():
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def io_stalled_seconds():
    """Seconds since boot in which every task not idle waited on I/O (the "full" line of /proc/pressure/io); None
    where the kernel keeps no pressure figures."""
    try:
        full = Path("/proc/pressure/io").read_text().splitlines()[1]
    except (OSError, IndexError):
        return None
    return int(full.rsplit("total=", 1)[1]) / 1e6


def settle_disk():
    """Write back what the measurements before left dirty, so it does not slow the next ones (SecantusDB's
    journaled commits wait on that write-back: bench/README.md)."""
    started = time.monotonic()
    os.sync()
    print(f"disk settled in {time.monotonic() - started:.1f} s", flush=True)


def reset_peak_rss(pid):
    """Start the process's VmHWM again from its current RSS (Linux: 5 into /proc/PID/clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def process_tree(pid):
    """pid and its descendants (a server with workers is a supervisor and its worker processes)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += parents.get(current, [])
    return sorted(tree)


def tree_peak_rss_mb(pid):
    """{pid: peak RSS in MB} of pid and each of its descendants."""
    peaks = {}
    for member in process_tree(pid):
        try:
            peaks[member] = peak_rss_mb(member)
        except OSError:  # it ended meanwhile
            pass
    return peaks


def tree_cpu_seconds(pids):
    """CPU seconds the live processes among pids have used."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:  # a worker that ended (and was restarted) meanwhile
            pass
    return total


class CpuMeter:
    """CPU seconds of the named groups of processes, the bench itself, its waited children (hey), the machine's
    busy share and the share of the time it stalled on I/O, from construction to read()."""

    def __init__(self, pids):
        self.pids = pids  # name: [pid, ...]
        self.start = self.sample()

    def sample(self):
        own = os.times()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ({name: tree_cpu_seconds(pids) for name, pids in self.pids.items()},
                own.user + own.system, children.ru_utime + children.ru_stime, machine_cpu_ticks(),
                io_stalled_seconds(), time.monotonic())

    def read(self):
        procs, own, waited, (busy, total), stalled, now = self.sample()
        procs0, own0, waited0, (busy0, total0), stalled0, now0 = self.start
        result = {f"{name}_cpu_s": procs[name] - procs0[name] for name in procs}
        result.update(bench_cpu_s=own - own0, hey_cpu_s=waited - waited0,
                      machine_cpu_busy=(busy - busy0) / max(total - total0, 1),
                      machine_io_stalled=None if stalled is None else (stalled - stalled0) / max(now - now0, 1e-9))
        return result


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

    def log_path(self, name):
        return self.log_dir / f"{name}.log"

    def start(self, name, argv, **popen_kwargs):
        with open(self.log_path(name), "wb") as log:  # the child keeps its own copy
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
            text = self.log_path(name).read_text(errors="replace")
            tail = "\n".join(text.splitlines()[-lines:])
            print(f"--- last lines of {name} log ---\n{tail}", file=sys.stderr)

    def stop_all(self):
        """SIGTERM each child (last started first) and wait for it to exit."""
        for _, proc in reversed(self.procs):
            stop_process_group(proc)
        self.procs.clear()


def stop_process_group(proc):
    """SIGTERM the child's process group, SIGKILL it after STOP_TIMEOUT_S; no-op if it has exited."""
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
    """Whether a GET of url answers `status` now (False on any connection error)."""
    try:
        return requests.get(url, timeout=2).status_code == status
    except requests.RequestException:
        return False


# --------------------------------------------------------------- servers


@dataclass
class Registry:
    """A started registry server; credentials None: it needs no auth."""
    name: str
    base_url: str
    proc: subprocess.Popen
    credentials: tuple[str, str] | None = None
    project: dict | None = None  # cyp: the project `bench` as the API shows it
    log: Path | None = None  # the server's output

    @property
    def host_port(self):
        return self.base_url.split("://", 1)[1]


@dataclass
class S3Server:
    """A started moto_server."""
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
    """What the cyp servers of one run (and raw measurements) share."""
    run_dir: Path
    mongo_uri: str
    s3: S3Server | None  # None when no server stores on S3


def venv_program(name, package):
    """`name` next to the bench's Python (the venv), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise BenchError(f"{name} not found (pip install '{package}')")
    return found


def mongo_pings(uri):
    """Whether the MongoDB server at uri answers a ping now."""
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
         "--storage-path", str(run_dir / "secantus-data"), *OPLOG_OPTIONS],
        cwd=run_dir,  # so it does not pick up a ./secantusd.toml from the caller's cwd
    )
    uri = embedded_uri("127.0.0.1", port)
    wait_until_ready("secantusd", proc, lambda: mongo_pings(uri))
    return proc, uri


def start_moto(children, run_dir):
    """Start moto_server (an in-memory S3 server); return its S3Server."""
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


BENCH_RATE_LIMIT = 10**12


def start_cyp(children, services, backend, extra_env=None):
    """A fresh server process (own database, own storage) on `backend`, with the project `bench`.

    `extra_env`: further CYP_* settings.
    """
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
        # A benchmark loads one user far beyond any real client: limits it never reaches, still counted and shared.
        "CYP_RATE_LIMIT_PER_USER": str(BENCH_RATE_LIMIT), "CYP_RATE_LIMIT_PER_ADDRESS": str(BENCH_RATE_LIMIT),
        **storage_env(backend, services),
        **(extra_env or {}),
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
    registry = Registry(name, base_url, proc, (ADMIN_USER, password), log=children.log_path(name))
    registry.project = create_cyp_project(registry, PROJECT)
    return registry


def api_login(registry):
    """Log in to cyp's management API (/api/v1) with the registry's credentials; return the access token."""
    username, password = registry.credentials
    resp = requests.post(f"{registry.base_url}/api/v1/auth/login",
                         json={"username": username, "password": password}, timeout=HTTP_TIMEOUT)
    expect_status(resp, 200, "API login")
    return resp.json()["data"]["access_token"]


def create_cyp_project(registry, name):
    """Log in to the management API and create the project the pushes go to; return it."""
    resp = requests.post(f"{registry.base_url}/api/v1/projects", json={"name": name},
                         headers={"Authorization": f"Bearer {api_login(registry)}"}, timeout=HTTP_TIMEOUT)
    expect_status(resp, 200, f"create project {name}")
    return resp.json()["data"]


def reference_config(storage_dir, port):
    """docker-registry's config: filesystem storage in storage_dir, 127.0.0.1:port, no auth, warnings only."""
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
    """Start Debian's docker-registry (no auth, filesystem storage in the run dir); return its Registry."""
    port = free_port()
    config = run_dir / "reference-config.yml"
    config.write_text(reference_config(run_dir / "reference-data", port))
    proc = children.start("reference", [REFERENCE_REGISTRY, "serve", str(config)], cwd=run_dir)
    base_url = f"http://127.0.0.1:{port}"
    wait_until_ready("reference", proc, lambda: http_answers(base_url + "/v2/", 200))
    return Registry("reference", base_url, proc, log=children.log_path("reference"))


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
    """The upload's Location header, which every upload response must carry."""
    if "Location" not in resp.headers:
        raise BenchError(f"{resp.request.method} {resp.url} answered without a Location header")
    return resp.headers["Location"]


def with_query(location, key, value):
    """location with key=value appended to its query."""
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


class FirstByte:
    """Passes pieces through, noting when the first one came (perf_counter seconds)."""

    def __init__(self, pieces):
        self.pieces = pieces
        self.at = None

    def __iter__(self):
        for piece in self.pieces:
            if self.at is None:
                self.at = time.perf_counter()
            yield piece


def http_pull_blob(session, repo, layer):
    """Stream the blob, hashing as it arrives; return (seconds, seconds until its first byte)."""
    start = time.perf_counter()
    with session.http.get(
        session.url(f"/v2/{repo}/blobs/{layer.digest}"), stream=True, timeout=HTTP_TIMEOUT
    ) as resp:
        expect_status(resp, 200, "blob download")
        pieces = FirstByte(resp.iter_content(PIECE))
        got = sha256_digest(pieces)
    seconds = time.perf_counter() - start
    check_digest(f"raw-HTTP pull from {session.registry.name}", got, layer.digest)
    return seconds, pieces.at - start


def registry_head(registry, repo, path, headers=None):
    """HEAD /v2/<repo>/<path> with pull access; the response, which must be a 200."""
    session = RegistrySession(registry)
    session.authorize(f"repository:{repo}:pull")
    resp = session.http.head(session.url(f"/v2/{repo}/{path}"), headers=headers, timeout=HTTP_TIMEOUT)
    expect_status(resp, 200, f"HEAD of {repo}/{path} on {registry.name}")
    return resp


def manifest_digest(registry, repo, tag):
    """Docker-Content-Digest of an OCI manifest as the registry answers a HEAD for repo:tag."""
    resp = registry_head(registry, repo, f"manifests/{tag}", {"Accept": OCI_MANIFEST})
    return resp.headers.get("Docker-Content-Digest")


def check_blob(registry, repo, layer):
    """Raise BenchError unless the registry serves the layer's blob in repo with the layer's size."""
    size = registry_head(registry, repo, f"blobs/{layer.digest}").headers.get("Content-Length")
    if size != str(layer.size):
        raise BenchError(f"{registry.name}: blob {layer.digest} in {repo} has {size} bytes, not {layer.size}")


def write_file_blob(path, data):
    """data written to path; its Layer."""
    path.write_bytes(data)
    return Layer(path, sha256_digest([data]), len(data))


@dataclass
class SmallImage:
    """An image pushed by push_small_image: its manifest's bytes, its layer, and the Authorization
    header value a client of its repository holds (None: the registry asks for none)."""
    manifest: bytes
    layer: Layer
    authorization: str | None


def push_small_image(registry, run_dir, repo, layer_data, tag=None):
    """Push a one-layer image whose layer is layer_data into repo (and tag it when asked); its SmallImage."""
    name = registry.name
    layer = write_file_blob(run_dir / f"small-layer-{name}.bin", layer_data)
    config = write_file_blob(run_dir / f"small-config-{name}.json", json.dumps({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    }).encode())
    session = RegistrySession(registry)
    session.authorize(f"repository:{repo}:pull,push")
    for blob in (config, layer):
        http_push_blob(session, repo, blob)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest,
                   "size": config.size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.digest,
                    "size": layer.size}],
    }).encode()
    if tag:
        resp = session.http.put(session.url(f"/v2/{repo}/manifests/{tag}"), data=manifest,
                                headers={"Content-Type": OCI_MANIFEST}, timeout=HTTP_TIMEOUT)
        expect_status(resp, 201, f"push {repo}:{tag}")
    return SmallImage(manifest, layer, session.http.headers.get("Authorization"))


# ------------------------------------------------------------------- hey


def parse_hey(text):
    """The numbers of hey's summary: req/s, statuses, errors, latencies in ms."""
    def number(pattern):
        match = re.search(pattern, text)
        return float(match.group(1)) if match else None

    statuses = {int(code): int(count) for code, count in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    errors_part = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]", errors_part, re.MULTILINE))
    total_s = number(r"Total:\s+([\d.]+) secs")
    ok = sum(count for code, count in statuses.items() if 200 <= code < 300)
    return {
        "hey_req_per_s": number(r"Requests/sec:\s+([\d.]+)"), "total_s": total_s,
        "ok_per_s": ok / total_s if total_s else None, "ok": ok,
        "non_2xx": sum(count for code, count in statuses.items() if not 200 <= code < 300),
        "errors": errors, "statuses": statuses,
        "p50_ms": 1000 * v if (v := number(r"50% in ([\d.]+) secs")) is not None else None,
        "p99_ms": 1000 * v if (v := number(r"99% in ([\d.]+) secs")) is not None else None,
        "mean_ms": 1000 * v if (v := number(r"Average:\s+([\d.]+) secs")) is not None else None,
    }


def run_hey(argv):
    """Run hey with argv; its parsed summary, with "started" and "ended" (epoch seconds)."""
    if not Path(HEY).exists():
        raise BenchError(f"{HEY} not found (apt-get install hey)")
    started = time.time()
    done = subprocess.run([HEY, *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False, timeout=600)
    ended = time.time()
    if done.returncode != 0 or "Summary:" not in done.stdout:
        raise BenchError(f"hey failed ({done.returncode}): {done.stderr[-1000:]}")
    return {**parse_hey(done.stdout), "started": started, "ended": ended}


# ---------------------------------------------------------------- skopeo


def write_skopeo_policy(run_dir):
    """A signature policy accepting anything, whatever /etc/containers says; return its path."""
    policy = run_dir / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return policy


def write_blob(layout, data):
    """Store data as a blob of the OCI layout; return its descriptor's digest and size."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def build_oci_layout(layout, layer, tag):
    """OCI image layout holding one image, tagged `tag`, whose only layer is the test layer.

    The layer is hard-linked, not copied; its bytes are not a real tar, which
    copying with --preserve-digests never looks at.  Return the descriptors
    ({"digest", "size"}) of the manifest and of the config.
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
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer.digest, "size": layer.size}],
    }).encode())
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            **manifest,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }))
    return manifest, config


def run_skopeo(policy, args):
    """Run one skopeo command; return seconds."""
    start = time.perf_counter()
    done = subprocess.run(
        [SKOPEO, "--policy", str(policy), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=SKOPEO_TIMEOUT_S, check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"skopeo {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds


def skopeo_credentials(flag, registry):
    """[flag, 'user:password'] for a registry with credentials, else []."""
    if registry.credentials is None:
        return []
    return [flag, ":".join(registry.credentials)]


def docker_ref(registry, repo, tag):
    """skopeo's name of repo:tag in a registry."""
    return f"docker://{registry.host_port}/{repo}:{tag}"


def skopeo_copy(policy, source, dest, src_registry=None, dest_registry=None):
    """`skopeo copy --preserve-digests source dest`; return seconds.

    A registry given for a side (plain HTTP, so TLS verification off) adds its
    credentials when it has any.
    """
    args = ["copy", "--preserve-digests"]
    if src_registry:
        args += ["--src-tls-verify=false", *skopeo_credentials("--src-creds", src_registry)]
    if dest_registry:
        args += ["--dest-tls-verify=false", *skopeo_credentials("--dest-creds", dest_registry)]
    return run_skopeo(policy, [*args, source, dest])


# ----------------------------------------------------------------- runs


def make_run_dir(base):
    """A fresh temp dir for the run, under base (None: the system's temp dir)."""
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


@contextmanager
def bench_run(workdir, time_limit):
    """Yield (run dir, Children) for one run.

    The run dir is a fresh temp dir under `workdir` (None: the system's), with
    the children's logs in logs/.  When the block raises, the children's log
    tails are printed; whatever happens (error, Ctrl-C, SIGTERM under
    bench_main, the time limit expiring), the time limit is disarmed, every
    child is stopped and the run dir removed, in that order.
    """
    with ExitStack() as stack:
        run_dir = make_run_dir(workdir)
        stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
        log_dir = run_dir / "logs"
        log_dir.mkdir()
        children = Children(log_dir)
        stack.callback(children.stop_all)  # runs before the rmtree above
        arm_time_limit(stack, time_limit)  # registered last, so disarmed first
        try:
            yield run_dir, children
        except Exception:
            children.print_log_tails()
            raise


def bench_main(doc, add_options, run, report, argv=None):
    """A bench's command line: parse the options, results = run(args), then report(results, args).

    add_options(parser) adds the bench's options (with the add_*_option helpers
    where it wants the shared ones); the parser's description is the first
    paragraph of `doc`.  Return the exit status: 1 when run raises BenchError,
    else report's.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_options(parser)
    args = check_common_args(parser, parser.parse_args(argv))
    # Turn SIGTERM into an exception so the cleanup stops the children too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        results = run(args)
    except BenchError as err:
        print(f"benchmark failed: {err}", file=sys.stderr)
        return 1
    return report(results, args)


def write_json(path, data):
    """Write data to path as indented JSON."""
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def add_size_option(parser, what="test layer"):
    """--size-mib (default 1024)."""
    parser.add_argument("--size-mib", type=int, default=1024,
                        help=f"{what} size in MiB (default 1024)")


def add_hey_options(parser):
    """--seconds (each hey run) and --connections (hey's concurrency)."""
    parser.add_argument("--seconds", type=int, default=10, help="each hey run's length (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="hey's concurrent connections (default 32)")


def add_workdir_option(parser):
    """--workdir (where the run dir is made)."""
    parser.add_argument("--workdir",
                        help="directory to make the run's temp dir in (default: system temp);"
                             " the run's dir is removed at the end")


def add_limit_options(parser, default_time_limit=DEFAULT_TIME_LIMIT_S):
    """--time-limit and --json."""
    parser.add_argument("--time-limit", type=int, default=default_time_limit, metavar="SECONDS",
                        help=f"abort the run (cleaning up) after this long (default {default_time_limit})")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers to FILE as JSON")


def check_common_args(parser, args):
    """Exit with a usage error on a --size-mib (where the bench has one) or --time-limit below 1; return args."""
    if getattr(args, "size_mib", 1) < 1:
        parser.error("--size-mib must be at least 1")
    if args.time_limit < 1:
        parser.error("--time-limit must be at least 1")
    return args


# --------------------------------------------------------------- report


def ratio(numerator, denominator):
    """numerator / denominator, None when either was not measured."""
    if numerator is None or denominator is None:
        return None
    return numerator / denominator


def fmt(value, spec=".1f"):
    """A table cell: "-" for a value not measured."""
    return "-" if value is None else format(value, spec)


def load_average_text(results):
    """The 1-min load average at the start and end of the run (other work skews the numbers)."""
    return f"{results['load_average_start'][0]:.2f} -> {results['load_average_end'][0]:.2f}"


def print_table(columns, rows):
    """Right-aligned table; columns are (header, row key, format spec), rows dicts."""
    cells = [[fmt(row[key], spec) for _, key, spec in columns] for row in rows]
    widths = [max(len(header), *(len(line[i]) for line in cells)) for i, (header, _, _) in enumerate(columns)]
    print(" | ".join(f"{header:>{width}}" for (header, _, _), width in zip(columns, widths)))
    print("-+-".join("-" * width for width in widths))
    for line in cells:
        print(" | ".join(f"{cell:>{width}}" for cell, width in zip(line, widths)))
