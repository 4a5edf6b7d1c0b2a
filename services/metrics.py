"""Prometheus metrics of one process (prometheus-client), and the registry a scrape reads.

With workers (runtime/supervisor.py), the supervisor empties ``<data-dir>/metrics`` at start and starts
each worker with ``PROMETHEUS_MULTIPROC_DIR`` pointing there, so prometheus-client (which reads that
variable when it is imported) keeps every worker's values in files of that directory, and a scrape
answered by any worker adds them all up. A process started without it keeps its values in memory.
"""
import os
import shutil
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Uploads of large layers take minutes: buckets beyond prometheus-client's 10 s.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))

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
GC_RUNS = Counter("cyp_gc_runs", "Garbage collections completed")
GC_FREED_BYTES = Counter("cyp_gc_freed_bytes", "Bytes of blobs garbage collection deleted")


def multiprocess_directory(data_dir):
    """``<data-dir>/metrics``, emptied: what workers of an earlier run counted is not carried over."""
    path = Path(data_dir).resolve() / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return str(path)


def scrape_registry():
    """What /metrics reads: every worker's files in multiprocess mode, this process's metrics otherwise."""
    path = os.environ.get(MULTIPROCESS_ENV)
    if not path:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry


def worker_ended(pid, path):
    """Forget a dead worker's live gauges (its counters stay: totals never go down)."""
    multiprocess.mark_process_dead(pid, path)
