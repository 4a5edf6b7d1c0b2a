#!/usr/bin/env python3
"""Push/pull throughput benchmark: CYP-Registry vs the reference registry vs raw GridFS.

One run starts SecantusDB, measures raw GridFS write/read of a test layer,
starts CYP-Registry (server.py) and Debian's docker-registry (CNCF
distribution), pushes and pulls that layer through each of them with plain
HTTP and another of the same size with skopeo, reads the servers' peak RSS,
prints a table, and stops every process it started.  See bench/README.md.

Units: 1 MB = 1e6 bytes, for throughput and memory alike.
"""

import argparse
import hashlib
import json
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
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import gridfs
import pymongo
import requests

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

PROJECT = "bench"  # cyp only takes pushes into an existing project
RAW_REPO = "bench/big"
SKOPEO_REPO = "bench/skopeo"
SKOPEO_TAG = "v1"
CYP_DB = "cyp_bench"
RAW_GRIDFS_DB = "cyp_bench_raw_gridfs"  # kept apart from the server's database
ADMIN_USER = "admin"

# (label, key) of the table rows, in print order
PATHS = [
    ("raw-HTTP push", "http_push"),
    ("raw-HTTP pull", "http_pull"),
    ("skopeo push", "skopeo_push"),
    ("skopeo pull", "skopeo_pull"),
]
GRIDFS_RATIO_TARGET = 0.8
CYP_RSS_TARGET_MB = 150


class BenchError(Exception):
    """A step failed or returned wrong data; the run's numbers cannot be trusted."""


# ---------------------------------------------------------------- helpers


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mb_per_s(nbytes, seconds):
    return nbytes / MB / seconds


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
    pid: int
    credentials: tuple[str, str] | None = None  # None: the registry needs no auth

    @property
    def host_port(self):
        return self.base_url.split("://", 1)[1]


def secantusd_program():
    """secantusd-py next to the bench's Python (the venv), else from PATH."""
    beside = Path(sys.executable).parent / "secantusd-py"
    found = str(beside) if beside.exists() else shutil.which("secantusd-py")
    if not found:
        raise BenchError("secantusd-py not found (pip install secantusdb)")
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
        [secantusd_program(), "--host", "127.0.0.1", "--port", str(port),
         "--storage-path", str(run_dir / "secantus-data")],
        cwd=run_dir,  # so it does not pick up a ./secantusd.toml from the caller's cwd
    )
    uri = f"mongodb://127.0.0.1:{port}/"
    wait_until_ready("secantusd", proc, lambda: mongo_pings(uri))
    return proc, uri


def start_cyp(children, run_dir, mongo_uri):
    port = free_port()
    password = secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "CYP_MONGO_URI": mongo_uri,
        "CYP_MONGO_DB": CYP_DB,
        "CYP_BOOTSTRAP_ADMIN_PASSWORD": password,
    }
    proc = children.start(
        "cyp",
        [sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(run_dir / "cyp-data")],
        cwd=REPO_ROOT,
        env=env,
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_until_ready("cyp", proc, lambda: http_answers(base_url + "/health", 200))
    create_cyp_project(base_url, ADMIN_USER, password, PROJECT)
    return Registry("cyp", base_url, proc.pid, (ADMIN_USER, password))


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
    return Registry("reference", base_url, proc.pid)


# ------------------------------------------------------------ raw GridFS


def bench_raw_gridfs(mongo_uri, layer):
    """Write and read the layer with plain sync GridFS; return MB/s by direction.

    The read hashes as it goes, like the HTTP pull, so that client-side cost
    is on both sides of the cyp-pull / GridFS-read ratio.
    """
    client = pymongo.MongoClient(mongo_uri)
    try:
        bucket = gridfs.GridFSBucket(client[RAW_GRIDFS_DB], chunk_size_bytes=PIECE)

        start = time.perf_counter()
        with bucket.open_upload_stream("layer") as upload:
            for piece in file_pieces(layer.path):
                upload.write(piece)
        write_s = time.perf_counter() - start

        start = time.perf_counter()
        with bucket.open_download_stream(upload._id) as download:
            got = sha256_digest(iter(lambda: download.read(PIECE), b""))
        read_s = time.perf_counter() - start

        check_digest("raw GridFS read", got, layer.digest)
        client.drop_database(RAW_GRIDFS_DB)  # frees the space before the servers store their copies
    finally:
        client.close()
    return {"write": mb_per_s(layer.size, write_s), "read": mb_per_s(layer.size, read_s)}


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


def make_run_dir(base):
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="cyp-bench-", dir=base))


def run(args):
    size = args.size_mib * PIECE
    results = {"size_bytes": size, "registries": {}, "peak_rss_mb": {}}
    with ExitStack() as stack:
        run_dir = make_run_dir(args.workdir)
        stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
        log_dir = run_dir / "logs"
        log_dir.mkdir()
        children = Children(log_dir)
        stack.callback(children.stop_all)  # runs before the rmtree above
        try:
            http_layer = write_test_layer(run_dir / "layer-http.bin", size, HTTP_LAYER_SEED)

            mongo, mongo_uri = start_secantusdb(children, run_dir)
            print("measuring raw GridFS ...", flush=True)
            results["gridfs"] = bench_raw_gridfs(mongo_uri, http_layer)

            skopeo = None if args.skip_skopeo else prepare_skopeo(run_dir, size)
            registries = [start_cyp(children, run_dir, mongo_uri)]
            if not args.skip_reference:
                registries.append(start_reference(children, run_dir))
            for registry in registries:
                results["registries"][registry.name] = bench_registry(
                    registry, run_dir, http_layer, skopeo
                )

            results["peak_rss_mb"]["secantusd"] = peak_rss_mb(mongo.pid)
            for registry in registries:
                results["peak_rss_mb"][registry.name] = peak_rss_mb(registry.pid)
        except Exception:
            children.print_log_tails()
            raise
    return results


# --------------------------------------------------------------- report


def ratio(numerator, denominator):
    if numerator is None or denominator is None:
        return None
    return numerator / denominator


def fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def verdict(ok):
    return "ok" if ok else "MISSED"


def print_report(results):
    cyp = results["registries"]["cyp"]
    ref = results["registries"].get("reference", {})
    print(f"\nlayer size: {results['size_bytes'] / MB:.1f} MB (1 MB = 1e6 bytes)\n")
    print(f"{'path':<15}| {'cyp MB/s':>9} | {'reference MB/s':>14} | {'ratio cyp/ref':>13}")
    print("-" * 15 + "+" + "-" * 11 + "+" + "-" * 16 + "+" + "-" * 14)
    for label, key in PATHS:
        if key not in cyp:
            continue
        mine, theirs = cyp[key], ref.get(key)
        print(f"{label:<15}| {fmt(mine):>9} | {fmt(theirs):>14} | {fmt(ratio(mine, theirs), '.2f'):>13}")

    gridfs_speed = results["gridfs"]
    push_ratio = ratio(cyp["http_push"], gridfs_speed["write"])
    pull_ratio = ratio(cyp["http_pull"], gridfs_speed["read"])
    print(f"\nraw GridFS write / read MB/s: {gridfs_speed['write']:.1f} / {gridfs_speed['read']:.1f}")
    print(f"cyp push / gridfs write: {push_ratio:.2f}"
          f"  (target >= {GRIDFS_RATIO_TARGET}: {verdict(push_ratio >= GRIDFS_RATIO_TARGET)})")
    print(f"cyp pull / gridfs read:  {pull_ratio:.2f}"
          f"  (target >= {GRIDFS_RATIO_TARGET}: {verdict(pull_ratio >= GRIDFS_RATIO_TARGET)})")

    print("\npeak RSS (VmHWM), MB:")
    for name, mb in results["peak_rss_mb"].items():
        target = (f"  (target < {CYP_RSS_TARGET_MB}: {verdict(mb < CYP_RSS_TARGET_MB)})"
                  if name == "cyp" else "")
        print(f"  {name:<10} {mb:8.1f}{target}")


def with_ratios(results):
    """The numbers plus the derived ratios, for --json."""
    cyp = results["registries"]["cyp"]
    ref = results["registries"].get("reference", {})
    return {
        **results,
        "ratio_cyp_over_reference": {key: ratio(cyp[key], ref.get(key)) for key in cyp},
        "ratio_cyp_push_over_gridfs_write": ratio(cyp["http_push"], results["gridfs"]["write"]),
        "ratio_cyp_pull_over_gridfs_read": ratio(cyp["http_pull"], results["gridfs"]["read"]),
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024,
                        help="test layer size in MiB (default 1024)")
    parser.add_argument("--workdir",
                        help="directory to make the run's temp dir in (default: system temp);"
                             " the run's dir is removed at the end")
    parser.add_argument("--skip-skopeo", action="store_true", help="no skopeo push/pull")
    parser.add_argument("--skip-reference", action="store_true",
                        help="do not start or measure the reference registry")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers to FILE as JSON")
    args = parser.parse_args(argv)
    if args.size_mib < 1:
        parser.error("--size-mib must be at least 1")
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
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(with_ratios(results), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
