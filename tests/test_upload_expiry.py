"""Abandoned uploads expire: their session is gone and their partial data is deleted."""
import pymongo
import pytest

from tests.support.clients import wait_until
from tests.support.processes import RegistryServer
from tests.support.projects import api_login, create_project
from tests.support.registry_client import RegistryClient


@pytest.fixture
def quick_expiry_server(mongo, tmp_path):
    server = RegistryServer(mongo.uri, tmp_path, env={
        "CYP_UPLOAD_EXPIRY_SECONDS": "2", "CYP_UPLOAD_SWEEP_INTERVAL_SECONDS": "1"}).start()
    yield server
    server.stop()


def test_an_abandoned_upload_expires_and_its_chunks_are_deleted(quick_expiry_server, mongo):
    token = api_login(quick_expiry_server.url, "admin", quick_expiry_server.admin_password)
    create_project(quick_expiry_server.url, token, "expiry")
    client = RegistryClient(quick_expiry_server.url, "admin", quick_expiry_server.admin_password)
    scope = "repository:expiry/app:pull,push"
    started = client.request("POST", "/v2/expiry/app/blobs/uploads/", scope)
    location = started.headers["Location"]
    client.request("PATCH", location, scope, data=b"x" * (3 * 1024 * 1024),
                   headers={"Content-Range": f"0-{3 * 1024 * 1024 - 1}"})
    db = pymongo.MongoClient(mongo.uri)[quick_expiry_server.db_name]
    upload_id = started.headers["Docker-Upload-UUID"]
    file_id = db.uploads.find_one({"_id": upload_id})["store_state"]["file_id"]
    assert db["fs.chunks"].count_documents({"files_id": file_id}) == 3

    assert wait_until(lambda: db.uploads.find_one({"_id": upload_id}) is None, timeout=20, interval=0.5)

    assert db["fs.chunks"].count_documents({"files_id": file_id}) == 0
    status = client.request("GET", location, scope)
    assert status.status_code == 404
    assert status.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
