"""The audit log: who did what, from which address, when, and how it ended.

Records are made once a request is answered (handlers/base.py ``on_finish``: the outcome is the answer's
status) or by an operator's command, and written by one background writer per process:

- every record but a pull or a granted registry token is written at once: the writer wakes for it and writes
  whatever is waiting in one ``insert_many`` (so a burst costs one write, and an answer never waits for its
  record);
- pulls (manifest GETs) and granted registry tokens (a client asks one for every pull) are gathered and written
  together every ``PULL_FLUSH_SECONDS`` or ``PULL_BATCH`` records, whichever comes first, with the
  repositories' ``pull_count`` and the tags' ``last_pulled_at`` moved by the same flush: a pull adds no
  database round trip to its answer. Identical ones of a batch (the same operation, account, address, project,
  resource and outcome: a client pulling in a loop) are folded as they are submitted into one record with their
  ``count``, so a busy registry writes a record per puller and manifest per second, not one per request.

A record names a project only once the request's own access check let its caller see it (handlers note the
project they were given, or the registry the repository its token covers): a refused request never tells
anyone whether a private project exists. Each record lists in ``visible_to`` the accounts besides
administrators that see it: the one that acted and the project's owner.

A record never holds a secret: no password, token, PAT secret or webhook secret reaches it (handlers name
resources by id); a login naming no account is recorded as ``unknown`` (what was typed may be a password).
Records a database error kept from being written stay queued and are written again on the next round; past
``MAX_BUFFERED`` queued records of a kind, new ones are dropped and counted (``cyp_audit_records_dropped``). A
crash loses what was queued (at most about a second of pulls; other records are written within milliseconds).
"""
import asyncio
import datetime
import logging
import time
import uuid

from services.metrics import AUDIT_RECORDS_DROPPED
from services.timestamps import iso_z
from storage.clock import utcnow
from storage.users import username_key

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
# The name of a login that named no account: what was typed is not kept (it may be a password).
UNKNOWN = "unknown"

PULL_FLUSH_SECONDS = 1.0
PULL_BATCH = 500
MAX_BUFFERED = 10_000
RETRY_SECONDS = 1.0
# A name a login claimed is looked up up to this long (a Basic header could carry any length; accounts' are shorter).
MAX_CLAIMED_NAME = 128


def new_record(operation, status, *, address, trace_id=None, user=None, claimed_username=None, error_code=None,
               project=None, project_id=None, project_name=None, resource=None, outcome=None):
    """One record. ``user`` is the account that acted (None: anonymous); ``claimed_username`` the name a login
    gave without proving it (its account is looked up when written; a name of none is not kept). The project is
    ``project`` (a document), or ``project_id`` or ``project_name`` whose other half is looked up when written:
    only ever one the caller was allowed to see. ``status`` is the HTTP status that decides the outcome; without
    one (a command, the server's own work) ``outcome`` says it (by default success). Its ``_id`` is given when
    it is written (most pulls are folded into another record before)."""
    user_id = user.get("_id") if user else None
    if project is not None:
        project_id, project_name = project["_id"], project.get("name")
    record = {
        "at": utcnow(), "operation": operation,
        "outcome": outcome or (SUCCESS if status is None or status < 400 else FAILURE), "status": status,
        "error_code": error_code, "user_id": user_id, "username": user["username"] if user else ANONYMOUS,
        "address": address, "project_id": project_id, "project_name": project_name, "resource": resource or {},
        "trace_id": trace_id,
        "visible_to": list(dict.fromkeys(seer for seer in (user_id, project and project.get("owner_id")) if seer)),
    }
    if user is None and claimed_username:
        record["username"], record["claimed_username"] = UNKNOWN, claimed_username[:MAX_CLAIMED_NAME]
    return record


def changed_fields(fields):
    """An update's ``resource``: the names of the fields it sets, with the new values of those deciding who may do
    what (never a password)."""
    return {"fields": sorted(fields), **{name: fields[name] for name in ("is_admin", "disabled", "is_public")
                                         if name in fields}}


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


def _batched(record):
    """Whether ``record`` waits for the next batch (and is folded with its likes): a pull, a granted token."""
    return record["operation"] == PULL or (record["operation"] == "auth.token" and record["outcome"] == SUCCESS)


def _fold_key(record):
    return (record["operation"], record["user_id"], record["username"], record["address"], record["outcome"],
            record["status"], record["error_code"], record["project_id"], record["project_name"],
            tuple(sorted(record["resource"].items())))


def _see(record, seer):
    if seer is not None and seer not in record["visible_to"]:
        record["visible_to"].append(seer)


def _pull_figures(pulls):
    """``(per repository: pulls, per (repository, reference): last pulled at)`` of the answered pulls."""
    repositories, references = {}, {}
    for record in pulls:
        if record["operation"] != PULL or record["outcome"] != SUCCESS:
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
        # Batched records by what folds them (_fold_key); ones put back after an error by their _id.
        self.batch = {}
        self.wake = asyncio.Event()
        self.pulls_due = time.monotonic() + PULL_FLUSH_SECONDS
        self.warned_of_drops = False

    def submit(self, record):
        """Queue a record (never blocks): a pull or granted token for the next batch, folded into an identical
        one already waiting; anything else for the writer now."""
        if _batched(record):
            key = _fold_key(record)
            same = self.batch.get(key)
            if same is not None:
                same["count"] += 1
                same["at"], same["trace_id"] = record["at"], record["trace_id"]
            elif len(self.batch) < MAX_BUFFERED:
                record["count"] = 1
                self.batch[key] = record
                if len(self.batch) >= PULL_BATCH:
                    self.wake.set()
            else:
                self._dropped(1)
        elif len(self.prompt) < MAX_BUFFERED:
            self.prompt.append(record)
            self.wake.set()
        else:
            self._dropped(1)

    def _dropped(self, count):
        """Count records dropped because too many are queued (the database has been failing for a while)."""
        AUDIT_RECORDS_DROPPED.inc(count)
        if not self.warned_of_drops:
            self.warned_of_drops = True
            log.warning("audit records dropped: too many queued while they could not be written",
                        extra={"max_buffered": MAX_BUFFERED})

    async def write_forever(self):
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, self.pulls_due - time.monotonic()))
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            try:
                await self._write_prompt()
                if time.monotonic() >= self.pulls_due or len(self.batch) >= PULL_BATCH:
                    self.pulls_due = time.monotonic() + PULL_FLUSH_SECONDS
                    await self._write_batch()
            except Exception:
                log.exception("writing audit records failed; they stay queued")
                await asyncio.sleep(RETRY_SECONDS)

    async def flush(self):
        """Write everything queued (at a clean stop, and at the end of a command)."""
        await self._write_prompt()
        await self._write_batch()

    async def _write(self, records):
        """Complete and write ``records``; each keeps the ``_id`` it is given the first time, so a retry after an
        error part-way skips those already written."""
        for record in records:
            record.setdefault("_id", uuid.uuid4().hex)
        await self._complete(records)
        await self.collections.audit.insert_many(records)

    async def _write_prompt(self):
        records, self.prompt = self.prompt, []
        if not records:
            return
        try:
            await self._write(records)
        except BaseException:
            self.prompt = records + self.prompt
            if len(self.prompt) > MAX_BUFFERED:
                self._dropped(len(self.prompt) - MAX_BUFFERED)
                del self.prompt[MAX_BUFFERED:]
            raise

    async def _write_batch(self):
        records, self.batch = list(self.batch.values()), {}
        if not records:
            return
        try:
            await self._write(records)
        except BaseException:
            # Apart from those folded since, by _id: a record may be written already, its count with it.
            self.batch = {**{record["_id"]: record for record in records}, **self.batch}
            raise
        repositories, references = _pull_figures(records)
        # Figures are not retried (a retry after a part-way failure would count twice); the records are.
        try:
            await self.collections.repositories.record_pulls(repositories)
            await self.collections.manifests.record_tag_pulls(references)
        except Exception:
            log.exception("updating pull figures failed", extra={"pulls": len(records)})

    async def _complete(self, records):
        """Fill in what a request knew only in part: the other half of a project's id or name (one query for
        ids, one for names; an id never matches a name), its owner among those the record is visible to, and
        the account a login named."""
        incomplete = [record for record in records if (record["project_id"] is None) != (record["project_name"] is None)]
        by_id = [record for record in incomplete if record["project_id"] is not None]
        by_name = [record for record in incomplete if record["project_name"] is not None]
        for waiting, field, lookup in ((by_id, "project_id", self.collections.projects.with_ids),
                                       (by_name, "project_name", self.collections.projects.named)):
            if not waiting:
                continue
            found = {doc["_id" if field == "project_id" else "name"]: doc
                     for doc in await lookup({record[field] for record in waiting})}
            for record in waiting:
                project = found.get(record[field])
                if project is not None:
                    record["project_id"], record["project_name"] = project["_id"], project["name"]
                    _see(record, project.get("owner_id"))
        claimed = {record["claimed_username"] for record in records if "claimed_username" in record}
        if claimed:
            accounts = {doc["username_key"]: doc for doc in await self.collections.users.named(claimed)}
            for record in records:
                claim = record.pop("claimed_username", None)
                account = accounts.get(username_key(claim)) if claim is not None else None
                if account is not None:
                    record["user_id"], record["username"] = account["_id"], account["username"]
                    _see(record, account["_id"])

    async def page(self, viewer, query, skip, limit):
        """``(records, total)``, newest first: every record for an administrator; for anyone else those listing
        them in ``visible_to``: those of the projects they own and of their own account (their logins, PATs,
        password changes). Records written before ``visible_to`` existed are seen by administrators only."""
        if not viewer.get("is_admin"):
            query = {**query, "visible_to": viewer["_id"]}
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
