"""Webhooks: where events go. Secrets and extra header values are stored sealed (services.credentials),
never in clear; the delivery health (last delivery, consecutive failed events, why disabled) is kept
on the webhook so every node sees it."""
import uuid

from pymongo import ReturnDocument, UpdateOne

from storage.clock import utcnow


class Webhooks:
    def __init__(self, db):
        self.collection = db["webhooks"]

    async def ensure_indexes(self):
        await self.collection.create_index([("project_id", 1), ("created_at", -1)])

    async def create(self, fields):
        now = utcnow()
        doc = {"_id": f"wh_{uuid.uuid4().hex}", "created_at": now, "updated_at": now, "last_delivery_at": None,
               "last_status": None, "consecutive_failures": 0, "disabled_reason": None, **fields}
        await self.collection.insert_one(doc)
        return doc

    async def get(self, webhook_id):
        return await self.collection.find_one({"_id": webhook_id})

    async def page(self, project_ids, include_global, skip, limit):
        """Webhooks of ``project_ids`` (None: of every project), and the global ones when asked."""
        scopes = [{"project_id": {"$in": list(project_ids)}}] if project_ids is not None else [
            {"project_id": {"$ne": None}}]
        if include_global:
            scopes.append({"project_id": None})
        query = {"$or": scopes}
        total = await self.collection.count_documents(query)
        docs = await self.collection.find(query).sort([("created_at", -1), ("_id", 1)]).skip(skip).limit(
            limit).to_list(None)
        return docs, total

    async def update(self, webhook_id, fields, unset=()):
        update = {"$set": {**fields, "updated_at": utcnow()}}
        if unset:
            update["$unset"] = {name: "" for name in unset}
        return await self.collection.find_one_and_update({"_id": webhook_id}, update,
                                                         return_document=ReturnDocument.AFTER)

    async def delete(self, webhook_id):
        return (await self.collection.delete_one({"_id": webhook_id})).deleted_count == 1

    async def delete_for_project(self, project_id):
        await self.collection.delete_many({"project_id": project_id})


class SyncWebhooks:
    """The dispatcher's side (synchronous driver)."""

    def __init__(self, db):
        self.collection = db["webhooks"]

    def get_many(self, webhook_ids):
        """``{id: webhook}`` of those of ``webhook_ids`` that exist, in one query."""
        return {doc["_id"]: doc for doc in self.collection.find({"_id": {"$in": list(webhook_ids)}})}

    def subscribed(self, event_types):
        """Enabled webhooks that want one of ``event_types`` (``matches`` tells which event each wants)."""
        return list(self.collection.find({"enabled": True, "events": {"$in": list(event_types)}}))

    def record_outcomes(self, outcomes):
        """``{webhook_id: (status of its last attempt, whether any attempt of the round succeeded)}`` kept on
        each webhook, in one round trip; a success clears the count of consecutive failed events."""
        writes = []
        for webhook_id, (status_code, succeeded) in outcomes.items():
            fields = {"last_delivery_at": utcnow(), "last_status": status_code}
            if succeeded:
                fields["consecutive_failures"] = 0
            writes.append(UpdateOne({"_id": webhook_id}, {"$set": fields}))
        if writes:
            self.collection.bulk_write(writes, ordered=False)

    def event_failed(self, webhook_id, disable_after):
        """One more event that exhausted its retries; disables the webhook at ``disable_after`` in a row."""
        doc = self.collection.find_one_and_update({"_id": webhook_id}, {"$inc": {"consecutive_failures": 1}},
                                                  return_document=ReturnDocument.AFTER)
        if doc is not None and doc["consecutive_failures"] >= disable_after and doc.get("enabled"):
            self.disable(webhook_id, f"{doc['consecutive_failures']} events in a row failed every retry")

    def disable(self, webhook_id, reason):
        self.collection.update_one({"_id": webhook_id, "enabled": True},
                                   {"$set": {"enabled": False, "disabled_reason": reason, "updated_at": utcnow()}})
