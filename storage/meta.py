"""Registry-wide singletons shared by every node: the token signing key, the bootstrap state, locks."""
import asyncio
import contextlib
import datetime
import uuid

from pymongo.errors import DuplicateKeyError

from storage.clock import utcnow


class Meta:
    def __init__(self, db):
        self.collection = db["meta"]

    async def get_or_create(self, key, value):
        """The stored value of ``key``; ``value`` is stored first if there is none (first node wins)."""
        try:
            await self.collection.insert_one({"_id": key, "value": value})
        except DuplicateKeyError:
            pass
        doc = await self.collection.find_one({"_id": key})
        return doc["value"]

    async def get(self, key):
        doc = await self.collection.find_one({"_id": key})
        return doc["value"] if doc else None

    async def set(self, key, value):
        await self.collection.update_one({"_id": key}, {"$set": {"value": value}}, upsert=True)

    async def take_once(self, key):
        """Atomically mark ``key`` as taken; True only for the first caller, on any node."""
        result = await self.collection.update_one({"_id": key, "taken": {"$ne": True}}, {"$set": {"taken": True}})
        return result.modified_count == 1

    @contextlib.asynccontextmanager
    async def lock(self, name, lease_seconds=10, wait_seconds=10):
        """A lock every node respects; the lease frees it should its holder die."""
        token, deadline = uuid.uuid4().hex, asyncio.get_running_loop().time() + wait_seconds
        key = f"lock:{name}"
        while True:
            now = utcnow()
            try:
                taken = await self.collection.find_one_and_update(
                    {"_id": key, "$or": [{"until": None}, {"until": {"$lt": now}}]},
                    {"$set": {"token": token, "until": now + datetime.timedelta(seconds=lease_seconds)}},
                    upsert=True)
            except DuplicateKeyError:  # held: the upsert met the existing document
                taken = None
            if taken is not None or await self.collection.find_one({"_id": key, "token": token}):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"lock {name} is busy")
            await asyncio.sleep(0.02)
        try:
            yield
        finally:
            await self.collection.update_one({"_id": key, "token": token}, {"$set": {"until": None}})


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class ScheduledLease:
    """A piece of work done once per interval across the cluster: a node takes the lease when the work is due
    (its own interval since the last run ended, so a changed setting applies at once) and nobody holds it,
    renews it while working, and records when it finished. A holder that dies stops renewing; the lease runs
    out and the next node to look takes the work over.

    ``{_id: "lease:NAME", token, owner, until, done_at}`` in ``meta``."""

    def __init__(self, meta, name, interval_seconds, lease_seconds):
        self.collection = meta.collection
        self.key = f"lease:{name}"
        self.interval = datetime.timedelta(seconds=interval_seconds)
        self.lease = datetime.timedelta(seconds=lease_seconds)
        self.renew_every = lease_seconds / 3

    async def take(self, owner, due_only=True):
        """A lease token when the work is unheld and due (or, ``due_only`` False, whenever it is unheld: a run asked
        for now); it is then this caller's. Else None."""
        now = utcnow()
        doc = await self.collection.find_one({"_id": self.key})
        if doc is None:  # the first node to look: the first scheduled run is one interval from now
            with contextlib.suppress(DuplicateKeyError):
                await self.collection.insert_one({"_id": self.key, "token": None, "owner": None, "until": EPOCH,
                                                  "done_at": now})
            if due_only:
                return None
            doc = await self.collection.find_one({"_id": self.key})
        if (due_only and doc["done_at"] + self.interval > now) or doc["until"] >= now:
            return None
        token = uuid.uuid4().hex
        update = asyncio.ensure_future(self.collection.update_one(
            {"_id": self.key, "token": doc["token"], "until": doc["until"]},
            {"$set": {"token": token, "owner": owner, "until": now + self.lease}}))
        try:
            taken = await asyncio.shield(update)
        except asyncio.CancelledError:
            # A stop cancelled the wait for the answer. The update, once sent, is applied whatever the wait,
            # possibly after a release sent at once on another connection: so it is let end, and a lease it
            # took is handed back (held, it would block the others for its whole time).
            await asyncio.wait([update])
            if not update.cancelled() and update.exception() is None and update.result().modified_count:
                await self.release(token, done=False)
            raise
        return token if taken.modified_count else None

    async def holder(self):
        """The owner of the lease while it is held, else None."""
        doc = await self.collection.find_one({"_id": self.key, "until": {"$gte": utcnow()}}, {"owner": 1})
        return doc["owner"] if doc else None

    async def renew(self, token):
        """Whether the lease is still the caller's (then extended)."""
        renewed = await self.collection.update_one({"_id": self.key, "token": token},
                                                   {"$set": {"until": utcnow() + self.lease}})
        return renewed.matched_count == 1

    async def release(self, token, done):
        """Free the lease; ``done``: the work was done now (else it is still due, and another node takes it at
        once)."""
        fields = {"until": EPOCH, "owner": None, **({"done_at": utcnow()} if done else {})}
        await self.collection.update_one({"_id": self.key, "token": token}, {"$set": fields})
