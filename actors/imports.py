"""Import actors: each is one import slot of this node (``import_max_running_per_node`` of them).

An idle actor claims the oldest claimable task (pending, or running under a lease that ran out)
whose project is below its limit, runs the pipeline on the server's event loop, and heartbeats
the task's lease from its own thread every third of the lease. Through the heartbeat it learns of a
cancel request (the run is stopped and its data removed, within a heartbeat) or of a lost lease
(another node took the task; the run is stopped and the task left alone). When the node stops,
running tasks are handed back, so another node resumes them at once.
"""
import asyncio
import concurrent.futures
import contextlib
import logging
import threading

import pykka

from actors.bridge import inbox_depth
from storage.leases import holder_name

log = logging.getLogger("cyp.imports")

# Idle actors look for work this often: a task whose node died is taken over within half a second of its
# lease running out.
POLL_SECONDS = 0.5
CANDIDATES_PER_POLL = 20
# How long an actor waits for a stopped run to unwind before it moves on.
STOP_WAIT_SECONDS = 30


class PipelineRunner:
    """Runs pipelines on the event loop for the actors' threads, and stops them on request."""

    def __init__(self, pipeline, loop):
        self.pipeline = pipeline
        self.loop = loop
        self.running = {}

    def start(self, task):
        return asyncio.run_coroutine_threadsafe(self._run(task), self.loop)

    async def _run(self, task):
        self.running[task["_id"]] = asyncio.current_task()
        try:
            return await self.pipeline.run(task)
        finally:
            self.running.pop(task["_id"], None)

    def stop(self, task):
        """Cancel the run and wait (on the actor's thread) until it has unwound."""
        asyncio.run_coroutine_threadsafe(self._stop(task["_id"]), self.loop).result(STOP_WAIT_SECONDS)

    async def _stop(self, task_id):
        running = self.running.get(task_id)
        if running is not None:
            running.cancel()
            await asyncio.wait([running])

    def call(self, coroutine):
        """Run a coroutine on the loop and wait for it here."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(STOP_WAIT_SECONDS)


class ImportActor(pykka.ThreadingActor):
    """``idle`` is set while the actor waits for work; the manager reads it without a message. ``wake_another``
    asks the next idle actor to look, once this one took a task (more may be waiting)."""

    def __init__(self, tasks, runner, node, config, stopping, idle, wake_another):
        super().__init__()
        self.wake_another = wake_another
        self.tasks = tasks
        self.runner = runner
        self.node = node
        self.lease = config["import_lease_seconds"]
        self.per_project = config["import_max_running_per_project"]
        self.stopping = stopping
        self.idle = idle

    def on_receive(self, message):
        if message != "poll" or self.stopping.is_set():
            return
        try:
            while not self.stopping.is_set() and (task := self._claim()) is not None:
                self.wake_another()
                self._hold(task)
        except Exception:
            log.exception("import actor failed")
        finally:
            self.idle.set()

    def _claim(self):
        for candidate in self.tasks.candidates(CANDIDATES_PER_POLL):
            if self.tasks.running_in_project(candidate["project_id"]) >= self.per_project:
                continue
            task = self.tasks.claim(candidate["_id"], self.node, self.lease)
            if task is not None:
                log.info("import claimed", extra={"task_id": task["_id"], "attempt": task["attempts"]})
                return task
        return None

    def _hold(self, task):
        """Heartbeat the lease until the run ends, acting on cancel requests, a lost lease, or the node stopping."""
        future = self.runner.start(task)
        while True:
            try:
                future.result(timeout=self.lease / 3)
                return
            except concurrent.futures.TimeoutError:
                pass
            except (concurrent.futures.CancelledError, Exception):
                return
            current = self.tasks.heartbeat(task, self.lease)
            if current is None:
                log.warning("import lease lost; another node holds the task", extra={"task_id": task["_id"]})
                self.runner.stop(task)
                return
            if current.get("cancel_requested"):
                self.runner.stop(task)
                self.runner.call(self.runner.pipeline.cancelled(task))
                log.info("import cancelled", extra={"task_id": task["_id"]})
                return
            if self.stopping.is_set():
                self.runner.stop(task)
                self.tasks.release(task)
                log.info("import handed back: this node is stopping", extra={"task_id": task["_id"]})
                return


class ImportActors:
    """This node's import actors and the ticker that asks an idle one to look for work."""

    def __init__(self, tasks, pipeline, loop, config):
        self.node = holder_name()
        self.stopping = threading.Event()
        runner = PipelineRunner(pipeline, loop)
        self.idle = [threading.Event() for _ in range(config["import_max_running_per_node"])]
        for flag in self.idle:
            flag.set()
        self.actors = [ImportActor.start(tasks, runner, self.node, config, self.stopping, flag, self.wake)
                       for flag in self.idle]
        self._ticker = threading.Thread(target=self._tick, name="import-ticker", daemon=True)
        self._ticker.start()

    def wake(self):
        """Ask one idle actor to look for work now (a task was just created here, or it is time to look again); one
        that takes a task asks the next. Every idle actor would run the same queries (they were most of the
        database's queries beside a manifest PUT load). Never blocks."""
        for ref, idle in zip(self.actors, self.idle):
            if idle.is_set() and ref.is_alive():
                idle.clear()
                ref.tell("poll")
                return

    def mailbox_depth(self):
        return inbox_depth(self.actors)

    def _tick(self):
        while not self.stopping.wait(POLL_SECONDS):
            self.wake()

    def stop(self):
        """Hand running tasks back and stop; called when the node shuts down."""
        self.stopping.set()
        for ref in self.actors:
            if ref.is_alive():
                ref.stop(block=False)
        for ref in self.actors:
            with contextlib.suppress(Exception):
                ref.actor_stopped.wait(STOP_WAIT_SECONDS + 5)
