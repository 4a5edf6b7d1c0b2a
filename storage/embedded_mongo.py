"""The embedded default database: SecantusDB run as a child process.

SecantusDB is GPL-2.0, so it is only ever run as a separate program, never imported.
"""
import asyncio
import logging
import os
import shutil
import socket
import sys
from pathlib import Path

import pymongo

log = logging.getLogger("cyp.embedded_mongo")

READY_TIMEOUT_SECONDS = 60


def _free_port(host):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _executable():
    beside_python = Path(sys.executable).with_name("secantusd-py")
    found = str(beside_python) if beside_python.exists() else shutil.which("secantusd-py")
    if not found:
        raise RuntimeError("secantusd-py not found: install the 'secantusdb' package or set CYP_MONGO_URI")
    return found


class EmbeddedMongo:
    """Starts SecantusDB with its data under ``<data_dir>/mongo`` and stops it on exit."""

    def __init__(self, data_dir, host="127.0.0.1"):
        self.storage_path = Path(data_dir) / "mongo"
        self.host = host
        self.port = None
        self.process = None

    @property
    def uri(self):
        return f"mongodb://{self.host}:{self.port}/"

    async def start(self):
        self.storage_path.mkdir(parents=True, exist_ok=True)
        self.port = _free_port(self.host)
        log_file = open(self.storage_path.parent / "mongo.log", "ab")
        self.process = await asyncio.create_subprocess_exec(
            _executable(), "--host", self.host, "--port", str(self.port),
            "--storage-path", str(self.storage_path), "--log-level", "WARNING",
            stdout=log_file, stderr=log_file, start_new_session=True,
        )
        log_file.close()
        await asyncio.get_running_loop().run_in_executor(None, self._wait_ready)
        log.info("embedded SecantusDB ready", extra={"uri": self.uri, "pid": self.process.pid})

    def _wait_ready(self):
        client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=READY_TIMEOUT_SECONDS * 1000)
        try:
            client.admin.command("ping")
        finally:
            client.close()

    async def stop(self):
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=30)
        except asyncio.TimeoutError:
            log.warning("embedded SecantusDB did not stop in 30 s; killing it")
            os.killpg(self.process.pid, 9)
            await self.process.wait()
