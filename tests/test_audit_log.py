"""The audit log against the real server: pushes, pulls, logins, PATs, projects and the command line recorded with
who, from which address, when and the outcome; GET /api/v1/audit-logs scoped by role and filtered; pulls
written in batches that also move pull_count and last_pulled_at; the retention as a TTL index."""
import asyncio
import datetime
import functools
import json
import time
import types

import pymongo
import pytest
import requests

from runtime.serve import end_tasks
from services.audit import AuditLog, new_record
from storage.audit import AuditRecords
from storage.mongo import create_client
from storage.projects import Projects
from storage.users import Users
from tests.support.api_client import Api, fresh_address, ok, refused, strong_password, unique_name
from tests.support.clients import Skopeo, ensure_project, require_tool, run_server_cli, server_env, wait_until
from tests.support.manifests import get_manifest, push_image
from tests.support.oci_layout import make_image_layout
from tests.support.processes import RegistryServer
from tests.support.quota_support import new_project
from tests.support.registry_client import RegistryClient
from tests.support.webhook_receiver import Receiver

AUDIT = "/api/v1/audit-logs"
# Pulls are written in batches about a second apart; other records at once.
WRITTEN_WITHIN = 15


def records(api, **params):
    """Every record the caller sees that matches ``params`` (at most a page of 100)."""
    return ok(api.get(AUDIT, params={"page_size": 100, **params}))["items"]


def wait_for_records(api, count=1, **params):
    """The records matching ``params`` once there are at least ``count`` of them."""
    found = []

    def enough():
        found[:] = records(api, **params)
        return len(found) >= count

    wait_until(enough, WRITTEN_WITHIN)
    return found


@pytest.fixture
def owner(make_user):
    """A user with a private project of their own, and a registry client of theirs from an address of its own."""
    user = make_user()
    user.project = new_project(user.api, "audit")
    user.address = fresh_address()
    user.registry = RegistryClient(user.api.url, user.username, user.password, address=user.address)
    user.registry.token = functools.lru_cache(maxsize=None)(user.registry.token)  # one argon2 check per scope
    return user


# -- what is recorded ------------------------------------------------------------------------------

def test_a_push_is_recorded_with_the_user_the_address_the_project_and_the_outcome(admin_api, owner):
    repo = f"{owner.project['name']}/app"
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)

    image = push_image(owner.registry, repo, "v1")

    [record] = wait_for_records(admin_api, operation="artifact.push", project_id=owner.project["id"])
    assert record["outcome"] == "success" and record["status"] == 201 and record["error_code"] is None
    assert record["user_id"] == owner.id and record["username"] == owner.username
    assert record["address"] == owner.address
    assert record["project_id"] == owner.project["id"] and record["project_name"] == owner.project["name"]
    assert record["resource"] == {"repository": repo, "reference": "v1", "digest": image.digest}
    at = datetime.datetime.fromisoformat(record["at"])
    assert before <= at <= datetime.datetime.now(datetime.timezone.utc) and record["at"].endswith("Z")
    assert isinstance(record["trace_id"], str) and record["trace_id"] and record["count"] == 1


def test_a_skopeo_push_is_recorded_once_for_the_image(registry, admin_api, tmp_path):
    require_tool("skopeo")
    repo = f"{unique_name('skaudit')}/app"
    ensure_project(registry, repo)
    make_image_layout(tmp_path / "image", [2048, 1024], seed="audit")

    Skopeo(tmp_path / "skopeo").run("copy", "--dest-tls-verify=false", "--dest-creds",
                                    f"admin:{registry.admin_password}", f"oci:{tmp_path / 'image'}:v1",
                                    f"docker://{registry.host}/{repo}:v1")

    project_id = ok(admin_api.get(f"/api/v1/projects/{repo.split('/')[0]}"))["id"]
    [record] = wait_for_records(admin_api, operation="artifact.push", project_id=project_id)
    assert record["username"] == "admin" and record["address"] == "127.0.0.1"
    assert record["outcome"] == "success" and record["resource"]["reference"] == "v1"
    # Its blobs were uploaded without a refusal: no blob record.
    assert records(admin_api, operation="blob.upload", project_id=project_id) == []


def test_an_upload_refused_by_the_quota_is_recorded_as_a_failure(admin_api, owner):
    ok(admin_api.put(f"/api/v1/projects/{owner.project['id']}/quota", json={"storage_quota": 10}))

    response = owner.registry.push_blob(f"{owner.project['name']}/app", b"x" * 100)

    assert response.status_code == 403
    [record] = wait_for_records(admin_api, operation="blob.upload", project_id=owner.project["id"])
    assert record["outcome"] == "failure" and record["status"] == 403 and record["error_code"] == "DENIED"
    assert record["username"] == owner.username and record["address"] == owner.address


def test_the_quota_change_is_recorded_with_the_new_quota(admin_api, owner):
    ok(admin_api.put(f"/api/v1/projects/{owner.project['id']}/quota", json={"storage_quota": 4096}))

    [record] = wait_for_records(admin_api, operation="project.quota", project_id=owner.project["id"])
    assert record["username"] == "admin" and record["resource"] == {"storage_quota": 4096}
    assert record["project_name"] == owner.project["name"] and record["outcome"] == "success"


def test_a_failed_login_is_recorded_without_the_password(admin_api, user, db):
    address = fresh_address()
    wrong = strong_password()

    refused(Api(user.api.url, address=address).login_response(user.username, wrong), 30001)

    [record] = wait_for_records(admin_api, operation="auth.login", outcome="failure", username=user.username)
    assert record["user_id"] == user.id and record["address"] == address
    assert record["status"] == 401 and record["error_code"] == 30001
    stored = json.dumps(list(db["audit_logs"].find({"username": user.username})), default=str)
    assert wrong not in stored and user.password not in stored


def test_a_login_with_an_unknown_name_is_recorded_as_unknown_without_what_was_typed(admin_api, api, db):
    # What was typed as a name may be a password typed into the wrong box.
    name, address = unique_name("nobody"), fresh_address()

    refused(Api(api.url, address=address).login_response(name, strong_password()), 30001)

    # Other tests' unknown names are recorded as "unknown" too: this one is told apart by its address.
    ours = []
    wait_until(lambda: ours.extend(r for r in records(admin_api, operation="auth.login", username="unknown")
                                   if r["address"] == address) or ours, WRITTEN_WITHIN)
    [record] = ours
    assert record["outcome"] == "failure" and record["user_id"] is None
    assert name not in json.dumps(list(db["audit_logs"].find({"address": address})), default=str)


def test_a_registry_token_refused_for_a_wrong_password_is_recorded(admin_api, user):
    address = fresh_address()

    response = RegistryClient(user.api.url, user.username, strong_password(), address=address).token_response()

    assert response.status_code == 401
    [record] = wait_for_records(admin_api, operation="auth.token", username=user.username)
    assert record["outcome"] == "failure" and record["address"] == address and record["user_id"] == user.id


def test_granted_registry_tokens_of_one_client_are_one_record_with_their_count(admin_api, user):
    address = fresh_address()
    client = RegistryClient(user.api.url, user.username, user.password, address=address)

    for _ in range(3):
        client.token()

    def tokens():
        return [r for r in records(admin_api, operation="auth.token", user_id=user.id) if r["address"] == address]

    assert wait_until(lambda: sum(r["count"] for r in tokens()) == 3, WRITTEN_WITHIN)
    [record] = tokens()
    assert record["outcome"] == "success" and record["username"] == user.username


def test_a_pat_create_and_revoke_are_recorded_without_its_secret(admin_api, user, db):
    pat = user.api.create_pat(["registry:pull"], name="ci")
    ok(user.api.delete(f"/api/v1/users/me/pat/{pat['id']}"))

    [created] = wait_for_records(user.api, operation="pat.create")
    [revoked] = wait_for_records(user.api, operation="pat.revoke")
    assert created["resource"] == {"pat_id": pat["id"], "name": "ci", "scopes": ["registry:pull"]}
    assert revoked["resource"] == {"pat_id": pat["id"]} and revoked["user_id"] == user.id
    stored = json.dumps(list(db["audit_logs"].find({"user_id": user.id})), default=str)
    assert pat["token"] not in stored and pat["token"][4:] not in stored


def test_a_user_update_names_the_fields_it_set_and_the_new_access_values_but_no_password(admin_api, user, db):
    password = strong_password()

    ok(admin_api.patch(f"/api/v1/users/{user.id}", json={"disabled": True, "display_name": "X", "password": password}))

    [record] = [r for r in wait_for_records(admin_api, operation="user.update", username="admin")
                if r["resource"].get("user_id") == user.id]
    assert record["resource"] == {"user_id": user.id, "fields": ["disabled", "display_name", "password"],
                                  "disabled": True}
    assert password not in json.dumps(list(db["audit_logs"].find({"_id": record["id"]})), default=str)


def test_a_project_update_names_the_project_the_fields_and_the_new_visibility(admin_api, owner):
    ok(owner.api.patch(f"/api/v1/projects/{owner.project['id']}", json={"is_public": True, "description": "d"}))

    [record] = wait_for_records(admin_api, operation="project.update", project_id=owner.project["id"])
    assert record["project_name"] == owner.project["name"] and record["username"] == owner.username
    assert record["resource"] == {"fields": ["description", "is_public"], "is_public": True}


def test_a_deleted_project_keeps_its_name_in_its_record(admin_api, owner):
    ok(owner.api.delete(f"/api/v1/projects/{owner.project['id']}"))

    [record] = wait_for_records(admin_api, operation="project.delete", project_id=owner.project["id"])
    assert record["project_name"] == owner.project["name"] and record["username"] == owner.username


def test_a_tag_delete_under_v2_is_recorded_as_such(admin_api, owner):
    repo = f"{owner.project['name']}/app"
    push_image(owner.registry, repo, "v1")
    response = owner.registry.request("DELETE", f"/v2/{repo}/manifests/v1", f"repository:{repo}:delete")
    assert response.status_code == 202

    [record] = wait_for_records(admin_api, operation="tag.delete", project_id=owner.project["id"])
    assert record["resource"]["reference"] == "v1" and record["outcome"] == "success"


def test_the_token_challenge_of_a_client_without_credentials_is_not_recorded(admin_api, owner):
    repo = f"{owner.project['name']}/app"
    assert owner.registry.request("PUT", f"/v2/{repo}/manifests/v1", data=b"{}").status_code == 401
    push_image(owner.registry, repo, "v2")  # a record written after it, so the first had its chance

    pushes = wait_for_records(admin_api, operation="artifact.push", project_id=owner.project["id"])
    assert [record["resource"]["reference"] for record in pushes] == ["v2"]


def test_a_request_refused_before_its_path_was_read_is_recorded_without_an_error(registry, admin_api):
    trace_id = f"audit{unique_name('t')}"

    response = requests.delete(f"{registry.url}/v2/a/b/manifests/%ff",
                               headers={"Authorization": "Bearer x", "X-Request-Id": trace_id})

    assert response.status_code == 400
    assert wait_until(lambda: [r for r in records(admin_api, operation="tag.delete", outcome="failure")
                               if r["trace_id"] == trace_id], WRITTEN_WITHIN)
    assert "Uncaught exception" not in registry.log_text()


def test_the_command_line_records_what_it_changes(registry, admin_api):
    username = unique_name("cliuser")
    env = server_env(CYP_MONGO_URI=registry.env["CYP_MONGO_URI"], CYP_MONGO_DB=registry.db_name)

    result = run_server_cli("user", "create", username, env=env)

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    [record] = [record for record in records(admin_api, operation="user.create", username="operator")
                if record["resource"].get("username") == username]
    assert record["address"] == "cli" and record["user_id"] is None and record["status"] is None
    assert record["resource"]["user_id"] == created["id"] and record["outcome"] == "success"
    assert created["one_time_password"] not in json.dumps(record)


# -- pulls -----------------------------------------------------------------------------------------

def test_pulls_are_written_in_a_batch_and_move_the_pull_count_and_last_pulled_at(admin_api, owner):
    repo = f"{owner.project['name']}/app"
    image = push_image(owner.registry, repo, "v1")
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)

    for _ in range(2):
        assert get_manifest(owner.registry, repo, "v1").status_code == 200

    def pulls():
        return records(admin_api, operation="artifact.pull", project_id=owner.project["id"])

    # Identical pulls of one batch are one record with their count.
    assert wait_until(lambda: sum(r["count"] for r in pulls()) == 2, WRITTEN_WITHIN)
    assert {(r["username"], r["address"], r["outcome"], r["resource"]["digest"]) for r in pulls()} == {
        (owner.username, owner.address, "success", image.digest)}
    assert wait_until(lambda: repositories(owner)[repo]["pull_count"] == 2, WRITTEN_WITHIN)
    [tag] = ok(owner.api.get(f"/api/v1/projects/{owner.project['id']}/repositories/app/tags"))["items"]
    assert started <= datetime.datetime.fromisoformat(tag["last_pulled_at"])


def test_a_pull_by_digest_counts_and_moves_the_tags_pointing_at_it(admin_api, owner):
    repo = f"{owner.project['name']}/app"
    image = push_image(owner.registry, repo, "v1")

    assert get_manifest(owner.registry, repo, image.digest).status_code == 200

    assert wait_until(lambda: repositories(owner)[repo]["pull_count"] == 1, WRITTEN_WITHIN)
    [tag] = ok(owner.api.get(f"/api/v1/projects/{owner.project['id']}/repositories/app/tags"))["items"]
    assert tag["last_pulled_at"] is not None


def test_a_head_and_a_missing_manifest_are_not_counted_and_only_the_missing_one_is_recorded(admin_api, owner):
    repo = f"{owner.project['name']}/app"
    push_image(owner.registry, repo, "v1")

    assert get_manifest(owner.registry, repo, "v1", method="HEAD").status_code == 200
    assert get_manifest(owner.registry, repo, "nosuchtag").status_code == 404

    [record] = wait_for_records(admin_api, operation="artifact.pull", project_id=owner.project["id"])
    assert record["outcome"] == "failure" and record["error_code"] == "MANIFEST_UNKNOWN" and record["count"] == 1
    assert repositories(owner)[repo]["pull_count"] == 0


def repositories(user):
    items = ok(user.api.get(f"/api/v1/projects/{user.project['id']}/repositories"))["items"]
    return {item["name"]: item for item in items}


# -- who sees what ---------------------------------------------------------------------------------

def test_a_project_owner_sees_their_projects_records_and_their_own_but_no_one_elses(admin_api, make_user):
    alice, bob = make_user(), make_user()
    alice_project, bob_project = new_project(alice.api, "alice"), new_project(bob.api, "bob")
    ok(admin_api.put(f"/api/v1/projects/{alice_project['id']}/quota", json={"storage_quota": 1 << 20}))
    wait_for_records(admin_api, operation="project.create", project_id=bob_project["id"])

    seen = wait_for_records(alice.api, 2, operation="project.create,project.quota")

    assert {(r["operation"], r["project_id"]) for r in seen} == {
        ("project.create", alice_project["id"]), ("project.quota", alice_project["id"])}
    assert all(r["project_id"] == alice_project["id"] or r["user_id"] == alice.id for r in records(alice.api))
    assert records(alice.api, project_id=bob_project["id"]) == []
    assert records(alice.api, username=bob.username) == []
    assert {r["project_id"] for r in records(admin_api, operation="project.create", username=bob.username)} == {
        bob_project["id"]}


def test_a_refused_request_on_a_private_project_does_not_name_it_to_the_caller(make_user):
    alice, bob = make_user(), make_user()
    secret = new_project(alice.api, "secret")
    bob_registry = RegistryClient(bob.api.url, bob.username, bob.password)
    repo = f"{secret['name']}/app"

    assert bob.api.delete(f"/api/v1/projects/{secret['name']}").status_code == 404
    assert bob_registry.request("GET", f"/v2/{repo}/manifests/v1", f"repository:{repo}:pull").status_code == 404

    seen = wait_for_records(bob.api, 2, operation="project.delete,artifact.pull")
    assert {(r["operation"], r["outcome"], r["project_id"], r["project_name"]) for r in seen} == {
        ("project.delete", "failure", None, None), ("artifact.pull", "failure", None, None)}
    assert records(alice.api, user_id=bob.id) == []


def test_a_project_named_like_another_projects_id_gets_none_of_its_records(admin_api, make_user):
    alice, bob = make_user(), make_user()
    public = new_project(alice.api, "pub", is_public=True)
    squatter = ok(bob.api.post("/api/v1/projects", json={"name": public["id"]}))
    alice_registry = RegistryClient(alice.api.url, alice.username, alice.password)
    push_image(alice_registry, f"{public['name']}/app", "v1")
    ok(alice.api.patch(f"/api/v1/projects/{public['id']}", json={"description": "changed by alice"}))

    [record] = wait_for_records(admin_api, operation="project.update", user_id=alice.id)
    assert (record["project_id"], record["project_name"]) == (public["id"], public["name"])
    assert records(bob.api, user_id=alice.id) == []
    assert records(admin_api, project_id=squatter["id"], user_id=alice.id) == []


def test_a_record_lists_the_actor_and_the_projects_owner_as_those_who_see_it(admin_api, owner, db):
    ok(admin_api.put(f"/api/v1/projects/{owner.project['id']}/quota", json={"storage_quota": 4096}))

    [record] = wait_for_records(admin_api, operation="project.quota", project_id=owner.project["id"])
    admin_id = ok(admin_api.get("/api/v1/users/me"))["id"]
    assert db["audit_logs"].find_one({"_id": record["id"]})["visible_to"] == [admin_id, owner.id]
    assert [r["id"] for r in records(owner.api, operation="project.quota")] == [record["id"]]


def test_a_record_written_before_visible_to_existed_is_seen_by_administrators_only(admin_api, user, db):
    # As the previous version wrote it: its project fields could name a project its caller may not see.
    old = {"_id": unique_name("old"), "at": datetime.datetime.now(datetime.timezone.utc), "operation": "auth.login",
           "outcome": "success", "status": 200, "error_code": None, "user_id": user.id, "username": user.username,
           "address": "10.0.0.9", "project_id": None, "project_name": None, "resource": {}, "trace_id": "t"}
    db["audit_logs"].insert_one(old)

    assert old["_id"] in [r["id"] for r in records(admin_api, user_id=user.id)]
    assert old["_id"] not in [r["id"] for r in records(user.api, user_id=user.id)]


def test_the_list_and_its_filter_by_name_read_through_indexes(db):
    # A non-administrator's list is every record naming them in visible_to; a scan would read the whole log.
    keys = [index["key"] for index in db["audit_logs"].index_information().values()]
    assert [("visible_to", 1), ("at", -1)] in keys and [("username", 1), ("at", -1)] in keys


def test_anonymous_callers_are_refused(api):
    refused(api.get(AUDIT), 30001)


# -- filters ---------------------------------------------------------------------------------------

def test_records_are_filtered_by_time_operation_and_outcome_newest_first(admin_api, owner):
    repo = f"{owner.project['name']}/app"
    push_image(owner.registry, repo, "v1")
    [first] = wait_for_records(admin_api, operation="artifact.push", project_id=owner.project["id"])
    time.sleep(0.05)
    push_image(owner.registry, repo, "v2")
    both = wait_for_records(admin_api, 2, operation="artifact.push", project_id=owner.project["id"])

    assert [r["resource"]["reference"] for r in both] == ["v2", "v1"]
    after_first = records(admin_api, operation="artifact.push", project_id=owner.project["id"],
                          **{"from": both[0]["at"]})
    assert [r["resource"]["reference"] for r in after_first] == ["v2"]
    before_second = records(admin_api, operation="artifact.push", project_id=owner.project["id"],
                            to=both[0]["at"])
    assert [r["id"] for r in before_second] == [first["id"]]
    mixed = records(admin_api, project_id=owner.project["id"], operation=["artifact.push", "project.create"])
    assert {r["operation"] for r in mixed} == {"artifact.push", "project.create"}
    assert records(admin_api, project_id=owner.project["id"], outcome="failure") == []
    assert records(admin_api, user_id=owner.id, operation="artifact.push") == both


def test_records_are_paged(admin_api, owner):
    repo = f"{owner.project['name']}/app"
    for tag in ("v1", "v2", "v3"):
        push_image(owner.registry, repo, tag)
    wait_for_records(admin_api, 3, operation="artifact.push", project_id=owner.project["id"])

    second = ok(admin_api.get(AUDIT, params={"operation": "artifact.push", "project_id": owner.project["id"],
                                             "page": 2, "page_size": 2}))

    assert second["total"] == 3 and second["page"] == 2 and second["page_size"] == 2
    assert [r["resource"]["reference"] for r in second["items"]] == ["v1"]


@pytest.mark.parametrize("params, named", [
    ({"operation": "artifact.steal"}, "artifact.steal"),
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-13-01T00:00:00Z"}, "to"),
    ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
    ({"outcome": "maybe"}, "outcome"),
    ({"username": "x" * 300}, "username"),
    ({"page_size": 101}, "page_size"),
])
def test_an_invalid_filter_is_refused_naming_it(admin_api, params, named):
    assert named in refused(admin_api.get(AUDIT, params=params), 10001)


# -- retention -------------------------------------------------------------------------------------

def test_retention_is_a_ttl_index_retuned_when_the_setting_changes(mongo, tmp_path):
    def ttl_seconds(db_name):
        client = pymongo.MongoClient(mongo.uri)
        try:
            indexes = client[db_name]["audit_logs"].index_information()
        finally:
            client.close()
        [ttl] = [index for index in indexes.values() if index.get("expireAfterSeconds") is not None]
        assert ttl["key"] == [("at", 1)]
        return ttl["expireAfterSeconds"]

    first = RegistryServer(mongo.uri, tmp_path / "a", env={"CYP_AUDIT_RETENTION_DAYS": "7"}).start()
    first.stop()
    assert ttl_seconds(first.db_name) == 7 * 86400

    again = RegistryServer(mongo.uri, tmp_path / "b", db_name=first.db_name,
                           env={"CYP_AUDIT_RETENTION_DAYS": "2"}).start()
    again.stop()
    assert ttl_seconds(first.db_name) == 2 * 86400


def test_requests_refused_by_the_rate_limit_are_not_recorded(mongo, tmp_path):
    server = RegistryServer(mongo.uri, tmp_path / "limited", env={"CYP_RATE_LIMIT_PER_ADDRESS": "2",
                                                                  "CYP_TRUST_PROXY_HEADERS": "true"}).start()
    address = fresh_address()
    try:
        statuses = [requests.post(f"{server.url}/api/v1/auth/login", json={"username": "x", "password": "y"},
                                  headers={"X-Real-Ip": address}).status_code for _ in range(6)]
    finally:
        server.stop()  # a clean stop writes every record queued

    assert statuses == [401, 401, 429, 429, 429, 429]
    db = pymongo.MongoClient(mongo.uri)[server.db_name]
    try:
        assert sorted(r["status"] for r in db["audit_logs"].find({"address": address})) == [401, 401]
    finally:
        db.client.close()


@pytest.fixture(scope="module")
def hooks_server(mongo, tmp_path_factory):
    """A server that may deliver webhooks to a receiver on loopback."""
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("hooks"),
                            env={"CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32"}).start()
    yield server
    server.stop()


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def test_a_webhook_test_and_redelivery_are_recorded_with_the_webhooks_project(hooks_server, receiver):
    admin = Api(hooks_server.url).session("admin", hooks_server.admin_password)
    project = new_project(admin, "hooked")
    webhook = ok(admin.post("/api/v1/webhooks", json={"name": "wh", "url": receiver.url, "events": ["PING"],
                                                      "project_id": project["id"]}))

    delivery = ok(admin.post(f"/api/v1/webhooks/{webhook['id']}/test"))
    ok(admin.post(f"/api/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver"))

    found = wait_for_records(admin, 2, operation="webhook.test,webhook.redeliver", project_id=project["id"])
    assert {r["operation"] for r in found} == {"webhook.test", "webhook.redeliver"}
    assert {r["project_name"] for r in found} == {project["name"]}


def test_a_webhooks_record_names_its_project_not_one_named_like_its_id(hooks_server, receiver):
    admin = Api(hooks_server.url).session("admin", hooks_server.admin_password)
    project = new_project(admin, "byid")
    squatter = ok(admin.post("/api/v1/projects", json={"name": project["id"]}))

    webhook = ok(admin.post("/api/v1/webhooks", json={"name": "wh", "url": receiver.url, "events": ["PING"],
                                                      "project_id": project["id"]}))

    [record] = wait_for_records(admin, operation="webhook.create", project_id=project["id"])
    assert record["project_name"] == project["name"] and record["resource"] == {"webhook_id": webhook["id"]}
    assert records(admin, operation="webhook.create", project_id=squatter["id"]) == []


class HeldRecords(AuditRecords):
    """The audit log's collection, its first write held until cancelled (a stop arriving mid-write)."""

    def __init__(self, db):
        super().__init__(db, 86400)
        self.writing = asyncio.Event()

    async def insert_many(self, docs):
        if not self.writing.is_set():
            self.writing.set()
            await asyncio.sleep(3600)
        await super().insert_many(docs)


def test_a_stop_while_the_writer_is_mid_write_loses_no_record(mongo):
    async def scenario(db):
        collections = types.SimpleNamespace(audit=HeldRecords(db), projects=Projects(db), users=Users(db))
        log = AuditLog(collections)
        writer = asyncio.create_task(log.write_forever())
        log.submit(new_record("system.gc", None, address="cli"))
        await collections.audit.writing.wait()

        await end_tasks([writer])
        await log.flush()

        return await db["audit_logs"].count_documents({})

    async def run():
        client = create_client(mongo.uri)
        try:
            return await scenario(client[unique_name("stopping")])
        finally:
            await client.close()

    assert asyncio.run(run()) == 1


def test_a_clean_stop_writes_the_pulls_still_queued(own_registry, mongo):
    client = RegistryClient(own_registry.url, "admin", own_registry.admin_password)
    ensure_project(own_registry, "stopping/app")
    push_image(client, "stopping/app", "v1")
    headers = {"Authorization": f"Bearer {client.token('repository:stopping/app:pull')}"}

    response = client.request("GET", "/v2/stopping/app/manifests/v1", headers=headers)
    own_registry.stop()  # SIGTERM at once, well within the batch's second

    assert response.status_code == 200
    db = pymongo.MongoClient(mongo.uri)[own_registry.db_name]
    try:
        assert db["audit_logs"].count_documents({"operation": "artifact.pull"}) == 1
        assert db["repositories"].find_one({"_id": "stopping/app"})["pull_count"] == 1
    finally:
        db.client.close()
