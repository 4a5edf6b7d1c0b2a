"""Metrics read from MongoDB when /metrics is scraped: quota usage per project, import tasks by status and the
webhook delivery queue.

They describe the whole cluster, so no process counts them: the process answering a scrape reads them once
(services/metrics.py scrape_registry adds this collector beside every worker's files, never summed over
workers). A reading is reused for ``cache_seconds``, so many scrapers (or many nodes' scrapes) cost the
database a few queries per period. Quota series are read only with ``project_series`` (metrics_project_series):
/metrics may be open to anyone, and a project's existence, usage and quota are its members' business. They
carry one label value per project, its id (never its name): their number grows with the projects, which
operators create (not clients at will).
"""
import logging
import threading
import time

from prometheus_client.core import GaugeMetricFamily
from pymongo.errors import PyMongoError

from storage.accounting import Accounting
from storage.clock import utcnow
from storage.deliveries import PENDING, SENDING, SyncDeliveries
from storage.import_tasks import SyncImportTasks

log = logging.getLogger("cyp.metrics")


def _quota_families(projects):
    used = GaugeMetricFamily("cyp_project_storage_used_bytes", "Bytes a project's blobs and manifests count against "
                             "its quota", labels=["project"])
    limit = GaugeMetricFamily("cyp_project_storage_quota_bytes", "A project's storage quota in bytes (none for an "
                              "unlimited project)", labels=["project"])
    for project in projects:
        used.add_metric([project["_id"]], project.get("storage_used", 0))
        if project.get("storage_quota", -1) >= 0:
            limit.add_metric([project["_id"]], project["storage_quota"])
    return [used, limit]


def _import_family(counts):
    tasks = GaugeMetricFamily("cyp_import_tasks", "Image import tasks by status", labels=["status"])
    for status, count in counts.items():
        tasks.add_metric([status], count)
    return tasks


def _delivery_families(backlog, now):
    queued = GaugeMetricFamily("cyp_webhook_deliveries_queued", "Webhook deliveries not ended: waiting for an "
                               "attempt (pending) or being sent (sending)", labels=["status"])
    for status in (PENDING, SENDING):
        queued.add_metric([status], backlog.get(status, (0, None))[0])
    oldest = min((created for _, created in backlog.values()), default=None)
    age = GaugeMetricFamily("cyp_webhook_delivery_queue_age_seconds", "Age of the oldest delivery not ended "
                            "(0 when none)", value=(now - oldest).total_seconds() if oldest else 0)
    return [queued, age]


class ClusterCollector:
    """A prometheus-client collector; ``collect`` runs on the scrape's executor thread (synchronous driver)."""

    def __init__(self, sync_db, cache_seconds, project_series=False):
        self.project_series = project_series
        self.accounting = Accounting(sync_db)
        self.import_tasks = SyncImportTasks(sync_db)
        self.deliveries = SyncDeliveries(sync_db)
        self.cache_seconds = cache_seconds
        self.lock = threading.Lock()  # concurrent scrapes wait for one reading instead of each making one
        self.families, self.read_at = None, 0.0

    def collect(self):
        with self.lock:
            if self.families is None or time.monotonic() - self.read_at >= self.cache_seconds:
                self.families, self.read_at = self._read(), time.monotonic()
            return list(self.families)

    def _read(self):
        try:
            quotas = _quota_families(self.accounting.usages()) if self.project_series else []
            return [*quotas, _import_family(self.import_tasks.count_by_status()),
                    *_delivery_families(self.deliveries.backlog(), utcnow())]
        except PyMongoError as exc:  # the rest of the scrape still answers; /health says the database is down
            log.warning("metrics from the database left out of this scrape: %r", exc)
            return []
