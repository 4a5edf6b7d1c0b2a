"""Per-project quota actors: each serializes its project's blob charges and releases on this node and caches
its usage.

The authoritative numbers are in MongoDB (storage/accounting.py); the actor adds ordering within
one node, the cached usage for early refusals, and the QUOTA_WARNING / QUOTA_EXCEEDED events of what it
charges and refuses. A manifest's charge is taken in the manifest's own transaction instead
(services/registry.py), which emits its events there; the cache does not see it, so it may be low: an early
refusal is then missed, never wrongly made (the atomic charge still decides).
"""
import threading
import time

from actors.bridge import BridgedActor, ask, inbox_depth
from services.errors import ProjectGone, QuotaExceeded
from storage.accounting import (
    CLAIM_POLL_SECONDS,
    CLAIM_WAIT_SECONDS,
    Accounting,
    crossing_event,
)
from storage.mongo import sync_transaction


def _exceeds(project, size):
    return project["storage_quota"] >= 0 and project["storage_used"] + size > project["storage_quota"]


class QuotaActor(BridgedActor):
    def __init__(self, accounting, project_id):
        super().__init__()
        self.accounting = accounting
        self.project_id = project_id
        self.cached = None

    def _current(self):
        project = self.accounting.usage(self.project_id)
        if project is None:
            raise ProjectGone(project_id=self.project_id)
        self.cached = project
        return project

    def precheck(self, size, digest=None):
        """Refuse early from the cached usage (the atomic charge still decides); a digest already
        counted in the project costs nothing."""
        if digest and self.accounting.is_counted(self.project_id, digest):
            return
        if _exceeds(self.cached or self._current(), size):
            # The cache may be stale (other nodes free space too): look again before refusing.
            self.recheck(size, digest)

    def recheck(self, size, digest=None):
        """Refuse ``size`` more bytes (QuotaExceeded, with its event) if they do not fit the usage read now."""
        project = self._current()
        if _exceeds(project, size):
            self._refused(project, size, digest)

    def _refused(self, project, size, digest):
        self.accounting.events.emit("QUOTA_EXCEEDED", project, {
            "refused_bytes": size, "digest": digest, "storage_used": project["storage_used"],
            "storage_quota": project["storage_quota"]})
        raise QuotaExceeded(project, size)

    def charge(self, digest, size, holder=None):
        """Take one reference to ``digest`` for a new link; charges its bytes on the first.

        True when this call charged the bytes. A claim another request is still settling is waited
        for, so the bytes are never assumed counted before they are.
        """
        deadline = time.monotonic() + CLAIM_WAIT_SECONDS
        while True:
            if self.accounting.add_reference(self.project_id, digest, holder):
                return False
            if self.accounting.claim(self.project_id, digest, size, holder):
                break
            if time.monotonic() > deadline:
                self.accounting.drop_stale_claim(self.project_id, digest, CLAIM_WAIT_SECONDS)
            time.sleep(CLAIM_POLL_SECONDS)

        def add_and_announce(session):
            project = self.accounting.add(self.project_id, size, session)
            if project is not None:
                # In the same transaction: a process dying here leaves either both or neither, so the bytes in
                # usage are always those of counted objects, which a release gives back.
                self.accounting.settle(self.project_id, digest, session)
                self._announce(project["storage_used"] - size, project, session)
            return project

        project = sync_transaction(self.accounting.db, add_and_announce)
        if project is None:
            self.accounting.abandon(self.project_id, digest)
            self._refused(self._current(), size, digest)
        self.cached = project
        return True

    def release(self, digest):
        """Drop one reference to ``digest``; its bytes are given back with the last. Answers the bytes freed."""
        return self._subtract(self.accounting.remove_reference(self.project_id, digest))

    def give_back(self, digest, holder):
        """Drop the reference the upload ``holder`` took for ``digest`` and never linked, if it took one."""
        return self._subtract(self.accounting.give_back(self.project_id, digest, holder))

    def held(self, digest, holder):
        self.accounting.held(self.project_id, digest, holder)

    def _subtract(self, size):
        if size:
            self.cached = self.accounting.subtract(self.project_id, size)
        return size

    def set_quota(self, quota):
        before = self._current()

        def set_and_announce(session):
            project = self.accounting.set_quota(self.project_id, quota, session)
            if quota >= 0 and project["storage_used"] > quota:
                self.accounting.events.emit("QUOTA_EXCEEDED", project, {
                    "storage_used": project["storage_used"], "storage_quota": quota, "reason": "quota lowered"},
                    session=session)
            elif before["storage_quota"] != quota:
                self._announce(0, project, session)
            return project

        self.cached = sync_transaction(self.accounting.db, set_and_announce)
        return self.cached

    def reset(self, holders):
        """Make the counted objects exactly ``holders`` ({digest: (size, refs)}) (a recount's fix)."""
        self.cached = self.accounting.reset(self.project_id, holders)
        return self.cached

    def drop(self):
        self.accounting.drop(self.project_id)
        self.stop()

    def _announce(self, before, project, session):
        event = crossing_event(before, project)
        if event:
            self.accounting.events.emit(event, project, {
                "storage_used": project["storage_used"], "storage_quota": project["storage_quota"]}, session=session)


def _bridged(method):
    """An async facade method running ``method`` in the project's actor."""
    async def call(self, project_id, *args):
        return await ask(self._ref(project_id), method, *args)
    call.__doc__ = method.__doc__
    return call


class QuotaActors:
    """This node's quota actors, one per project, started on first use."""

    precheck = _bridged(QuotaActor.precheck)
    recheck = _bridged(QuotaActor.recheck)
    charge = _bridged(QuotaActor.charge)
    release = _bridged(QuotaActor.release)
    give_back = _bridged(QuotaActor.give_back)
    held = _bridged(QuotaActor.held)
    set_quota = _bridged(QuotaActor.set_quota)
    reset = _bridged(QuotaActor.reset)

    def __init__(self, sync_db):
        self.accounting = Accounting(sync_db)
        self.refs = {}
        self.lock = threading.Lock()

    def ensure_indexes(self):
        self.accounting.ensure_indexes()

    def _ref(self, project_id):
        with self.lock:
            ref = self.refs.get(project_id)
            if ref is None or not ref.is_alive():
                ref = self.refs[project_id] = QuotaActor.start(self.accounting, project_id)
            return ref

    def mailbox_depth(self):
        with self.lock:
            refs = list(self.refs.values())
        return inbox_depth(refs)

    async def drop_project(self, project_id):
        """Forget a deleted project's accounting and stop its actor."""
        ref = self._ref(project_id)
        with self.lock:
            self.refs.pop(project_id, None)
        await ask(ref, QuotaActor.drop)

    def stop(self):
        with self.lock:
            refs, self.refs = list(self.refs.values()), {}
        for ref in refs:
            ref.stop()
