"""Webhook deliveries stored by an earlier version keep working: the server moves them to their new place
and ids at start (migration 7, storage/migrations.py).

The fixture was written by main at 0fa5a22 (tests/fixtures/write_deliveries_database.py tells how): two global
PING webhooks, one whose receiver answered 204 (a delivery and its redelivery, succeeded) and one whose receiver
answered 503 (a delivery pending a retry an hour later).
"""
import gzip
from pathlib import Path

import pymongo
import pytest
from bson import json_util

from storage.clock import utcnow
from tests.fixtures.write_deliveries_database import KEY
from tests.support.api_client import Api, ok
from tests.support.clients import wait_until
from tests.support.processes import RegistryServer
from tests.support.webhook_receiver import Receiver

FIXTURE = Path(__file__).parent / "fixtures" / "deliveries-v6-database.json.gz"
SETTINGS = {"CYP_CREDENTIALS_KEY": KEY, "CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32",
            "CYP_WEBHOOK_RETRY_SCHEDULE": "0,0.3,0.6,1"}


def restore(mongo_uri, db_name, receiver_url):
    """The fixture's collections, indexes and schema version, with two changes time and place make: the pending
    delivery's retry is due now, and its webhook's receiver is the test's."""
    dump = json_util.loads(gzip.decompress(FIXTURE.read_bytes()).decode())
    db = pymongo.MongoClient(mongo_uri)[db_name]
    for name, documents in dump["collections"].items():
        db[name].insert_many(documents)
    for index in dump["delivery_indexes"]:
        db["deliveries"].create_index(list(index["key"].items()), name=index["name"],
                                      **{key: index[key] for key in ("unique", "expireAfterSeconds") if key in index})
    db["meta"].insert_one({"_id": "schema_version", "value": dump["schema_version"]})
    db["deliveries"].update_many({"status": "pending"}, {"$set": {"next_attempt_at": utcnow()}})
    db["webhooks"].update_one({"_id": dump["facts"]["webhooks"]["down"]}, {"$set": {"url": receiver_url}})
    return dump


@pytest.fixture(scope="module")
def upgraded(mongo, tmp_path_factory):
    receiver = Receiver().start()
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("upgrade-deliveries"), env=SETTINGS)
    dump = restore(mongo.uri, server.db_name, receiver.url)
    server.start()
    store = pymongo.MongoClient(mongo.uri)[server.db_name]
    yield server, dump, receiver, store
    server.stop()
    receiver.stop()


def admin_of(server):
    return Api(server.url).session("admin", server.admin_password)


def listed(server, webhook_id):
    return ok(admin_of(server).get(f"/api/v1/webhooks/{webhook_id}/deliveries"))["items"]


def test_the_succeeded_deliveries_are_listed_under_their_webhook_newest_first_with_their_attempts(upgraded):
    server, dump, _, _ = upgraded
    before = sorted((doc for doc in dump["collections"]["deliveries"] if doc["status"] == "succeeded"),
                    key=lambda doc: doc["created_at"], reverse=True)

    items = listed(server, dump["facts"]["webhooks"]["ok"])

    assert [(item["event_id"], item["redelivery"], item["status"], item["attempt_count"]) for item in items] == [
        (doc["event_id"], doc["redelivery"], "succeeded", 1) for doc in before]
    assert [item["attempts"][0]["status"] for item in items] == [204, 204]
    assert all(item["id"].startswith("dlv_" + dump["facts"]["webhooks"]["ok"].removeprefix("wh_") + "_")
               for item in items)


def test_a_delivery_left_pending_by_the_previous_version_is_sent_after_the_upgrade(upgraded):
    server, dump, receiver, _ = upgraded
    [pending] = [doc for doc in dump["collections"]["deliveries"] if doc["status"] == "pending"]

    assert receiver.wait_for(lambda item: item["document"]["id"] == pending["event_id"], 20)
    [item] = wait_until(lambda: [item for item in listed(server, pending["webhook_id"])
                                 if item["status"] == "succeeded"], 10)
    assert item["event_id"] == pending["event_id"] and item["attempt_count"] == 2
    assert [attempt["status"] for attempt in item["attempts"]] == [503, 200]


def test_ended_deliveries_move_to_the_history_and_the_retired_indexes_are_dropped(upgraded):
    server, dump, _, store = upgraded
    wait_until(lambda: store["deliveries"].count_documents({}) == 0, 20)

    assert store["meta"].find_one({"_id": "schema_version"})["value"] == 7
    assert sorted(doc["event_id"] for doc in store["delivery_history"].find()) == sorted(
        doc["event_id"] for doc in dump["collections"]["deliveries"])
    assert sorted(index["name"] for index in store["deliveries"].list_indexes()) == [
        "_id_", "status_1_lease_until_1", "status_1_next_attempt_at_1"]
    assert [index["name"] for index in store["delivery_history"].list_indexes()] == ["_id_"]
