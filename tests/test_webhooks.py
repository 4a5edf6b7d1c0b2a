"""Webhooks against a real consumer on loopback that verifies every signature with the standardwebhooks
library and validates every payload with jsonschema: the resource, each event type from the real action,
retries, isolation, rotation, disabling, the network guard, and deliveries that survive a crash."""
import base64
import json
import time

import pymongo
import pytest
import requests

from tests.support.api_client import Api, ok, refused, unique_name
from tests.support.clients import Skopeo, require_tool, wait_until
from tests.support.manifests import push_image
from tests.support.oci_layout import make_image_layout
from tests.support.processes import RegistryServer
from tests.support.registry_client import RegistryClient
from tests.support.remotes import DockerRegistry
from tests.support.remotes import push_image as push_remote_image
from tests.support.webhook_receiver import Blackhole, Receiver

SETTINGS = {"CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "CYP_WEBHOOK_RETRY_SCHEDULE": "0,0.3,0.6,1",
            "CYP_WEBHOOK_TIMEOUT_SECONDS": "2", "CYP_WEBHOOK_DISABLE_AFTER_FAILED_EVENTS": "2",
            "CYP_WEBHOOK_SECRET_OVERLAP_SECONDS": "4", "CYP_TRUST_PROXY_HEADERS": "true",
            "CYP_IMPORT_INSECURE_REGISTRIES": "127.0.0.1"}


@pytest.fixture(scope="module")
def hooks_server(mongo, tmp_path_factory):
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("webhooks"), env=SETTINGS).start()
    yield server
    server.stop()


@pytest.fixture
def admin(hooks_server):
    return Api(hooks_server.url).session("admin", hooks_server.admin_password)


@pytest.fixture
def client(hooks_server):
    return RegistryClient(hooks_server.url, "admin", hooks_server.admin_password)


@pytest.fixture
def project(admin):
    return ok(admin.post("/api/v1/projects", json={"name": unique_name("hooks")}))


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def create_webhook(api, project, receiver, events, **fields):
    body = {"name": unique_name("wh"), "url": receiver.url, "events": events, "project_id": project["id"], **fields}
    webhook = ok(api.post("/api/v1/webhooks", json=body))
    receiver.secrets.append(webhook["secret"])
    return webhook


def delivered(receiver, event_type, timeout=20, **data):
    found = receiver.wait_for(lambda item: item["document"]["type"] == event_type and all(
        item["document"]["data"].get(key) == value for key, value in data.items()), timeout)
    assert found, f"no {event_type} with {data} arrived; got {[i['document']['type'] for i in receiver.received]}"
    return found


def assert_genuine(items):
    for item in items:
        assert item["verified"], "the signature did not verify with the webhook's secret"
        assert item["valid"], f"the payload breaks its published schema: {item['document']}"


# -- the resource -------------------------------------------------------------------------------

def test_creating_a_webhook_answers_its_secret_once(admin, project, receiver):
    webhook = create_webhook(admin, project, receiver, ["PUSH_ARTIFACT"], headers={"X-Token": "sesame"})

    assert webhook["secret"].startswith("whsec_") and len(webhook["secret"]) >= 38
    shown = ok(admin.get(f"/api/v1/webhooks/{webhook['id']}"))
    assert "secret" not in shown and "sesame" not in json.dumps(shown)
    assert shown["headers"] == {"X-Token": "[redacted]"}
    listed = ok(admin.get("/api/v1/webhooks", params={"project_id": project["id"]}))["items"]
    assert [item["id"] for item in listed] == [webhook["id"]] and "secret" not in listed[0]


def test_other_users_webhooks_are_not_found(hooks_server, admin, project, receiver):
    webhook = create_webhook(admin, project, receiver, ["PUSH_ARTIFACT"])
    name = unique_name("u")
    ok(admin.post("/api/v1/users", json={"username": name, "password": "Other-pass-12"}))
    other = Api(hooks_server.url).session(name, "Other-pass-12")

    refused(other.get(f"/api/v1/webhooks/{webhook['id']}"), 20001)
    refused(other.delete(f"/api/v1/webhooks/{webhook['id']}"), 20001)
    assert ok(other.get("/api/v1/webhooks"))["items"] == []
    refused(other.post("/api/v1/webhooks", json={"name": "g", "url": receiver.url, "events": ["PING"],
                                                 "project_id": None}), 30003)


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "url": "ftp://example/", "events": ["PING"]}, "url"),
    ({"name": "x", "url": "http://127.0.0.1:9/", "events": ["NOPE"]}, "events"),
    ({"name": "x", "url": "http://127.0.0.1:9/", "events": []}, "events"),
    ({"name": "x", "url": "http://127.0.0.1:9/", "events": ["PING"], "secret": "whsec_c2hvcnQ=" + "=" * 30},
     "secret"),
    ({"name": "x", "url": "http://127.0.0.1:9/", "events": ["PING"], "headers": {"webhook-id": "x"}}, "headers"),
])
def test_an_invalid_webhook_is_refused_naming_the_field(admin, project, body, field):
    message = refused(admin.post("/api/v1/webhooks", json={**body, "project_id": project["id"]}), 10001)

    assert field in message


def test_a_secret_with_characters_outside_ascii_is_refused_on_create_and_update(admin, project, receiver):
    secret = "whsec_" + "é" * 40
    message = refused(admin.post("/api/v1/webhooks", json={"name": "x", "url": receiver.url, "events": ["PING"],
                                                           "project_id": project["id"], "secret": secret}), 10001)
    assert message.startswith("secret")
    assert ok(admin.get("/api/v1/webhooks", params={"project_id": project["id"]}))["total"] == 0
    webhook = create_webhook(admin, project, receiver, ["PING"])

    assert refused(admin.put(f"/api/v1/webhooks/{webhook['id']}", json={"secret": secret}), 10001).startswith("secret")


def test_the_payload_schemas_are_served_one_per_event_type(hooks_server):
    schemas = ok(requests.get(f"{hooks_server.url}/api/v1/webhooks/schemas", timeout=10))
    one = ok(requests.get(f"{hooks_server.url}/api/v1/webhooks/schemas/PUSH_ARTIFACT", timeout=10))

    assert set(schemas) == {"PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "QUOTA_WARNING", "QUOTA_EXCEEDED",
                            "IMPORT_COMPLETED", "IMPORT_FAILED", "PING"}
    assert one == schemas["PUSH_ARTIFACT"] and one["properties"]["type"]["const"] == "PUSH_ARTIFACT"


# -- deliveries of each event ------------------------------------------------------------------

def test_a_test_sends_a_signed_valid_ping_and_answers_its_delivery(admin, project, receiver):
    webhook = create_webhook(admin, project, receiver, ["PUSH_ARTIFACT"])

    delivery = ok(admin.post(f"/api/v1/webhooks/{webhook['id']}/test"))

    assert delivery["status"] == "succeeded" and delivery["attempts"][0]["status"] == 200
    [ping] = receiver.of_type("PING")
    assert_genuine([ping])
    assert ping["headers"]["webhook-id"] == ping["document"]["id"] == delivery["event_id"]


def test_a_push_delivers_one_push_artifact_naming_what_was_pushed(admin, project, receiver, client):
    create_webhook(admin, project, receiver, ["PUSH_ARTIFACT"])
    image = push_image(client, f"{project['name']}/app", "v1")

    [event] = delivered(receiver, "PUSH_ARTIFACT", digest=image.digest)

    assert_genuine([event])
    data = event["document"]["data"]
    assert (data["repository"], data["tags"], data["project"]["id"]) == (f"{project['name']}/app", ["v1"],
                                                                         project["id"])
    assert event["document"]["operator"] == "admin"


def test_a_skopeo_push_and_pull_deliver_push_and_pull_events(hooks_server, admin, project, receiver, tmp_path):
    require_tool("skopeo")
    create_webhook(admin, project, receiver, ["PUSH_ARTIFACT", "PULL_ARTIFACT"])
    layout = tmp_path / "layout"
    make_image_layout(layout, [4096], tag="v1")
    skopeo = Skopeo(tmp_path / "skopeo")
    target = f"docker://{hooks_server.host}/{project['name']}/sk:v1"
    credentials = f"admin:{hooks_server.admin_password}"

    skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", credentials, f"oci:{layout}:v1", target)
    skopeo.run("inspect", "--tls-verify=false", "--creds", credentials, target)

    assert_genuine(delivered(receiver, "PUSH_ARTIFACT", repository=f"{project['name']}/sk"))
    assert_genuine(delivered(receiver, "PULL_ARTIFACT", repository=f"{project['name']}/sk", reference="v1"))


def test_identical_pulls_within_a_second_arrive_as_one_event_with_their_count(admin, project, receiver, client):
    create_webhook(admin, project, receiver, ["PULL_ARTIFACT"])
    repo = f"{project['name']}/loop"
    image = push_image(client, repo, "v1")
    token = client.token(f"repository:{repo}:pull")

    def pull(reference):
        response = client.request("GET", f"/v2/{repo}/manifests/{reference}", headers={
            "Authorization": f"Bearer {token}", "Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert response.status_code == 200

    # Pull events are written once the server has seen that a webhook wants them (it looks every few seconds):
    # pulls by digest until one arrives, then the pulls counted, by tag.
    assert wait_until(lambda: pull(image.digest) or receiver.of_type("PULL_ARTIFACT"), timeout=20)
    for _ in range(20):
        pull("v1")

    def loop_events():
        events = [item for item in receiver.of_type("PULL_ARTIFACT") if item["document"]["data"]["reference"] == "v1"]
        return events if sum(item["document"]["data"]["count"] for item in events) >= 20 else None

    events = wait_until(loop_events, timeout=20)
    assert events and len(events) <= 2, f"20 identical pulls made {len(events or [])} events"
    assert_genuine(events)
    data = events[0]["document"]["data"]
    assert sum(item["document"]["data"]["count"] for item in events) == 20
    assert (data["repository"], data["reference"], data["digest"]) == (repo, "v1", image.digest)
    assert data["first_pulled_at"] == events[0]["document"]["occurred_at"] <= data["last_pulled_at"]


def test_deleting_a_manifest_delivers_delete_artifact_with_its_tags(admin, project, receiver, client):
    create_webhook(admin, project, receiver, ["DELETE_ARTIFACT"])
    repo = f"{project['name']}/gone"
    image = push_image(client, repo, "v1")

    assert client.request("DELETE", f"/v2/{repo}/manifests/{image.digest}",
                          f"repository:{repo}:delete").status_code == 202

    [event] = delivered(receiver, "DELETE_ARTIFACT", digest=image.digest)
    assert_genuine([event])
    assert event["document"]["data"]["tags"] == ["v1"]


def test_crossing_the_quota_delivers_warning_then_exceeded(admin, receiver, client):
    project = ok(admin.post("/api/v1/projects", json={"name": unique_name("quota"), "storage_quota": 10_000}))
    create_webhook(admin, project, receiver, ["QUOTA_WARNING", "QUOTA_EXCEEDED"])
    repo = f"{project['name']}/q"

    client.push_blob(repo, b"a" * 8500)
    client.push_blob(repo, b"b" * 1500)

    assert_genuine(delivered(receiver, "QUOTA_WARNING"))
    assert_genuine(delivered(receiver, "QUOTA_EXCEEDED"))


def test_an_import_delivers_its_completion_and_its_failure(admin, project, receiver, tmp_path):
    create_webhook(admin, project, receiver, ["IMPORT_COMPLETED", "IMPORT_FAILED"])
    remote = DockerRegistry(tmp_path / "remote").start()
    try:
        image = push_remote_image(remote.url, "src/app", "v1")
        for reference in ("src/app:v1", "src/app:missing"):
            ok(admin.post(f"/api/v1/projects/{project['id']}/images/import",
                          json={"image": f"{remote.host}/{reference}"}))
        [completed] = delivered(receiver, "IMPORT_COMPLETED", digest=image.digest)
        [failed] = delivered(receiver, "IMPORT_FAILED")
    finally:
        remote.stop()

    assert_genuine([completed, failed])
    assert "not found" in failed["document"]["data"]["message"]


def test_a_cloudevents_webhook_gets_a_structured_cloudevent(admin, project, receiver, client):
    create_webhook(admin, project, receiver, ["PUSH_ARTIFACT"], format="cloudevents")
    image = push_image(client, f"{project['name']}/ce", "v1")

    [event] = receiver.wait_for(lambda item: item["document"].get("data", {}).get("digest") == image.digest)

    document = event["document"]
    assert event["headers"]["content-type"].startswith("application/cloudevents+json")
    assert (document["specversion"], document["type"]) == ("1.0", "io.cyp-registry.push_artifact")
    assert document["id"] == event["headers"]["webhook-id"] and event["verified"]


def test_filters_keep_out_other_repositories_and_tags(admin, project, receiver, client):
    create_webhook(admin, project, receiver, ["PUSH_ARTIFACT"], repository_filter=f"{project['name']}/keep*",
                   tag_filter="v*")
    push_image(client, f"{project['name']}/other", "v1")
    push_image(client, f"{project['name']}/keep", "latest")
    kept = push_image(client, f"{project['name']}/keep", "v2")

    delivered(receiver, "PUSH_ARTIFACT", digest=kept.digest)
    time.sleep(1)

    assert [item["document"]["data"]["digest"] for item in receiver.of_type("PUSH_ARTIFACT")] == [kept.digest]


# -- failures, retries, isolation ---------------------------------------------------------------

def test_a_consumer_down_for_a_while_gets_every_event_when_it_is_back(admin, project, client):
    receiver = Receiver().start()
    webhook = create_webhook(admin, project, receiver, ["PUSH_ARTIFACT"])
    receiver.stop()
    images = [push_image(client, f"{project['name']}/down", f"v{i}") for i in range(3)]
    time.sleep(0.5)  # the first attempts meet a closed port
    receiver.start()

    for image in images:
        delivered(receiver, "PUSH_ARTIFACT", digest=image.digest)
    receiver.stop()

    ids = [item["document"]["id"] for item in receiver.of_type("PUSH_ARTIFACT")]
    assert len(set(ids)) == 3
    attempts = ok(admin.get(f"/api/v1/webhooks/{webhook['id']}/deliveries"))["items"]
    assert all(delivery["status"] == "succeeded" for delivery in attempts)
    assert any(delivery["attempt_count"] > 1 for delivery in attempts)


def test_a_blackholed_endpoint_does_not_delay_a_healthy_one(admin, project, receiver, client):
    blackhole = Blackhole().start()
    try:
        ok(admin.post("/api/v1/webhooks", json={"name": "hole", "url": blackhole.url, "events": ["PUSH_ARTIFACT"],
                                                "project_id": project["id"]}))
        create_webhook(admin, project, receiver, ["PUSH_ARTIFACT"])
        for i in range(4):  # enough to fill the blackhole's slots
            push_image(client, f"{project['name']}/busy", f"w{i}")
        time.sleep(0.5)
        image = push_image(client, f"{project['name']}/busy", "latest")
        pushed = time.monotonic()

        [event] = delivered(receiver, "PUSH_ARTIFACT", digest=image.digest)
    finally:
        blackhole.stop()

    assert event["at"] - pushed < 1.5


def test_deliveries_queued_behind_a_hanging_endpoint_are_all_listed_within_seconds(admin, project, client):
    """A fan-out's deliveries are stored with their first attempt; those that cannot be sent within a few
    seconds (here the endpoint holds both of its slots for the 2 s timeout, round after round) are stored
    pending, so the list shows every event while the endpoint hangs."""
    blackhole = Blackhole().start()
    try:
        webhook = ok(admin.post("/api/v1/webhooks", json={"name": "hanging", "url": blackhole.url,
                                                          "events": ["PUSH_ARTIFACT"], "project_id": project["id"]}))
        for i in range(16):
            push_image(client, f"{project['name']}/queued", f"q{i}")
        pushed = time.monotonic()

        def listed():
            return ok(admin.get(f"/api/v1/webhooks/{webhook['id']}/deliveries"))["total"]

        all_listed = wait_until(lambda: listed() == 16, timeout=25, interval=0.2)
        took = time.monotonic() - pushed
    finally:
        blackhole.stop()

    assert all_listed and took < 10, (listed(), took)


def test_an_endpoint_answering_410_disables_its_webhook(admin, project, receiver, client):
    receiver.status = 410
    webhook = create_webhook(admin, project, receiver, ["PUSH_ARTIFACT"])

    push_image(client, f"{project['name']}/gone410", "v1")

    assert wait_until(lambda: not ok(admin.get(f"/api/v1/webhooks/{webhook['id']}"))["enabled"], timeout=10)
    assert "410" in ok(admin.get(f"/api/v1/webhooks/{webhook['id']}"))["disabled_reason"]


def test_after_a_410_no_delivery_is_sent_beyond_those_already_under_way(admin, project, receiver, client):
    """The endpoint takes one delivery per slot (two) and answers 410 after half a second; the deliveries
    queued behind them are not sent to it once it has answered Gone."""
    receiver.status, receiver.delay = 410, 0.5
    webhook = create_webhook(admin, project, receiver, ["PUSH_ARTIFACT"])

    for i in range(6):
        push_image(client, f"{project['name']}/gone", f"v{i}")

    assert wait_until(lambda: not ok(admin.get(f"/api/v1/webhooks/{webhook['id']}"))["enabled"], timeout=10)
    time.sleep(1.5)
    assert len(receiver.of_type("PUSH_ARTIFACT")) <= 2, [item["at"] for item in receiver.received]

def test_events_that_exhaust_their_retries_disable_the_webhook_and_enabling_resets_it(admin, project, receiver,
                                                                                     client):
    receiver.status = 500
    webhook = create_webhook(admin, project, receiver, ["PUSH_ARTIFACT"])
    for i in range(2):
        push_image(client, f"{project['name']}/fail", f"v{i}")

    assert wait_until(lambda: not ok(admin.get(f"/api/v1/webhooks/{webhook['id']}"))["enabled"], timeout=20)
    disabled = ok(admin.get(f"/api/v1/webhooks/{webhook['id']}"))
    enabled = ok(admin.put(f"/api/v1/webhooks/{webhook['id']}", json={"enabled": True}))

    assert disabled["consecutive_failures"] == 2 and "in a row" in disabled["disabled_reason"]
    assert (enabled["consecutive_failures"], enabled["disabled_reason"]) == (0, None)


def test_a_redirect_is_not_followed_and_counts_as_a_failure(admin, project, receiver):
    receiver.status, receiver.headers = 302, {"Location": "http://127.0.0.1:9/elsewhere"}
    webhook = create_webhook(admin, project, receiver, ["PING"])

    delivery = ok(admin.post(f"/api/v1/webhooks/{webhook['id']}/test"))

    assert delivery["attempts"][0]["status"] == 302
    assert "redirect" in delivery["attempts"][0]["error"]
    assert delivery["status"] == "pending"


def test_deliveries_record_attempts_with_secrets_redacted_and_redeliver_with_the_same_event_id(
        admin, project, receiver):
    webhook = create_webhook(admin, project, receiver, ["PING"], headers={"Authorization": "Bearer hush"})
    first = ok(admin.post(f"/api/v1/webhooks/{webhook['id']}/test"))

    again = ok(admin.post(f"/api/v1/webhooks/{webhook['id']}/deliveries/{first['id']}/redeliver"))

    listed = ok(admin.get(f"/api/v1/webhooks/{webhook['id']}/deliveries"))["items"]
    assert [delivery["id"] for delivery in listed] == [again["id"], first["id"]]
    assert again["event_id"] == first["event_id"] and again["id"] != first["id"]
    attempt = listed[0]["attempts"][0]
    assert attempt["request"]["headers"]["Authorization"] == "[redacted]" and "hush" not in json.dumps(listed)
    assert attempt["response"]["body"] == "ok" and attempt["duration_ms"] >= 0
    assert [item["headers"]["authorization"] for item in receiver.of_type("PING")] == ["Bearer hush"] * 2
    filtered = ok(admin.get(f"/api/v1/webhooks/{webhook['id']}/deliveries", params={"event_type": "PUSH_ARTIFACT"}))
    assert filtered["items"] == []


def test_a_second_redelivery_a_previous_versions_index_refuses_answers_409(mongo, hooks_server, admin, project,
                                                                           receiver):
    """During a rolling upgrade a node of version 6 re-creates its unique index on (event, webhook,
    redelivery): a second redelivery of one delivery while the first is still pending is refused, not looped."""
    webhook = create_webhook(admin, project, receiver, ["PING"])
    first = ok(admin.post(f"/api/v1/webhooks/{webhook['id']}/test"))
    redeliver = f"/api/v1/webhooks/{webhook['id']}/deliveries/{first['id']}/redeliver"
    store = pymongo.MongoClient(mongo.uri)[hooks_server.db_name]
    index = store["deliveries"].create_index([("event_id", 1), ("webhook_id", 1), ("redelivery", 1)], unique=True)
    receiver.status, receiver.delay = 503, 0.5  # the first redelivery stays pending through the second
    try:
        pending = ok(admin.post(redeliver))
        again = admin.post(redeliver)
    finally:
        store["deliveries"].drop_index(index)

    assert pending["status"] == "pending"
    assert "still pending" in refused(again, 20002)
    assert [delivery["id"] for delivery in ok(admin.get(f"/api/v1/webhooks/{webhook['id']}/deliveries"))["items"]] == [
        pending["id"], first["id"]]


def test_a_rotated_secret_signs_alongside_the_new_one_during_the_overlap(admin, project, receiver):
    webhook = create_webhook(admin, project, receiver, ["PING"])
    old = webhook["secret"]

    rotated = ok(admin.put(f"/api/v1/webhooks/{webhook['id']}", json={"rotate_secret": True}))
    receiver.secrets.append(rotated["secret"])
    ok(admin.post(f"/api/v1/webhooks/{webhook['id']}/test"))
    time.sleep(4.5)
    ok(admin.post(f"/api/v1/webhooks/{webhook['id']}/test"))

    during, after = receiver.of_type("PING")
    assert rotated["secret"] != old
    assert sorted(during["verified"]) == sorted([old, rotated["secret"]])
    assert len(during["headers"]["webhook-signature"].split()) == 2
    assert after["verified"] == [rotated["secret"]]


# -- the network guard and crashes ---------------------------------------------------------------

def test_a_receiver_outside_the_allowlist_is_refused_at_save(admin, project):
    message = refused(admin.post("/api/v1/webhooks", json={"name": "x", "url": "http://127.0.0.2:8080/h",
                                                           "events": ["PING"], "project_id": project["id"]}), 10001)

    assert "127.0.0.2" in message


def test_a_receiver_outside_the_allowlist_is_refused_at_test_and_at_delivery(mongo, tmp_path):
    # Two nodes of one registry (one database, one credentials key): a wide allowlist saves the webhook and
    # sends nothing; a narrow one tests it and delivers to it.
    key = base64.b64encode(b"k" * 32).decode()
    wide = RegistryServer(mongo.uri, tmp_path / "wide", env={
        "CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8", "CYP_WEBHOOK_MAX_IN_FLIGHT": "0",
        "CYP_CREDENTIALS_KEY": key}).start()
    try:
        narrow = RegistryServer(mongo.uri, tmp_path / "narrow", db_name=wide.db_name, env={
            **SETTINGS, "CYP_BOOTSTRAP_ADMIN_PASSWORD": wide.admin_password, "CYP_CREDENTIALS_KEY": key}).start()
        try:
            api = Api(wide.url).session("admin", wide.admin_password)
            project = ok(api.post("/api/v1/projects", json={"name": "guard"}))
            webhook = ok(api.post("/api/v1/webhooks", json={"name": "x", "url": "http://127.0.0.2:8080/h",
                                                            "events": ["PUSH_ARTIFACT"], "project_id": project["id"]}))
            narrow_api = Api(narrow.url).session("admin", wide.admin_password)

            message = refused(narrow_api.post(f"/api/v1/webhooks/{webhook['id']}/test"), 10001)
            push_image(RegistryClient(wide.url, "admin", wide.admin_password), "guard/app", "v1")
            attempted = wait_until(lambda: ok(narrow_api.get(f"/api/v1/webhooks/{webhook['id']}/deliveries"))[
                "items"] and ok(narrow_api.get(f"/api/v1/webhooks/{webhook['id']}/deliveries"))["items"][0][
                "attempts"], timeout=10)
        finally:
            narrow.stop()
    finally:
        wide.stop()

    assert "127.0.0.2" in message
    assert attempted and "refused" in attempted[0]["error"] and "127.0.0.2" in attempted[0]["error"]


def test_a_delivery_pending_when_the_server_is_killed_arrives_after_restart(mongo, tmp_path):
    receiver = Receiver()
    server = RegistryServer(mongo.uri, tmp_path / "crash", env=SETTINGS).start()
    try:
        api = Api(server.url).session("admin", server.admin_password)
        project = ok(api.post("/api/v1/projects", json={"name": "crash"}))
        create_webhook(api, project, receiver, ["PUSH_ARTIFACT"])  # not listening yet: attempts fail
        image = push_image(RegistryClient(server.url, "admin", server.admin_password), "crash/app", "v1")
        server.process.kill()
        server.process.wait()
        receiver.start()
        restarted = RegistryServer(mongo.uri, tmp_path / "crash", db_name=server.db_name, env=SETTINGS).start()
        try:
            [event] = delivered(receiver, "PUSH_ARTIFACT", digest=image.digest)
        finally:
            restarted.stop()
    finally:
        receiver.stop()
        server.stop()

    assert_genuine([event])
