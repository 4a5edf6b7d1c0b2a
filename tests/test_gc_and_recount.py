"""Online garbage collection (grace period) and the recount that recomputes usage from the links."""
import datetime
import secrets

from tests.support.api_client import admin_api_for, create_user, ok, refused
from tests.support.manifests import (
    OCI_LAYER_TAR, delete, encode, image_manifest, pull, push, push_blob, push_image, sha256,
)
from tests.support.processes import started_server
from tests.support.quota_support import (
    GC_NOW_ENV, Db, gc_lease, gc_lease_held_elsewhere, new_project, recount, run_gc,
)


def head(client, repo, digest):
    return client.request("HEAD", f"/v2/{repo}/blobs/{digest}", pull(repo)).status_code


def delete_manifest(client, repo, reference):
    response = client.request("DELETE", f"/v2/{repo}/manifests/{reference}", delete(repo))
    assert response.status_code == 202, response.text


# -- garbage collection ---------------------------------------------------------------------------

def test_gc_after_a_manifest_delete_unlinks_its_blobs_and_frees_the_usage(gc_api, gc_client, gc_store):
    project = new_project(gc_api, "gc")
    repo = f"{project['name']}/a"
    image = push_image(gc_client, repo, "v1", layer_sizes=(3000, 5000))
    delete_manifest(gc_client, repo, image.digest)
    assert gc_store.used(project["id"]) == sum(image.blobs.values())

    result = run_gc(gc_api)

    assert result["unlinked"] >= len(image.blobs) and result["deleted_blobs"] >= len(image.blobs)
    assert result["freed_bytes"] >= sum(image.blobs.values())
    assert ok(gc_api.get(f"/api/v1/projects/{project['id']}"))["storage_used"] == 0
    assert gc_store.counted(project["id"]) == {}
    for digest in image.blobs:
        assert head(gc_client, repo, digest) == 404
        assert gc_store["blobs"].find_one({"_id": digest}) is None
        assert gc_store["repository_blobs"].find_one({"digest": digest}) is None
    assert gc_store["fs.files"].count_documents({"metadata.digest": {"$in": list(image.blobs)}}) == 0


def test_gc_keeps_a_layer_another_manifest_still_references(gc_api, gc_client, gc_store):
    project = new_project(gc_api, "gc")
    repo = f"{project['name']}/a"
    shared = secrets.token_bytes(4000)
    gone = push_image(gc_client, repo, "old", layers=[shared, secrets.token_bytes(1000)])
    kept = push_image(gc_client, repo, "new", layers=[shared])
    delete_manifest(gc_client, repo, gone.digest)

    run_gc(gc_api)

    assert gc_store.used(project["id"]) == sum(kept.blobs.values()) + kept.size
    assert head(gc_client, repo, sha256(shared)) == 200
    only_old = set(gone.blobs) - set(kept.blobs)
    assert only_old and all(head(gc_client, repo, digest) == 404 for digest in only_old)
    pulled = gc_client.request("GET", f"/v2/{repo}/blobs/{sha256(shared)}", pull(repo))
    assert pulled.status_code == 200 and pulled.content == shared


def test_gc_after_a_tag_delete_keeps_the_untagged_manifest_and_its_blobs(gc_api, gc_client, gc_store):
    project = new_project(gc_api, "gc")
    repo = f"{project['name']}/a"
    image = push_image(gc_client, repo, "v1")
    delete_manifest(gc_client, repo, "v1")

    run_gc(gc_api)

    assert gc_store.used(project["id"]) == sum(image.blobs.values()) + image.size
    assert all(head(gc_client, repo, digest) == 200 for digest in image.blobs)


def test_gc_unlinks_an_unreferenced_copy_without_freeing_a_blob_another_repository_uses(gc_api, gc_client,
                                                                                        gc_store):
    project = new_project(gc_api, "gc")
    image = push_image(gc_client, f"{project['name']}/a", "v1")
    stray = f"{project['name']}/b"
    layer = list(image.blobs)[-1]
    response = gc_client.request("POST", f"/v2/{stray}/blobs/uploads/", None,
                                 params={"mount": layer, "from": f"{project['name']}/a"},
                                 headers={"Authorization": "Bearer " + gc_client.token(push(stray),
                                                                                      pull(f"{project['name']}/a"))})
    assert response.status_code == 201, response.text

    run_gc(gc_api)

    assert head(gc_client, stray, layer) == 404
    assert head(gc_client, f"{project['name']}/a", layer) == 200
    assert gc_store.used(project["id"]) == sum(image.blobs.values()) + image.size
    assert recount(gc_api, project["id"])["drift"] == 0


def test_gc_frees_a_blob_whose_only_other_link_was_deleted(gc_api, gc_client, gc_store):
    project = new_project(gc_api, "gc")
    repo = f"{project['name']}/a"
    data = secrets.token_bytes(2000)
    push_blob(gc_client, repo, data)

    result = run_gc(gc_api)

    assert result["unlinked"] >= 1
    assert gc_store.used(project["id"]) == 0
    assert gc_store["blobs"].find_one({"_id": sha256(data)}) is None


def test_a_blob_collected_by_gc_can_be_pushed_again(gc_api, gc_client, gc_store):
    project = new_project(gc_api, "gc")
    repo = f"{project['name']}/a"
    data = secrets.token_bytes(2500)
    push_blob(gc_client, repo, data)
    run_gc(gc_api)

    push_blob(gc_client, repo, data)

    pulled = gc_client.request("GET", f"/v2/{repo}/blobs/{sha256(data)}", pull(repo))
    assert pulled.status_code == 200 and pulled.content == data
    assert gc_store.used(project["id"]) == 2500
    assert recount(gc_api, project["id"])["drift"] == 0


def test_gc_asked_for_while_another_collection_holds_the_lease_is_a_conflict_and_collects_nothing(
        gc_api, gc_client, gc_store):
    project = new_project(gc_api, "gcbusy")
    repo = f"{project['name']}/a"
    data = secrets.token_bytes(2000)
    push_blob(gc_client, repo, data)

    with gc_lease_held_elsewhere(gc_store["meta"]) as owner:
        message = refused(gc_api.post("/api/v1/system/gc"), 20002)

    assert message == (f"a garbage collection is already running (held by {owner}); "
                       "try again when it has finished")
    assert head(gc_client, repo, sha256(data)) == 200
    assert gc_store.used(project["id"]) == 2000


def test_gc_asked_for_runs_under_the_lease_records_when_it_finished_and_hands_the_lease_back(gc_api, gc_store):
    assert gc_lease(gc_store["meta"])["done_at"] < (before := datetime.datetime.now(datetime.UTC))

    run_gc(gc_api)

    lease = gc_store["meta"].find_one({"_id": "lease:gc"})
    assert lease["owner"] is None and lease["until"] < before
    assert lease["done_at"] >= before
    assert set(ok(gc_api.post("/api/v1/system/gc"))) == {"unlinked", "deleted_blobs", "freed_bytes"}  # free again


def test_gc_asked_for_that_fails_answers_503_and_leaves_the_schedule_as_it_was(mongo, tmp_path):
    with started_server(mongo, tmp_path, {**GC_NOW_ENV, "CYP_STORAGE_BACKEND": "filesystem"}) as server:
        database = Db(mongo.uri, server.db_name)
        scheduled = gc_lease(database["meta"])["done_at"]
        # An unlinked blob whose file is the store's root directory: removing it fails as a storage failure does.
        database["blobs"].insert_one({"_id": "sha256:" + "0" * 64, "size": 1, "ref": {"path": "."},
                                      "created_at": scheduled, "touched_at": datetime.datetime(2000, 1, 1)})

        response = admin_api_for(server).post("/api/v1/system/gc")

        lease = database["meta"].find_one({"_id": "lease:gc"})
        database.close()
    assert response.status_code == 503, response.text
    assert (response.json()["code"], response.headers["Retry-After"]) == (50003, "5")
    assert lease["owner"] is None and lease["done_at"] == scheduled


def test_gc_needs_an_administrator(gc_api):
    user = create_user(gc_api)

    refused(user.api.post("/api/v1/system/gc"), 30003)


def test_gc_with_a_grace_period_leaves_a_just_pushed_unreferenced_layer_alone(admin, admin_api, store):
    """The session server keeps its default grace period (an hour): this layer is a push in progress."""
    project = new_project(admin_api, "grace")
    repo = f"{project['name']}/a"
    data = secrets.token_bytes(3000)
    push_blob(admin, repo, data)

    run_gc(admin_api)

    assert head(admin, repo, sha256(data)) == 200
    assert store["repository_blobs"].find_one({"repo": repo, "digest": sha256(data)}) is not None
    assert store.used(project["id"]) == 3000
    config = push_blob(admin, repo, b'{"os":"linux"}')
    body = encode(image_manifest(config, [{"mediaType": OCI_LAYER_TAR, "digest": sha256(data), "size": len(data)}]))
    assert admin.put_manifest(repo, "v1", body).status_code == 201


def test_a_manifest_push_touches_only_the_links_untouched_for_a_tenth_of_the_grace_period_or_marked(
        admin, admin_api, store):
    """The session server's grace period is an hour: a link touched in the last six minutes is only read, unless a
    collection marked it."""
    project = new_project(admin_api, "touch")
    repo = f"{project['name']}/a"
    config, stale, marked = (push_blob(admin, repo, data) for data in (
        b'{"os":"linux"}', secrets.token_bytes(3000), secrets.token_bytes(3000)))
    links = store["repository_blobs"]
    recently = links.find_one({"repo": repo, "digest": config["digest"]})["touched_at"]
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=7)
    links.update_one({"repo": repo, "digest": stale["digest"]}, {"$set": {"touched_at": long_ago}})
    links.update_one({"repo": repo, "digest": marked["digest"]}, {"$set": {"gc_mark": "a collection"}})

    assert admin.put_manifest(repo, "v1", encode(image_manifest(config, [stale, marked]))).status_code == 201

    assert links.find_one({"repo": repo, "digest": config["digest"]})["touched_at"] == recently
    assert links.find_one({"repo": repo, "digest": stale["digest"]})["touched_at"] > long_ago + datetime.timedelta(
        minutes=6)
    assert "gc_mark" not in links.find_one({"repo": repo, "digest": marked["digest"]})


# -- recount --------------------------------------------------------------------------------------

def test_a_recount_after_a_series_of_operations_finds_no_drift(gc_api, gc_client, gc_store):
    project = new_project(gc_api, "recount")
    a, b = f"{project['name']}/a", f"{project['name']}/b"
    shared = secrets.token_bytes(6000)
    first = push_image(gc_client, a, "v1", layers=[shared, secrets.token_bytes(100)])
    second = push_image(gc_client, b, "v1", layers=[shared])
    push_blob(gc_client, b, secrets.token_bytes(700))
    third = push_image(gc_client, a, "v2")
    assert gc_client.put_manifest(a, "v1", third.body).status_code == 201  # the tag moves
    delete_manifest(gc_client, a, first.digest)
    extra = push_blob(gc_client, a, secrets.token_bytes(900))
    assert gc_client.request("DELETE", f"/v2/{a}/blobs/{extra['digest']}", delete(a)).status_code == 202
    run_gc(gc_api)
    delete_manifest(gc_client, b, "v1")

    result = recount(gc_api, project["id"])

    expected = sum({**second.blobs, **third.blobs}.values()) + second.size + third.size
    assert result == {"project_id": project["id"], "recorded": expected, "actual": expected, "drift": 0,
                      "fixed": False}
    assert gc_store.used(project["id"]) == expected


def test_a_recount_reports_usage_corrupted_in_the_database_without_changing_it(gc_api, gc_client, gc_store):
    project = new_project(gc_api, "recount")
    image = push_image(gc_client, f"{project['name']}/a", "v1")
    actual = sum(image.blobs.values()) + image.size
    gc_store["projects"].update_one({"_id": project["id"]}, {"$inc": {"storage_used": 12345}})

    result = recount(gc_api, project["id"])

    assert result == {"project_id": project["id"], "recorded": actual + 12345, "actual": actual, "drift": 12345,
                      "fixed": False}
    assert gc_store.used(project["id"]) == actual + 12345


def test_a_recount_with_fix_repairs_corrupted_usage(gc_api, gc_client, gc_store):
    project = new_project(gc_api, "recount")
    image = push_image(gc_client, f"{project['name']}/a", "v1")
    actual = sum(image.blobs.values()) + image.size
    gc_store["projects"].update_one({"_id": project["id"]}, {"$set": {"storage_used": 7}})

    result = recount(gc_api, project["id"], fix=True)

    assert result == {"project_id": project["id"], "recorded": 7, "actual": actual, "drift": 7 - actual,
                      "fixed": True}
    assert gc_store.used(project["id"]) == actual
    assert ok(gc_api.get(f"/api/v1/projects/{project['id']}"))["storage_used"] == actual
    assert recount(gc_api, project["id"])["drift"] == 0


def test_after_a_fix_the_quota_is_enforced_from_the_repaired_usage(gc_api, gc_client, gc_store):
    project = new_project(gc_api, "recount", storage_quota=10000)
    repo = f"{project['name']}/a"
    push_blob(gc_client, repo, secrets.token_bytes(6000))
    gc_store["projects"].update_one({"_id": project["id"]}, {"$set": {"storage_used": 0}})
    recount(gc_api, project["id"], fix=True)

    response = gc_client.push_blob(repo, secrets.token_bytes(6000))

    assert response.status_code == 403 and "DENIED" in response.text
    assert gc_store.used(project["id"]) == 6000


def test_a_recount_with_fix_restores_the_counted_objects(gc_api, gc_client, gc_store):
    project = new_project(gc_api, "recount")
    repo = f"{project['name']}/a"
    data = push_blob(gc_client, repo, secrets.token_bytes(4000))
    gc_store["project_objects"].delete_many({"project_id": project["id"]})
    gc_store["projects"].update_one({"_id": project["id"]}, {"$set": {"storage_used": 0}})
    recount(gc_api, project["id"], fix=True)

    assert gc_client.request("DELETE", f"/v2/{repo}/blobs/{data['digest']}", delete(repo)).status_code == 202

    assert gc_store.used(project["id"]) == 0
    assert recount(gc_api, project["id"])["drift"] == 0


def test_a_recount_needs_an_administrator(gc_api):
    project = new_project(gc_api, "recount")
    user = create_user(gc_api)

    refused(user.api.post(f"/api/v1/projects/{project['id']}/recount"), 30003)


def test_a_recount_of_a_project_that_does_not_exist_is_not_found(gc_api):
    refused(gc_api.post("/api/v1/projects/no-such-project-here/recount"), 20001)
