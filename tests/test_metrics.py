"""GET /metrics: Prometheus counters of requests (by route template, never by path), bytes, uploads, database and
blob store latency, actor mailboxes; added up over every worker of a server; series read from the database
(quota usage, import tasks, the webhook queue) added once; off with metrics_enabled=false. Per-project series
(labelled by project id) only with metrics_project_series; with metrics_token a scrape must carry it."""
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pymongo
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from services.cluster_metrics import ClusterCollector
from tests.support.api_client import admin_api_for, ok, unique_name
from tests.support.clients import log_records, running_with_workers, wait_until, workers_of
from services.timed_blobstore import TimedBlobStore
from storage.import_tasks import ACTIVE, FINISHED
from tests.support.manifests import OCI_MANIFEST, get_blob, get_manifest, push_image
from tests.support.processes import RegistryServer, free_port, started_server
from tests.support.registry_client import RegistryClient

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


def total(found, name):
    """The sum of every series of ``name`` (whatever their labels)."""
    return sum(sample for (sample_name, _), sample in found.items() if sample_name == name)


def labelled(found, name, label):
    """``{label value: sample}`` of the series of ``name``."""
    return {dict(labels)[label]: sample for (sample_name, labels), sample in found.items() if sample_name == name}


# Series read from the database at each scrape (no cache), per-project series on, and webhooks that may reach a
# receiver on loopback that is down: a failed first attempt is retried only after five minutes, so its delivery
# stays queued.
FRESH = {"CYP_METRICS_CACHE_SECONDS": "0", "CYP_METRICS_PROJECT_SERIES": "true",
         "CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "CYP_WEBHOOK_RETRY_SCHEDULE": "0,300"}
PROJECT_SERIES = ("cyp_project_storage_used_bytes", "cyp_project_storage_quota_bytes")


@pytest.fixture(scope="module")
def fresh(mongo, tmp_path_factory):
    with started_server(mongo, tmp_path_factory.mktemp("metrics"), env=FRESH) as server:
        yield server


@pytest.fixture
def fresh_api(fresh):
    return admin_api_for(fresh)


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
    with started_server(mongo, tmp_path / "registry", env={"CYP_METRICS_ENABLED": "false"}) as server:
        response = requests.get(f"{server.url}/metrics", timeout=10)

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


def test_a_scrape_shows_mailboxes_latencies_quota_usage_import_tasks_and_the_webhook_queue(fresh, fresh_api):
    project = ok(fresh_api.post("/api/v1/projects", json={"name": unique_name("shown"), "storage_quota": 4096}))

    found = samples(fresh.url)

    assert set(labelled(found, "cyp_actor_mailbox_messages", "actor")) == {"quota", "imports", "deliveries"}
    assert {operation for (name, labels) in found if name == "cyp_blob_store_duration_seconds_count"
            for key, operation in labels if key == "operation"} == set(TimedBlobStore.OPERATIONS)
    assert value(found, "cyp_database_command_duration_seconds_count", command="insert") > 0
    assert value(found, "cyp_project_storage_used_bytes", project=project["id"]) == 0
    assert value(found, "cyp_project_storage_quota_bytes", project=project["id"]) == 4096
    assert labelled(found, "cyp_import_tasks", "status") == dict.fromkeys((*ACTIVE, *FINISHED), 0)  # none here
    assert set(labelled(found, "cyp_webhook_deliveries_queued", "status")) == {"pending", "sending"}


def test_an_anonymous_scrape_with_the_defaults_shows_no_project_series(registry, admin_api):
    project = ok(admin_api.post("/api/v1/projects", json={"name": unique_name("secret"), "is_public": False}))

    response = scrape(registry.url)

    assert not [name for name, _ in samples(registry.url) if name.startswith(PROJECT_SERIES)]
    assert project["name"] not in response.text and project["id"] not in response.text


@pytest.fixture(scope="module")
def guarded(mongo, tmp_path_factory):
    with started_server(mongo, tmp_path_factory.mktemp("guarded"),
                        env={"CYP_METRICS_TOKEN": "scrape-secret"}) as server:
        yield server


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-secret", "Basic c2NyYXBlLXNlY3JldA=="])
def test_with_metrics_token_a_scrape_without_it_answers_401(guarded, authorization):
    headers = {"Authorization": authorization} if authorization else {}

    response = requests.get(f"{guarded.url}/metrics", headers=headers, timeout=10)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "cyp_" not in response.text


def test_with_metrics_token_a_scrape_bearing_it_answers_the_metrics(guarded):
    response = requests.get(f"{guarded.url}/metrics", headers={"Authorization": "Bearer scrape-secret"}, timeout=10)

    assert response.status_code == 200
    assert "# TYPE cyp_http_requests_total counter" in response.text


def test_a_push_moves_its_projects_quota_usage_gauge_by_project_id(fresh, fresh_api):
    project = ok(fresh_api.post("/api/v1/projects", json={"name": unique_name("metered"), "storage_quota": 1 << 20}))
    client = RegistryClient(fresh.url, "admin", fresh.admin_password)
    before = samples(fresh.url)

    image = push_image(client, f"{project['name']}/app", "v1", layer_sizes=(4096,))
    after = samples(fresh.url)

    used = dict(name="cyp_project_storage_used_bytes", project=project["id"])
    assert value(before, **used) == 0
    assert value(after, **used) == sum(image.blobs.values()) + image.size
    assert value(after, **used) == ok(fresh_api.get(f"/api/v1/projects/{project['id']}"))["storage_used"]
    assert value(after, "cyp_project_storage_quota_bytes", project=project["id"]) == 1 << 20
    assert project["name"] not in scrape(fresh.url).text


def test_a_delivery_to_a_receiver_that_is_down_is_queued_and_ages(fresh, fresh_api):
    project = ok(fresh_api.post("/api/v1/projects", json={"name": unique_name("hooked")}))
    webhook = ok(fresh_api.post("/api/v1/webhooks", json={
        "name": unique_name("down"), "url": f"http://127.0.0.1:{free_port()}/hook", "events": ["PING"],
        "project_id": project["id"]}))
    before = samples(fresh.url)

    delivery = ok(fresh_api.post(f"/api/v1/webhooks/{webhook['id']}/test"))
    after = samples(fresh.url)
    ok(fresh_api.delete(f"/api/v1/webhooks/{webhook['id']}"))  # its delivery leaves the queue with it

    assert delivery["status"] == "pending" and delivery["attempt_count"] == 1
    assert value(after, "cyp_webhook_deliveries_queued", status="pending") == value(
        before, "cyp_webhook_deliveries_queued", status="pending") + 1
    assert value(after, "cyp_webhook_delivery_queue_age_seconds") > 0
    assert value(after, "cyp_webhook_deliveries_total", outcome="retry") == value(
        before, "cyp_webhook_deliveries_total", outcome="retry") + 1


def test_the_database_latency_histogram_counts_the_commands_requests_send(fresh, fresh_api):
    before = samples(fresh.url)

    for _ in range(3):
        ok(fresh_api.post("/api/v1/projects", json={"name": unique_name("timed")}))
    after = samples(fresh.url)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cyp_database_command_duration_seconds_count", command="insert") >= 3
    assert moved("cyp_database_command_duration_seconds_sum", command="insert") > 0
    assert total(after, "cyp_database_command_duration_seconds_count") > total(
        before, "cyp_database_command_duration_seconds_count") + 3


def test_a_blob_get_moves_the_blob_store_read_series(registry, admin, repo):
    image = push_image(admin, repo, "v1")
    read = dict(backend="gridfs", operation="read")
    before = samples(registry.url)

    assert get_blob(admin, repo, next(iter(image.blobs))).status_code == 200
    after = samples(registry.url)

    assert value(after, "cyp_blob_store_duration_seconds_count", **read) == value(
        before, "cyp_blob_store_duration_seconds_count", **read) + 1
    assert value(after, "cyp_blob_store_duration_seconds_sum", **read) > value(
        before, "cyp_blob_store_duration_seconds_sum", **read)
    assert value(after, "cyp_blob_store_duration_seconds_count", backend="gridfs", operation="commit") >= 2


def test_the_mailbox_depth_of_each_kind_of_actor_is_zero_once_the_registry_is_idle(registry):
    idle = {"quota": 0, "imports": 0, "deliveries": 0}

    # Sampled every second: a sample may still show a message a moment ago's test sent.
    depths = wait_until(lambda: labelled(samples(registry.url), "cyp_actor_mailbox_messages", "actor") == idle
                        or None, timeout=10)

    assert depths, labelled(samples(registry.url), "cyp_actor_mailbox_messages", "actor")


def test_database_series_are_read_again_only_after_the_cache_period(mongo):
    client = pymongo.MongoClient(mongo.uri, tz_aware=True)
    db = client[f"cyp_test_{unique_name('cache')}"]
    cached, uncached = (ClusterCollector(db, cache_seconds=300, project_series=True),
                        ClusterCollector(db, cache_seconds=0, project_series=True))

    def used(collector):
        return {sample.labels["project"]: sample.value for family in collector.collect()
                for sample in family.samples if sample.name == "cyp_project_storage_used_bytes"}

    try:
        db.projects.insert_one({"_id": "first", "name": "first", "storage_used": 10, "storage_quota": -1})
        first = used(cached), used(uncached)
        db.projects.update_one({"_id": "first"}, {"$set": {"storage_used": 20}})
        second = used(cached), used(uncached)
    finally:
        client.drop_database(db.name)
        client.close()

    assert first == ({"first": 10}, {"first": 10})
    assert second == ({"first": 10}, {"first": 20})


@pytest.fixture
def two_fresh_workers(mongo, tmp_path):
    with running_with_workers(RegistryServer(mongo.uri, tmp_path / "registry",
                                             env={**FRESH, "CYP_WORKERS": "2"})) as server:
        yield server


def test_with_workers_database_series_appear_once_and_process_series_add_up(two_fresh_workers):
    url = two_fresh_workers.url
    api = admin_api_for(two_fresh_workers)
    project = ok(api.post("/api/v1/projects", json={"name": unique_name("workers")}))
    image = push_image(RegistryClient(url, "admin", two_fresh_workers.admin_password), f"{project['name']}/app")

    scrapes = [samples(url) for _ in range(6)]

    for found in scrapes:
        assert labelled(found, "cyp_project_storage_used_bytes", "project") == {
            project["id"]: sum(image.blobs.values()) + image.size}
        assert value(found, "cyp_import_tasks", status="pending") == 0
        assert set(labelled(found, "cyp_actor_mailbox_messages", "actor")) == {"quota", "imports", "deliveries"}
        assert value(found, "cyp_database_command_duration_seconds_count", command="insert") > 0
