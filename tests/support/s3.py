"""A real S3-compatible server for the tests: moto_server in its own process on a free loopback port."""
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.processes import free_port, stop_process

# moto accepts any credentials; fixed ones keep every client (and presigned URLs) consistent.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing-secret"
REGION = "us-east-1"


def _moto_server():
    beside = Path(sys.executable).with_name("moto_server")
    return str(beside) if beside.exists() else "moto_server"


class MotoServer:
    def __init__(self, log_dir):
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_dir) / f"moto-{self.port}.log"
        self.process = None

    def start(self, timeout=30):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([_moto_server(), "-H", "127.0.0.1", "-p", str(self.port)],
                                            stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}: {self.log_path.read_text()}")
            try:
                requests.get(self.endpoint_url, timeout=5)
                return self
            except requests.RequestException:  # not listening yet, or still loading
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not start")

    def stop(self):
        stop_process(self.process)

    def store_settings(self, bucket):
        """Keyword arguments of S3BlobStore for a bucket on this server."""
        return {"bucket": bucket, "region": REGION, "endpoint_url": self.endpoint_url,
                "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY}

    def registry_env(self, bucket, redirect=False):
        """The CYP_* settings of a registry server storing its blobs in ``bucket`` here."""
        return {"CYP_STORAGE_BACKEND": "s3", "CYP_S3_ENDPOINT_URL": self.endpoint_url, "CYP_S3_BUCKET": bucket,
                "CYP_S3_REGION": REGION, "CYP_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "CYP_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY, "CYP_S3_REDIRECT": "true" if redirect else "false"}
