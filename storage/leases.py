"""Claiming documents under a lease: the candidates come from one sorted query, and each is taken with
an update by ``_id`` that repeats the condition, so two claimers never take the same document.

findAndModify would do both in one command, but SecantusDB 0.7.0b3 runs every findAndModify as a scan
of the whole collection (80 ms at 10 000 documents, even by ``_id``, against 0.8 ms for an update by
``_id``): claiming one event at a time made the webhook dispatcher quadratic in its backlog.
"""


def claim(collection, condition, sort, limit, update, fields=(), accept=None):
    """Yield up to ``limit`` documents matching ``condition``, first by ``sort``, each once ``update()``
    (called per document) has taken it. ``accept(candidate)``, given ``_id`` and ``fields``, may pass
    over a candidate at the moment it would be taken; one another claimer took first is skipped."""
    candidates = collection.find(condition, {"_id": 1, **{name: 1 for name in fields}}).sort(sort).limit(limit)
    for candidate in list(candidates):
        if accept is not None and not accept(candidate):
            continue
        if collection.update_one({**condition, "_id": candidate["_id"]}, update()).modified_count:
            taken = collection.find_one({"_id": candidate["_id"]})
            if taken is not None:
                yield taken
