"""Real servers for the tests: SecantusDB and CYP-Registry, each its own process on a free loopback port."""
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymongo
import requests

from storage.embedded_mongo import OPLOG_OPTIONS, embedded_uri

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _secantusd():
    beside = Path(sys.executable).with_name("secantusd-py")
    return str(beside) if beside.exists() else "secantusd-py"


def stop_process(process, timeout=30):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class MongoServer:
    def __init__(self, storage_path, cache_size=None):
        self.storage_path = Path(storage_path)
        self.cache_options = ("--cache-size", cache_size) if cache_size else ()
        self.port = free_port()
        self.uri = embedded_uri("127.0.0.1", self.port)
        self.process = None

    def start(self):
        self.storage_path.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [_secantusd(), "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", str(self.storage_path), "--log-level", "WARNING", *OPLOG_OPTIONS,
             *self.cache_options],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"))
        if not self.answers(30):
            raise RuntimeError(f"SecantusDB did not answer on {self.uri}: {self.log_path.read_text()[-2000:]}")
        return self

    @property
    def log_path(self):
        return self.storage_path.parent / f"mongo-{self.port}.log"

    def answers(self, seconds):
        """Whether a ping is answered within seconds."""
        client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=seconds * 1000,
                                     socketTimeoutMS=seconds * 1000)
        try:
            client.admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False
        finally:
            client.close()

    def stop(self):
        stop_process(self.process)

    def kill(self):
        """SIGKILL: no chance to flush anything; ``start()`` brings it back on the same port and files."""
        self.process.kill()
        self.process.wait()


class RegistryServer:
    """``python server.py`` against a given MongoDB, with a known administrator password."""

    def __init__(self, mongo_uri, data_dir, db_name=None, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self.data_dir = Path(data_dir)
        self.admin_password = secrets.token_urlsafe(12)
        self.db_name = db_name or f"cyp_test_{secrets.token_hex(4)}"
        self.env = {**os.environ, "CYP_MONGO_URI": mongo_uri, "CYP_MONGO_DB": self.db_name,
                    "CYP_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password,
                    # One process per server unless a test asks for workers: the suite starts many servers.
                    "CYP_WORKERS": "1", **(env or {})}
        self.process = None
        self.log_path = self.data_dir / f"server-{self.port}.log"

    def start(self, timeout=60):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            cwd=ROOT, env=self.env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log_path.read_text()}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or busy starting
                pass
            time.sleep(0.2)
        self.stop()  # a test that gets no server must not leave one running
        raise RuntimeError(f"server did not become healthy in {timeout} s: {self.log_path.read_text()[-2000:]}")

    def stop(self):
        stop_process(self.process)

    def log_text(self):
        return self.log_path.read_text()


@contextlib.contextmanager
def started_server(mongo, directory, env=None, **options):
    """A RegistryServer on ``mongo`` (a MongoServer) with its data in ``directory``, stopped afterwards.
    ``options`` are RegistryServer's others (``db_name``)."""
    server = RegistryServer(mongo.uri, directory, env=env, **options).start()
    try:
        yield server
    finally:
        server.stop()
