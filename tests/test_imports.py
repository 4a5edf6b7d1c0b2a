"""Image import from other registries, against real ones on loopback: Debian's docker-registry (anonymous and
behind htpasswd), another CYP-Registry (token auth), a TLS front with its own CA, and nginx fronts that slow a
transfer down or point a client at an address the guard refuses. Every remote listens on 127.0.0.1; the
importer admits exactly 127.0.0.1/32."""
import hashlib
import json
import time

import pymongo
import pytest

from tests.support.api_client import Api, ok, refused, unique_name
from tests.support.clients import wait_until
from tests.support.manifests import OCI_INDEX, assert_registry_error, get_blob, get_manifest
from tests.support.processes import RegistryServer
from tests.support.registry_client import RegistryClient
from tests.support.remotes import (
    DockerRegistry,
    HttpFront,
    TlsFront,
    push_artifact_with_foreign_layer,
    push_image,
    push_index,
    push_schema1,
)

MiB = 1024 * 1024
FINAL = ("completed", "failed", "cancelled")
REMOTE_PASSWORD = "Remote-pass-1"


# -- remotes and the importer ------------------------------------------------------------------

@pytest.fixture(scope="module")
def remotes(tmp_path_factory, mongo):
    base = tmp_path_factory.mktemp("remotes")
    anonymous = DockerRegistry(base / "anonymous").start()
    basic = DockerRegistry(base / "basic", htpasswd=("puller", REMOTE_PASSWORD)).start()
    schema1 = DockerRegistry(base / "schema1", schema1=True).start()
    tls = TlsFront(base / "tls", anonymous.host).start()
    slow = HttpFront(base / "slow", anonymous.host, limit_rate=8 * MiB).start()
    # A registry whose token realm, and one whose blob redirects, point at a loopback address outside the
    # allowlist: the guard must refuse both before any connection.
    realm = HttpFront(base / "realm", anonymous.host, locations='location = /v2/ { add_header WWW-Authenticate '
                      '\'Bearer realm="http://127.0.0.2:9/token",service="x"\' always; return 401; }')
    realm.start()
    redirect = HttpFront(base / "redirect", anonymous.host,
                         locations="location ~ /blobs/ { return 307 http://127.0.0.2:9$request_uri; }").start()
    cyp = RegistryServer(mongo.uri, base / "cyp-remote").start()
    servers = {"anonymous": anonymous, "basic": basic, "schema1": schema1, "tls": tls, "slow": slow,
               "realm": realm, "redirect": redirect, "cyp": cyp}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def importer(remotes, mongo, tmp_path_factory):
    insecure = ",".join(remotes[name].host for name in ("anonymous", "basic", "schema1", "slow", "realm", "redirect",
                                                        "cyp"))
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("importer"), env={
        "CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "CYP_IMPORT_INSECURE_REGISTRIES": insecure,
        "CYP_IMPORT_CA_BUNDLE": str(remotes["tls"].ca_path), "CYP_IMPORT_RETRY_ATTEMPTS": "3",
        "CYP_IMPORT_RETRY_MAX_WAIT_SECONDS": "0.2", "CYP_IMPORT_LEASE_SECONDS": "3",
        "CYP_TRUST_PROXY_HEADERS": "true"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def admin_of(importer):
    return Api(importer.url).session("admin", importer.admin_password)


@pytest.fixture
def project(admin_of):
    return ok(admin_of.post("/api/v1/projects", json={"name": unique_name("imp")}))


@pytest.fixture
def puller(importer):
    return RegistryClient(importer.url, "admin", importer.admin_password)


def start_import(api, project, image, **fields):
    return ok(api.post(f"/api/v1/projects/{project['id']}/images/import", json={"image": image, **fields}))


def wait_for(api, project, task, statuses=FINAL, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        current = ok(api.get(f"/api/v1/projects/{project['id']}/images/import/{task['task_id']}"))
        if current["status"] in statuses or time.monotonic() > deadline:
            return current
        time.sleep(0.1)


def imported(api, project, image, **fields):
    return wait_for(api, project, start_import(api, project, image, **fields))


def usage_and_recount(api, project):
    return ok(api.post(f"/api/v1/projects/{project['id']}/recount"))


def manifest_digest(puller, repo, reference):
    response = get_manifest(puller, repo, reference)
    assert response.status_code == 200, response.text
    return response.headers["Docker-Content-Digest"]


# -- the API ----------------------------------------------------------------------------------

def test_creating_an_import_answers_the_pending_task_with_the_seeds_fields(admin_of, project, remotes):
    push_image(remotes["anonymous"].url, "api/app", "v1")

    task = start_import(admin_of, project, f"{remotes['anonymous'].host}/api/app:v1")

    assert task["status"] == "pending" and task["progress"] == 0
    assert task["image"] == f"{remotes['anonymous'].host}/api/app:v1"
    assert task["repository"] == f"{project['name']}/api/app" and task["tag"] == "v1"
    assert set(task) >= {"task_id", "status", "image", "progress", "message", "created_at", "updated_at", "details"}


def test_an_unparsable_reference_is_refused_naming_image_and_creates_no_task(admin_of, project):
    message = refused(admin_of.post(f"/api/v1/projects/{project['id']}/images/import", json={"image": "Bad Ref"}),
                      10001)

    assert message.startswith("image")
    assert ok(admin_of.get(f"/api/v1/projects/{project['id']}/images/import"))["total"] == 0


def test_only_the_owner_or_an_administrator_may_import(importer, admin_of, remotes):
    owner_name, other_name = unique_name("own"), unique_name("oth")
    for name in (owner_name, other_name):
        ok(admin_of.post("/api/v1/users", json={"username": name, "password": "Owner-pass-12"}))
    owner = Api(importer.url).session(owner_name, "Owner-pass-12")
    other = Api(importer.url).session(other_name, "Owner-pass-12")
    public = ok(owner.post("/api/v1/projects", json={"name": unique_name("pub"), "is_public": True}))
    private = ok(owner.post("/api/v1/projects", json={"name": unique_name("prv")}))
    image = f"{remotes['anonymous'].host}/api/app:v1"

    refused(other.post(f"/api/v1/projects/{public['id']}/images/import", json={"image": image}), 30003)
    refused(other.post(f"/api/v1/projects/{private['id']}/images/import", json={"image": image}), 20001)
    assert start_import(owner, private, image)["status"] == "pending"


def test_tasks_are_listed_newest_first_and_filtered_by_status(admin_of, project, remotes):
    push_image(remotes["anonymous"].url, "list/app", "v1")
    first = imported(admin_of, project, f"{remotes['anonymous'].host}/list/app:v1")
    second = imported(admin_of, project, f"{remotes['anonymous'].host}/list/missing:v1")

    listed = ok(admin_of.get(f"/api/v1/projects/{project['id']}/images/import"))
    failed = ok(admin_of.get(f"/api/v1/projects/{project['id']}/images/import", params={"status": "failed"}))

    assert [task["task_id"] for task in listed["items"]] == [second["task_id"], first["task_id"]]
    assert [task["task_id"] for task in failed["items"]] == [second["task_id"]]
    refused(admin_of.get(f"/api/v1/projects/{project['id']}/images/import", params={"status": "nope"}), 10001)


def test_an_unknown_task_is_not_found(admin_of, project):
    refused(admin_of.get(f"/api/v1/projects/{project['id']}/images/import/nope"), 20001)


def test_two_identical_imports_at_once_share_one_task(admin_of, project, remotes):
    push_image(remotes["slow"].url, "twice/app", "v1", layer_sizes=(8 * MiB,))
    image = f"{remotes['slow'].host}/twice/app:v1"

    first, second = start_import(admin_of, project, image), start_import(admin_of, project, image)

    assert first["task_id"] == second["task_id"]
    assert wait_for(admin_of, project, first)["status"] == "completed"


# -- what gets imported -------------------------------------------------------------------------

def test_a_multi_layer_image_with_a_100_mib_layer_arrives_byte_exact(admin_of, project, remotes, puller):
    source = push_image(remotes["anonymous"].url, "big/app", "v1", layer_sizes=(100 * MiB, 3000, 70_000), seed=1)

    task = imported(admin_of, project, f"{remotes['anonymous'].host}/big/app:v1")

    repo = f"{project['name']}/big/app"
    assert (task["status"], task["progress"]) == ("completed", 100), task
    assert task["details"]["digest"] == source.digest == manifest_digest(puller, repo, "v1")
    for digest in source.blobs:
        assert "sha256:" + hashlib.sha256(get_blob(puller, repo, digest).content).hexdigest() == digest
    assert task["details"]["bytes_done"] == task["details"]["bytes_total"] == sum(source.blobs.values())
    assert usage_and_recount(admin_of, project)["drift"] == 0


def test_a_multi_arch_index_arrives_whole_with_the_sources_digest(admin_of, project, remotes, puller):
    source = push_index(remotes["anonymous"].url, "multi/app", "v1", seed=2)

    task = imported(admin_of, project, f"{remotes['anonymous'].host}/multi/app:v1")

    repo = f"{project['name']}/multi/app"
    assert task["status"] == "completed", task
    assert manifest_digest(puller, repo, "v1") == source.digest
    assert sorted(task["details"]["platforms_imported"]) == ["linux/amd64", "linux/arm/v7", "linux/arm64"]
    for child in source.children.values():
        assert manifest_digest(puller, repo, child.digest) == child.digest


def test_a_filtered_index_is_stored_byte_exact_as_a_sparse_index(admin_of, project, remotes, puller):
    source = push_index(remotes["anonymous"].url, "sparse/app", "v1", seed=3)

    task = imported(admin_of, project, f"{remotes['anonymous'].host}/sparse/app:v1", platforms=["linux/arm64"])

    repo = f"{project['name']}/sparse/app"
    assert task["status"] == "completed", task
    assert get_manifest(puller, repo, "v1", accept=OCI_INDEX).content == source.body
    assert task["details"]["platforms_imported"] == ["linux/arm64"]
    assert sorted(task["details"]["platforms_skipped"]) == ["linux/amd64", "linux/arm/v7"]
    assert manifest_digest(puller, repo, source.children[("linux", "arm64", None)].digest)
    absent = get_manifest(puller, repo, source.children[("linux", "amd64", None)].digest)
    assert_registry_error(absent, 404, "MANIFEST_UNKNOWN")
    assert usage_and_recount(admin_of, project)["drift"] == 0


def test_a_push_still_refuses_an_index_naming_absent_children(admin_of, project, remotes, puller):
    source = push_index(remotes["anonymous"].url, "sparse2/app", "v1", seed=4)
    imported(admin_of, project, f"{remotes['anonymous'].host}/sparse2/app:v1", platforms=["linux/amd64"])

    response = puller.put_manifest(f"{project['name']}/sparse2/app", "copy", source.body, OCI_INDEX)

    assert response.status_code == 201  # the same bytes: the index is already stored
    other = json.loads(source.body)
    other["annotations"] = {"changed": "yes"}
    response = puller.put_manifest(f"{project['name']}/sparse2/app", "changed", json.dumps(other).encode(), OCI_INDEX)
    assert_registry_error(response, 400, "MANIFEST_BLOB_UNKNOWN")


def test_foreign_layers_are_not_fetched_and_their_urls_are_kept(admin_of, project, remotes, puller):
    source = push_artifact_with_foreign_layer(remotes["anonymous"].url, "foreign/app", "v1")

    task = imported(admin_of, project, f"{remotes['anonymous'].host}/foreign/app:v1")

    assert task["status"] == "completed", task
    stored = get_manifest(puller, f"{project['name']}/foreign/app", "v1")
    assert stored.content == source.body
    [foreign] = source.foreign
    assert get_blob(puller, f"{project['name']}/foreign/app", foreign).status_code == 404


def test_a_schema1_image_fails_with_a_clear_message(admin_of, project, remotes):
    push_schema1(remotes["schema1"].url, "old/app", "v1")

    task = imported(admin_of, project, f"{remotes['schema1'].host}/old/app:v1")

    assert task["status"] == "failed"
    assert "schema 1" in task["message"]


def test_a_missing_tag_fails_at_once_naming_it(admin_of, project, remotes):
    push_image(remotes["anonymous"].url, "tags/app", "v1")

    task = imported(admin_of, project, f"{remotes['anonymous'].host}/tags/app:nope")

    assert task["status"] == "failed"
    assert "not found" in task["message"] and task["details"]["attempts"] == 1


# -- authentication and TLS ---------------------------------------------------------------------

def test_basic_auth_with_the_right_credentials_imports(admin_of, project, remotes):
    source = push_image(remotes["basic"].url, "auth/app", "v1", auth=("puller", REMOTE_PASSWORD))

    task = imported(admin_of, project, f"{remotes['basic'].host}/auth/app:v1", username="puller",
                    password=REMOTE_PASSWORD)

    assert (task["status"], task["details"]["digest"]) == ("completed", source.digest)


def test_wrong_credentials_fail_at_once_as_unauthorized(admin_of, project, remotes):
    push_image(remotes["basic"].url, "auth/app", "v2", auth=("puller", REMOTE_PASSWORD))

    task = imported(admin_of, project, f"{remotes['basic'].host}/auth/app:v2", username="puller",
                    password="Wrong-pass-1")

    assert task["status"] == "failed"
    assert "unauthorized" in task["message"] or "refused the credentials" in task["message"]


def test_another_cyp_registry_with_token_auth_is_imported_from(admin_of, project, remotes):
    remote = remotes["cyp"]
    remote_admin = Api(remote.url).session("admin", remote.admin_password)
    ok(remote_admin.post("/api/v1/projects", json={"name": "tok"}))
    from tests.support.manifests import push_image as push_to_cyp
    source = push_to_cyp(RegistryClient(remote.url, "admin", remote.admin_password), "tok/app", "v1")

    task = imported(admin_of, project, f"{remote.host}/tok/app:v1", username="admin", password=remote.admin_password)

    assert (task["status"], task["details"]["digest"]) == ("completed", source.digest), task


def test_a_tls_remote_is_trusted_through_the_configured_ca(admin_of, project, remotes):
    source = push_image(remotes["anonymous"].url, "tls/app", "v1", seed=5)

    task = imported(admin_of, project, f"{remotes['tls'].host}/tls/app:v1")

    assert (task["status"], task["details"]["digest"]) == ("completed", source.digest), task


def test_credentials_are_never_stored_in_clear_returned_or_logged_and_are_wiped_at_the_end(
        importer, admin_of, project, remotes, mongo):
    push_image(remotes["basic"].url, "secret/app", "v1", auth=("puller", REMOTE_PASSWORD))
    task = start_import(admin_of, project, f"{remotes['basic'].host}/secret/app:v1", username="puller",
                        password=REMOTE_PASSWORD)
    db = pymongo.MongoClient(mongo.uri)[importer.db_name]
    stored_while_pending = db.import_tasks.find_one({"_id": task["task_id"]})

    done = wait_for(admin_of, project, task)

    everything = json.dumps([list(db[name].find()) for name in db.list_collection_names()], default=str)
    assert done["status"] == "completed"
    assert REMOTE_PASSWORD not in json.dumps(stored_while_pending, default=str)
    assert REMOTE_PASSWORD not in everything and REMOTE_PASSWORD not in importer.log_text()
    assert "credentials" not in db.import_tasks.find_one({"_id": task["task_id"]})
    assert "password" not in json.dumps(done)


# -- failures, retries, takeover, cancellation ------------------------------------------------

def test_a_quota_too_small_fails_before_any_byte_moves(admin_of, remotes):
    project = ok(admin_of.post("/api/v1/projects", json={"name": unique_name("quota"), "storage_quota": MiB}))
    source = push_image(remotes["anonymous"].url, "quota/app", "v1", layer_sizes=(2 * MiB,), seed=6)
    layer = [digest for digest, size in source.blobs.items() if size > MiB][0]

    task = imported(admin_of, project, f"{remotes['anonymous'].host}/quota/app:v1")

    assert task["status"] == "failed"
    assert "exceeds the limit" in task["message"]
    assert remotes["anonymous"].requests_made("GET", f"/blobs/{layer}") == 0
    assert ok(admin_of.get(f"/api/v1/projects/{project['id']}"))["storage_used"] == 0


def test_a_remote_that_stops_mid_transfer_is_retried_then_the_import_fails_leaving_nothing(
        importer, admin_of, project, remotes, puller, mongo):
    upstream = remotes["anonymous"]
    push_image(upstream.url, "dying/app", "v1", layer_sizes=(40 * MiB,), seed=7)
    task = start_import(admin_of, project, f"{remotes['slow'].host}/dying/app:v1")
    try:
        wait_for(admin_of, project, task, statuses=("running",))
        time.sleep(1)
        upstream.kill()  # the transfer breaks off; the slow front in between then answers 502
        done = wait_for(admin_of, project, task)
    finally:
        upstream.start()

    repo = f"{project['name']}/dying/app"
    db = pymongo.MongoClient(mongo.uri)[importer.db_name]
    assert done["status"] == "failed", done
    assert remotes["slow"].host in done["message"]
    assert get_manifest(puller, repo, "v1").status_code == 404
    assert db.uploads.count_documents({"repo": repo}) == 0
    assert db.repository_blobs.count_documents({"repo": repo}) == 0
    assert usage_and_recount(admin_of, project)["drift"] == 0


def test_an_import_whose_node_is_killed_finishes_after_restart_without_fetching_finished_blobs_again(
        mongo, remotes, tmp_path):
    slow = remotes["slow"]
    source = push_image(remotes["anonymous"].url, "takeover/app", "v1", layer_sizes=(3000, 60 * MiB), seed=8)
    small, large = sorted(source.blobs, key=source.blobs.get)[:2], max(source.blobs, key=source.blobs.get)
    env = {"CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "CYP_IMPORT_INSECURE_REGISTRIES": slow.host,
           "CYP_IMPORT_LEASE_SECONDS": "3"}
    node = RegistryServer(mongo.uri, tmp_path / "node", env=env).start()
    api = Api(node.url).session("admin", node.admin_password)
    project = ok(api.post("/api/v1/projects", json={"name": "takeover"}))
    task = start_import(api, project, f"{slow.host}/takeover/app:v1")
    deadline = time.monotonic() + 60
    while wait_for(api, project, task, statuses=FINAL + ("running",))["details"]["bytes_done"] < 16 * MiB:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    node.process.kill()
    node.process.wait()
    before = {digest: slow_gets(remotes, digest) for digest in source.blobs}
    restarted = RegistryServer(mongo.uri, tmp_path / "node2", db_name=node.db_name, env=env).start()
    try:
        api = Api(restarted.url).session("admin", node.admin_password)
        done = wait_for(api, project, task)
    finally:
        restarted.stop()

    assert done["status"] == "completed", done
    assert done["details"]["digest"] == source.digest
    assert done["details"]["attempts"] == 2
    for digest in small:
        assert slow_gets(remotes, digest) == before[digest] == 1, digest
    resumed = [path for method, path, status in remotes["anonymous"].access_log()
               if method == "GET" and large in path]
    assert len(resumed) == 2


def slow_gets(remotes, digest):
    return remotes["anonymous"].requests_made("GET", f"/blobs/{digest}")


def test_cancelling_mid_blob_stops_within_5_seconds_and_removes_the_partial_data(
        importer, admin_of, project, remotes, puller, mongo):
    source = push_image(remotes["anonymous"].url, "cancel/app", "v1", layer_sizes=(80 * MiB,), seed=9)
    task = start_import(admin_of, project, f"{remotes['slow'].host}/cancel/app:v1")
    deadline = time.monotonic() + 60
    while wait_for(admin_of, project, task, statuses=FINAL + ("running",))["details"]["bytes_done"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    asked = time.monotonic()
    assert admin_of.delete(f"/api/v1/projects/{project['id']}/images/import/{task['task_id']}").status_code == 200
    done = wait_for(admin_of, project, task, timeout=10)
    took = time.monotonic() - asked

    repo = f"{project['name']}/cancel/app"
    db = pymongo.MongoClient(mongo.uri)[importer.db_name]
    assert done["status"] == "cancelled" and took < 5, (done, took)
    assert db.uploads.count_documents({"repo": repo}) == 0
    assert db.repository_blobs.count_documents({"repo": repo}) == 0
    assert get_manifest(puller, repo, source.digest).status_code == 404
    assert usage_and_recount(admin_of, project)["drift"] == 0


def test_re_importing_an_identical_image_moves_no_blob_bytes(admin_of, project, remotes):
    source = push_image(remotes["anonymous"].url, "again/app", "v1", layer_sizes=(2 * MiB, 1000), seed=10)
    image = f"{remotes['anonymous'].host}/again/app:v1"
    assert imported(admin_of, project, image)["status"] == "completed"
    gets = {digest: remotes["anonymous"].requests_made("GET", f"/blobs/{digest}") for digest in source.blobs}

    again = imported(admin_of, project, image)

    assert again["status"] == "completed" and again["details"]["digest"] == source.digest
    assert {digest: remotes["anonymous"].requests_made("GET", f"/blobs/{digest}") for digest in source.blobs} == gets


def test_an_import_emits_its_completion_and_failure_events(importer, admin_of, project, remotes, mongo):
    push_image(remotes["anonymous"].url, "events/app", "v1", seed=11)
    done = imported(admin_of, project, f"{remotes['anonymous'].host}/events/app:v1")
    failed = imported(admin_of, project, f"{remotes['anonymous'].host}/events/none:v1")

    events = pymongo.MongoClient(mongo.uri)[importer.db_name].events
    assert events.find_one({"type": "IMPORT_COMPLETED", "data.task_id": done["task_id"]})
    assert events.find_one({"type": "IMPORT_FAILED", "data.task_id": failed["task_id"]})


def test_an_import_is_in_the_audit_log_from_its_request_to_its_end(admin_of, project, remotes):
    push_image(remotes["anonymous"].url, "audited/app", "v1", seed=12)
    done = imported(admin_of, project, f"{remotes['anonymous'].host}/audited/app:v1")
    failed = imported(admin_of, project, f"{remotes['anonymous'].host}/audited/none:v1")

    def import_records():
        items = ok(admin_of.get("/api/v1/audit-logs", params={"project_id": project["id"], "operation": [
            "import.create", "import.complete", "import.fail"]}))["items"]
        return {(r["operation"], r["resource"]["task_id"]): r for r in items}

    wait_until(lambda: len(import_records()) == 4, 15)
    found = import_records()
    assert set(found) == {("import.create", done["task_id"]), ("import.complete", done["task_id"]),
                          ("import.create", failed["task_id"]), ("import.fail", failed["task_id"])}
    assert found[("import.complete", done["task_id"])]["outcome"] == "success"
    ended = found[("import.fail", failed["task_id"])]
    assert ended["outcome"] == "failure" and ended["resource"]["message"] == failed["message"]
    assert {r["username"] for r in found.values()} == {"admin"}


# -- the network guard ------------------------------------------------------------------------

def test_a_registry_outside_the_allowlist_is_refused_at_creation(admin_of, project):
    message = refused(admin_of.post(f"/api/v1/projects/{project['id']}/images/import",
                                    json={"image": "127.0.0.2:5000/app:v1"}), 10001)

    assert "127.0.0.2" in message
    assert ok(admin_of.get(f"/api/v1/projects/{project['id']}/images/import"))["total"] == 0


def test_a_token_realm_outside_the_allowlist_is_refused(admin_of, project, remotes):
    task = imported(admin_of, project, f"{remotes['realm'].host}/guard/app:v1")

    assert task["status"] == "failed"
    assert "127.0.0.2" in task["message"]


def test_a_redirect_outside_the_allowlist_is_refused(admin_of, project, remotes, puller):
    push_image(remotes["anonymous"].url, "guard/app", "v1", seed=12)

    task = imported(admin_of, project, f"{remotes['redirect'].host}/guard/app:v1")

    assert task["status"] == "failed"
    assert "127.0.0.2" in task["message"]
    assert get_manifest(puller, f"{project['name']}/guard/app", "v1").status_code == 404


def test_imports_beyond_the_projects_limit_wait_for_a_running_one(mongo, remotes, tmp_path):
    slow = remotes["slow"]
    for name in ("first", "second"):
        push_image(remotes["anonymous"].url, f"limit/{name}", "v1", layer_sizes=(48 * MiB,), seed=name)
    node = RegistryServer(mongo.uri, tmp_path / "node", env={
        "CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "CYP_IMPORT_INSECURE_REGISTRIES": slow.host,
        "CYP_IMPORT_MAX_RUNNING_PER_PROJECT": "1"}).start()
    try:
        api = Api(node.url).session("admin", node.admin_password)
        project = ok(api.post("/api/v1/projects", json={"name": "limited"}))
        first = start_import(api, project, f"{slow.host}/limit/first:v1")
        wait_for(api, project, first, statuses=("running",))
        second = start_import(api, project, f"{slow.host}/limit/second:v1")
        time.sleep(3)  # longer than a poll: a free slot would have taken it
        waiting = wait_for(api, project, second, statuses=("pending",))
        done = [wait_for(api, project, task)["status"] for task in (first, second)]
    finally:
        node.stop()

    assert waiting["status"] == "pending"
    assert done == ["completed", "completed"]
