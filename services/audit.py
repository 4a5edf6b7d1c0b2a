"""The audit log: who did what, from which address, when, and how it ended.

Records are made once a request is answered (handlers/base.py ``on_finish``: the outcome is the answer's
status) or by an operator's command, and written by one background writer per process:

- every record but a pull is written at once: the writer wakes for it and writes whatever is waiting in one
  ``insert_many`` (so a burst costs one write, and an answer never waits for its record);
- pulls (manifest GETs) are gathered and written together every ``PULL_FLUSH_SECONDS`` or ``PULL_BATCH``
  records, whichever comes first, with the repositories' ``pull_count`` and the tags' ``last_pulled_at``
  moved by the same flush: a pull adds no database round trip to its answer. Identical pulls of one batch
  (the same account, address, manifest and outcome: a client pulling in a loop) are one record with their
  ``count``, so a busy registry writes a record per puller and manifest per second, not one per request.

A record never holds a secret: no password, token, PAT secret or webhook secret reaches it (handlers name
resources by id). Records a database error kept from being written stay queued (at most ``MAX_BUFFERED``
of each kind, the oldest dropped beyond) and are written again on the next round; a crash loses what was
queued (at most about a second of pulls; other records are written within milliseconds).
"""
import asyncio
import datetime
import logging
import time
import uuid

from services.folding import fold
from services.timestamps import iso_z
from storage.clock import utcnow

log = logging.getLogger("cyp.audit")

PULL = "artifact.pull"
OPERATIONS = (
    "artifact.push", PULL, "artifact.delete", "tag.delete", "repository.delete", "blob.upload", "blob.delete",
    "auth.login", "auth.logout", "auth.token",
    "pat.create", "pat.revoke",
    "user.create", "user.update", "user.delete", "user.password",
    "project.create", "project.update", "project.delete", "project.quota", "project.recount",
    "import.create", "import.cancel", "import.complete", "import.fail",
    "webhook.create", "webhook.update", "webhook.delete", "webhook.test", "webhook.redeliver",
    "system.gc",
)
SUCCESS, FAILURE = "success", "failure"
OUTCOMES = (SUCCESS, FAILURE)
ANONYMOUS = "anonymous"

PULL_FLUSH_SECONDS = 1.0
PULL_BATCH = 500
MAX_BUFFERED = 10_000
RETRY_SECONDS = 1.0
# A name a login claimed is kept up to this long (a Basic header could carry any length; accounts' are shorter).
MAX_CLAIMED_NAME = 128


def new_record(operation, status, *, address, trace_id=None, user=None, claimed_username=None, error_code=None,
               project=None, project_key=None, resource=None, outcome=None):
    """One record. ``user`` is the account that acted (None: anonymous); ``claimed_username`` the name a login
    gave (its account is looked up when written). The project is ``project`` (a document) or ``project_key``
    (an id or a name, as a path names it), resolved when written. ``status`` is the HTTP status that decides
    the outcome; without one (a command, the server's own work) ``outcome`` says it (by default success)."""
    claimed_username = claimed_username[:MAX_CLAIMED_NAME] if claimed_username else None
    record = {
        "_id": uuid.uuid4().hex, "at": utcnow(), "operation": operation,
        "outcome": outcome or (SUCCESS if status is None or status < 400 else FAILURE), "status": status,
        "error_code": error_code, "user_id": user.get("_id") if user else None,
        "username": user["username"] if user else claimed_username or ANONYMOUS, "address": address,
        "project_id": project["_id"] if project else None, "project_name": project.get("name") if project else None,
        "resource": resource or {}, "trace_id": trace_id,
    }
    if project is None and project_key:
        record["project_key"] = project_key
    if user is None and claimed_username:
        record["claimed_username"] = claimed_username
    return record


def public_record(doc):
    return {"id": doc["_id"], "at": iso_z(doc["at"]), "operation": doc["operation"], "outcome": doc["outcome"],
            "status": doc.get("status"), "error_code": doc.get("error_code"), "user_id": doc.get("user_id"),
            "username": doc.get("username"), "address": doc.get("address"), "project_id": doc.get("project_id"),
            "project_name": doc.get("project_name"), "resource": doc.get("resource") or {},
            "trace_id": doc.get("trace_id"), "count": doc.get("count", 1)}


def filter_query(since=None, until=None, username=None, user_id=None, project_id=None, operations=None,
                 outcome=None):
    """The MongoDB query of the list's filters (each None: not filtered)."""
    query = {}
    if since or until:
        query["at"] = {**({"$gte": since} if since else {}), **({"$lt": until} if until else {})}
    for field, value in (("username", username), ("user_id", user_id), ("project_id", project_id),
                         ("outcome", outcome)):
        if value is not None:
            query[field] = value
    if operations:
        query["operation"] = {"$in": list(operations)}
    return query


def _append_bounded(queue, record):
    if len(queue) >= MAX_BUFFERED:
        del queue[0]
    queue.append(record)


def _folded(pulls):
    """Pull records with identical pulls (same account, address, manifest, outcome) folded into one with their
    ``count``; its ``at`` and ``trace_id`` are the last one's (the queue is in the order pulls were answered)."""
    return [{**first, "count": count, "at": last["at"], "trace_id": last["trace_id"]}
            for first, last, count in fold(pulls, lambda record: (
                record["user_id"], record["username"], record["address"], record["outcome"], record["status"],
                record["error_code"], tuple(sorted(record["resource"].items()))))]


def _pull_figures(pulls):
    """``(per repository: pulls, per (repository, reference): last pulled at)`` of the answered pulls."""
    repositories, references = {}, {}
    for record in pulls:
        if record["outcome"] != SUCCESS:
            continue
        repository, at = record["resource"]["repository"], record["at"]
        repositories[repository] = repositories.get(repository, 0) + record["count"]
        key = (repository, record["resource"]["reference"])
        references[key] = max(references.get(key, at), at)
    return repositories, references


class AuditLog:
    def __init__(self, collections):
        self.collections = collections
        self.prompt = []
        self.pulls = []
        self.wake = asyncio.Event()
        self.pulls_due = time.monotonic() + PULL_FLUSH_SECONDS

    def submit(self, record):
        """Queue a record (never blocks): a pull for the next batch, anything else for the writer now."""
        if record["operation"] == PULL:
            _append_bounded(self.pulls, record)
            if len(self.pulls) >= PULL_BATCH:
                self.wake.set()
        else:
            _append_bounded(self.prompt, record)
            self.wake.set()

    async def write_forever(self):
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, self.pulls_due - time.monotonic()))
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            try:
                await self._write("prompt")
                if time.monotonic() >= self.pulls_due or len(self.pulls) >= PULL_BATCH:
                    self.pulls_due = time.monotonic() + PULL_FLUSH_SECONDS
                    await self._write_pulls()
            except Exception:
                log.exception("writing audit records failed; they stay queued")
                await asyncio.sleep(RETRY_SECONDS)

    async def flush(self):
        """Write everything queued (at a clean stop, and at the end of a command)."""
        await self._write("prompt")
        await self._write_pulls()

    async def _write(self, kind):
        """Write the ``kind`` queue; on an error its records go back to the front of it. Answers those written."""
        records = getattr(self, kind)
        if not records:
            return []
        setattr(self, kind, [])
        try:
            await self._complete(records)
            await self.collections.audit.insert_many(records)
        except BaseException:
            setattr(self, kind, (records + getattr(self, kind))[-MAX_BUFFERED:])
            raise
        return records

    async def _write_pulls(self):
        self.pulls = _folded(self.pulls)
        pulls = await self._write("pulls")
        repositories, references = _pull_figures(pulls)
        # Figures are not retried (a retry after a part-way failure would count twice); the records are.
        try:
            await self.collections.repositories.record_pulls(repositories)
            await self.collections.manifests.record_tag_pulls(references)
        except Exception:
            log.exception("updating pull figures failed", extra={"pulls": len(pulls)})

    async def _complete(self, records):
        """Fill in what a request knew only by name: the project of a path (id and name), the account a
        login named."""
        keys = {record["project_key"] for record in records if "project_key" in record}
        if keys:
            projects = {}
            for doc in await self.collections.projects.by_keys(keys):
                projects[doc["_id"]] = projects[doc["name"]] = doc
            for record in records:
                found = projects.get(record.pop("project_key", None))
                if found is not None:
                    record["project_id"], record["project_name"] = found["_id"], found["name"]
        for record in records:
            claimed = record.pop("claimed_username", None)
            if claimed is not None:
                account = await self.collections.users.get_by_username(claimed)
                if account is not None:
                    record["user_id"], record["username"] = account["_id"], account["username"]

    async def page(self, viewer, query, skip, limit):
        """``(records, total)``, newest first: every record for an administrator; for anyone else those of the
        projects they own and those of their own account (their logins, PATs, password changes)."""
        if not viewer.get("is_admin"):
            owned = [doc["_id"] for doc in await self.collections.projects.owned_by(viewer["_id"])]
            scope = {"$or": [{"project_id": {"$in": owned}}, {"user_id": viewer["_id"]}]}
            query = {"$and": [scope, query]} if query else scope
        docs, total = await self.collections.audit.page(query, skip, limit)
        return [public_record(doc) for doc in docs], total


def parse_time(name, raw):
    """An ISO 8601 time of a filter (``Z`` or an offset; none means UTC); ValueError names the filter."""
    try:
        value = datetime.datetime.fromisoformat(raw)
        # In UTC now: an offset at the ends of the calendar cannot be stored, nor compared later.
        return (value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)).astimezone(
            datetime.timezone.utc)
    except (ValueError, OverflowError):
        raise ValueError(f"{name} must be an ISO 8601 time such as 2026-01-31T12:00:00Z") from None
