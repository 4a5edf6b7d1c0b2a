"""The embedded default database: SecantusDB run as a child process, never outliving its server.

SecantusDB is GPL-2.0, so it is only ever run as a separate program, never imported.

The process that runs it holds ``<data-dir>/cyp.lock`` for its whole life, and records in it its
pid and the database's address. A second server on the same data directory fails at once naming
the holder; a command (recount, user …) run beside a live server uses the recorded address instead
of starting a second database on the same files.
"""
import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

log = logging.getLogger("cyp.embedded_mongo")

READY_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
# Restarts after an unexpected exit: waits of 0.5, 1, 2, 4 and 8 s before giving up.
RESTART_ATTEMPTS = 5
RESTART_FIRST_WAIT_SECONDS = 0.5
LOG_TAIL_LINES = 15
PR_SET_PDEATHSIG = 1
# The registry reads no change stream, yet SecantusDB keeps every write in its oplog for an hour (up to
# 100 000 entries): a second copy on disk of each 1 MiB GridFS chunk pushed. A short oplog bounds that
# copy to about a thousand entries (it prunes every 1 000 writes).
OPLOG_OPTIONS = ("--oplog-retention-seconds", "60", "--oplog-max-entries", "100")
# SecantusDB 0.7.0b3 keeps a record of every retryable write for 30 min and scans them all on each write,
# sorting them past 10 000: one journaled update at a time went from 1.1 ms to 6.3 ms after 10 000 writes,
# against a flat 0.9 ms without. A retry rides over a failover, which one embedded member never has (and its
# record does not survive a restart of the database); writes are acknowledged as they always were.
URI_OPTIONS = "retryWrites=false"


def embedded_uri(host, port):
    """The address a SecantusDB run by this project is used at (the embedded one, the cluster runner's, the
    tests' and the benchmarks')."""
    return f"mongodb://{host}:{port}/?{URI_OPTIONS}"


class EmbeddedMongoError(RuntimeError):
    """The embedded database cannot be started or brought back; the message says why in one line or a few."""


class DataDirInUse(EmbeddedMongoError):
    pass


def _free_port(host):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _executable():
    beside_python = Path(sys.executable).with_name("secantusd-py")
    found = str(beside_python) if beside_python.exists() else shutil.which("secantusd-py")
    if not found:
        raise EmbeddedMongoError("secantusd-py not found: install the 'secantusdb' package or set CYP_MONGO_URI")
    return found


def die_with_parent(sig=signal.SIGTERM):
    """In the child, before exec: the kernel sends ``sig`` when the process that started it dies, however
    it dies (kill -9 included), so the child never outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def database_dies_with_parent():
    """The embedded database is killed outright when its server dies without stopping it: on a loaded machine
    (in CI) SecantusDB's graceful close outlasted the next start, which found its files still held, and a
    test's 10 s wait for it. What was answered is already in its journal (``storage.mongo.JOURNAL_MARK``); a
    clean stop still asks it to close (``EmbeddedMongo.stop``)."""
    die_with_parent(signal.SIGKILL)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DataDirLock:
    """An exclusive flock on ``<data-dir>/cyp.lock``, held while the process lives."""

    def __init__(self, data_dir):
        self.path = Path(data_dir) / "cyp.lock"
        self.file = None

    def holder(self):
        """What the live holder recorded (``pid``, ``mongo_uri``, ``log``), or None when nobody holds it."""
        try:
            with open(self.path) as file:
                try:
                    fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return self._record() or {"pid": None}
                fcntl.flock(file, fcntl.LOCK_UN)
        except FileNotFoundError:
            return None
        return None

    def _record(self):
        try:
            record = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def acquire(self):
        """Take the lock or raise DataDirInUse naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            holder = self._record()
            raise DataDirInUse(
                f"data directory {self.path.parent} is in use by process {holder.get('pid', 'unknown')} "
                f"(its database log: {holder.get('log', self.path.parent / 'mongo.log')})") from None
        self.file = file
        self.write(pid=os.getpid())

    def write(self, **record):
        merged = {**self._record_of_file(), **record}
        self.file.seek(0)
        self.file.truncate()
        self.file.write(json.dumps(merged))
        self.file.flush()

    def _record_of_file(self):
        self.file.seek(0)
        try:
            record = json.loads(self.file.read() or "{}")
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    def release(self):
        if self.file is not None:
            self.file.seek(0)
            self.file.truncate()
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None


class EmbeddedMongo:
    """Runs SecantusDB with its data under ``<data_dir>/mongo``, restarts it if it dies, stops it on exit."""

    def __init__(self, data_dir, lock, host="127.0.0.1"):
        self.data_dir = Path(data_dir)
        self.lock = lock
        self.storage_path = self.data_dir / "mongo"
        self.log_path = self.data_dir / "mongo.log"
        self.host = host
        self.port = None
        self.process = None
        self.stopping = False
        # Set when the database died and could not be brought back.
        self.failed = asyncio.Event()
        self._watch = None

    @property
    def uri(self):
        return embedded_uri(self.host, self.port)

    async def start(self):
        self.storage_path.mkdir(parents=True, exist_ok=True)
        self.port = _free_port(self.host)
        await self._launch()
        self._watch = asyncio.create_task(self._watch_process())
        log.info("embedded SecantusDB ready", extra={"uri": self.uri, "pid": self.process.pid})

    async def _launch(self):
        # An explicit, empty configuration: no secantusd.toml of the machine or the user applies.
        config = self.data_dir / "secantusd.toml"
        config.touch()
        with open(self.log_path, "ab") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                _executable(), "--config", str(config), "--host", self.host, "--port", str(self.port),
                "--storage-path", str(self.storage_path), "--log-level", "WARNING", *OPLOG_OPTIONS,
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                # Its own session keeps a terminal's Ctrl-C from reaching it before the server stops it cleanly.
                start_new_session=True, preexec_fn=database_dies_with_parent)
        await self._wait_ready()
        self.lock.write(mongo_uri=self.uri, mongo_pid=self.process.pid, log=str(self.log_path))

    async def _wait_ready(self):
        """Poll until it answers; a child that exits meanwhile is reported at once with its log."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_SECONDS
        client = pymongo.AsyncMongoClient(self.uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250)
        try:
            while True:
                if self.process.returncode is not None:
                    raise EmbeddedMongoError(f"the embedded database exited with status {self.process.returncode} "
                                             f"while starting; the end of {self.log_path}:\n{self.log_tail()}")
                try:
                    await client.admin.command("ping")
                    return
                except PyMongoError:
                    pass
                if loop.time() > deadline:
                    raise EmbeddedMongoError(f"the embedded database did not answer within {READY_TIMEOUT_SECONDS} s; "
                                             f"see {self.log_path}")
                await asyncio.sleep(0.1)
        finally:
            await client.close()

    def log_tail(self, lines=LOG_TAIL_LINES):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def _watch_process(self):
        """Bring the database back (same port, so every client reconnects) if it dies under the server."""
        while True:
            code = await self.process.wait()
            if self.stopping:
                return
            log.error("embedded SecantusDB exited unexpectedly; restarting it",
                      extra={"status": code, "log_tail": self.log_tail()})
            if not await self._restart():
                self.failed.set()
                return

    async def _restart(self):
        wait = RESTART_FIRST_WAIT_SECONDS
        for attempt in range(1, RESTART_ATTEMPTS + 1):
            await asyncio.sleep(wait)
            try:
                await self._launch()
            except (EmbeddedMongoError, OSError) as exc:
                log.error("embedded SecantusDB restart failed", extra={"attempt": attempt, "error": str(exc)})
                wait *= 2
                continue
            log.info("embedded SecantusDB restarted", extra={"attempt": attempt, "pid": self.process.pid})
            return True
        log.error("embedded SecantusDB could not be restarted; giving up", extra={"attempts": RESTART_ATTEMPTS})
        return False

    async def stop(self):
        self.stopping = True
        if self._watch is not None:
            self._watch.cancel()
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=STOP_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            log.warning("embedded SecantusDB did not stop in 30 s; killing it")
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


@contextlib.asynccontextmanager
async def embedded_or_running(data_dir, for_command=False):
    """The URI of the data directory's database, and whether this process started it.

    A server takes the data directory (DataDirInUse when another process holds it) and starts the
    database. A command beside a live server uses the address that server recorded; with none
    running it takes the directory and starts the database itself, like a server.
    """
    lock = DataDirLock(data_dir)
    if for_command:
        holder = lock.holder()
        if holder is not None:
            if holder.get("mongo_uri") and holder.get("pid") and _pid_alive(holder["pid"]):
                yield holder["mongo_uri"], None
                return
            raise DataDirInUse(f"data directory {data_dir} is held by process {holder.get('pid', 'unknown')}, "
                               "whose database is not running yet; try again in a moment")
    lock.acquire()
    embedded = EmbeddedMongo(data_dir, lock)
    try:
        await embedded.start()
        yield embedded.uri, embedded
    finally:
        await embedded.stop()
        lock.release()
