"""Image import: tasks as the API sees them (create, list, read, cancel), and the pipeline one node
runs for a task it holds.

The pipeline talks to the remote registry like a client (services/remote_registry.py) and writes
through the same paths a push uses: every blob streams into an upload session (hashed on the
way, checkpointed durably every two seconds, committed, charged to the quota and linked by
``UploadSession.finish``), then the child manifests, then the index, and the tag last, so a
failed or cancelled import never leaves a tag on missing content. Everything it needs to resume on
another node is in the task document: the blobs done, the upload of the blob in progress, the
blobs it linked.
"""
import asyncio
import hashlib
import json
import logging
import re
import time
import uuid

from services.audit import ANONYMOUS, FAILURE, SUCCESS, new_record
from services.credentials import CredentialsUnavailable
from services.digests import digest_bytes, parse_digest
from services.errors import BlobUnknown, DigestInvalid, DomainError, Invalid, NotFound, QuotaExceeded
from services.manifests import INDEX_TYPES, MAX_MANIFEST_BYTES, parse_manifest
from services.metrics import IMPORT_TASKS_FINISHED
from services.names import check_repository_name
from services.outbound import OutboundRefused, is_network_error
from services.references import DOCKER_HUB, DOCKER_HUB_API, parse_reference
from services.remote_registry import SCHEMA1_TYPES, RemoteError, RemoteRegistry, RetryPolicy
from services.timestamps import iso_z
from storage.clock import utcnow
from storage.import_tasks import CANCELLED, COMPLETED, FAILED

log = logging.getLogger("cyp.imports")

# Progress (and the upload it belongs to) is made durable at least this often while bytes move.
CHECKPOINT_SECONDS = 2
READ_PIECE = 1024 * 1024
RETRY_BASE_SECONDS = 1
# Claims of one task (a node that dies each time it runs it) before the task fails.
MAX_ATTEMPTS = 10
STATUSES = ("pending", "running", "completed", "failed", "cancelled")
_PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")
MiB = 1024 * 1024


class ImportFailed(Exception):
    """An import that cannot succeed; the message says why in words a user can act on."""


def public_task(doc):
    details = doc.get("details") or {}
    return {
        "task_id": doc["_id"], "status": doc["status"], "image": doc["image"],
        "repository": doc["target"]["repository"], "tag": doc["target"].get("tag"),
        "platforms": doc.get("platforms"), "progress": doc.get("progress", 0), "message": doc.get("message", ""),
        "created_at": iso_z(doc["created_at"]), "updated_at": iso_z(doc["updated_at"]),
        "details": {
            "phase": details.get("phase", "waiting"),
            "bytes_done": details.get("bytes_done", 0), "bytes_total": details.get("bytes_total"),
            "blobs_done": details.get("blobs_done", 0), "blobs_total": details.get("blobs_total"),
            "current_blob": details.get("current_blob"),
            "platforms_imported": details.get("platforms_imported", []),
            "platforms_skipped": details.get("platforms_skipped", []),
            "digest": details.get("digest"), "attempts": doc.get("attempts", 0),
            "last_error": doc.get("last_error"),
        },
    }


def check_platforms(platforms):
    for platform in platforms or ():
        if not _PLATFORM_RE.match(platform):
            raise Invalid(f"platforms: {platform!r} is not os/architecture[/variant], e.g. linux/amd64")
    return sorted(set(platforms)) if platforms else None


def _host_of(registry):
    """The host of ``host[:port]`` (an IPv6 literal keeps its brackets off)."""
    if registry.startswith("["):
        return registry[1:registry.index("]")]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


class ImportService:
    """The API's side of imports."""

    def __init__(self, collections, projects, box, outbound, wake=None):
        self.collections = collections
        self.projects = projects
        self.box = box
        self.outbound = outbound
        # Tells this node's import actors a task is waiting (set once they run).
        self.wake = wake or (lambda: None)

    async def _project(self, user, project_key):
        """Imports are the project's owner's or an administrator's, like every change to it."""
        return await self.projects.writable(user, project_key)

    async def create(self, user, project_key, fields):
        project = await self._project(user, project_key)
        source = parse_reference(fields["image"])
        target = fields.get("repository") or source.default_target
        repository = f"{project['name']}/{target}"
        try:
            check_repository_name(repository)
        except DomainError:
            raise Invalid("repository must be a path of lowercase components such as team/app") from None
        platforms = check_platforms(fields.get("platforms"))
        try:
            await self.outbound.check_host(_host_of(source.api_host))
        except OutboundRefused as exc:
            raise Invalid(f"image: {exc}") from None
        key = hashlib.sha256(json.dumps([project["_id"], str(source), repository, platforms]).encode()).hexdigest()
        task_id = str(uuid.uuid4())
        task_fields = {
            "_id": task_id, "project_id": project["_id"], "image": fields["image"], "created_by": user["_id"],
            "operator": user["username"],
            "source": {"registry": source.registry, "repository": source.repository, "tag": source.tag,
                       "digest": source.digest},
            "target": {"repository": repository, "tag": source.tag}, "platforms": platforms,
        }
        if fields.get("username") is not None:
            # Sealed before the task exists, so no node can claim it without them.
            task_fields["credentials"] = self.box.seal([fields["username"], fields.get("password") or ""], task_id)
        doc, created = await self.collections.import_tasks.create(task_fields, key)
        if created:
            self.wake()
        return public_task(doc)

    async def page(self, user, project_key, status, skip, limit):
        project = await self._project(user, project_key)
        if status is not None and status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}")
        docs, total = await self.collections.import_tasks.page(project["_id"], status, skip, limit)
        return [public_task(doc) for doc in docs], total

    async def get(self, user, project_key, task_id):
        project = await self._project(user, project_key)
        doc = await self.collections.import_tasks.get(project["_id"], task_id)
        if doc is None:
            raise NotFound("import task not found")
        return public_task(doc)

    async def project_of(self, task_id):
        """The id of the project an import task belongs to, for an operator who knows only the task."""
        project_id = await self.collections.import_tasks.project_of(task_id)
        if project_id is None:
            raise NotFound("import task not found")
        return project_id

    async def cancel(self, user, project_key, task_id):
        project = await self._project(user, project_key)
        doc = await self.collections.import_tasks.request_cancel(project["_id"], task_id)
        if doc is None:
            raise NotFound("import task not found")
        return public_task(doc)


class LeaseLost(Exception):
    """Another node holds the task now: this run stops without touching it."""


class Progress:
    """The task's progress: bytes durably stored across the distinct blobs to fetch, never backwards."""

    def __init__(self, tasks, task):
        self.tasks = tasks
        self.task = task
        self.details = dict(task.get("details") or {})
        self.saved_at = 0.0

    @property
    def percent(self):
        total = self.details.get("bytes_total") or 0
        # Fetching is most of the work; the manifests and the tag are the last point.
        return min(99, int(99 * self.details.get("bytes_done", 0) / total)) if total else 0

    def message(self):
        if self.details.get("phase") != "fetching blobs":
            return self.details.get("phase", "")
        done, total = self.details.get("bytes_done", 0), self.details.get("bytes_total") or 0
        return (f"fetching blob {min(self.details.get('blobs_done', 0) + 1, self.details.get('blobs_total', 0))}/"
                f"{self.details.get('blobs_total')}, {done / MiB:.0f}/{total / MiB:.0f} MiB")

    async def save(self, **changes):
        if "bytes_done" in changes:
            changes["bytes_done"] = max(changes["bytes_done"], self.details.get("bytes_done", 0))
        self.details.update(changes)
        self.saved_at = time.monotonic()
        if not await self.tasks.update(self.task, {"details": self.details, "progress": self.percent,
                                                   "message": self.message()}):
            raise LeaseLost()


class ImportPipeline:
    """Runs one held task to its end on this node."""

    def __init__(self, collections, registry, uploads, box, outbound, config, audit):
        self.collections = collections
        self.audit = audit
        self.tasks = collections.import_tasks
        self.registry = registry
        self.uploads = uploads
        self.box = box
        self.outbound = outbound
        self.config = config
        self.insecure = {entry.strip() for entry in config["import_insecure_registries"].split(",") if entry.strip()}

    # --- the run and its endings -----------------------------------------------------------------

    async def run(self, task):
        """Import until done or failed; a cancellation (a cancel request, the node stopping) is the
        holder's to handle and propagates."""
        project = await self.collections.projects.get(task["project_id"])
        remaining = self.config["import_deadline_seconds"] - (utcnow() - task["started_at"]).total_seconds()
        try:
            if project is None:
                raise ImportFailed("the project was deleted")
            if task["attempts"] > MAX_ATTEMPTS:
                raise ImportFailed(f"gave up after {MAX_ATTEMPTS} attempts (the nodes running it kept stopping)")
            try:
                async with asyncio.timeout(max(remaining, 0)):
                    digest, imported, skipped = await self._import(task, project, time.monotonic() + remaining)
            except TimeoutError:
                raise ImportFailed(f"not done within import_deadline_seconds "
                                   f"({self.config['import_deadline_seconds']} s)") from None
        except LeaseLost:
            return None
        except (ImportFailed, RemoteError, DomainError, CredentialsUnavailable, OutboundRefused) as exc:
            await self._fail(task, project, exc.message if isinstance(exc, DomainError) else str(exc))
            return FAILED
        except Exception as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.exception("import failed unexpectedly", extra={"task_id": task["_id"]})
            await self._fail(task, project, f"internal error ({type(exc).__name__}); see the server log")
            return FAILED
        details = dict((await self._current(task)).get("details") or {}, phase="done", digest=digest,
                       platforms_imported=imported, platforms_skipped=skipped, current_blob=None)
        await self._end(task, project, COMPLETED, f"imported {task['target']['repository']}@{digest}",
                        {"progress": 100, "details": details, "last_error": None},
                        ("IMPORT_COMPLETED", {"tag": task["target"].get("tag"), "digest": digest,
                                              "platforms": imported}))
        log.info("import completed", extra={"task_id": task["_id"], "digest": digest})
        return COMPLETED

    async def _end(self, task, project, status, message, fields, event=None):
        """Finish the task and write its event in one transaction."""
        async def finish(session):
            await self.tasks.finish(task, status, message, fields, session=session)
            if event is not None and project is not None:
                event_type, data = event
                await self.collections.events.emit(event_type, project, {
                    "task_id": task["_id"], "image": task["image"], "repository": task["target"]["repository"],
                    **data}, task.get("operator"), session=session)

        await self.collections.transaction(finish)
        IMPORT_TASKS_FINISHED.labels(status).inc()
        if status != CANCELLED:  # a cancel was recorded when it was asked for
            self.audit.submit(new_record(
                "import.complete" if status == COMPLETED else "import.fail", None, address=None,
                outcome=SUCCESS if status == COMPLETED else FAILURE, project=project,
                user={"_id": task.get("created_by"), "username": task.get("operator") or ANONYMOUS},
                resource={"task_id": task["_id"], "image": task["image"], "message": message}))

    async def _current(self, task):
        return await self.tasks.collection.find_one({"_id": task["_id"]}) or {}

    async def _fail(self, task, project, message):
        await self.discard(task)
        await self._end(task, project, FAILED, message, {"last_error": message},
                        ("IMPORT_FAILED", {"message": message}))
        log.warning("import failed", extra={"task_id": task["_id"], "reason": message})

    async def cancelled(self, task):
        """After the holder stopped the run for a cancel request: remove what it stored, mark it cancelled."""
        await self.discard(task)
        await self._end(task, None, CANCELLED, "cancelled", {})

    async def discard(self, task):
        """Nothing of an import that did not complete stays: uploads in progress are aborted, and blobs it
        linked that no manifest of the repository references are unlinked (their quota given back)."""
        current = await self._current(task) or task
        repo = task["target"]["repository"]
        for upload_id in (current.get("uploads") or {}).values():
            if await self.collections.uploads.get(upload_id, repo) is not None:
                await self.uploads.cancel(repo, upload_id)
        referenced = await self.collections.manifests.referenced_by(repo)
        for digest in current.get("linked") or []:
            if digest not in referenced:
                link = await self.collections.blobs.unlink(repo, digest)
                if link is not None:
                    await self.registry.release(link["project_id"], digest)

    # --- the import itself -------------------------------------------------------------------------

    def _remote(self, task, deadline):
        source = task["source"]
        credentials = self.box.open(task["credentials"], task["_id"]) if task.get("credentials") else None
        host = DOCKER_HUB_API if source["registry"] == DOCKER_HUB else source["registry"]
        retry = RetryPolicy(self.config["import_retry_attempts"], RETRY_BASE_SECONDS,
                            self.config["import_retry_max_wait_seconds"], deadline)
        insecure = host in self.insecure or _host_of(host) in self.insecure
        return RemoteRegistry(self.outbound, host, source["repository"], credentials, insecure, retry)

    async def _import(self, task, project, deadline):
        progress = Progress(self.tasks, task)
        await progress.save(phase="resolving")
        remote = self._remote(task, deadline)
        await remote.connect()
        repo = task["target"]["repository"]
        reference = task["source"]["digest"] or task["source"]["tag"]
        top = await self._fetch_manifest(remote, repo, reference, expected=task["source"]["digest"])
        images, imported, skipped = [top], [], []
        if top["parsed"].media_type in INDEX_TYPES:
            images = []
            for child in json.loads(top["content"]).get("manifests") or []:
                platform = _platform_name(child.get("platform"))
                if task.get("platforms") and platform not in task["platforms"]:
                    skipped.append(platform)
                    continue
                images.append(await self._fetch_manifest(remote, repo, child["digest"], expected=child["digest"]))
                imported.append(platform)
            if not images:
                raise ImportFailed(f"none of the platforms {', '.join(task['platforms'])} is in the image "
                                   f"(it has {', '.join(skipped)})")
        manifests = images if images[0] is top else images + [top]
        await self._fetch_blobs(task, project, remote, repo, _distinct_blobs(images), manifests, progress)
        await progress.save(phase="writing manifests", current_blob=None)
        for image in images:
            if image is not top:
                await self.registry.put_manifest(repo, image["digest"], image["content"], image["media_type"],
                                                 operator=task.get("operator"))
        await progress.save(phase="tagging")
        tags = [task["target"]["tag"]] if task["target"].get("tag") else []
        await self.registry.put_manifest(repo, top["digest"], top["content"], top["media_type"], tags=tags,
                                         sparse=bool(skipped), operator=task.get("operator"))
        return top["digest"], imported, skipped

    async def _fetch_manifest(self, remote, repo, reference, expected=None):
        """A manifest by tag or digest: HEAD first, and the bytes from this registry when it already holds them."""
        digest, media_type, _ = await remote.manifest_head(reference)
        if media_type in SCHEMA1_TYPES:
            raise ImportFailed("the image is a Docker schema 1 manifest, which is deprecated and not supported; "
                               "push it again with a current client to convert it")
        digest = expected or digest
        stored = await self.collections.manifests.get(repo, digest) if digest else None
        if stored is not None:
            content, media_type = bytes(stored["content"]), stored["media_type"]
        else:
            content, media_type = await remote.manifest(digest or reference, MAX_MANIFEST_BYTES)
        algorithm = parse_digest(digest)[0] if digest else "sha256"
        if digest and digest_bytes(content, algorithm) != digest:
            raise ImportFailed(f"digest mismatch: the manifest {reference} does not hash to {digest}")
        parsed = parse_manifest(content, media_type, algorithm)
        return {"digest": parsed.digest, "content": content, "media_type": parsed.media_type, "parsed": parsed}

    async def _fetch_blobs(self, task, project, remote, repo, blobs, manifests, progress):
        """Link what the repository or the project already holds, check the quota for the rest, then fetch it."""
        to_fetch, linked = [], 0
        for digest, size in blobs.items():
            if await self.collections.blobs.is_linked(repo, digest):
                linked += 1
            elif await self.collections.blobs.in_project(project["_id"], digest) and \
                    await self._link_held(task, repo, digest, size):
                linked += 1
            else:
                to_fetch.append((digest, size))
        adding = sum(size for _, size in to_fetch)
        for image in manifests:
            if not await self.collections.manifests.exists(repo, image["digest"]):
                adding += len(image["content"])
        try:
            await self.registry.precheck(repo, adding)
        except QuotaExceeded as exc:
            raise ImportFailed(exc.message) from None
        remaining = sum(size for _, size in to_fetch)
        # A resumed import keeps the total it planned first, so progress never goes backwards.
        total = progress.details.get("bytes_total") or remaining
        done_before = total - remaining
        await progress.save(phase="fetching blobs", blobs_total=len(blobs), blobs_done=linked, bytes_total=total,
                            bytes_done=done_before)
        for digest, size in to_fetch:
            await progress.save(current_blob=digest)
            await self._fetch_blob(task, remote, repo, digest, size, progress, done_before)
            done_before += size
            linked += 1
            await progress.save(blobs_done=linked, bytes_done=done_before)

    async def _link_held(self, task, repo, digest, size):
        """Link a blob the project holds; False when it was collected meanwhile (then it is fetched)."""
        try:
            await self._record_link(task, digest, await self.registry.link_blob(repo, digest, size))
        except BlobUnknown:
            return False
        return True

    async def _record_link(self, task, digest, linked):
        if linked:
            await self.tasks.collection.update_one({"_id": task["_id"], "lease_token": task["lease_token"]},
                                                   {"$addToSet": {"linked": digest}})

    async def _fetch_blob(self, task, remote, repo, digest, size, progress, done_before):
        """Stream one blob into its upload, resuming where a checkpoint left it, verified as it arrives."""
        algorithm, _ = parse_digest(digest)
        upload_id = ((await self._current(task)).get("uploads") or {}).get(digest)
        if upload_id is None or await self.collections.uploads.get(upload_id, repo) is None:
            upload_id = (await self.uploads.start(repo, algorithm))["_id"]
            await self.tasks.update(task, {f"uploads.{digest}": upload_id})
        attempt = 0
        while True:
            session = await self.uploads.open(repo, upload_id, take_over=True)
            try:
                await self._stream(remote, digest, session, progress, done_before)
                break
            except RemoteError as exc:
                await session.save()
                if exc.kind != "unreachable":
                    raise
                await remote.backoff(attempt, exc)
                attempt += 1
            except BaseException:
                await session.release()
                raise
        if session.size != size:
            await session.abort()
            await self.tasks.update(task, {}, unset=(f"uploads.{digest}",))
            raise ImportFailed(f"digest mismatch: blob {digest} has {session.size} bytes, not the {size} its "
                               "manifest declares")
        try:
            linked = await session.finish(digest)
        except DigestInvalid:
            raise ImportFailed(f"digest mismatch: the bytes of blob {digest} hash to something else") from None
        finally:
            await self.tasks.update(task, {}, unset=(f"uploads.{digest}",))
        await self._record_link(task, digest, linked)

    async def _stream(self, remote, digest, session, progress, done_before):
        """Copy the response into the session, checkpointing it (and the progress) every few seconds."""
        async with remote.blob(digest, start=session.size) as response:
            try:
                async for piece in response.content.iter_chunked(READ_PIECE):
                    await session.write(piece)
                    if time.monotonic() - progress.saved_at >= CHECKPOINT_SECONDS:
                        await session.save(keep_lease=True)
                        await progress.save(bytes_done=done_before + session.size)
            except Exception as exc:
                if is_network_error(exc):
                    raise RemoteError("unreachable", f"{remote.host} broke off the transfer of {digest}: "
                                                     f"{type(exc).__name__}") from None
                raise


def _platform_name(platform):
    platform = platform or {}
    name = f"{platform.get('os', 'unknown')}/{platform.get('architecture', 'unknown')}"
    return f"{name}/{platform['variant']}" if platform.get("variant") else name


def _distinct_blobs(images):
    """``{digest: size}`` of the configs and layers of the images, foreign (non-distributable) layers left out."""
    blobs = {}
    for image in images:
        document = json.loads(image["content"])
        for descriptor in [document.get("config") or {}, *(document.get("layers") or [])]:
            if descriptor.get("digest") and not descriptor.get("urls"):
                blobs[descriptor["digest"]] = descriptor["size"]
    return blobs
