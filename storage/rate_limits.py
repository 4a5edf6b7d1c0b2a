"""Request counters of the rate limits, shared by every node: one document per caller and fixed window,
``{_id: "<window start>:<key>", window, key, count, expires_at}``, removed by a TTL index once the window
is over. Nodes add their increments in bulk (services/rate_limits.py) rather than once per request."""
import datetime

from pymongo import UpdateOne


def _id(window, key):
    return f"{window}:{key}"


class RateCounters:
    def __init__(self, db):
        self.collection = db["rate_limits"]

    async def ensure_indexes(self):
        await self.collection.create_index("expires_at", expireAfterSeconds=0)
        await self.collection.create_index([("window", 1), ("count", 1)])

    async def add(self, window, counts, expires_at):
        """Add ``{key: n}`` to the counters of the window starting at ``window`` (epoch seconds)."""
        await self.collection.bulk_write([
            UpdateOne({"_id": _id(window, key)},
                      {"$inc": {"count": n}, "$setOnInsert": {"window": window, "key": key, "expires_at": expires_at}},
                      upsert=True)
            for key, n in counts.items()], ordered=False)

    async def totals(self, window, keys, at_least):
        """``{key: count}`` in the window for ``keys``, and for every other key whose count reached ``at_least``.
        Two queries, each on an index (SecantusDB scans the whole collection for an ``$or`` of the two)."""
        found = {}
        queries = [{"window": window, "count": {"$gte": at_least}}]
        if keys:
            queries.append({"_id": {"$in": [_id(window, key) for key in keys]}})
        for query in queries:
            async for doc in self.collection.find(query, {"key": 1, "count": 1}):
                found[doc["key"]] = doc["count"]
        return found


def window_end(window, seconds):
    """The time ``seconds`` after the start of ``window`` (epoch seconds)."""
    return datetime.datetime.fromtimestamp(window + seconds, datetime.timezone.utc)
