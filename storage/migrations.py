"""Changes of stored shape, applied once per database, in order, before the indexes that rely on them.

The database records the last step applied (``meta.schema_version``); every node runs the same
list at start under a cluster-wide lock, so a step runs once however many nodes start together.
Each step is idempotent: one interrupted half-way runs again whole.
"""
import logging

from pymongo.errors import OperationFailure

from storage.deliveries import ENDED, HISTORY, VERSION_6_ID, placed
from storage.token_keys import LEGACY_KEY_ID, insert_key_set, key_set, new_key
from storage.users import username_key

log = logging.getLogger("cyp.migrations")

SCHEMA_VERSION_KEY = "schema_version"


async def fold_usernames(db):
    """Version 1: usernames become unique without regard to case (``username_key``).

    Two accounts from before whose names differ only in case both keep working (each logs in by its
    exact spelling); the later one's key carries its id so the index holds, and the pair is logged.
    """
    users = db["users"]
    taken = {}
    async for user in users.find({}, {"username": 1, "username_key": 1}).sort([("created_at", 1), ("_id", 1)]):
        key = username_key(user["username"])
        if key in taken:
            log.warning("usernames differ only in case; new accounts can no longer do this",
                        extra={"kept": taken[key], "also": user["username"]})
            key = f"{key}#{user['_id']}"
        else:
            taken[key] = user["username"]
        if user.get("username_key") != key:
            await users.update_one({"_id": user["_id"]}, {"$set": {"username_key": key}})


async def retire_unfanned_events(db):
    """Version 2: events got a shape webhooks deliver (``occurred_at``, ``data``, an ``evt_`` id). Those
    written before had no webhook to go to; they are marked dispatched and expire with the rest."""
    await db["events"].update_many({"occurred_at": {"$exists": False}},
                                   [{"$set": {"status": "dispatched", "occurred_at": "$created_at",
                                              "data": "$payload", "expire_at": "$created_at"}}])


async def copy_blob_refs_into_links(db):
    """Version 3: a link carries its blob's size and ref, so a blob read is one round trip."""
    blobs = db["blobs"]
    async for link in db["repository_blobs"].find({"ref": {"$exists": False}}, {"digest": 1}):
        blob = await blobs.find_one({"_id": link["digest"]}, {"size": 1, "ref": 1})
        if blob is not None:
            await db["repository_blobs"].update_one({"_id": link["_id"]},
                                                    {"$set": {"size": blob["size"], "ref": blob["ref"]}})


async def copy_manifest_types_into_tags(db):
    """Version 4: a tag carries its manifest's media type and size, so a read by tag is one round trip."""
    manifests = db["manifests"]
    async for tag in db["tags"].find({"media_type": {"$exists": False}}, {"repo": 1, "digest": 1}):
        manifest = await manifests.find_one({"repo": tag["repo"], "digest": tag["digest"]}, {"media_type": 1, "size": 1})
        if manifest is None:  # a tag left by a manifest deleted before tags went with their manifests
            await db["tags"].delete_one({"_id": tag["_id"]})
        else:
            await db["tags"].update_one({"_id": tag["_id"]}, {"$set": {"media_type": manifest["media_type"],
                                                                       "size": manifest["size"]}})


async def name_the_signing_key(db):
    """Version 5: signing keys carry a ``kid`` and rotate (storage/token_keys.py). The one key of before becomes
    the first of the set, and verifies the tokens without a ``kid`` it signed until it is retired and they
    expire; its old document stays for nodes of the previous version during a rolling upgrade."""
    legacy = await db["meta"].find_one({"_id": LEGACY_KEY_ID})
    if legacy is not None:
        await insert_key_set(db["meta"], key_set(new_key(legacy["value"]), legacy=True))


async def touch_links(db):
    """Version 6: links carry ``touched_at`` (when a push or a manifest last relied on them), which the garbage
    collector's grace period counts from; a link from before was last relied on when it was made."""
    await db["repository_blobs"].update_many({"touched_at": {"$exists": False}}, [{"$set": {"touched_at": "$created_at"}}])


# What version 6 indexed deliveries by, which their ids now do.
RETIRED_DELIVERY_INDEXES = ("event_id_1_webhook_id_1_redelivery_1", "webhook_id_1_created_at_-1", "expire_at_1")


async def split_delivery_history(db):
    """Version 7: deliveries that have ended move to ``delivery_history``, and every delivery gets an id that
    places it among its webhook's (storage/deliveries.py). The indexes those ids replace
    are dropped first: the unique one would refuse a delivery under its new id beside its old self. Each
    delivery is written under its new id before the old one is deleted, and deleted only as it was copied:
    one a node of version 6 took or ended meanwhile (during a rolling upgrade) is copied again."""
    deliveries, history = db["deliveries"], db[HISTORY]
    for name in RETIRED_DELIVERY_INDEXES:
        try:
            await deliveries.drop_index(name)
        except OperationFailure:  # not there (a database that never had it, or a run that dropped it)
            pass
    async for doc in deliveries.find({"_id": {"$regex": VERSION_6_ID.pattern}}):
        at = doc["created_at"]
        if not doc.get("redelivery"):  # a fan-out's is placed when its event occurred, as a fan-out again would
            event = await db["events"].find_one({"_id": doc["event_id"]}, {"occurred_at": 1})
            at = event["occurred_at"] if event else at
        while doc is not None:
            moved = placed(doc, at)
            into, other = (history, deliveries) if doc["status"] in ENDED else (deliveries, history)
            await into.replace_one({"_id": moved["_id"]}, moved, upsert=True)
            await other.delete_one({"_id": moved["_id"]})  # the copy a run of this step cut short made before
            gone = await deliveries.delete_one({key: doc.get(key) for key in ("_id", "status", "lease_token",
                                                                              "updated_at")})
            doc = None if gone.deleted_count else await deliveries.find_one({"_id": doc["_id"]})


MIGRATIONS = [
    (1, fold_usernames),
    (2, retire_unfanned_events),
    (3, copy_blob_refs_into_links),
    (4, copy_manifest_types_into_tags),
    (5, name_the_signing_key),
    (6, touch_links),
    (7, split_delivery_history),
]
LATEST = MIGRATIONS[-1][0]


async def migrate(db, meta):
    """Bring the database to the latest shape; answers the versions applied."""
    if (await meta.get(SCHEMA_VERSION_KEY) or 0) >= LATEST:
        return []
    applied = []
    async with meta.lock("migrations", lease_seconds=600, wait_seconds=600):
        current = await meta.get(SCHEMA_VERSION_KEY) or 0
        for version, step in MIGRATIONS:
            if version <= current:
                continue
            log.info("applying migration", extra={"version": version, "step": step.__name__})
            await step(db)
            await meta.set(SCHEMA_VERSION_KEY, version)
            applied.append(version)
    return applied
