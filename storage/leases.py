"""Claiming documents under a lease: candidates come from sorted queries, and each is taken with an
update by ``_id`` that repeats the condition, so two claimers never take the same document.

findAndModify would do both in one command, but SecantusDB 0.7.0b3 runs every findAndModify as a scan
of the whole collection (80 ms at 10 000 documents, even by ``_id``, against 0.8 ms for an update by
``_id``): claiming one document at a time made the webhook dispatcher quadratic in its backlog. Conditions
hold no ``$or`` either: SecantusDB answers one by reading every document, even beside an ``_id``
(29 ms against 0.75 ms at 5 000 documents), so a claim that has two ways to match asks each in turn.
"""
import os
import socket
import uuid


def holder_name():
    """Who holds a lease: host, process id (so an operator finds the process) and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def candidates(collection, condition, sort, limit, fields=()):
    """Up to ``limit`` documents matching ``condition``, first by ``sort``: their ``_id`` and ``fields``."""
    return list(collection.find(condition, {"_id": 1, **{name: 1 for name in fields}}).sort(sort).limit(limit))


def take(collection, doc_id, condition, update):
    """The document once ``update`` took it while it still matched ``condition``; None when it no longer
    does (another claimer took it first)."""
    if collection.update_one({**condition, "_id": doc_id}, update).modified_count:
        return collection.find_one({"_id": doc_id})
    return None


def claim(collection, conditions, sort, limit, update):
    """Yield up to ``limit`` documents matching one of ``conditions`` (those of the first, then of the next),
    each first by ``sort``, each as ``update()`` (one per document) takes it."""
    for condition in conditions:
        for candidate in candidates(collection, condition, sort, limit):
            taken = take(collection, candidate["_id"], condition, update())
            if taken is not None:
                limit -= 1
                yield taken
        if limit <= 0:
            return
