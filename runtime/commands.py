"""The operator's commands (``server.py recount``, ``user …``, ``project …``, ``gc run``, ``imports …``,
``webhooks …``, ``keys …``), run on the same services as the API; beside a running server on the embedded database
they use its database. ``openapi`` prints the API's document, which needs no database.

Each prints one JSON object per line on stdout and answers 0; a refusal of the services (not found, a
conflict, an invalid value) is raised as a DomainError, which server.py logs as one line and answers 1.
``gc run`` while a collection runs (anywhere in the cluster) logs so and answers BUSY.
Nothing here logs a password. What a command changes is recorded in the audit log as done by
``operator`` from the address ``cli`` (a refused command changes nothing and records nothing).
"""
import contextlib
import functools
import json
import logging
import sys

from apidoc.document import build_document
from apidoc.markdown import render as render_markdown
from runtime.backend import open_backend
from services.audit import new_record
from services.container import build_services
from services.errors import CollectionRunning, Conflict, Invalid, NotFound
from services.tokens import verification_window
from services.users import one_time_password, public_user
from services.validation import InvalidBody, validate
from storage.clock import utcnow

# Who the commands act as: an administrator, like the API's caller, but no account (it owns nothing).
OPERATOR = {"_id": None, "username": "operator", "is_admin": True}
# The address audit records of the commands carry.
CLI_ADDRESS = "cli"
PAGE = 100
# sysexits' EX_TEMPFAIL: the command could not run now and may be tried again later.
BUSY = 75

log = logging.getLogger("cyp.commands")


@contextlib.asynccontextmanager
async def operator_services(config):
    """The services of an API process, on the configured database (or the running server's embedded one)."""
    async with open_backend(config, for_command=True) as backend:
        services = build_services(config, backend, codec=None)
        try:
            yield services
            await services.audit.flush()
        finally:
            await services.close()


def audit(services, operation, **subject):
    """Record a change a command made (written when the command's services close)."""
    services.audit.submit(new_record(operation, None, address=CLI_ADDRESS, user=OPERATOR, **subject))


def emit(value):
    print(json.dumps(value, default=str), flush=True)


def checked(schema, fields):
    """``fields`` validated by the API's own request schema."""
    try:
        return validate(schema, fields)
    except InvalidBody as exc:
        raise Invalid(str(exc)) from None


async def all_pages(fetch):
    """Every item of a paged service call ``fetch(skip, limit) -> (items, total)``."""
    skip = 0
    while True:
        items, total = await fetch(skip, PAGE)
        for item in items:
            yield item
        skip += len(items)
        if not items or skip >= total:
            return


@contextlib.contextmanager
def progress_bar(description, total):
    """A rich progress bar on stderr when stderr is a terminal (never in a pipe or a log); ``advance()``."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    # stdout stays the JSON lines (a pipe): rich would otherwise route prints through its (stderr) console.
    with Progress(console=Console(stderr=True), transient=True, redirect_stdout=False,
                  redirect_stderr=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


async def recount(config, fix):
    """Recompute every project's usage from its links and print one JSON line per project."""
    async with operator_services(config) as services:
        drifted = 0
        projects = await services.projects.collections.projects.all()
        with progress_bar("recount", len(projects)) as advance:
            for project in projects:
                report = await services.projects.recount(project, fix)
                if fix:
                    audit(services, "project.recount", project=project)
                drifted += report["drift"] != 0
                emit({"project": project["name"], **report})
                advance()
        emit({"projects_with_drift": drifted, "fixed": fix})
    return 0


async def reset_password(config, username):
    """Give ``username`` a new one-time password (printed), to be changed at next login; end its sessions."""
    async with operator_services(config) as services:
        password = await services.users.reset_password(username)
        audit(services, "user.password", resource={"username": username})
    print(f"New one-time password for {username}: {password}\nIt must be changed after logging in.", flush=True)
    return 0


async def user_create(config, username, admin, email):
    """A new account with a generated one-time password (printed once), to be changed at the first login."""
    password = one_time_password(username)
    fields = checked("user_create", {"username": username, "password": password, "is_admin": admin,
                                     **({"email": email} if email is not None else {})})
    async with operator_services(config) as services:
        user = await services.users.create(fields, must_change_password=True)
        audit(services, "user.create", resource={"user_id": user["_id"], "username": user["username"]})
    emit({**public_user(user), "one_time_password": password})
    return 0


async def user_list(config):
    async with operator_services(config) as services:
        async for user in all_pages(functools.partial(services.users.page, "")):
            emit(public_user(user))
    return 0


async def user_set_disabled(config, username, disabled):
    """Disable (sessions end; logins refused) or enable an account, as PATCH /api/v1/users/:id does."""
    async with operator_services(config) as services:
        user = await services.users.by_username(username)
        emit(public_user(await services.users.admin_update(OPERATOR, user["_id"], {"disabled": disabled})))
        audit(services, "user.update", resource={"user_id": user["_id"], "username": user["username"],
                                                 "disabled": disabled})
    return 0


async def project_create(config, name, public, quota, owner):
    """A project owned by ``owner``, created as that user's POST /api/v1/projects would."""
    async with operator_services(config) as services:
        fields = checked("project_create", {"name": name, "is_public": public,
                                            **({"storage_quota": quota} if quota is not None else {})})
        project = await services.projects.create(await services.users.by_username(owner), fields)
        audit(services, "project.create", project=project)
        emit(await services.projects.describe(project))
    return 0


async def project_quota(config, name, quota):
    async with operator_services(config) as services:
        checked("project_quota", {"storage_quota": quota})
        project = await services.projects.visible(OPERATOR, name)
        emit(await services.projects.describe(await services.projects.set_quota(project, quota)))
        audit(services, "project.quota", project=project, resource={"storage_quota": quota})
    return 0


async def gc_run(config):
    """Collect once now, under the cluster's collection lease; BUSY while another collection holds it."""
    async with operator_services(config) as services:
        try:
            result = await services.gc.run_now()
        except CollectionRunning as exc:
            log.error("%s", exc.message)
            return BUSY
        emit(result)
        audit(services, "system.gc")
    return 0


async def imports_list(config, project_name, status):
    """The import tasks of one project, or of every project, newest first per project."""
    async with operator_services(config) as services:
        projects = ([await services.projects.visible(OPERATOR, project_name)] if project_name
                    else await services.projects.collections.projects.all())
        for project in projects:
            tasks = all_pages(functools.partial(services.imports.page, OPERATOR, project["_id"], status))
            async for task in tasks:
                emit({"project": project["name"], **task})
    return 0


async def imports_cancel(config, task_id):
    async with operator_services(config) as services:
        project_id = await services.imports.project_of(task_id)
        emit(await services.imports.cancel(OPERATOR, project_id, task_id))
        audit(services, "import.cancel", project_id=project_id, resource={"task_id": task_id})
    return 0


async def webhook_deliveries(config, webhook_id, status):
    async with operator_services(config) as services:
        async for delivery in all_pages(functools.partial(services.webhooks.deliveries, OPERATOR, webhook_id,
                                                          status, None)):
            emit(delivery)
    return 0


async def webhook_redeliver(config, webhook_id, delivery_id):
    """A new delivery of the same event; answers it after its first attempt (made by a running server's
    dispatcher), or still pending after the webhook timeout when no server runs."""
    async with operator_services(config) as services:
        emit(await services.webhooks.redeliver(OPERATOR, webhook_id, delivery_id))
        audit(services, "webhook.redeliver", resource={"webhook_id": webhook_id, "delivery_id": delivery_id})
    return 0


async def openapi(config, markdown):
    """Print the /api/v1 OpenAPI document (JSON), or with ``markdown`` the reference rendered from it (what
    docs/api.md holds). No database: the document is made of the code's tables and schemas alone."""
    document = build_document()
    sys.stdout.write(render_markdown(document) if markdown else
                     json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return 0


def public_key(key, current, window):
    """A signing key as the commands show it: never its secret."""
    retired = key["retired_at"]
    return {"kid": key["kid"], "current": key["kid"] == current, "created_at": key["created_at"],
            "retired_at": retired, "verifies_until": retired + window if retired else None}


async def keys_list(config):
    async with open_backend(config, for_command=True) as backend:
        doc = await backend.collections.token_keys.ensure()
    for key in doc["keys"]:
        emit(public_key(key, doc["current"], verification_window(config)))
    return 0


async def keys_rotate(config):
    """A new signing key; the previous one verifies its tokens until they expire, and keys whose tokens all
    expired are dropped. Running servers sign with the new key within KEY_REFRESH_SECONDS."""
    window = verification_window(config)
    async with open_backend(config, for_command=True) as backend:
        await backend.collections.token_keys.ensure()
        key, previous, dropped = await backend.collections.token_keys.rotate(utcnow() - window)
    emit({**public_key(key, key["kid"], window), "previous": previous, "dropped": dropped})
    return 0


async def keys_remove(config, kid):
    """Drop a retired key at once: every token it signed is refused (within KEY_REFRESH_SECONDS everywhere)."""
    async with open_backend(config, for_command=True) as backend:
        doc = await backend.collections.token_keys.ensure()
        if doc["current"] == kid:
            raise Conflict(f"key {kid} is the current signing key; rotate first")
        if not await backend.collections.token_keys.remove(kid):
            raise NotFound(f"no signing key {kid}")
    emit({"kid": kid, "removed": True})
    return 0
