"""The deliveries' history (storage/deliveries.py): placed by id among its webhook's, and expired by ranged
deletes rather than a TTL index."""
import datetime
import secrets

import pymongo
import pytest

from storage.clock import utcnow
from storage.deliveries import SUCCEEDED, SyncDeliveries, new_delivery

DAY = 86400


@pytest.fixture
def db(mongo):
    client = pymongo.MongoClient(mongo.uri, tz_aware=True)
    yield client[f"history_{secrets.token_hex(4)}"]
    client.close()


def ended(webhook_id, occurred_days_ago, expires_in_days):
    """A delivery that succeeded, of an event that occurred ``occurred_days_ago``, expiring ``expires_in_days``
    from now (negative: expired)."""
    now = utcnow()
    event = {"_id": f"evt_{secrets.token_hex(16)}", "type": "PING", "occurred_at": now - datetime.timedelta(
        days=occurred_days_ago)}
    return {**new_delivery(event, webhook_id, "{}", "application/json"), "status": SUCCEEDED,
            "expire_at": now + datetime.timedelta(days=expires_in_days)}


def test_the_expiry_deletes_every_webhooks_expired_history_and_keeps_the_rest(db):
    deliveries = SyncDeliveries(db)
    first, second = (f"wh_{secrets.token_hex(16)}" for _ in range(2))
    expired = [ended(first, 40, -1), ended(second, 31, -0.5)]
    kept = [ended(first, 40, 1), ended(second, 1, 29), ended(first, 0, 30)]
    deliveries.insert(expired + kept)

    assert deliveries.expire(30 * DAY) == 2

    assert sorted(doc["_id"] for doc in db["delivery_history"].find()) == sorted(doc["_id"] for doc in kept)


def test_a_delivery_a_previous_version_ended_in_place_expires_there(db):
    deliveries = SyncDeliveries(db)
    expired, kept = ended(f"wh_{secrets.token_hex(16)}", 31, -1), ended(f"wh_{secrets.token_hex(16)}", 1, 29)
    db["deliveries"].insert_many([expired, kept, {**ended(f"wh_{secrets.token_hex(16)}", 40, -1), "status": "pending"}])

    assert deliveries.expire(30 * DAY) == 1

    assert sorted(doc["_id"] for doc in db["deliveries"].find({"status": SUCCEEDED})) == [kept["_id"]]


def test_a_fan_outs_delivery_made_twice_is_stored_once(db):
    deliveries = SyncDeliveries(db)
    delivery = ended(f"wh_{secrets.token_hex(16)}", 0, 30)

    assert deliveries.insert([delivery]) == [delivery]
    assert deliveries.insert([{**delivery, "body": "again"}]) == []

    assert [doc["body"] for doc in db["delivery_history"].find()] == ["{}"]
