"""Several nodes on one machine: N servers on one database and one blob store behind nginx.

    ./run.sh cluster start [--nodes 3] [--workers 1] [--backend gridfs|s3|filesystem] [--port 8080] [--dir ./cluster]
    ./run.sh cluster stop [--dir ./cluster]

``start`` brings up SecantusDB (unless ``CYP_MONGO_URI`` names a MongoDB), moto_server for
``--backend s3`` (unless ``CYP_S3_ENDPOINT_URL`` names an S3 service), the nodes (``server.py``
with ``--workers``, each on a free loopback port with a data directory of its own under the
cluster directory, all with the same database, blob store, ``credentials_key`` and administrator
password) and nginx on ``--port`` balancing them round-robin (runtime/balancer.py). It records
every process in ``<dir>/cluster.json`` and returns once the balancer answers ``/health``. ``stop``
stops them in reverse order (SIGTERM, SIGKILL after the grace period). The tests and benchmarks
drive the same ``Cluster`` (tests/support/cluster.py), with their processes tied to theirs.
"""
import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from runtime.balancer import balancer_blocks, nginx_command, nginx_config
from storage.embedded_mongo import OPLOG_OPTIONS, die_with_parent, embedded_uri
from storage.embedded_mongo import _executable as secantusd_executable

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("gridfs", "s3", "filesystem")
STATE_FILE = "cluster.json"
READY_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 40  # above a node's shutdown grace (30 s)
S3_BUCKET = "cyp-registry"
# moto accepts any credentials.
S3_CREDENTIALS = {"CYP_S3_ACCESS_KEY_ID": "cluster", "CYP_S3_SECRET_ACCESS_KEY": "cluster-secret"}


class ClusterError(RuntimeError):
    pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url, status=200, timeout=2):
    """Whether ``url`` answers ``status`` now."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == status
    except urllib.error.HTTPError as exc:
        return exc.code == status
    except (OSError, ValueError):
        return False


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


class Process:
    """A child process with its log file. ``tied``: it dies with this process (tests, benchmarks); otherwise it
    outlives the ``start`` command, in a session of its own, and is found again by pid."""

    def __init__(self, name, argv, log_path, env=None, cwd=None, tied=True):
        self.name, self.argv, self.log_path, self.env, self.cwd, self.tied = name, argv, Path(log_path), env, cwd, tied
        self.popen = None
        self.pid = None

    def start(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=self.env, cwd=self.cwd, start_new_session=True,
                                          preexec_fn=die_with_parent if self.tied else None)
        self.pid = self.popen.pid
        return self

    @property
    def running(self):
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid is not None and _alive(self.pid)

    def signal(self, sig):
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout):
        """Whether it ended within ``timeout`` seconds."""
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.1)
        return not self.running

    def stop(self, timeout=STOP_TIMEOUT_SECONDS):
        self.signal(signal.SIGTERM)
        if not self.wait(timeout):
            self.kill()

    def kill(self):
        self.signal(signal.SIGKILL)
        self.wait(10)

    def wait_until(self, ready, timeout=READY_TIMEOUT_SECONDS):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ClusterError(f"{self.name} exited while starting; the end of {self.log_path}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.1)
        raise ClusterError(f"{self.name} was not ready within {timeout} s; the end of {self.log_path}:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines=20):
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


class Node:
    """One server (a supervisor and its workers when ``workers`` > 1) on its own loopback port."""

    def __init__(self, index, directory, port, env, workers, tied):
        self.index = index
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.data_dir = Path(directory) / f"node{index}"
        self.process = Process(f"node {index}", [sys.executable, str(ROOT / "server.py"), "--host", "127.0.0.1",
                                                 "--port", str(port), "--data-dir", str(self.data_dir),
                                                 "--workers", str(workers)],
                               self.data_dir / "server.log", env=env, cwd=ROOT, tied=tied)

    def start(self):
        self.process.start()
        return self

    def wait_ready(self):
        self.process.wait_until(lambda: answers(f"{self.url}/health"))

    def stop(self):
        self.process.stop()

    def kill(self):
        self.process.kill()

    @property
    def running(self):
        return self.process.running

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"


class Cluster:
    """``nodes`` servers behind nginx on ``port`` (a free one when None), with their files under ``directory``.

    - ``mongo_uri`` / ``mongo_db``: a running MongoDB and the database to use (default: SecantusDB started here,
      database ``cyp_registry``);
    - ``backend``: ``gridfs``, ``s3`` (``s3_endpoint_url`` and ``s3_bucket``, or moto_server started here) or
      ``filesystem`` (``<directory>/blobs``, shared by the nodes);
    - ``public_url``: the nodes' ``public_url``; ``host_header``: what nginx passes as Host (runtime/balancer.py);
    - ``env``: more CYP_* settings for every node;
    - ``tied``: every process dies with this one (tests, benchmarks); the ``start`` command leaves them running.
    """

    def __init__(self, directory, nodes=3, workers=1, backend="gridfs", port=None, mongo_uri=None,
                 mongo_db="cyp_registry", s3_endpoint_url=None, s3_bucket=S3_BUCKET, public_url=None,
                 host_header="$http_host", env=None, tied=True, admin_password=None):
        if backend not in BACKENDS:
            raise ClusterError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
        if nodes < 1:
            raise ClusterError("a cluster has at least one node")
        self.directory = Path(directory).resolve()
        self.node_count, self.workers, self.backend = nodes, workers, backend
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self.mongo_uri, self.mongo_db = mongo_uri, mongo_db
        self.s3_endpoint_url, self.s3_bucket = s3_endpoint_url, s3_bucket
        self.public_url, self.host_header = public_url, host_header
        self.extra_env = dict(env or {})
        self.tied = tied
        self.admin_password = admin_password or secrets.token_urlsafe(12)
        self.credentials_key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.database = self.s3 = self.balancer = None
        self.nodes = []

    # -- start ----------------------------------------------------------------------------------

    def start(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._start_database()
            self._start_s3()
            env = self.node_env()
            self.nodes = [Node(index, self.directory, free_port(), env, self.workers, self.tied)
                          for index in range(self.node_count)]
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                node.wait_ready()
            self._start_balancer()
        except BaseException:
            self.stop()
            raise
        self.save()
        return self

    def _start_database(self):
        if self.mongo_uri:
            return
        port = free_port()
        storage = self.directory / "mongo"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.directory / "secantusd.toml"
        config.touch()  # an explicit, empty configuration: no secantusd.toml of the machine applies
        self.mongo_uri = embedded_uri("127.0.0.1", port)
        self.database = Process("SecantusDB", [secantusd_executable(), "--config", str(config), "--host",
                                               "127.0.0.1", "--port", str(port), "--storage-path", str(storage),
                                               "--log-level", "WARNING", *OPLOG_OPTIONS],
                                self.directory / "mongo.log", tied=self.tied).start()
        self.database.wait_until(lambda: _tcp_answers(port))

    def _start_s3(self):
        if self.backend != "s3" or self.s3_endpoint_url:
            return
        moto = Path(sys.executable).with_name("moto_server")
        if not moto.exists():
            raise ClusterError("--backend s3 needs CYP_S3_ENDPOINT_URL or moto_server "
                               "(.venv/bin/pip install -r requirements-dev.txt)")
        port = free_port()
        self.s3_endpoint_url = f"http://127.0.0.1:{port}"
        self.s3 = Process("moto_server", [str(moto), "-H", "127.0.0.1", "-p", str(port)],
                          self.directory / "moto.log", tied=self.tied).start()
        self.s3.wait_until(lambda: answers(self.s3_endpoint_url + "/"))

    def node_env(self):
        """Every node's environment: the same database, blob store, key and administrator."""
        env = {**os.environ, "CYP_MONGO_URI": self.mongo_uri, "CYP_MONGO_DB": self.mongo_db,
               "CYP_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password, "CYP_CREDENTIALS_KEY": self.credentials_key,
               "CYP_TRUST_PROXY_HEADERS": "true", "CYP_STORAGE_BACKEND": self.backend}
        if self.public_url:
            env["CYP_PUBLIC_URL"] = self.public_url
        if self.backend == "s3":
            env.update({"CYP_S3_ENDPOINT_URL": self.s3_endpoint_url, "CYP_S3_BUCKET": self.s3_bucket,
                        **({} if os.environ.get("CYP_S3_ACCESS_KEY_ID") else S3_CREDENTIALS)})
        elif self.backend == "filesystem":
            env["CYP_FILESYSTEM_ROOT"] = str(self.directory / "blobs")
        env.update(self.extra_env)
        return env

    def _start_balancer(self):
        workdir = self.directory / "nginx"
        (workdir / "temp").mkdir(parents=True, exist_ok=True)
        config_path = workdir / "nginx.conf"
        config_path.write_text(nginx_config(workdir, self._balancer_blocks(), worker_connections=4096))
        self.balancer = Process("nginx", nginx_command(workdir, config_path), workdir / "nginx.log",
                                tied=self.tied).start()
        self.balancer.wait_until(lambda: answers(f"{self.url}/health"))

    def _balancer_blocks(self):
        return balancer_blocks(self.host, [node.host for node in self.nodes], self.host_header)

    # -- one node -------------------------------------------------------------------------------

    def node(self, index):
        return self.nodes[index]

    def restart_node(self, index):
        """Start node ``index`` again (same port, data directory and settings) and wait until it is healthy."""
        node = self.nodes[index]
        node.start().wait_ready()
        self.save()
        return node

    # -- stop -----------------------------------------------------------------------------------

    def stop(self):
        """Stop everything, balancer first, database last."""
        for process in [self.balancer, *(node.process for node in self.nodes), self.s3, self.database]:
            if process is not None:
                process.stop()

    def save(self):
        state = {"url": self.url, "directory": str(self.directory), "backend": self.backend,
                 "workers": self.workers, "mongo_uri": self.mongo_uri, "mongo_db": self.mongo_db,
                 "processes": [{"name": p.name, "pid": p.pid, "log": str(p.log_path)}
                               for p in [self.database, self.s3, *(n.process for n in self.nodes), self.balancer]
                               if p is not None],
                 "nodes": [node.url for node in self.nodes]}
        path = self.directory / STATE_FILE
        path.write_text(json.dumps(state, indent=2) + "\n")

    @staticmethod
    def stop_recorded(directory):
        """Stop the processes a ``start`` command recorded in ``directory`` (balancer first, database last)."""
        path = Path(directory) / STATE_FILE
        if not path.exists():
            raise ClusterError(f"no cluster recorded in {path}")
        state = json.loads(path.read_text())
        stopped = []
        for record in reversed(state["processes"]):
            process = Process(record["name"], [], record["log"], tied=False)
            process.pid = record["pid"]
            if process.running:
                process.stop()
                stopped.append(record["name"])
        path.unlink()
        return stopped


def _tcp_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# -- the command line -----------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(prog="run.sh cluster", description="Several nodes behind nginx on this machine.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = sub.add_parser("start", help="start a database, the nodes and nginx; return once it answers")
    start.add_argument("--nodes", type=int, default=3, help="server processes (default 3)")
    start.add_argument("--workers", type=int, default=1, help="worker processes of each node (default 1)")
    start.add_argument("--backend", choices=BACKENDS, default="gridfs", help="blob store (default gridfs)")
    start.add_argument("--port", type=int, default=8080, help="the balancer's port on 127.0.0.1 (default 8080)")
    stop = sub.add_parser("stop", help="stop what start started")
    for action in (start, stop):
        action.add_argument("--dir", default="cluster", help="the cluster's files (default ./cluster)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.action == "stop":
            stopped = Cluster.stop_recorded(args.dir)
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
            return 0
        if (Path(args.dir) / STATE_FILE).exists():
            raise ClusterError(f"a cluster is recorded in {args.dir}; stop it first (run.sh cluster stop --dir "
                               f"{args.dir})")
        cluster = Cluster(args.dir, nodes=args.nodes, workers=args.workers, backend=args.backend, port=args.port,
                          mongo_uri=os.environ.get("CYP_MONGO_URI"),
                          s3_endpoint_url=os.environ.get("CYP_S3_ENDPOINT_URL"),
                          admin_password=os.environ.get("CYP_BOOTSTRAP_ADMIN_PASSWORD"), tied=False).start()
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    print(f"CYP-Registry cluster on {cluster.url}: {len(cluster.nodes)} nodes "
          f"({', '.join(node.url for node in cluster.nodes)}), {cluster.backend}, database {cluster.mongo_uri}\n"
          f"administrator 'admin', password {cluster.admin_password} (change it after logging in)\n"
          f"files and logs in {cluster.directory}; stop with: ./run.sh cluster stop --dir {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
