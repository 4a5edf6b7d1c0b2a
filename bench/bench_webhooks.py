#!/usr/bin/env python3
"""Webhook benchmark: events per second through CYP-Registry's dispatcher to a local consumer, and the
cost of webhooks to manifest GET/PUT throughput.

One run starts SecantusDB, a consumer on loopback (this file run as `consumer`: an aiohttp server
answering 204 that verifies each delivery's Standard Webhooks signature and records its event id,
`occurred_at` and the time it arrived) and, for each value of --per-endpoint and each part, a fresh
CYP-Registry server (filesystem backend, its own database) with that
CYP_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT:

1. events: one webhook for PUSH_ARTIFACT; --events manifest PUTs with distinct tags of one small image
   (one PUSH_ARTIFACT each) from --threads client threads; the time from the first change to the last
   receipt, events/s delivered, latency `occurred_at` -> receipt (p50/p99/max) and whether every
   event arrived exactly once (by id and by tag);
2. load: `hey` at --connections for --load-seconds each, manifest GET and manifest PUT of one tag,
   each with no webhook and with three webhooks back to back, the order alternating between rounds (fresh
   webhooks for each operation; PUSH_ARTIFACT
   and PULL_ARTIFACT, one consumer at three paths), --rounds times: req/s, p50/p99 latency, non-2xx, the
   ratio with/without of the same round (target: >= 0.9) and whether the deliveries kept up (delivered
   during the load window, time for the backlog to drain after).

Every process it started is stopped at the end, also on error, Ctrl-C, SIGTERM or the time limit.
See bench/README.md.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pymongo
import requests
from common import (
    DEFAULT_TIME_LIMIT_S,
    HEY,
    HTTP_TIMEOUT,
    OCI_MANIFEST,
    REPO_ROOT,
    BenchError,
    CpuMeter,
    RegistrySession,
    Services,
    add_limit_options,
    add_workdir_option,
    api_login,
    bench_main,
    bench_run,
    create_cyp_project,
    expect_status,
    fmt,
    free_port,
    http_answers,
    load_average_text,
    peak_rss_mb,
    print_table,
    process_tree,
    push_small_image,
    ratio,
    run_hey,
    settle_disk,
    start_cyp,
    start_secantusdb,
    stop_process_group,
    tree_peak_rss_mb,
    wait_until_ready,
    write_json,
)

BACKEND = "filesystem"
EVENTS_REPO = "bench/app"  # part 1, in start_cyp's project `bench`
LOAD_PROJECT = "load"  # part 2 has a project of its own, so part 1's webhook never sees its events
LOAD_REPO = f"{LOAD_PROJECT}/app"
LOAD_TAG = "latest"
LOAD_HOOKS = 3
SMALL_LAYER = b"webhook bench layer\n" * 64  # the one layer of the image every manifest PUT names
TARGET_RATIO = 0.9  # req/s with three webhooks / req/s with none
# Pull events are written only for projects some webhook wants, and the server reads which ones at
# most every 5 s (services/pull_events.py SUBSCRIBERS_SECONDS): wait this long after creating webhooks.
SUBSCRIBERS_REFRESH_S = 6.0
POLL_S = 0.25
PROGRESS_EVERY_S = 10
SETTLE_S = 2.0
BLOCK = 1000  # receipts per block in the events part's pace over time  # after the last expected delivery, so a late duplicate would still be counted
CONSUMER_TIMEOUT = (10, 120)


# ------------------------------------------------------------------ the consumer (a child process)


def consumer_main(argv):
    """`bench_webhooks.py consumer --port N`: the receiving end, on 127.0.0.1.

    POST to any other path: a delivery; answered 204 after its signature is checked (with the secret
    registered for that path, when there is one) and it is recorded as [path, webhook-id header,
    body id, type, occurred_at, receive time (epoch s), signature verified, tags or reference, count
    (the pulls a PULL_ARTIFACT stands for; 1 for other events)].
    GET /_health, GET /_count ({"total", "by_path": deliveries, "counted_by_path": the sum of their
    counts}), GET /_records?since=N (the records from N on),
    POST /_secret ({"path", "secret"}), POST /_reset (forget every record).
    """
    import argparse

    from aiohttp import web
    from standardwebhooks import Webhook, WebhookVerificationError

    parser = argparse.ArgumentParser(prog="bench_webhooks.py consumer")
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args(argv).port
    records = []
    by_path = {}
    counted_by_path = {}
    verifiers = {}

    async def deliver(request):
        body = await request.read()
        received = time.time()
        path = request.path
        verifier = verifiers.get(path)
        verified = None
        if verifier is not None:
            try:
                verifier.verify(body, dict(request.headers), json_parse=False)
                verified = True
            except (WebhookVerificationError, ValueError):
                verified = False
        try:
            doc = json.loads(body)
            data = doc.get("data") or {}
            key = ",".join(data["tags"]) if "tags" in data else data.get("reference")
            record = [path, request.headers.get("webhook-id"), doc.get("id"), doc.get("type"),
                      doc.get("occurred_at"), received, verified, key, data.get("count", 1)]
        except (ValueError, AttributeError):
            record = [path, request.headers.get("webhook-id"), None, None, None, received, verified, None, 1]
        records.append(record)
        by_path[path] = by_path.get(path, 0) + 1
        counted_by_path[path] = counted_by_path.get(path, 0) + record[8]
        return web.Response(status=204)

    async def health(_):
        return web.json_response({"ok": True})

    async def count(_):
        return web.json_response({"total": len(records), "by_path": by_path, "counted_by_path": counted_by_path})

    async def dump(request):
        since = int(request.query.get("since", "0"))
        return web.json_response(records[since:])

    async def add_secret(request):
        body = await request.json()
        verifiers[body["path"]] = Webhook(body["secret"])
        return web.json_response({"ok": True})

    async def reset(_):
        records.clear()
        by_path.clear()
        counted_by_path.clear()
        verifiers.clear()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=1 << 20)
    app.router.add_get("/_health", health)
    app.router.add_get("/_count", count)
    app.router.add_get("/_records", dump)
    app.router.add_post("/_secret", add_secret)
    app.router.add_post("/_reset", reset)
    app.router.add_post("/{tail:.*}", deliver)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
    return 0


class Consumer:
    """The bench's side of the consumer process."""

    def __init__(self, proc, port):
        self.proc = proc
        self.base_url = f"http://127.0.0.1:{port}"
        self.http = requests.Session()

    def hook_url(self, path):
        return self.base_url + path

    def add_secret(self, path, secret):
        expect_status(self.http.post(self.base_url + "/_secret", json={"path": path, "secret": secret},
                                     timeout=CONSUMER_TIMEOUT), 200, "consumer: register a secret")

    def reset(self):
        expect_status(self.http.post(self.base_url + "/_reset", timeout=CONSUMER_TIMEOUT), 200, "consumer reset")

    def count(self, paths, counted=False):
        """Deliveries to `paths`; with `counted`, the changes they stand for (a PULL_ARTIFACT its `count`)."""
        resp = self.http.get(self.base_url + "/_count", timeout=CONSUMER_TIMEOUT)
        expect_status(resp, 200, "consumer count")
        by_path = resp.json()["counted_by_path" if counted else "by_path"]
        return sum(by_path.get(path, 0) for path in paths)

    def records(self, paths):
        resp = self.http.get(self.base_url + "/_records", params={"since": 0}, timeout=CONSUMER_TIMEOUT)
        expect_status(resp, 200, "consumer records")
        return [record for record in resp.json() if record[0] in paths]


def start_consumer(children):
    port = free_port()
    proc = children.start("consumer", [sys.executable, str(Path(__file__).resolve()), "consumer",
                                       "--port", str(port)])
    consumer = Consumer(proc, port)
    wait_until_ready("consumer", proc, lambda: http_answers(consumer.base_url + "/_health", 200))
    return consumer


# ------------------------------------------------------------------ the registry side


def server_env(args, per_endpoint):
    env = {"CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32",  # the consumer is on loopback
           "CYP_WEBHOOK_MAX_IN_FLIGHT": str(args.max_in_flight),
           "CYP_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT": str(per_endpoint)}
    if args.workers is not None:
        env["CYP_WORKERS"] = str(args.workers)
    return env


def server_database(registry):
    """The database name start_cyp gave the server (from its environment)."""
    environ = Path(f"/proc/{registry.proc.pid}/environ").read_bytes().split(b"\0")
    for entry in environ:
        if entry.startswith(b"CYP_MONGO_DB="):
            return entry.split(b"=", 1)[1].decode()
    raise BenchError("cannot tell the server's database name")


class Api:
    """The management API as the admin."""

    def __init__(self, registry):
        self.base_url = registry.base_url
        self.headers = {"Authorization": f"Bearer {api_login(registry)}"}

    def create_webhook(self, name, url, events, project_id):
        resp = requests.post(f"{self.base_url}/api/v1/webhooks", headers=self.headers, timeout=HTTP_TIMEOUT,
                             json={"name": name, "url": url, "events": events, "project_id": project_id})
        expect_status(resp, 200, f"create webhook {name}")
        return resp.json()["data"]

    def delete_webhook(self, webhook_id):
        resp = requests.delete(f"{self.base_url}/api/v1/webhooks/{webhook_id}", headers=self.headers,
                               timeout=HTTP_TIMEOUT)
        expect_status(resp, 200, f"delete webhook {webhook_id}")


def percentile(values, fraction):
    """The nearest-rank percentile of values (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def epoch(text):
    return datetime.fromisoformat(text).timestamp()


def wait_for_deliveries(consumer, paths, expected, since, timeout, what, counted=False):
    """Poll the consumer until `expected` deliveries to `paths` arrived (with `counted`: deliveries standing
    for `expected` changes, a PULL_ARTIFACT for its `count` of pulls) or `timeout` s after `since` passed;
    then wait SETTLE_S more for late duplicates. Return whether all arrived."""
    deadline = since + timeout
    next_progress = time.time() + PROGRESS_EVERY_S
    while True:
        count = consumer.count(paths, counted)
        if count >= expected:
            time.sleep(SETTLE_S)
            return True
        if time.time() >= deadline:
            return False
        if time.time() >= next_progress:
            print(f"  {what}: {count} of {expected} {'changes' if counted else 'deliveries'} arrived", flush=True)
            next_progress += PROGRESS_EVERY_S
        time.sleep(POLL_S)


class Database:
    """Read-only looks at the server's database: pending events, deliveries by status."""

    def __init__(self, mongo_uri, name):
        self.client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
        self.db = self.client[name]

    def pending_events(self):
        return self.db.events.count_documents({"status": "pending"})

    def deliveries(self, webhook_ids):
        """{status: count} and how many needed more than one attempt, for these webhooks (those still to be sent,
        and the history)."""
        query = {"webhook_id": {"$in": list(webhook_ids)}}
        by_status, retried = Counter(), 0
        for collection in (self.db.deliveries, self.db.delivery_history):
            by_status.update({doc["_id"]: doc["n"] for doc in collection.aggregate(
                [{"$match": query}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}])})
            retried += collection.count_documents({**query, "attempt_count": {"$gt": 1}})
        return dict(by_status), retried

    def wait_no_pending_events(self, timeout):
        """Wait until the dispatcher has fanned every event out, at most `timeout` s; return (seconds waited,
        events still pending)."""
        start = time.perf_counter()
        while (pending := self.pending_events()) and time.perf_counter() - start < timeout:
            time.sleep(0.5)
        return time.perf_counter() - start, pending

    def profile(self, level):
        """SecantusDB's (and MongoDB's) profiler: level 2 records every operation in system.profile."""
        self.db.command("profile", level)

    def profile_summary(self, top=10):
        """The profiled operations grouped by kind, collection and filter fields: count and milliseconds."""
        groups = {}
        for doc in self.db["system.profile"].find():
            command = doc.get("command") if isinstance(doc.get("command"), dict) else {}
            query = command.get("query") or command.get("filter") or command.get("q") or {}
            key = (f"{doc.get('op')} {str(doc.get('ns', '')).split('.', 1)[-1]}"
                   f" {{{', '.join(sorted(query)) if isinstance(query, dict) else ''}}}")
            groups.setdefault(key, []).append(doc.get("millis") or 0)
        rows = [{"operation": key, "count": len(ms), "total_ms": sum(ms), "p50_ms": percentile(ms, 0.5),
                 "max_ms": max(ms)} for key, ms in groups.items()]
        return sorted(rows, key=lambda row: -row["total_ms"])[:top]

    def close(self):
        self.client.close()


# ------------------------------------------------------------------ part 1: events per second


class Tokens:
    """A registry bearer token for one repository, shared by threads and fetched again when it expires (the
    default TTL is 900 s, and a slow run of PUTs takes longer)."""

    def __init__(self, registry, repo):
        self.registry = registry
        self.scope = f"repository:{repo}:pull,push"
        self.lock = threading.Lock()
        self.refreshed = 0
        self.current = self._fetch()

    def _fetch(self):
        session = RegistrySession(self.registry)
        session.authorize(self.scope)
        return session.http.headers["Authorization"]

    def refresh(self, rejected):
        """A new token, unless another thread already replaced the `rejected` one."""
        with self.lock:
            if self.current == rejected:
                self.current = self._fetch()
                self.refreshed += 1
            return self.current


def put_manifests(registry, tokens, manifest, tags, threads):
    """PUT the manifest under each tag from `threads` threads; return (t first start, t last end, latencies
    of the answered requests, failures). A PUT answered 401 (the token expired) is sent again with a new one."""
    url = f"{registry.base_url}/v2/{EVENTS_REPO}/manifests/"
    lock = threading.Lock()
    latencies, failures = [], []
    ends = []

    def worker(mine):
        http = requests.Session()
        local_latencies, local_failures = [], []
        for tag in mine:
            start = time.perf_counter()
            try:
                authorization = tokens.current
                resp = http.put(url + tag, data=manifest, timeout=HTTP_TIMEOUT,
                                headers={"Authorization": authorization, "Content-Type": OCI_MANIFEST})
                if resp.status_code == 401:
                    resp = http.put(url + tag, data=manifest, timeout=HTTP_TIMEOUT, headers={
                        "Authorization": tokens.refresh(authorization), "Content-Type": OCI_MANIFEST})
                if resp.status_code == 201:
                    local_latencies.append(time.perf_counter() - start)
                else:
                    local_failures.append(f"{tag}: {resp.status_code} {resp.text[:200]}")
            except requests.RequestException as exc:
                local_failures.append(f"{tag}: {type(exc).__name__} {exc}")
        with lock:
            latencies.extend(local_latencies)
            failures.extend(local_failures)
            ends.append(time.time())

    workers = [threading.Thread(target=worker, args=(tags[i::threads],)) for i in range(threads)]
    first_start = time.time()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return first_start, max(ends), latencies, failures


def receipt_blocks(records, first_change, size=BLOCK):
    """The receipts in arrival order, in blocks of `size`: each block's rate and latency, to show how the
    dispatcher's pace changes as the events and deliveries collections grow."""
    ordered = sorted(records, key=lambda record: record[5])
    blocks = []
    previous_end = first_change
    for start in range(0, len(ordered), size):
        block = ordered[start:start + size]
        end = block[-1][5]
        latencies = [record[5] - epoch(record[4]) for record in block if record[4]]
        blocks.append({"from": start + 1, "to": start + len(block), "seconds": end - previous_end,
                       "events_per_s": len(block) / max(end - previous_end, 1e-9),
                       "latency_p50_ms": 1000 * percentile(latencies, 0.5) if latencies else None})
        previous_end = end
    return blocks


def measure_events(args, registry, consumer, api, database, cpu_pids, run_dir):
    manifest = push_small_image(registry, run_dir, EVENTS_REPO, SMALL_LAYER).manifest
    tokens = Tokens(registry, EVENTS_REPO)
    path = "/events"
    webhook = api.create_webhook("bench-events", consumer.hook_url(path), ["PUSH_ARTIFACT"],
                                 registry.project["id"])
    consumer.add_secret(path, webhook["secret"])
    tags = [f"e{i:05d}" for i in range(args.events)]
    print(f"events: {args.events} manifest PUTs with distinct tags from {args.threads} threads", flush=True)
    load_start = os.getloadavg()
    cpu = CpuMeter(cpu_pids)
    first_change, last_put, put_latencies, failures = put_manifests(
        registry, tokens, manifest, tags, args.threads)
    produced = len(put_latencies)
    print(f"  {produced} PUTs answered 201 in {last_put - first_change:.1f} s"
          f" ({produced / (last_put - first_change):.0f}/s), {len(failures)} failed", flush=True)
    complete = wait_for_deliveries(consumer, [path], produced, last_put, args.events_timeout, "events")
    cpu_used = cpu.read()
    records = consumer.records([path])
    by_status, retried = database.deliveries([webhook["id"]])
    pending_events = database.pending_events()
    api.delete_webhook(webhook["id"])

    ids = [record[2] for record in records]
    header_mismatch = sum(1 for record in records if record[1] != record[2])
    received_tags = [record[7] for record in records]
    sent_tags = set(tags) - {failure.split(":", 1)[0] for failure in failures}
    latencies = [record[5] - epoch(record[4]) for record in records if record[4]]
    last_receipt = max((record[5] for record in records), default=None)
    first_occurred = min((epoch(record[4]) for record in records if record[4]), default=None)
    unique = len(set(ids))
    seconds = last_receipt - first_change if last_receipt else None
    result = {
        "per_endpoint": args.current_per_endpoint, "events": args.events, "threads": args.threads,
        "puts_ok": produced, "put_failures": len(failures), "put_failure_examples": failures[:5],
        "tokens_fetched_again": tokens.refreshed,
        "put_seconds": last_put - first_change, "puts_per_s": produced / (last_put - first_change),
        "put_p50_ms": 1000 * percentile(put_latencies, 0.5) if put_latencies else None,
        "put_p99_ms": 1000 * percentile(put_latencies, 0.99) if put_latencies else None,
        "received": len(records), "unique_ids": unique, "duplicates": len(records) - unique,
        "tags_missing": len(sent_tags - set(received_tags)),
        "tags_more_than_once": sum(1 for n in Counter(received_tags).values() if n > 1),
        "webhook_id_header_mismatch": header_mismatch,
        "signatures_verified": sum(1 for record in records if record[6] is True),
        "signatures_failed": sum(1 for record in records if record[6] is False),
        "all_arrived": complete, "exactly_once": complete and unique == len(records) == len(sent_tags)
        and not (sent_tags - set(received_tags)),
        "first_change_to_last_receipt_s": seconds,
        "first_occurred_at_after_first_put_s": first_occurred - first_change if first_occurred else None,
        "last_receipt_after_last_put_s": last_receipt - last_put if last_receipt else None,
        "events_per_s": unique / seconds if seconds else None,
        "latency_p50_ms": 1000 * percentile(latencies, 0.5) if latencies else None,
        "latency_p99_ms": 1000 * percentile(latencies, 0.99) if latencies else None,
        "latency_max_ms": 1000 * max(latencies) if latencies else None,
        "latency_mean_ms": 1000 * statistics.fmean(latencies) if latencies else None,
        "delivered_while_putting": sum(1 for record in records if record[5] <= last_put),
        "blocks": receipt_blocks(records, first_change),
        "deliveries_in_db": by_status, "deliveries_retried": retried, "events_pending_in_db": pending_events,
        "waited_after_last_put_s": time.time() - last_put,
        "load_average_before": load_start, "load_average_after": os.getloadavg(), **cpu_used,
    }
    print("  deliveries per block of receipts: " + ", ".join(
        f"{block['from']}-{block['to']}: {block['events_per_s']:.0f}/s" for block in result["blocks"]), flush=True)
    print(f"  {len(records)} deliveries ({unique} distinct ids) in {fmt(seconds, '.1f')} s from the first"
          f" change: {fmt(result['events_per_s'], '.0f')} events/s, latency p50 {fmt(result['latency_p50_ms'])}"
          f" ms, p99 {fmt(result['latency_p99_ms'])} ms", flush=True)
    return result


# ------------------------------------------------------------------ part 2: GET/PUT throughput


def hey_command(args, op, url, authorization, manifest_file):
    command = ["-z", f"{args.load_seconds}s", "-c", str(args.connections), "-t", "30",
               "-H", f"Authorization: {authorization}"]
    if op == "get":
        command += ["-A", OCI_MANIFEST]
    else:
        command += ["-m", "PUT", "-T", OCI_MANIFEST, "-D", str(manifest_file)]
    return command + [url]


def shown_command(command):
    return HEY + " " + " ".join("'Authorization: Bearer …'" if part.startswith("Authorization:") else part
                    for part in command)


def median_ratios(rows):
    """{(per endpoint, op): [with/none ratio of each round]} of the rows with webhooks."""
    ratios = {}
    for row in rows:
        if row["webhooks"] and row["ratio"] is not None:
            ratios.setdefault((row["per_endpoint"], row["op"]), []).append(row["ratio"])
    return ratios


def measure_load(args, registry, consumer, api, database, cpu_pids, run_dir):
    project = create_cyp_project(registry, LOAD_PROJECT)
    manifest = push_small_image(registry, run_dir, LOAD_REPO, SMALL_LAYER).manifest
    tokens = Tokens(registry, LOAD_REPO)
    authorization = tokens.current
    manifest_file = run_dir / "manifest.json"
    manifest_file.write_bytes(manifest)
    url = f"{registry.base_url}/v2/{LOAD_REPO}/manifests/{LOAD_TAG}"
    resp = requests.put(url, data=manifest, headers={"Authorization": authorization, "Content-Type": OCI_MANIFEST},
                        timeout=HTTP_TIMEOUT)
    expect_status(resp, 201, "manifest PUT")
    rows = []
    # Each operation without webhooks and at once with them, --rounds times: on a shared machine only runs
    # back to back compare. The order alternates between rounds (without first in odd rounds, with first in even
    # ones), since SecantusDB gets slower as a run writes more, which would
    # otherwise count against the phase that always comes second.
    def phases(load_round):
        order = (0, LOAD_HOOKS) if load_round % 2 else (LOAD_HOOKS, 0)
        return [(load_round, hooks, op) for op in ("get", "put") for hooks in order]

    for load_round, hooks, op in [phase for n in range(args.rounds) for phase in phases(n + 1)]:
        # Every earlier event fanned out, so none reaches this phase's webhooks.
        fan_out_wait, still_pending = database.wait_no_pending_events(args.drain_timeout)
        if still_pending:
            print(f"  {still_pending} earlier events still pending after {fan_out_wait:.0f} s", flush=True)
        webhooks, paths = [], []
        for n in range(hooks):
            path = f"/load-{load_round}-{op}-{n + 1}"
            webhook = api.create_webhook(f"bench-load-{load_round}-{op}-{n + 1}", consumer.hook_url(path),
                                         ["PUSH_ARTIFACT", "PULL_ARTIFACT"], project["id"])
            consumer.add_secret(path, webhook["secret"])
            webhooks.append(webhook)
            paths.append(path)
        if hooks:
            time.sleep(SUBSCRIBERS_REFRESH_S)
        authorization = tokens.refresh(authorization)  # a fresh token for each run: the waits can be long
        command = hey_command(args, op, url, authorization, manifest_file)
        print(f"load: manifest {op.upper()}, {hooks} webhooks: {shown_command(command)}", flush=True)
        settle_disk()
        load_start = os.getloadavg()
        cpu = CpuMeter(cpu_pids)
        hey = run_hey(command)
        start, end = hey.pop("started"), hey.pop("ended")
        cpu_used = cpu.read()
        row = {"per_endpoint": args.current_per_endpoint, "round": load_round, "op": op.upper(), "webhooks": hooks,
               **hey, "command": shown_command(command), "earlier_events_fan_out_s": fan_out_wait,
               "earlier_events_pending": still_pending,
               "load_average_before": load_start, "load_average_after": os.getloadavg(), **cpu_used}
        # What a request costs the server and its database, which the other work of a shared machine moves less
        # than it moves req/s.
        row["cpu_ms_per_request"] = 1000 * (cpu_used["cyp_cpu_s"] + cpu_used["secantusd_cpu_s"]) / max(hey["ok"], 1)
        print(f"  {fmt(hey['ok_per_s'], '.0f')} 2xx/s, p50 {fmt(hey['p50_ms'])} ms, p99 {fmt(hey['p99_ms'])}"
              f" ms, non-2xx {hey['non_2xx']}, errors {hey['errors']}", flush=True)
        if hooks:
            # Each answered GET or PUT is reported to each webhook: a PUT by an event of its own, a GET within
            # the `count` of a PULL_ARTIFACT (identical pulls of one second are one event).
            expected = hooks * hey["ok"]
            complete = wait_for_deliveries(consumer, paths, expected, end, args.drain_timeout,
                                           f"{op.upper()} backlog", counted=True)
            records = consumer.records(paths)
            in_window = sum(1 for record in records if record[5] <= end)
            last = max((record[5] for record in records), default=None)
            ids = [(record[0], record[2]) for record in records]
            by_status, retried = database.deliveries([w["id"] for w in webhooks])
            row.update(
                changes_expected=expected, changes_delivered=sum(record[8] for record in records),
                delivered_in_window=in_window, delivered=len(records),
                all_delivered=complete, duplicates=len(ids) - len(set(ids)),
                signatures_failed=sum(1 for record in records if record[6] is False),
                drain_s=(last - end) if complete and last else None,
                waited_s=time.time() - end,
                delivered_per_s_in_window=in_window / (end - start),
                delivered_per_s_overall=len(records) / ((last or end) - start),
                deliveries_in_db=by_status, deliveries_retried=retried)
            print(f"  deliveries: {len(records)} standing for {row['changes_delivered']} of {expected} requests x"
                  f" webhooks, {in_window} during the load"
                  + (f", backlog drained {row['drain_s']:.1f} s after the load" if row["drain_s"] is not None
                     else f", NOT drained {row['waited_s']:.0f} s after the load"), flush=True)
            for webhook in webhooks:  # their backlog, if any, goes with them
                api.delete_webhook(webhook["id"])
        rows.append(row)
    for row in rows:
        base = next(r for r in rows if (r["op"], r["round"], r["webhooks"]) == (row["op"], row["round"], 0))
        row["ratio"] = ratio(row["ok_per_s"], base["ok_per_s"])
    return rows


# ------------------------------------------------------------------ the run


def git_state():
    """HEAD and whether the application's files differ from it (other work in the tree is measured too)."""
    def git(*argv):
        done = subprocess.run(["git", *argv], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        return done.stdout.rstrip("\n")
    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if not line[3:].startswith("bench/")]
    return {"head": git("rev-parse", "--short", "HEAD"), "changed_outside_bench": changed}


def start_server(args, children, services, per_endpoint, part):
    print(f"--- {part}: a fresh cyp server ({BACKEND}), webhook_max_in_flight {args.max_in_flight},"
          f" webhook_max_in_flight_per_endpoint {per_endpoint}"
          + (f", workers {args.workers}" if args.workers is not None else ""), flush=True)
    registry = start_cyp(children, services, BACKEND, server_env(args, per_endpoint))
    time.sleep(1)  # its workers, if it has any, are started by then
    return registry


def run(args):
    if not Path(HEY).exists():
        raise BenchError(f"{HEY} not found (apt-get install hey)")
    results = {"load_average_start": os.getloadavg(), "settings": {
        "events": args.events, "threads": args.threads, "connections": args.connections,
        "load_seconds": args.load_seconds, "max_in_flight": args.max_in_flight, "workers": args.workers,
        "per_endpoint": args.per_endpoint, "parts": args.parts, "backend": BACKEND},
        "events": [], "load": [], "servers": []}
    parts = [part for part in ("events", "load") if part in args.parts]
    with bench_run(args.workdir, args.time_limit) as (run_dir, children):
        secantusd, mongo_uri = start_secantusdb(children, run_dir)
        consumer = start_consumer(children)
        services = Services(run_dir, mongo_uri, None)
        for per_endpoint in args.per_endpoint:
            args.current_per_endpoint = per_endpoint
            for part in parts:  # each on a server of its own: a fresh database, no earlier history
                consumer.reset()
                tree = git_state()  # the code this server runs: other work goes on in the tree
                registry = start_server(args, children, services, per_endpoint, part)
                database = Database(mongo_uri, server_database(registry))
                try:
                    if args.db_profile:
                        database.profile(2)
                    api = Api(registry)
                    processes = process_tree(registry.proc.pid)
                    pids = {"cyp": processes, "secantusd": [secantusd.pid], "consumer": [consumer.proc.pid]}
                    if part == "events":
                        results["events"].append(measure_events(args, registry, consumer, api, database, pids,
                                                                run_dir))
                    else:
                        results["load"] += measure_load(args, registry, consumer, api, database, pids, run_dir)
                    results["servers"].append({
                        "part": part, "per_endpoint": per_endpoint, "processes": len(processes), "git": tree,
                        "peak_rss_mb": {str(pid): rss for pid, rss in tree_peak_rss_mb(registry.proc.pid).items()},
                        "db_profile": database.profile_summary() if args.db_profile else None})
                finally:
                    database.close()
                    stop_process_group(registry.proc)
                    keep_log(registry, f"{part}-pe{per_endpoint}")
        results["secantusd_peak_rss_mb"] = peak_rss_mb(secantusd.pid)
        results["consumer_peak_rss_mb"] = peak_rss_mb(consumer.proc.pid)
    results["load_average_end"] = os.getloadavg()
    return results


def keep_log(registry, suffix):
    """Keep the stopped server's log beside the next one's (start_cyp reuses the name)."""
    if registry.log and registry.log.exists():
        shutil.copy(registry.log, registry.log.with_name(f"{registry.name}-{suffix}.log"))


# ------------------------------------------------------------------ the report

EVENT_COLUMNS = [
    ("per endpoint", "per_endpoint", "d"),
    ("events", "puts_ok", "d"),
    ("PUTs/s", "puts_per_s", ".0f"),
    ("PUT p50 ms", "put_p50_ms", ".1f"),
    ("first change -> last receipt s", "first_change_to_last_receipt_s", ".1f"),
    ("events/s delivered", "events_per_s", ".0f"),
    ("latency p50 ms", "latency_p50_ms", ".0f"),
    ("p99 ms", "latency_p99_ms", ".0f"),
    ("max ms", "latency_max_ms", ".0f"),
    ("received", "received", "d"),
    ("duplicates", "duplicates", "d"),
    ("missing", "tags_missing", "d"),
    ("bad signatures", "signatures_failed", "d"),
    ("cyp CPU s", "cyp_cpu_s", ".1f"),
    ("secantusd CPU s", "secantusd_cpu_s", ".1f"),
]

LOAD_COLUMNS = [
    ("per endpoint", "per_endpoint", "d"),
    ("round", "round", "d"),
    ("op", "op", "s"),
    ("webhooks", "webhooks", "d"),
    ("2xx/s", "ok_per_s", ".0f"),
    ("p50 ms", "p50_ms", ".1f"),
    ("p99 ms", "p99_ms", ".1f"),
    ("non-2xx", "non_2xx", "d"),
    ("errors", "errors", "d"),
    ("with/none", "ratio", ".2f"),
    ("cyp CPU s", "cyp_cpu_s", ".1f"),
    ("secantusd CPU s", "secantusd_cpu_s", ".1f"),
    ("CPU ms/request", "cpu_ms_per_request", ".2f"),
    ("machine busy", "machine_cpu_busy", ".0%"),
    ("I/O stalled", "machine_io_stalled", ".0%"),
]

DELIVERY_COLUMNS = [
    ("per endpoint", "per_endpoint", "d"),
    ("round", "round", "d"),
    ("op", "op", "s"),
    ("requests x webhooks", "changes_expected", "d"),
    ("covered", "changes_delivered", "d"),
    ("during load", "delivered_in_window", "d"),
    ("/s during load", "delivered_per_s_in_window", ".0f"),
    ("delivered", "delivered", "d"),
    ("drained after s", "drain_s", ".1f"),
    ("waited s", "waited_s", ".0f"),
    ("duplicates", "duplicates", "d"),
]


PROFILE_COLUMNS = [
    ("operation {filter fields}", "operation", "s"),
    ("count", "count", "d"),
    ("total ms", "total_ms", ".0f"),
    ("p50 ms", "p50_ms", ".0f"),
    ("max ms", "max_ms", ".0f"),
]


def exactly_once_text(row):
    if row["exactly_once"]:
        return "yes"
    if row["duplicates"] or row["tags_more_than_once"] or row["signatures_failed"]:
        return "NO"
    return (f"not known: {row['tags_missing']} events had not arrived {row['waited_after_last_put_s']:.0f} s after"
            f" the last PUT (--events-timeout), no duplicates among the {row['received']} that did;"
            f" {row['events_pending_in_db']} events still pending fan-out")


def report(results, args):
    print()
    if results["events"]:
        print(f"events: {args.events} manifest PUTs (distinct tags, {args.threads} threads) -> one PUSH_ARTIFACT"
              f" webhook; latency = receipt - occurred_at; webhook_max_in_flight {args.max_in_flight}")
        print_table(EVENT_COLUMNS, results["events"])
        for row in results["events"]:
            print(f"  per endpoint {row['per_endpoint']}: every event exactly once: {exactly_once_text(row)}"
                  f" ({row['received']} received, {row['unique_ids']} distinct ids, {row['tags_missing']} tags"
                  f" missing, {row['tags_more_than_once']} more than once; {row['signatures_verified']}"
                  f" signatures verified; in the database {row['deliveries_in_db']},"
                  f" {row['deliveries_retried']} retried)")
            print("    pace by block of receipts (events/s, latency p50 ms): " + ", ".join(
                f"{block['from']}-{block['to']} {block['events_per_s']:.0f} {fmt(block['latency_p50_ms'], '.0f')}"
                for block in row["blocks"]))
        print()
    if results["load"]:
        print(f"load: hey -c {args.connections} -z {args.load_seconds}s per row, manifest by tag; with webhooks:"
              f" {LOAD_HOOKS} webhooks for PUSH_ARTIFACT and PULL_ARTIFACT")
        print_table(LOAD_COLUMNS, results["load"])
        print()
        print("deliveries of the rows with webhooks (each answered request reaches each webhook: a PUT as an event"
              " of its own, a GET within the count of a PULL_ARTIFACT):")
        print_table(DELIVERY_COLUMNS, [row for row in results["load"] if row["webhooks"]])
        print()
        print("targets:")
        for row in results["load"]:
            if row["webhooks"]:
                verdict = "ok" if row["ratio"] is not None and row["ratio"] >= TARGET_RATIO else "MISSED"
                print(f"  per endpoint {row['per_endpoint']:>2} round {row['round']} {row['op']:<3} with/none req/s"
                      f" {fmt(row['ratio'], '.2f')} (target >= {TARGET_RATIO}): {verdict}")
        # One 10 s phase moves by several per cent from the one before on this machine (bench/README.md): the
        # median over the rounds is the figure to read against the target.
        for (per_endpoint, op), ratios in median_ratios(results["load"]).items():
            print(f"  per endpoint {per_endpoint:>2} median of {len(ratios)} rounds {op:<3} with/none req/s"
                  f" {statistics.median(ratios):.2f} (rounds {', '.join(f'{r:.2f}' for r in ratios)})")
    for server in results["servers"]:
        if server["db_profile"]:
            print(f"database operations of the {server['part']} part (per endpoint {server['per_endpoint']}),"
                  " most time first (SecantusDB's profiler, system.profile is capped: the latest only):")
            print_table(PROFILE_COLUMNS, server["db_profile"])
        print(f"cyp server of the {server['part']} part, per endpoint {server['per_endpoint']}:"
              f" {server['processes']} processes, peak RSS MB "
              + " / ".join(f"{value:.1f}" for value in server["peak_rss_mb"].values()))
    print(f"peak RSS MB: secantusd {results['secantusd_peak_rss_mb']:.1f}, consumer"
          f" {results['consumer_peak_rss_mb']:.1f}")
    for server in results["servers"]:
        if server["git"]["changed_outside_bench"]:
            print(f"the {server['part']} part's server (per endpoint {server['per_endpoint']}) ran the work tree:"
                  f" HEAD {server['git']['head']} with changes to " + ", ".join(server["git"]["changed_outside_bench"]))
        else:
            print(f"the {server['part']} part's server (per endpoint {server['per_endpoint']}) ran HEAD"
                  f" {server['git']['head']}")
    print(f"1-min load average: {load_average_text(results)}")
    if args.json:
        write_json(args.json, results)
    # A delivery duplicated, badly signed or failed for good, or a request refused: exit status 1. Events
    # still queued at a timeout, like a missed target, do not count.
    failed = [row for row in results["events"] + results["load"]
              if row.get("duplicates") or row.get("tags_more_than_once") or row.get("signatures_failed")
              or row.get("put_failures") or row.get("non_2xx") or row.get("errors")
              or (row.get("deliveries_in_db") or {}).get("failed")]
    return 1 if failed else 0


def per_endpoint_list(text):
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(not 1 <= value <= 100 for value in values):
        raise ValueError(text)
    return values


def add_options(parser):
    parser.add_argument("--events", type=int, default=10_000, help="manifest PUTs of part 1 (default 10000)")
    parser.add_argument("--threads", type=int, default=8, help="client threads of part 1 (default 8)")
    parser.add_argument("--connections", type=int, default=32, help="hey's connections in part 2 (default 32)")
    parser.add_argument("--load-seconds", type=int, default=10, help="each hey run of part 2 (default 10)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="part 2: how many times to measure each operation without and then with webhooks"
                             " (default 1)")
    parser.add_argument("--max-in-flight", type=int, default=32,
                        help="CYP_WEBHOOK_MAX_IN_FLIGHT of the servers (default 32, the server's default)")
    parser.add_argument("--per-endpoint", type=per_endpoint_list, default=[2], metavar="LIST",
                        help="CYP_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT values, comma-separated; a fresh server"
                             " for each (default 2, the server's default)")
    parser.add_argument("--parts", type=lambda text: text.split(","), default=["events", "load"],
                        help="comma-separated: events, load (default both)")
    parser.add_argument("--workers", type=int,
                        help="CYP_WORKERS of the servers, for a server that has that setting (default: not set,"
                             " the server's default)")
    parser.add_argument("--events-timeout", type=int, default=3600, metavar="SECONDS",
                        help="events part: longest wait for the deliveries after the last PUT (default 3600)")
    parser.add_argument("--drain-timeout", type=int, default=300, metavar="SECONDS",
                        help="load part: longest wait for a phase's deliveries after its load, and for earlier"
                             " events to be fanned out before the next phase (default 300)")
    parser.add_argument("--db-profile", action="store_true",
                        help="turn SecantusDB's profiler on for each server's database and print which operations"
                             " took the time (it slows the database down: not for the headline figures)")
    add_workdir_option(parser)
    add_limit_options(parser, default_time_limit=3 * DEFAULT_TIME_LIMIT_S)
    # check_common_args checks a layer size; this bench has none to choose.
    parser.set_defaults(size_mib=1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["consumer"]:
        sys.exit(consumer_main(sys.argv[2:]))
    sys.exit(bench_main(__doc__, add_options, run, report))
