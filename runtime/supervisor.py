"""Several worker processes serving one port (``workers`` > 1).

The parent binds the listening socket (so a second instance still fails to bind: no SO_REUSEPORT),
owns the embedded database and the data directory, prepares the database (migrations, indexes, the
signing key, the first administrator), then starts the workers: fresh interpreters that inherit
the socket and read their settings from a pipe. Each worker is a node of its own (its actors, its
caches); everything shared lives in MongoDB. The parent restarts a worker that dies, forwards
SIGTERM and SIGINT to all of them, and if the parent itself is killed the kernel stops every worker
(and the database) with it. With ``metrics_enabled`` it empties ``<data-dir>/metrics`` before the
first worker starts, starts each with ``PROMETHEUS_MULTIPROC_DIR`` set to it (services/metrics.py), and
drops the live gauges of a worker that died.
"""
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from runtime.backend import open_backend
from runtime.serve import bind, prepare_state, wait_for_stop
from services.metrics import MULTIPROCESS_ENV, multiprocess_directory, worker_ended
from storage.embedded_mongo import die_with_parent

log = logging.getLogger("cyp.supervisor")

SERVER = Path(__file__).resolve().parent.parent / "server.py"
RESTART_FIRST_WAIT_SECONDS = 1
RESTART_MAX_WAIT_SECONDS = 30
# A worker that ran this long before dying is restarted at once again.
STABLE_SECONDS = 60
STOP_MARGIN_SECONDS = 10


def worker_count(config):
    return config["workers"] or os.cpu_count() or 1


class Worker:
    """One worker process, restarted with backoff whenever it ends while the supervisor runs."""

    def __init__(self, index, config, sockets, hint, metrics_dir=None):
        self.index = index
        self.config = config
        self.sockets = sockets
        self.hint = hint
        self.metrics_dir = metrics_dir
        self.process = None
        self.stopping = False
        self.wait = RESTART_FIRST_WAIT_SECONDS

    async def _spawn(self):
        read_end, write_end = os.pipe()
        fds = [sock.fileno() for sock in self.sockets]
        with os.fdopen(write_end, "w") as pipe:
            pipe.write(json.dumps({"config": dict(self.config), "hint": self.hint, "index": self.index}))
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, str(SERVER), "serve", "--worker-pipe", str(read_end),
                "--listen-fds", ",".join(map(str, fds)), pass_fds=(read_end, *fds), stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=die_with_parent, env=self._environment())
        finally:
            os.close(read_end)
        log.info("worker started", extra={"worker": self.index, "pid": self.process.pid})

    def _environment(self):
        # Set before the worker's interpreter starts, so prometheus-client sees it when first imported.
        return {**os.environ, MULTIPROCESS_ENV: self.metrics_dir} if self.metrics_dir else None

    async def run(self):
        """Keep the worker running until ``stop()``."""
        loop = asyncio.get_running_loop()
        while not self.stopping:
            await self._spawn()
            started = loop.time()
            code = await self.process.wait()
            if self.metrics_dir:
                worker_ended(self.process.pid, self.metrics_dir)
            if self.stopping:
                return
            if loop.time() - started > STABLE_SECONDS:
                self.wait = RESTART_FIRST_WAIT_SECONDS
            log.error("worker exited; restarting it", extra={"worker": self.index, "status": code,
                                                            "restart_in_s": self.wait})
            await asyncio.sleep(self.wait)
            self.wait = min(self.wait * 2, RESTART_MAX_WAIT_SECONDS)

    def signal(self, sig):
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def stop(self, grace):
        self.stopping = True
        self.signal(signal.SIGTERM)
        if self.process is None:
            return
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except asyncio.TimeoutError:
            log.warning("worker did not stop in time; killing it", extra={"worker": self.index})
            self.signal(signal.SIGKILL)
            await self.process.wait()


async def supervise(config):
    sockets = bind(config)
    async with open_backend(config) as backend:
        hint = await prepare_state(backend.collections, config)
        worker_config = {**config, "mongo_uri": config["mongo_uri"] or backend.embedded.uri}
        metrics_dir = multiprocess_directory(config["data_dir"]) if config["metrics_enabled"] else None
        workers = [Worker(index, worker_config, sockets, hint, metrics_dir) for index in range(worker_count(config))]
        running = [asyncio.create_task(worker.run()) for worker in workers]
        log.info("CYP-Registry listening on http://%s:%d", config["host"], config["port"],
                 extra={"workers": len(workers)})
        status = await wait_for_stop(backend.embedded)
        log.info("stopping the workers")
        # The port closes once no process holds it: the parent lets go first, the workers as they stop.
        for sock in sockets:
            sock.close()
        await asyncio.gather(*(worker.stop(config["shutdown_grace_seconds"] + STOP_MARGIN_SECONDS)
                               for worker in workers))
        for task in running:
            task.cancel()
    log.info("stopped")
    return status

