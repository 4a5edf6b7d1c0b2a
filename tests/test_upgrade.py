"""A database written by an earlier version keeps working: the server migrates its stored shape at start.

The fixture was written by main at 4774c43 (tests/fixtures/write_legacy_database.py tells how).
"""
import gzip
from pathlib import Path

import jwt
import pymongo
import pytest
import requests
from bson import json_util

from tests.support.api_client import Api, jwt_claims, ok, refused, strong_password
from tests.support.manifests import get_blob, get_manifest, sha256
from tests.support.processes import RegistryServer
from tests.support.registry_client import RegistryClient

FIXTURE = Path(__file__).parent / "fixtures" / "legacy-v1-database.json.gz"


def restore(mongo_uri, db_name):
    dump = json_util.loads(gzip.decompress(FIXTURE.read_bytes()).decode())
    client = pymongo.MongoClient(mongo_uri)
    for name, documents in dump["collections"].items():
        if documents:
            client[db_name][name].insert_many(documents)
    client.close()
    return dump["facts"]


@pytest.fixture(scope="module")
def upgraded(mongo, tmp_path_factory):
    """The current server started on a copy of the legacy database."""
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("upgrade"), env={"CYP_TRUST_PROXY_HEADERS": "true"})
    facts = restore(mongo.uri, server.db_name)
    server.start()
    yield server, facts
    server.stop()


def test_both_legacy_users_whose_names_differ_only_in_case_still_log_in(upgraded):
    server, facts = upgraded

    for username, password in facts["passwords"].items():
        assert ok(Api(server.url).session(username, password).get("/api/v1/users/me"))["username"] == username


def test_a_new_user_differing_only_in_case_from_an_existing_one_is_refused(upgraded):
    server, facts = upgraded
    admin = Api(server.url).session("admin", facts["admin_password"])

    refused(admin.post("/api/v1/users", json={"username": "Admin", "password": strong_password()}), 20002)


def test_a_login_in_another_case_finds_the_account(upgraded):
    server, facts = upgraded

    assert ok(Api(server.url).session("ADMIN", facts["admin_password"]).get("/api/v1/users/me"))["username"] == "admin"


def test_the_legacy_image_pulls_byte_exact(upgraded):
    server, facts = upgraded
    client = RegistryClient(server.url, "admin", facts["admin_password"])

    manifest = get_manifest(client, "legacy/app", "v1")
    layer = get_blob(client, "legacy/app", facts["layer_digest"])

    assert manifest.headers["Docker-Content-Digest"] == sha256(manifest.content) == facts["manifest_digest"]
    assert sha256(layer.content) == facts["layer_digest"]


def test_the_legacy_referrer_keeps_its_annotations(upgraded):
    server, facts = upgraded
    client = RegistryClient(server.url, "admin", facts["admin_password"])

    index = client.request("GET", f"/v2/legacy/app/referrers/{facts['manifest_digest']}",
                           "repository:legacy/app:pull").json()

    [referrer] = index["manifests"]
    assert referrer["digest"] == facts["referrer_digest"]
    assert referrer["annotations"] == {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}


def test_the_legacy_usage_equals_the_recount(upgraded):
    server, facts = upgraded
    admin = Api(server.url).session("admin", facts["admin_password"])

    report = ok(admin.post("/api/v1/projects/legacy/recount"))

    assert report["drift"] == 0 and report["actual"] > 0, report


def test_a_legacy_push_pat_still_pulls_and_pushes_but_no_longer_deletes(upgraded):
    server, facts = upgraded
    client = RegistryClient(server.url, "admin", facts["pat"])

    response = client.request("DELETE", "/v2/legacy/app/manifests/v1", "repository:legacy/app:delete")

    assert get_manifest(client, "legacy/app", "v1").status_code == 200
    assert response.status_code == 403


def test_the_database_records_its_migrated_shape(upgraded, mongo):
    server, _ = upgraded

    meta = pymongo.MongoClient(mongo.uri)[server.db_name]["meta"].find_one({"_id": "schema_version"})

    assert meta["value"] >= 1
    assert "usernames differ only in case" in server.log_text()


def test_a_token_the_previous_version_signed_still_verifies_and_new_ones_name_their_key(upgraded, mongo):
    server, facts = upgraded
    meta = pymongo.MongoClient(mongo.uri)[server.db_name]["meta"]
    client = RegistryClient(server.url, "admin", facts["admin_password"])
    fresh = client.token()
    legacy_key = meta.find_one({"_id": "registry_signing_key"})["value"]

    unnamed = jwt.encode({**jwt_claims(fresh), "jti": "before-the-upgrade"}, legacy_key, algorithm="HS256")

    assert "kid" not in jwt.get_unverified_header(unnamed)
    assert requests.get(f"{server.url}/v2/", headers={"Authorization": f"Bearer {unnamed}"}, timeout=30).status_code == 200
    keys = meta.find_one({"_id": "token_keys"})
    assert jwt.get_unverified_header(fresh)["kid"] == keys["current"] == keys["legacy_kid"]


def test_every_legacy_blob_link_counts_its_age_for_the_collector_from_when_it_was_made(upgraded, mongo):
    server, _ = upgraded

    links = list(pymongo.MongoClient(mongo.uri)[server.db_name]["repository_blobs"].find())

    assert links and all(link["touched_at"] >= link["created_at"] for link in links)
