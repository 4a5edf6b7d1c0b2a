"""Claiming documents under a lease: candidates come from sorted queries, and a batch of them is taken with
one update naming them by ``_id`` that repeats the condition and sets a token of the batch, so two claimers
never take the same document.

findAndModify would do both in one command, but SecantusDB 0.7.0b3 runs every findAndModify as a scan
of the whole collection (80 ms at 10 000 documents, even by ``_id``, against 0.8 ms for an update by
``_id``): claiming one document at a time made the webhook dispatcher quadratic in its backlog. Conditions
hold no ``$or`` either: SecantusDB answers one by reading every document, even beside an ``_id``
(29 ms against 0.75 ms at 5 000 documents), so a claim that has two ways to match asks each in turn. One
update of 200 documents by ``_id`` with ``$in`` costs what five single updates cost (57 ms against 1.4 ms
each at 10 000 documents), so documents are taken in batches, not one by one.
"""
import os
import socket
import uuid


def holder_name():
    """Who holds a lease: host, process id (so an operator finds the process) and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def candidates(collection, condition, sort, limit, fields=()):
    """Up to ``limit`` documents matching ``condition``, first by ``sort``: their ``_id`` and ``fields`` (every
    field when ``fields`` is None)."""
    projection = None if fields is None else {"_id": 1, **{name: 1 for name in fields}}
    return list(collection.find(condition, projection).sort(sort).limit(limit))


def take_many(collection, docs, condition, fields, whole, token_prefix=""):
    """Those of ``docs`` that setting ``fields`` took while they still matched ``condition``, as they are
    now, each holding the batch's ``lease_token``. When every one was taken and ``docs`` are ``whole``
    documents, they are answered from memory; otherwise those taken are read back by their token."""
    if not docs:
        return []
    token = f"{token_prefix}{uuid.uuid4().hex}"
    ids = [doc["_id"] for doc in docs]
    fields = {**fields, "lease_token": token}
    taken = collection.update_many({**condition, "_id": {"$in": ids}}, {"$set": fields}).modified_count
    if taken == len(ids) and whole:
        return [{**doc, **fields} for doc in docs]
    return list(collection.find({"_id": {"$in": ids}, "lease_token": token})) if taken else []
