"""Prometheus metrics of one process (prometheus-client), and the registry a scrape reads.

With workers (runtime/supervisor.py), the supervisor empties ``<data-dir>/metrics`` at start and starts
each worker with ``PROMETHEUS_MULTIPROC_DIR`` pointing there, so prometheus-client (which reads that
variable when it is imported) keeps every worker's values in files of that directory, and a scrape
answered by any worker adds them all up. A process started without it keeps its values in memory.
Series read from MongoDB at scrape time (services/cluster_metrics.py) are the same whichever process
reads them: the process answering a scrape adds them once, beside what the processes counted.
"""
import asyncio
import logging
import os
import shutil
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from pymongo import monitoring

log = logging.getLogger("cyp.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Uploads of large layers take minutes: buckets beyond prometheus-client's 10 s.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))
# Database commands and blob store calls: most take well under a millisecond to tens of milliseconds.
STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))
# How often each process writes down its actors' inbox sizes (a scrape may be answered by another worker).
MAILBOX_SAMPLE_SECONDS = 1

HTTP_REQUESTS = Counter("cyp_http_requests", "HTTP requests answered",
                        ["api", "route", "method", "status"])
HTTP_REQUEST_DURATION = Histogram("cyp_http_request_duration_seconds", "Time from request start to the answer's end",
                                  ["api", "route", "method"], buckets=DURATION_BUCKETS)
HTTP_REQUEST_BYTES = Counter("cyp_http_request_bytes", "Request body bytes read", ["api"])
HTTP_RESPONSE_BYTES = Counter("cyp_http_response_bytes", "Response body bytes sent (their Content-Length)", ["api"])
UPLOADS_IN_PROGRESS = Gauge("cyp_uploads_in_progress", "Requests streaming a blob upload body now",
                            multiprocess_mode="livesum")
WEBHOOK_DELIVERIES = Counter("cyp_webhook_deliveries", "Webhook delivery attempts by outcome", ["outcome"])
IMPORT_TASKS_FINISHED = Counter("cyp_import_tasks_finished", "Image imports ended, by final status", ["status"])
RATE_LIMITED = Counter("cyp_rate_limited_requests", "Requests refused by the rate limits, by API (api, v2, token) "
                       "and by what the caller was counted as (user, address)", ["api", "caller"])
AUDIT_RECORDS_DROPPED = Counter("cyp_audit_records_dropped", "Audit records dropped unwritten: more were queued "
                                "than the writer keeps while the database fails")
GC_RUNS = Counter("cyp_gc_runs", "Garbage collections completed")
GC_FREED_BYTES = Counter("cyp_gc_freed_bytes", "Bytes of blobs garbage collection deleted")
ACTOR_MAILBOX = Gauge("cyp_actor_mailbox_messages", "Messages waiting in actors' inboxes, by kind of actor",
                      ["actor"], multiprocess_mode="livesum")
DATABASE_COMMAND_DURATION = Histogram("cyp_database_command_duration_seconds",
                                      "MongoDB commands from sending to the reply, both drivers, by command",
                                      ["command"], buckets=STORAGE_BUCKETS)
BLOB_STORE_DURATION = Histogram("cyp_blob_store_duration_seconds",
                                "Blob store calls by backend and operation; a read until its first piece",
                                ["backend", "operation"], buckets=STORAGE_BUCKETS)


class CommandTimer(monitoring.CommandListener):
    """Times every command both MongoDB clients send (the driver measures it; this only records it)."""

    def __init__(self):
        # Each command's series looked up once: ``labels()`` would cost most of the time recording one takes.
        # Shared by the event loop and actor threads: a race at worst looks the same series up twice.
        self.series = {}

    def started(self, event):
        pass

    def succeeded(self, event):
        series = self.series.get(event.command_name)
        if series is None:
            series = self.series[event.command_name] = DATABASE_COMMAND_DURATION.labels(event.command_name)
        series.observe(event.duration_micros / 1e6)

    failed = succeeded


async def sample_mailboxes_forever(actors):
    """Record ``{kind: group}``'s inbox sizes (each group answers ``mailbox_depth()``) every MAILBOX_SAMPLE_SECONDS."""
    while True:
        try:
            for kind, group in actors.items():
                ACTOR_MAILBOX.labels(kind).set(group.mailbox_depth())
        except Exception:  # one failed reading must not end the sampling for good
            log.exception("actor mailboxes not sampled this time")
        await asyncio.sleep(MAILBOX_SAMPLE_SECONDS)


def multiprocess_directory(data_dir):
    """``<data-dir>/metrics``, emptied: what workers of an earlier run counted is not carried over."""
    path = Path(data_dir).resolve() / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return str(path)


def scrape_registry(cluster):
    """What /metrics reads: every worker's files in multiprocess mode (this process's metrics otherwise), and
    once the ``cluster`` collector's series, which no process writes to those files."""
    registry = CollectorRegistry()
    path = os.environ.get(MULTIPROCESS_ENV)
    if path:
        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry.register(REGISTRY)
    registry.register(cluster)
    return registry


def worker_ended(pid, path):
    """Forget a dead worker's live gauges (its counters stay: totals never go down)."""
    multiprocess.mark_process_dead(pid, path)
