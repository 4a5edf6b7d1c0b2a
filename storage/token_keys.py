"""The token signing keys every node signs and verifies with: one document in ``meta``.

``{_id: "token_keys", current: KID, legacy_kid: KID or None, keys: [{kid, secret, created_at, retired_at}]}``:
``current`` signs; a key retired by a rotation still verifies the tokens it signed until they expire.
``legacy_kid`` names the key kept from before keys had ids (migration 5): tokens without a ``kid``
header were signed by it.
"""
import secrets

from pymongo.errors import DuplicateKeyError

from storage.clock import utcnow

KEYS_ID = "token_keys"
# The key of versions before key ids; kept where it was for nodes of that version during a rolling upgrade.
LEGACY_KEY_ID = "registry_signing_key"


def new_key(secret=None):
    return {"kid": secrets.token_hex(8), "secret": secret or secrets.token_hex(32), "created_at": utcnow(),
            "retired_at": None}


def key_set(key, legacy=False):
    return {"_id": KEYS_ID, "current": key["kid"], "legacy_kid": key["kid"] if legacy else None, "keys": [key]}


async def insert_key_set(meta_collection, doc):
    """Store the first key set; one stored first (by another node) stays."""
    try:
        await meta_collection.insert_one(doc)
    except DuplicateKeyError:
        pass


class TokenKeys:
    def __init__(self, db):
        self.collection = db["meta"]

    async def ensure(self):
        """The key set, made with one fresh key by the first node to start on an empty database."""
        await insert_key_set(self.collection, key_set(new_key()))
        return await self.load()

    async def load(self):
        return await self.collection.find_one({"_id": KEYS_ID})

    async def rotate(self, expired_before):
        """A new current key; the previous one is retired now, and keys retired before ``expired_before`` (their
        tokens all expired) are dropped. Answers ``(new key, previous kid, dropped kids)``; a rotation made
        elsewhere at the same moment is read again and rotated after."""
        while True:
            doc = await self.load()
            now, key = utcnow(), new_key()
            dropped = [k["kid"] for k in doc["keys"] if k["retired_at"] is not None and k["retired_at"] < expired_before]
            kept = [{**k, "retired_at": k["retired_at"] or now} for k in doc["keys"] if k["kid"] not in dropped]
            result = await self.collection.update_one(
                {"_id": KEYS_ID, "current": doc["current"]},
                {"$set": {"current": key["kid"], "keys": [*kept, key],
                          **({"legacy_kid": None} if doc.get("legacy_kid") in dropped else {})}})
            if result.modified_count:
                return key, doc["current"], dropped

    async def remove(self, kid):
        """Drop a retired key now (its tokens are refused at once); False when no retired key has that id."""
        result = await self.collection.update_one(
            {"_id": KEYS_ID, "current": {"$ne": kid}, "keys.kid": kid}, {"$pull": {"keys": {"kid": kid}}})
        if result.modified_count:
            await self.collection.update_one({"_id": KEYS_ID, "legacy_kid": kid}, {"$set": {"legacy_kid": None}})
        return bool(result.modified_count)
