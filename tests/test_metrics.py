"""GET /metrics: Prometheus counters of requests (by route template, never by path), bytes, uploads; added up over
every worker of a server; off with metrics_enabled=false."""
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import log_records, running_with_workers, wait_until, workers_of
from tests.support.manifests import OCI_MANIFEST, get_manifest, push_image
from tests.support.processes import RegistryServer

MANIFEST_ROUTE = "/v2/{name}/manifests/{reference}"


def scrape(url):
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return response


def samples(url):
    """``{(sample name, frozenset of labels): value}`` of one scrape."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(scrape(url).text) for sample in family.samples}


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_answer_in_the_prometheus_text_format(registry):
    response = scrape(registry.url)

    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE cyp_http_requests_total counter" in response.text


def test_a_push_moves_the_request_series_under_route_templates_only(registry, admin, repo):
    put_manifest = dict(api="v2", route=MANIFEST_ROUTE, method="PUT")
    before = samples(registry.url)

    image = push_image(admin, repo, "v1")
    assert get_manifest(admin, repo, "v1", accept=OCI_MANIFEST).status_code == 200
    after = samples(registry.url)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cyp_http_requests_total", **put_manifest, status="201") == 1
    assert moved("cyp_http_request_duration_seconds_count", **put_manifest) == 1
    assert moved("cyp_http_request_bytes_total", api="v2") >= sum(image.blobs.values()) + image.size
    assert moved("cyp_http_response_bytes_total", api="v2") >= image.size
    assert value(after, "cyp_uploads_in_progress") == 0
    label_values = {label_value for _, labels in after for _, label_value in labels}
    assert not [label for label in label_values if repo.split("/")[0] in label]


def test_metrics_enabled_false_answers_404(mongo, tmp_path):
    server = RegistryServer(mongo.uri, tmp_path / "registry", env={"CYP_METRICS_ENABLED": "false"}).start()
    try:
        response = requests.get(f"{server.url}/metrics", timeout=10)
    finally:
        server.stop()

    assert response.status_code == 404
    assert "cyp_http" not in response.text


@pytest.fixture
def two_workers(mongo, tmp_path):
    data_dir = tmp_path / "registry"
    stale = data_dir / "metrics" / "counter_999999.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by an earlier run")
    with running_with_workers(RegistryServer(mongo.uri, data_dir, env={"CYP_WORKERS": "2"})) as server:
        yield server


def health_count(url):
    return value(samples(url), "cyp_http_requests_total", api="other", route="/health", method="GET", status="200")


def test_every_workers_requests_add_up_in_one_scrape_and_outlive_a_dead_worker(two_workers):
    url = two_workers.url
    before = health_count(url)
    logged = len(log_records(two_workers.log_text()))
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: requests.get(f"{url}/health", timeout=10).status_code, range(20)))
    counts = {health_count(url) for _ in range(10)}
    serving = {record["pid"] for record in log_records(two_workers.log_text())[logged:]
               if record.get("logger") == "cyp.access"}

    victim = workers_of(two_workers)[0]
    os.kill(victim, signal.SIGKILL)
    restarted = wait_until(lambda: len(workers_of(two_workers)) == 2 and victim not in workers_of(two_workers),
                           timeout=15)

    assert statuses == [200] * 20
    assert len(serving) == 2  # both workers answered some of those requests or scrapes
    assert counts == {before + 20}
    assert not (two_workers.data_dir / "metrics" / "counter_999999.db").exists()
    assert restarted and health_count(url) == before + 20
