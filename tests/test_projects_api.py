"""/api/v1/projects: create, list, get, update, delete, statistics, quota, storage, and the retired members."""
import pytest

from tests.support.api_client import ok, refused, unique_name
from tests.support.manifests import OCI_MANIFEST, assert_registry_error, pull, push_blob, push_image
from tests.support.quota_support import MiB, new_project, set_quota
from tests.support.registry_client import cached_client

PROJECT_FIELDS = {"id", "name", "description", "is_public", "owner_id", "storage_quota", "storage_used",
                  "image_count", "repository_count", "created_at", "updated_at"}


def admin_id(admin_api):
    return ok(admin_api.get("/api/v1/users/me"))["id"]


# -- create ---------------------------------------------------------------------------------------

def test_creating_a_project_answers_it_with_zero_usage_and_stores_it(admin_api, db):
    name = unique_name("create")

    data = ok(admin_api.post("/api/v1/projects", json={"name": name, "description": "d", "is_public": True,
                                                      "storage_quota": 10 * MiB}))

    assert PROJECT_FIELDS <= set(data)
    assert data["name"] == name and data["description"] == "d" and data["is_public"] is True
    assert data["storage_quota"] == 10 * MiB
    assert data["storage_used"] == 0 and data["image_count"] == 0 and data["repository_count"] == 0
    assert data["owner_id"] == admin_id(admin_api)
    assert data["created_at"].endswith("Z") and data["updated_at"].endswith("Z")
    stored = db["projects"].find_one({"_id": data["id"]})
    assert stored["name"] == name and stored["storage_quota"] == 10 * MiB and stored["storage_used"] == 0


def test_a_project_created_without_a_quota_is_unlimited(admin_api):
    data = new_project(admin_api)

    assert data["storage_quota"] == -1
    assert data["is_public"] is False


def test_creating_a_project_with_a_taken_name_is_a_conflict(admin_api, db):
    name = new_project(admin_api)["name"]

    message = refused(admin_api.post("/api/v1/projects", json={"name": name}), 20002)

    assert name in message
    assert db["projects"].count_documents({"name": name}) == 1


@pytest.mark.parametrize("name", ["Upper", "-lead", "trail-", "a..b", "has space", "a/b", "x" * 65, "ünï"])
def test_creating_a_project_with_a_name_outside_the_grammar_is_refused(admin_api, db, name):
    refused(admin_api.post("/api/v1/projects", json={"name": name}), 10001)

    assert db["projects"].count_documents({"name": name}) == 0


def test_creating_a_project_with_an_unknown_field_is_refused(admin_api, db):
    name = unique_name("unknown")

    refused(admin_api.post("/api/v1/projects", json={"name": name, "owner": "someone"}), 10001)

    assert db["projects"].count_documents({"name": name}) == 0


# -- list -----------------------------------------------------------------------------------------

@pytest.fixture
def three_projects(admin_api):
    """Three projects sharing a unique prefix: a (public), b (private), c (public)."""
    prefix = unique_name("list")
    created = [ok(admin_api.post("/api/v1/projects", json={"name": f"{prefix}-{suffix}", "is_public": public}))
               for suffix, public in (("a", True), ("b", False), ("c", True))]
    return prefix, created


def test_the_project_list_is_paginated_and_searched_by_name(admin_api, three_projects):
    prefix, created = three_projects

    first = ok(admin_api.get("/api/v1/projects", params={"search": prefix, "page": 1, "page_size": 2}))
    second = ok(admin_api.get("/api/v1/projects", params={"search": prefix, "page": 2, "page_size": 2}))

    assert first["total"] == second["total"] == 3
    assert first["page"] == 1 and first["page_size"] == 2 and second["page"] == 2
    assert [p["name"] for p in first["items"] + second["items"]] == [p["name"] for p in created]
    assert {p["id"] for p in first["items"] + second["items"]} == {p["id"] for p in created}


def test_the_project_list_filters_public_and_private_projects(admin_api, three_projects):
    prefix, _ = three_projects

    public = ok(admin_api.get("/api/v1/projects", params={"search": prefix, "is_public": "true"}))
    private = ok(admin_api.get("/api/v1/projects", params={"search": prefix, "is_public": "false"}))

    assert [p["name"] for p in public["items"]] == [f"{prefix}-a", f"{prefix}-c"] and public["total"] == 2
    assert [p["name"] for p in private["items"]] == [f"{prefix}-b"] and private["total"] == 1


def test_the_project_list_refuses_an_is_public_that_is_not_a_boolean(admin_api):
    refused(admin_api.get("/api/v1/projects", params={"is_public": "yes"}), 10001)


def test_the_project_list_refuses_a_page_size_over_the_limit(admin_api):
    refused(admin_api.get("/api/v1/projects", params={"page_size": 1000}), 10001)


# -- get ------------------------------------------------------------------------------------------

def test_a_project_is_found_by_its_id(admin_api):
    created = new_project(admin_api, description="by id")

    data = ok(admin_api.get(f"/api/v1/projects/{created['id']}"))

    timestamps = {"created_at", "updated_at"}
    assert {k: v for k, v in data.items() if k not in timestamps} == \
        {k: v for k, v in created.items() if k not in timestamps}


def test_the_timestamps_answered_at_creation_are_the_ones_read_back(admin_api):
    created = new_project(admin_api)

    data = ok(admin_api.get(f"/api/v1/projects/{created['id']}"))

    assert (data["created_at"], data["updated_at"]) == (created["created_at"], created["updated_at"])


def test_a_project_is_found_by_its_name(admin_api):
    created = new_project(admin_api)

    data = ok(admin_api.get(f"/api/v1/projects/{created['name']}"))

    assert data["id"] == created["id"]


def test_a_project_that_does_not_exist_is_not_found(admin_api):
    refused(admin_api.get(f"/api/v1/projects/{unique_name('missing')}"), 20001)


# -- update ---------------------------------------------------------------------------------------

def test_put_changes_the_description_and_visibility(admin_api, db):
    created = new_project(admin_api)

    data = ok(admin_api.put(f"/api/v1/projects/{created['id']}", json={"description": "new", "is_public": True}))

    assert data["description"] == "new" and data["is_public"] is True and data["name"] == created["name"]
    stored = db["projects"].find_one({"_id": created["id"]})
    assert stored["description"] == "new" and stored["is_public"] is True


def test_patch_changes_only_the_fields_it_names(admin_api, db):
    created = new_project(admin_api, description="before", is_public=True)

    data = ok(admin_api.patch(f"/api/v1/projects/{created['id']}", json={"description": "after"}))

    assert data["description"] == "after" and data["is_public"] is True
    assert db["projects"].find_one({"_id": created["id"]})["description"] == "after"


@pytest.mark.parametrize("method", ["put", "patch"])
def test_renaming_a_project_is_refused(admin_api, db, method):
    created = new_project(admin_api)

    refused(getattr(admin_api, method)(f"/api/v1/projects/{created['id']}", json={"name": unique_name("renamed")}),
            10001)

    assert db["projects"].find_one({"_id": created["id"]})["name"] == created["name"]


def test_an_update_with_an_unknown_field_is_refused(admin_api, db):
    created = new_project(admin_api)

    refused(admin_api.put(f"/api/v1/projects/{created['id']}", json={"storage_used": 0}), 10001)


def test_the_owner_who_is_not_an_administrator_may_update_the_project(make_user, db):
    owner = make_user()
    created = new_project(owner.api)

    data = ok(owner.api.patch(f"/api/v1/projects/{created['id']}", json={"description": "mine"}))

    assert data["description"] == "mine"
    assert created["owner_id"] == owner.id


# -- delete ---------------------------------------------------------------------------------------

def test_deleting_an_empty_project_removes_it(admin_api, db):
    created = new_project(admin_api)

    assert ok(admin_api.delete(f"/api/v1/projects/{created['id']}")) is None

    refused(admin_api.get(f"/api/v1/projects/{created['id']}"), 20001)
    assert db["projects"].find_one({"_id": created["id"]}) is None


def test_deleting_a_project_that_holds_images_is_refused_without_force(admin_api, admin, db):
    created = new_project(admin_api)
    push_image(admin, f"{created['name']}/app", "v1")

    message = refused(admin_api.delete(f"/api/v1/projects/{created['id']}"), 20002)

    assert "force" in message
    assert db["projects"].find_one({"_id": created["id"]}) is not None
    assert admin.request("GET", f"/v2/{created['name']}/app/manifests/v1", pull(f"{created['name']}/app"),
                         headers={"Accept": OCI_MANIFEST}).status_code == 200


def test_force_deleting_a_project_removes_its_repositories_and_frees_its_storage(admin_api, admin, db):
    created = new_project(admin_api)
    repo = f"{created['name']}/app"
    image = push_image(admin, repo, "v1")
    push_image(admin, f"{created['name']}/other", "v1")
    assert db["projects"].find_one({"_id": created["id"]})["storage_used"] > 0

    assert ok(admin_api.delete(f"/api/v1/projects/{created['id']}", params={"force": "true"})) is None

    refused(admin_api.get(f"/api/v1/projects/{created['id']}"), 20001)
    assert db["projects"].find_one({"_id": created["id"]}) is None
    assert db["project_objects"].count_documents({"project_id": created["id"]}) == 0
    assert db["repositories"].count_documents({"project_id": created["id"]}) == 0
    assert db["repository_blobs"].count_documents({"project_id": created["id"]}) == 0
    assert db["manifests"].count_documents({"project_id": created["id"]}) == 0
    response = admin.request("GET", f"/v2/{repo}/manifests/{image.digest}", pull(repo))
    assert_registry_error(response, 404, "NAME_UNKNOWN")


def test_a_project_recreated_after_a_forced_delete_starts_empty(admin_api, admin):
    created = new_project(admin_api)
    push_image(admin, f"{created['name']}/app", "v1")
    ok(admin_api.delete(f"/api/v1/projects/{created['id']}", params={"force": "true"}))

    again = ok(admin_api.post("/api/v1/projects", json={"name": created["name"]}))

    assert again["storage_used"] == 0 and again["image_count"] == 0 and again["repository_count"] == 0
    response = admin.request("GET", f"/v2/{created['name']}/app/tags/list", pull(f"{created['name']}/app"))
    assert_registry_error(response, 404, "NAME_UNKNOWN")


# -- image_count and storage_used -----------------------------------------------------------------

def test_image_count_and_storage_used_are_exact_after_pushes(admin_api, admin):
    created = new_project(admin_api)
    name = created["name"]
    shared = b"s" * 3000
    first = push_image(admin, f"{name}/a", "v1", layers=[shared, b"a" * 1000])
    second = push_image(admin, f"{name}/b", "v1", layers=[shared])
    # The same manifest under a second tag is still one image; a blob in two repositories counts once.
    assert admin.put_manifest(f"{name}/a", "v2", first.body, OCI_MANIFEST).status_code == 201
    expected = sum({**first.blobs, **second.blobs}.values()) + first.size + second.size

    data = ok(admin_api.get(f"/api/v1/projects/{created['id']}"))

    assert data["image_count"] == 2
    assert data["repository_count"] == 2
    assert data["storage_used"] == expected


# -- statistics -----------------------------------------------------------------------------------

STAT_KEYS = {"total_projects", "public_projects", "private_projects", "repository_count", "image_count",
             "tag_count", "storage_used", "storage_quota", "unlimited_projects"}


def test_statistics_count_the_projects_repositories_images_tags_and_storage_the_caller_sees(make_user):
    owner = make_user()
    client = owner_client(owner)
    before = ok(owner.api.get("/api/v1/projects/statistics"))
    private = new_project(owner.api, storage_quota=50 * MiB)
    public = new_project(owner.api, is_public=True)
    a = push_image(client, f"{private['name']}/a", "v1")
    b = push_image(client, f"{private['name']}/b", "v1")
    assert client.put_manifest(f"{private['name']}/b", "v2", b.body, OCI_MANIFEST).status_code == 201
    c = push_image(client, f"{public['name']}/c", "v1")
    used = sum(sum(image.blobs.values()) + image.size for image in (a, b, c))

    after = ok(owner.api.get("/api/v1/projects/statistics"))

    assert STAT_KEYS <= set(after)
    delta = {key: after[key] - before[key] for key in STAT_KEYS}
    assert delta == {"total_projects": 2, "public_projects": 1, "private_projects": 1, "repository_count": 3,
                     "image_count": 3, "tag_count": 4, "storage_used": used, "storage_quota": 50 * MiB,
                     "unlimited_projects": 1}


def owner_client(user):
    return cached_client(user.api.url, user.username, user.password)


# -- quota ----------------------------------------------------------------------------------------

def test_an_administrator_sets_a_projects_quota(admin_api, db):
    created = new_project(admin_api)

    data = set_quota(admin_api, created["id"], 5 * MiB)

    assert data["storage_quota"] == 5 * MiB and data["id"] == created["id"]
    assert db["projects"].find_one({"_id": created["id"]})["storage_quota"] == 5 * MiB


def test_a_quota_of_minus_one_makes_a_project_unlimited_again(admin_api, db):
    created = new_project(admin_api, storage_quota=MiB)

    data = set_quota(admin_api, created["id"], -1)

    assert data["storage_quota"] == -1
    assert db["projects"].find_one({"_id": created["id"]})["storage_quota"] == -1


def test_the_owner_who_is_not_an_administrator_may_not_set_the_quota(make_user, db):
    owner = make_user()
    created = new_project(owner.api, storage_quota=MiB)

    refused(owner.api.put(f"/api/v1/projects/{created['id']}/quota", json={"storage_quota": 100 * MiB}), 30003)

    assert db["projects"].find_one({"_id": created["id"]})["storage_quota"] == MiB


@pytest.mark.parametrize("body", [{"storage_quota": -2}, {"storage_quota": "10"}, {}, {"storage_quota": 1, "x": 1}])
def test_an_invalid_quota_is_refused(admin_api, db, body):
    created = new_project(admin_api, storage_quota=MiB)

    refused(admin_api.put(f"/api/v1/projects/{created['id']}/quota", json=body), 10001)

    assert db["projects"].find_one({"_id": created["id"]})["storage_quota"] == MiB


def test_setting_the_quota_of_a_project_that_does_not_exist_is_not_found(admin_api):
    refused(admin_api.put(f"/api/v1/projects/{unique_name('missing')}/quota", json={"storage_quota": 1}), 20001)


# -- storage --------------------------------------------------------------------------------------

def test_storage_reports_usage_quota_percent_and_each_repository(admin_api, admin):
    created = new_project(admin_api, storage_quota=4 * MiB)
    name = created["name"]
    shared = b"z" * (MiB // 2)
    a = push_image(admin, f"{name}/a", "v1", layers=[shared])
    b = push_image(admin, f"{name}/b", "v1", layers=[shared, b"y" * 1000])
    used = sum({**a.blobs, **b.blobs}.values()) + a.size + b.size

    data = ok(admin_api.get(f"/api/v1/projects/{created['id']}/storage"))

    assert data["storage_used"] == used
    assert data["storage_quota"] == 4 * MiB
    assert data["percent"] == pytest.approx(used * 100 / (4 * MiB), abs=0.01)
    by_name = {repo["name"]: repo for repo in data["repositories"]}
    assert set(by_name) == {f"{name}/a", f"{name}/b"}
    assert by_name[f"{name}/a"]["size"] == sum(a.blobs.values()) + a.size
    assert by_name[f"{name}/b"]["size"] == sum(b.blobs.values()) + b.size
    assert by_name[f"{name}/a"]["blob_count"] == 2 and by_name[f"{name}/a"]["manifest_count"] == 1
    assert by_name[f"{name}/b"]["blob_count"] == 3 and by_name[f"{name}/b"]["manifest_count"] == 1


def test_storage_of_an_unlimited_project_reports_quota_minus_one(admin_api, admin):
    created = new_project(admin_api)
    push_blob(admin, f"{created['name']}/a", b"x" * 100)

    data = ok(admin_api.get(f"/api/v1/projects/{created['id']}/storage"))

    assert data["storage_used"] == 100 and data["storage_quota"] == -1
    assert data["repositories"] == [{"name": f"{created['name']}/a", "size": 100, "blob_count": 1,
                                     "manifest_count": 0}]


# -- members (retired) ----------------------------------------------------------------------------

@pytest.mark.parametrize("method,suffix", [("GET", "members"), ("POST", "members"), ("PUT", "members"),
                                           ("DELETE", "members"), ("GET", "members/42"),
                                           ("DELETE", "members/42"), ("PATCH", "members/42/role")])
def test_every_members_endpoint_answers_410_in_the_envelope(admin_api, method, suffix):
    created = new_project(admin_api)

    response = admin_api.request(method, f"/api/v1/projects/{created['id']}/{suffix}", json={"user_id": "x"})

    message = refused(response, 20003)
    assert message


def test_the_members_endpoint_answers_410_even_without_a_login(api):
    refused(api.get(f"/api/v1/projects/{unique_name('any')}/members"), 20003)
