"""The deliveries' history (storage/deliveries.py): placed by id among its webhook's, and expired by ranged
deletes rather than a TTL index; and the deliveries of version 6 moved there (storage/migrations.py)."""
import asyncio
import datetime
import secrets

import pymongo
import pytest

from storage.clock import utcnow
from storage.deliveries import PENDING, SUCCEEDED, SyncDeliveries, new_delivery, of_webhook
from storage.migrations import split_delivery_history

DAY = 86400


@pytest.fixture
def db(mongo):
    client = pymongo.MongoClient(mongo.uri, tz_aware=True)
    yield client[f"history_{secrets.token_hex(4)}"]
    client.close()


def ended(webhook_id, occurred_days_ago, expires_in_days):
    """A delivery that succeeded, made when its event occurred ``occurred_days_ago``, expiring
    ``expires_in_days`` from now (negative: expired)."""
    now = utcnow()
    event = {"_id": f"evt_{secrets.token_hex(16)}", "type": "PING", "occurred_at": now - datetime.timedelta(
        days=occurred_days_ago)}
    return {**new_delivery(event, webhook_id, "{}", "application/json"), "status": SUCCEEDED,
            "created_at": event["occurred_at"], "expire_at": now + datetime.timedelta(days=expires_in_days)}


def test_the_expiry_deletes_every_webhooks_expired_history_and_keeps_the_rest(db):
    deliveries = SyncDeliveries(db)
    first, second = (f"wh_{secrets.token_hex(16)}" for _ in range(2))
    expired = [ended(first, 40, -1), ended(second, 31, -0.5)]
    kept = [ended(first, 40, 1), ended(second, 1, 29), ended(first, 0, 30)]
    deliveries.insert(expired + kept)

    assert deliveries.expire(30 * DAY) == (2, None)

    assert sorted(doc["_id"] for doc in db["delivery_history"].find()) == sorted(doc["_id"] for doc in kept)


def test_a_delivery_a_previous_version_ended_in_place_expires_there(db):
    deliveries = SyncDeliveries(db)
    expired, kept = ended(f"wh_{secrets.token_hex(16)}", 31, -1), ended(f"wh_{secrets.token_hex(16)}", 1, 29)
    db["deliveries"].insert_many([expired, kept, {**ended(f"wh_{secrets.token_hex(16)}", 40, -1), "status": "pending"}])

    assert deliveries.expire(30 * DAY) == (1, None)

    assert sorted(doc["_id"] for doc in db["deliveries"].find({"status": SUCCEEDED})) == [kept["_id"]]


def test_a_fan_outs_delivery_made_twice_is_stored_once(db):
    deliveries = SyncDeliveries(db)
    delivery = ended(f"wh_{secrets.token_hex(16)}", 0, 30)

    assert deliveries.insert([delivery]) == [delivery]
    assert deliveries.insert([{**delivery, "body": "again"}]) == []

    assert [doc["body"] for doc in db["delivery_history"].find()] == ["{}"]


def test_an_expiry_cut_short_goes_on_from_the_webhook_it_reached(db):
    deliveries = SyncDeliveries(db)
    webhooks = sorted(f"wh_{secrets.token_hex(16)}" for _ in range(3))
    deliveries.insert([ended(webhook, 40, -1) for webhook in webhooks])

    steps, after, total = 0, None, 0
    while steps == 0 or after is not None:
        deleted, after = deliveries.expire(30 * DAY, after, seconds=0)  # one webhook a step
        steps, total = steps + 1, total + deleted

    assert (steps, total) == (4, 3)
    assert db["delivery_history"].count_documents({}) == 0


def version_6(delivery, status):
    """``delivery`` as a node of version 6 stores it: a random id."""
    return {**delivery, "_id": f"dlv_{secrets.token_hex(16)}", "status": status}


def test_a_delivery_a_version_6_node_stored_enters_the_history_under_an_id_of_this_version(db):
    deliveries = SyncDeliveries(db)
    webhook = f"wh_{secrets.token_hex(16)}"
    old = version_6(ended(webhook, 40, -1), SUCCEEDED)

    deliveries.insert([old])

    [stored] = db["delivery_history"].find({"_id": of_webhook(webhook)})
    assert stored["_id"] != old["_id"] and stored["event_id"] == old["event_id"]
    assert deliveries.expire(30 * DAY) == (1, None)


def test_a_delivery_another_dispatcher_ended_is_left_without_being_sent_when_taken(db):
    deliveries = SyncDeliveries(db)
    delivery = {**ended(f"wh_{secrets.token_hex(16)}", 0, 30), "status": PENDING}
    deliveries.insert([delivery])
    db["delivery_history"].insert_one({**delivery, "status": SUCCEEDED})

    taken = deliveries.take(deliveries.due(10, set()), "node", 30)

    assert taken == []
    assert db["deliveries"].count_documents({}) == 0
    assert [doc["status"] for doc in db["delivery_history"].find()] == [SUCCEEDED]


def test_the_migration_run_again_moves_a_delivery_as_it_stands_now(db, mongo):
    """A run cut short copied a pending delivery; a node of version 6 then ended it. The run again moves the
    ended delivery to the history and leaves no copy behind."""
    delivery = {**ended(f"wh_{secrets.token_hex(16)}", 0, 30), "status": PENDING}
    old = version_6(delivery, SUCCEEDED)
    db["deliveries"].insert_many([old, {**delivery, "lease_token": None}])

    asyncio.run(migrate(mongo.uri, db.name))

    assert db["deliveries"].count_documents({}) == 0
    [moved] = db["delivery_history"].find()
    assert (moved["_id"], moved["status"]) == (delivery["_id"], SUCCEEDED)


async def migrate(uri, name):
    client = pymongo.AsyncMongoClient(uri, tz_aware=True)
    try:
        await split_delivery_history(client[name])
    finally:
        await client.close()
