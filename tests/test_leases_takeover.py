"""Work done once across several nodes on one database, each piece under a lease: garbage collection (one run
per interval for the whole cluster), import tasks and webhook deliveries. A holder killed with SIGKILL is
taken over by another node within the lease time plus one second. And garbage collection running on one node
while another pushes the same blobs never loses a blob nor answers BLOB_UNKNOWN."""
import asyncio
import base64
import contextlib
import datetime
import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pymongo
import pytest
import requests
from bson import ObjectId

from storage.meta import Meta, ScheduledLease
from storage.mongo import create_client
from tests.support.api_client import Api, ok, refused
from tests.support.clients import wait_until
from tests.support.manifests import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, encode, image_manifest, sha256
from tests.support.processes import RegistryServer
from tests.support.quota_support import MiB
from tests.support.registry_client import RegistryClient, cached_client
from tests.support.remotes import push_image
from tests.support.webhook_receiver import Blackhole, Receiver

LEASE_SECONDS = 3


class Cluster:
    """``count`` servers (nodes) on one fresh database of the session's SecantusDB, sharing one administrator and
    one ``credentials_key`` (webhook secrets are stored encrypted with it)."""

    def __init__(self, mongo, base, count, env):
        self.nodes = []
        env = {"CYP_CREDENTIALS_KEY": base64.b64encode(os.urandom(32)).decode(), **env}
        first = RegistryServer(mongo.uri, base / "node0", env=env)
        for index in range(count):
            node = first if index == 0 else RegistryServer(
                mongo.uri, base / f"node{index}", db_name=first.db_name,
                env={**env, "CYP_BOOTSTRAP_ADMIN_PASSWORD": first.admin_password})
            node.admin_password = first.admin_password
            self.nodes.append(node)
        self.client = pymongo.MongoClient(mongo.uri, tz_aware=True)
        self.db = self.client[first.db_name]

    def __enter__(self):
        try:
            for node in self.nodes:
                node.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for node in self.nodes:
            if node.process is not None:
                node.stop()
        self.client.close()

    def holding(self, holder):
        """The node whose process holds a lease written as ``host:pid:random``."""
        return next(node for node in self.nodes if node.process.pid == holder_pid(holder))

    def others(self, node):
        return [other for other in self.nodes if other is not node]


def kill(node):
    node.process.kill()
    node.process.wait()
    return time.monotonic()


def holder_pid(holder):
    """The process id in a lease holder's name (storage/leases.py holder_name)."""
    return int(holder.split(":")[-2]) if holder else None


# -- garbage collection ------------------------------------------------------------------------------

GC_ENV = {"CYP_GC_INTERVAL_SECONDS": "3600", "CYP_GC_LEASE_SECONDS": str(LEASE_SECONDS), "CYP_GC_GRACE_SECONDS": "0"}
LONG_AGO = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


def seed_garbage(db, count):
    """Blobs no repository links, untouched for years: a collection has ``count`` of them to delete."""
    db.blobs.insert_many([{"_id": f"sha256:{hashlib.sha256(os.urandom(8)).hexdigest()}", "size": 1,
                           "ref": {"file_id": ObjectId()}, "created_at": LONG_AGO, "touched_at": LONG_AGO}
                          for _ in range(count)])


def make_gc_due(db):
    """The cluster's next collection is due now (the first node to start made it due an interval later)."""
    assert wait_until(lambda: db.meta.find_one({"_id": "lease:gc"}), 10)
    db.meta.update_one({"_id": "lease:gc"}, {"$set": {"done_at": LONG_AGO}})


def gc_runs(node):
    text = requests.get(f"{node.url}/metrics", timeout=30).text
    return float(re.search(r"^cyp_gc_runs_total (\S+)$", text, re.M).group(1))


def test_a_collection_runs_on_one_node_at_a_time_and_once_per_interval_for_the_cluster(isolated_mongo, tmp_path):
    env = {**GC_ENV, "CYP_GC_INTERVAL_SECONDS": "2"}
    with Cluster(isolated_mongo, tmp_path, 3, env) as cluster:
        make_gc_due(cluster.db)
        time.sleep(9)
        runs = [gc_runs(node) for node in cluster.nodes]

    # Due at once, then every 2 s: at most 5 or 6 in 9 s (3 nodes collecting each would make 12 or more).
    assert 3 <= sum(runs) <= 6, runs


def test_a_collection_whose_node_is_killed_is_taken_over_within_the_lease_and_completed(isolated_mongo, tmp_path):
    with Cluster(isolated_mongo, tmp_path, 2, GC_ENV) as cluster:
        seed_garbage(cluster.db, 600)
        make_gc_due(cluster.db)
        holder = wait_until(lambda: (cluster.db.meta.find_one({"_id": "lease:gc"}) or {}).get("owner"), 10, interval=0.02)
        victim = cluster.holding(holder)
        killed_at = kill(victim)
        assert cluster.db.blobs.count_documents({}) > 0, "the collection ended before the kill: seed more"

        taken = wait_until(lambda: holder_pid(cluster.db.meta.find_one({"_id": "lease:gc"})["owner"])
                           not in (None, victim.process.pid), LEASE_SECONDS + 3, interval=0.05)
        took = time.monotonic() - killed_at
        emptied = wait_until(lambda: cluster.db.blobs.count_documents({}) == 0, 120)
        [survivor] = cluster.others(victim)

        assert taken and took <= LEASE_SECONDS + 1, took
        assert emptied
        assert gc_runs(survivor) == 1


def test_a_collection_whose_node_is_stopped_is_handed_back_at_once(isolated_mongo, tmp_path):
    with Cluster(isolated_mongo, tmp_path, 2, {**GC_ENV, "CYP_GC_LEASE_SECONDS": "60"}) as cluster:
        seed_garbage(cluster.db, 600)
        make_gc_due(cluster.db)
        holder = wait_until(lambda: (cluster.db.meta.find_one({"_id": "lease:gc"}) or {}).get("owner"), 10, interval=0.02)
        stopping = cluster.holding(holder)
        stopped_at = time.monotonic()
        stopping.stop()
        assert cluster.db.blobs.count_documents({}) > 0, "the collection ended before the stop: seed more"

        taken = wait_until(lambda: holder_pid(cluster.db.meta.find_one({"_id": "lease:gc"})["owner"])
                           not in (None, stopping.process.pid), 15, interval=0.05)
        took = time.monotonic() - stopped_at

    assert taken and took < 15, took


def test_a_collection_asked_for_while_the_scheduled_one_runs_on_another_node_is_refused_until_it_ends(
        isolated_mongo, tmp_path):
    with Cluster(isolated_mongo, tmp_path, 2, GC_ENV) as cluster:
        apis = {node.url: Api(node.url).session("admin", node.admin_password) for node in cluster.nodes}
        seed_garbage(cluster.db, 600)
        make_gc_due(cluster.db)
        holder = wait_until(lambda: (cluster.db.meta.find_one({"_id": "lease:gc"}) or {}).get("owner"), 10, interval=0.02)
        [other] = cluster.others(cluster.holding(holder))
        busy = apis[other.url].post("/api/v1/system/gc")
        running = cluster.db.blobs.count_documents({}) > 0
        ended = wait_until(lambda: cluster.db.meta.find_one({"_id": "lease:gc"})["owner"] is None, 120)
        after = apis[other.url].post("/api/v1/system/gc")
        runs = [gc_runs(node) for node in cluster.nodes]

    assert running, "the collection ended before the second was asked for: seed more"
    assert refused(busy, 20002) == (f"a garbage collection is already running (held by {holder}); "
                                    "try again when it has finished")
    assert ended and ok(after) == {"unlinked": 0, "deleted_blobs": 0, "freed_bytes": 0}
    assert sorted(runs) == [1, 1], runs  # the scheduled one on its node, the one asked for after it on the other


async def test_a_take_cut_short_by_a_stop_leaves_the_lease_unheld(mongo):
    """A stop cancels the wait for a take's answer, not the update the database may already have applied:
    cancelled at every point of a take, the lease stays free for the other nodes."""
    client = create_client(mongo.uri)
    lease = ScheduledLease(Meta(client[f"lease_{ObjectId()}"]), "gc", 0, 60)
    await lease.take("first look")
    held_after = []
    try:
        for steps in range(300):
            taking = asyncio.create_task(lease.take("stopping node"))
            for _ in range(steps):
                await asyncio.sleep(0)
            taking.cancel()
            token = (await asyncio.gather(taking, return_exceptions=True))[0]
            if isinstance(token, str):
                await lease.release(token, done=False)
            if (await lease.collection.find_one({"_id": lease.key}))["owner"] is not None:
                held_after.append(steps)
    finally:
        await client.close()

    assert held_after == []


# -- imports ----------------------------------------------------------------------------------------

def test_an_import_whose_node_is_killed_is_taken_over_within_the_lease_and_completes(isolated_mongo, tmp_path, slow_remote):
    upstream, front = slow_remote
    source = push_image(upstream.url, "takeover/app", "v1", layer_sizes=(40 * MiB,), seed=21)
    env = {"CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "CYP_IMPORT_INSECURE_REGISTRIES": front.host,
           "CYP_IMPORT_LEASE_SECONDS": str(LEASE_SECONDS)}
    with Cluster(isolated_mongo, tmp_path, 2, env) as cluster:
        api = Api(cluster.nodes[0].url).session("admin", cluster.nodes[0].admin_password)
        project = ok(api.post("/api/v1/projects", json={"name": "takeover"}))
        task_id = ok(api.post(f"/api/v1/projects/{project['id']}/images/import",
                              json={"image": f"{front.host}/takeover/app:v1"}))["task_id"]
        running = wait_until(lambda: (task := cluster.db.import_tasks.find_one({"_id": task_id}))
                             and task.get("details", {}).get("bytes_done", 0) >= 4 * MiB and task, 60, interval=0.1)
        victim = cluster.holding(running["owner"])
        killed_at = kill(victim)

        taken = wait_until(lambda: holder_pid(cluster.db.import_tasks.find_one({"_id": task_id})["owner"])
                           not in (None, victim.process.pid), LEASE_SECONDS + 3, interval=0.05)
        took = time.monotonic() - killed_at
        done = wait_until(lambda: (task := cluster.db.import_tasks.find_one({"_id": task_id}))["status"] in (
            "completed", "failed", "cancelled") and task, 120)

    assert taken and took <= LEASE_SECONDS + 1, took
    assert done["status"] == "completed" and done["details"]["digest"] == source.digest, done
    assert done["attempts"] == 2


# -- webhook deliveries -----------------------------------------------------------------------------

WEBHOOK_TIMEOUT = 5
# A delivery's first attempt is made under the lease on its event: the webhook timeout and 15 s more
# (actors/deliveries.py).
EVENT_LEASE = WEBHOOK_TIMEOUT + 15


@contextlib.contextmanager
def hooked_cluster(mongo, tmp_path):
    """Two nodes, a project (and the first node's API session), a receiver that answers and one that never does:
    ``(cluster, api, project, receiver, hang)``."""
    env = {"CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "CYP_WEBHOOK_TIMEOUT_SECONDS": str(WEBHOOK_TIMEOUT)}
    hang, receiver = Blackhole().start(), Receiver().start()
    try:
        with Cluster(mongo, tmp_path, 2, env) as cluster:
            first = cluster.nodes[0]
            api = Api(first.url).session("admin", first.admin_password)
            project = ok(api.post("/api/v1/projects", json={"name": "hooks"}))
            yield cluster, api, project, receiver, hang
    finally:
        receiver.stop()
        hang.stop()


def add_webhook(api, project, url, name):
    return ok(api.post("/api/v1/webhooks", json={"name": name, "url": url, "project_id": project["id"],
                                                 "events": ["PUSH_ARTIFACT"]}))


def test_a_delivery_whose_sender_is_killed_is_sent_by_another_node_within_the_lease_and_only_once(isolated_mongo, tmp_path):
    with hooked_cluster(isolated_mongo, tmp_path) as (cluster, api, project, receiver, hang):
        first = cluster.nodes[0]
        webhook = add_webhook(api, project, hang.url, "once")
        receiver.secrets.append(webhook["secret"])
        client = RegistryClient(first.url, "admin", first.admin_password)
        digest = push_small_image(client, "hooks/app", "v1")
        fanning_out = wait_until(lambda: cluster.db.events.find_one({"type": "PUSH_ARTIFACT", "status": "pending",
                                                                     "lease_token": {"$ne": None}}), 20,
                                 interval=0.05)
        # The sender waits on a receiver that never answers; the next attempt goes to one that does.
        ok(api.put(f"/api/v1/webhooks/{webhook['id']}", json={"url": receiver.url}))
        victim = cluster.holding(fanning_out["lease_token"].rsplit(":", 1)[0])
        killed_at = kill(victim)

        arrived = receiver.wait_for(lambda item: item["document"]["data"].get("digest") == digest,
                                    EVENT_LEASE + 5)
        took = arrived[0]["at"] - killed_at if arrived else None
        time.sleep(2)
        deliveries = [delivery for stored in (cluster.db.deliveries, cluster.db.delivery_history)
                      for delivery in stored.find({"event_id": fanning_out["_id"]})]

    assert arrived and took <= EVENT_LEASE + 1, took
    assert len([item for item in receiver.received if item["document"]["id"] == fanning_out["_id"]]) == 1
    assert arrived[0]["verified"] and arrived[0]["valid"]
    assert [delivery["status"] for delivery in deliveries] == ["succeeded"]


def test_a_delivery_stored_before_its_dispatcher_is_killed_is_not_sent_again_by_the_node_taking_over(
        isolated_mongo, tmp_path):
    """The node fanning an event out to two webhooks has stored one delivery (its receiver answered) and still
    waits on the other when it is killed; the node that takes the event over sends the one not stored, and the
    receiver that had its delivery gets the event once."""
    with hooked_cluster(isolated_mongo, tmp_path) as (cluster, api, project, receiver, hang):
        first = cluster.nodes[0]
        answered, hanging = add_webhook(api, project, receiver.url, "answers"), add_webhook(api, project, hang.url,
                                                                                           "hangs")
        receiver.secrets.append(answered["secret"])
        push_small_image(RegistryClient(first.url, "admin", first.admin_password), "hooks/app", "v1")
        stored = wait_until(lambda: cluster.db.delivery_history.find_one(
            {"webhook_id": answered["id"], "status": "succeeded"}), 20, interval=0.05)
        event = cluster.db.events.find_one({"_id": stored["event_id"]})
        assert event["status"] == "pending" and event["lease_token"]  # still waiting on the hanging one
        kill(cluster.holding(event["lease_token"].rsplit(":", 1)[0]))

        fanned_out = wait_until(lambda: cluster.db.deliveries.find_one(
            {"event_id": event["_id"], "webhook_id": hanging["id"]}), EVENT_LEASE + WEBHOOK_TIMEOUT + 5)
        dispatched = wait_until(lambda: cluster.db.events.find_one(
            {"_id": event["_id"], "status": "dispatched"}), 5)
        time.sleep(1)

    assert fanned_out and dispatched
    assert len([item for item in receiver.received if item["document"]["id"] == event["_id"]]) == 1


def push_small_image(client, repo, tag):
    """A one-layer image pushed with its blobs; answers the manifest digest."""
    config, layer = encode({"architecture": "amd64", "os": "linux"}), os.urandom(512)
    for data in (config, layer):
        assert client.push_blob(repo, data).status_code == 201
    body = encode(image_manifest({"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                                 [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}]))
    assert client.put_manifest(repo, tag, body).status_code == 201
    return sha256(body)


# -- garbage collection beside pushes of the same blobs -----------------------------------------------

GRACE_SECONDS = 2
# Rounds of eight requests each from PUSHERS clients at once, beside a collector running every COLLECTION_PAUSE.
ROUNDS = 500
PUSHERS = 4
COLLECTION_PAUSE = 0.1
# Each round pushes into the next of these repositories (each pusher its own share of them), so a repository is
# pushed again some seconds later: its links are then older than the grace period, unreferenced, and being
# collected while the push relies on them. Enough of them that a pusher's round trip through its share outlasts
# the grace period on a quiet machine too (with 8 repositories and one pusher, every link was always younger than
# the grace and the collector freed nothing); more make each collection, which visits every one, slower.
REPOSITORIES = 32


class Collecting:
    """Collections run one after another on ``node`` (POST /system/gc) until stopped."""

    def __init__(self, node):
        self.api = Api(node.url).session("admin", node.admin_password)
        self.stopping = threading.Event()
        self.runs = 0
        self.freed_links = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopping.wait(COLLECTION_PAUSE):
            self.freed_links += ok(self.api.post("/api/v1/system/gc"))["unlinked"]
            self.runs += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(60)


@pytest.mark.timeout(900)
def test_collections_on_one_node_while_another_pushes_the_same_blobs_lose_nothing(isolated_mongo, tmp_path):
    """Each round (PUSHERS at a time) pushes the same image again into one of REPOSITORIES of a project (skipping the blobs the
    registry says that repository has, as clients do), reads every blob back on both nodes, then deletes the
    manifest, so that its blob links are garbage for the collector running all along on the other node
    (GRACE_SECONDS)."""
    env = {"CYP_GC_GRACE_SECONDS": str(GRACE_SECONDS), "CYP_GC_INTERVAL_SECONDS": "3600"}
    config, layer = encode({"architecture": "amd64", "os": "linux"}), os.urandom(2048)
    blobs = {sha256(config): config, sha256(layer): layer}
    body = encode(image_manifest({"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                                 [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}]))
    with Cluster(isolated_mongo, tmp_path, 2, env) as cluster:
        pusher_node, collector_node = cluster.nodes
        api = Api(pusher_node.url).session("admin", pusher_node.admin_password)
        ok(api.post("/api/v1/projects", json={"name": "race"}))

        def push_rounds(first):
            pusher = cached_client(pusher_node.url, "admin", pusher_node.admin_password)
            reader = cached_client(collector_node.url, "admin", pusher_node.admin_password)
            return [failure for round_number in range(first, ROUNDS, PUSHERS) for failure in push_read_delete(
                pusher, reader, f"race/app{round_number % REPOSITORIES}", blobs, body, round_number)]

        with Collecting(collector_node) as collecting:
            started = time.monotonic()
            with ThreadPoolExecutor(PUSHERS) as pool:
                failures = [failure for found in pool.map(push_rounds, range(PUSHERS)) for failure in found]
            took = time.monotonic() - started
        final = push_read_delete(cached_client(pusher_node.url, "admin", pusher_node.admin_password),
                                 cached_client(collector_node.url, "admin", pusher_node.admin_password),
                                 "race/final", blobs, body, "final", delete=False)

    assert not failures + final, failures[:10] + final
    assert collecting.runs >= ROUNDS / 10 and collecting.freed_links > 0, (collecting.runs, collecting.freed_links)
    print(f"{ROUNDS} rounds in {took:.1f} s beside {collecting.runs} collections")


def push_read_delete(pusher, reader, repo, blobs, body, round_number, delete=True):
    """One round; answers what went wrong in it."""
    scope, failures = f"repository:{repo}:pull,push,delete", []
    started = time.monotonic()
    for digest, data in blobs.items():
        head = pusher.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope)
        if head.status_code == 404:
            pushed = pusher.push_blob(repo, data)
            if pushed.status_code != 201:
                failures.append((round_number, "blob push", pushed.status_code, pushed.text[:200]))
        elif head.status_code != 200:
            failures.append((round_number, "blob HEAD", head.status_code))
    put = pusher.request("PUT", f"/v2/{repo}/manifests/v1", scope, data=body, headers={"Content-Type": OCI_MANIFEST})
    if put.status_code != 201:
        return failures + [(round_number, "manifest PUT", put.status_code, put.text[:200],
                            f"{time.monotonic() - started:.2f} s after the first HEAD")]
    for client in (pusher, reader):
        for digest, data in blobs.items():
            got = client.request("GET", f"/v2/{repo}/blobs/{digest}", scope)
            if got.status_code != 200 or sha256(got.content) != digest:
                failures.append((round_number, "blob GET", got.status_code, got.text[:200]))
    if delete:
        deleted = pusher.request("DELETE", f"/v2/{repo}/manifests/{sha256(body)}", scope)
        if deleted.status_code != 202:
            failures.append((round_number, "manifest DELETE", deleted.status_code))
    return failures


# -- a transaction a dead node left open ------------------------------------------------------------------

GHOST = """
import datetime, os, sys
import pymongo
client = pymongo.MongoClient(sys.argv[1])
db = client[sys.argv[2]]
# A node as the others know it, silent from now on...
db.nodes.update_one({"_id": "ghost:1:dead"}, {"$set": {"seen_at": datetime.datetime.now(datetime.timezone.utc)}},
                    upsert=True)
# ...dying in the middle of a transaction that changed the project.
session = client.start_session()
session.start_transaction()
db.projects.update_one({"_id": sys.argv[3]}, {"$set": {"description": "half-written"}}, session=session)
os._exit(0)
"""


def test_a_transaction_a_dead_node_left_open_is_ended_within_seconds(isolated_mongo, tmp_path):
    with Cluster(isolated_mongo, tmp_path, 1, {}) as cluster:
        api = Api(cluster.nodes[0].url).session("admin", cluster.nodes[0].admin_password)
        project = ok(api.post("/api/v1/projects", json={"name": "ghosted"}))
        subprocess.run([sys.executable, "-c", GHOST, isolated_mongo.uri, cluster.db.name, project["id"]], check=True,
                       timeout=30)
        died = time.monotonic()

        changed = ok(api.put(f"/api/v1/projects/{project['id']}", json={"description": "written"}))
        waited = time.monotonic() - died

        # Silent for 5 s, then its sessions are ended; SecantusDB alone would hold the project for 60-75 s.
        assert changed["description"] == "written" and waited < 15, waited
        assert cluster.db.projects.find_one({"_id": project["id"]})["description"] == "written"
        assert cluster.db.nodes.find_one({"_id": "ghost:1:dead"}) is None
