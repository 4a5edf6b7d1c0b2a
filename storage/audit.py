"""The audit log: one document per recorded action, expired by a TTL index on its time.

The retention is the TTL index's ``expireAfterSeconds``; a changed setting retunes the existing index at
start (``collMod``), so records already written follow the new retention too.
"""
import logging

from pymongo.errors import BulkWriteError

log = logging.getLogger("cyp.storage")

TTL_INDEX = "at_ttl"
DUPLICATE_KEY = 11000


class AuditRecords:
    def __init__(self, db, retention_seconds):
        self.collection = db["audit_logs"]
        self.retention_seconds = retention_seconds

    async def ensure_indexes(self):
        existing = {index["name"]: index for index in await (await self.collection.list_indexes()).to_list(None)}
        ttl = existing.get(TTL_INDEX)
        if ttl is None:
            await self.collection.create_index("at", name=TTL_INDEX, expireAfterSeconds=self.retention_seconds)
        elif ttl.get("expireAfterSeconds") != self.retention_seconds:
            await self.collection.database.command("collMod", self.collection.name, index={
                "name": TTL_INDEX, "expireAfterSeconds": self.retention_seconds})
            log.info("audit log retention changed", extra={
                "from_seconds": ttl.get("expireAfterSeconds"), "to_seconds": self.retention_seconds})
        # visible_to: a non-administrator's list; username: the list's filter by name.
        for field in ("project_id", "user_id", "operation", "visible_to", "username"):
            await self.collection.create_index([(field, 1), ("at", -1)])

    async def insert_many(self, docs):
        """Write ``docs``; ones already written (a retry after an error part-way) are skipped."""
        if not docs:
            return
        try:
            await self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(error["code"] != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])) or \
                    exc.details.get("writeConcernErrors"):
                raise

    async def page(self, query, skip, limit):
        """``(records, total)`` matching ``query``, newest first."""
        total = await self.collection.count_documents(query)
        docs = await self.collection.find(query).sort([("at", -1), ("_id", -1)]).skip(skip).limit(limit).to_list(None)
        return docs, total
