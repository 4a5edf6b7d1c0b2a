"""Claiming documents under a lease: candidates come from sorted queries, and each is taken with an
update by ``_id`` that repeats the condition, so two claimers never take the same document.

findAndModify would do both in one command, but SecantusDB 0.7.0b3 runs every findAndModify as a scan
of the whole collection (80 ms at 10 000 documents, even by ``_id``, against 0.8 ms for an update by
``_id``): claiming one document at a time made the webhook dispatcher quadratic in its backlog.
"""


def candidates(collection, condition, sort, limit, fields=()):
    """Up to ``limit`` documents matching ``condition``, first by ``sort``: their ``_id`` and ``fields``."""
    return list(collection.find(condition, {"_id": 1, **{name: 1 for name in fields}}).sort(sort).limit(limit))


def take(collection, doc_id, condition, update):
    """The document once ``update`` took it while it still matched ``condition``; None when it no longer
    does (another claimer took it first)."""
    if collection.update_one({**condition, "_id": doc_id}, update).modified_count:
        return collection.find_one({"_id": doc_id})
    return None


def claim(collection, condition, sort, limit, update):
    """Yield up to ``limit`` documents matching ``condition``, first by ``sort``, each as ``update()`` (one
    per document) takes it."""
    for candidate in candidates(collection, condition, sort, limit):
        taken = take(collection, candidate["_id"], condition, update())
        if taken is not None:
            yield taken
