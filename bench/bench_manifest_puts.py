#!/usr/bin/env python3
"""Concurrent manifest PUTs into one project: new manifests (each charged to the project's quota in its own
transaction) from --clients threads, spread over --repositories repositories, for --seconds.

One run starts SecantusDB and a fresh CYP-Registry server (filesystem backend, one worker), pushes a small
image's config and layer into each repository, then has every client PUT manifests that differ by an
annotation (so each is new and charged), by digest, back to back. It reports PUT/s, p50/p99/max latency,
the non-201 answers and the CPU seconds of cyp and SecantusDB. A manifest's charge shares the project's usage
document with every other, so this is where transactions of one project meet. See bench/README.md.
"""

import hashlib
import json
import os
import random
import threading
import time

from common import (
    OCI_MANIFEST,
    CpuMeter,
    RegistrySession,
    Services,
    add_limit_options,
    add_workdir_option,
    bench_main,
    bench_run,
    load_average_text,
    print_table,
    process_tree,
    push_small_image,
    start_cyp,
    start_secantusdb,
    write_json,
)

BACKEND = "filesystem"
LAYER_SEED = 20261130

COLUMNS = [
    ("clients", "clients", "d"),
    ("repositories", "repositories", "d"),
    ("PUT/s", "puts_per_s", ".1f"),
    ("p50 ms", "p50_ms", ".0f"),
    ("p99 ms", "p99_ms", ".0f"),
    ("max ms", "max_ms", ".0f"),
    ("non-201", "failed", "d"),
    ("cyp CPU s", "cyp_cpu_s", ".1f"),
    ("db CPU s", "db_cpu_s", ".1f"),
]


def manifest_with(image, note):
    """The image's manifest with an annotation of its own: new bytes, a new digest."""
    document = json.loads(image.manifest)
    document["annotations"] = {"bench": note}
    return json.dumps(document).encode()


def put_for(session, repo, image, client, stop_at, latencies, failures):
    number = 0
    while time.monotonic() < stop_at:
        body = manifest_with(image, f"{client}-{number}")
        number += 1
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        started = time.perf_counter()
        resp = session.http.put(session.url(f"/v2/{repo}/manifests/{digest}"), data=body,
                                headers={"Content-Type": OCI_MANIFEST}, timeout=(10, 120))
        latencies.append(time.perf_counter() - started)
        if resp.status_code != 201:
            failures.append(resp.status_code)


def run(args):
    results = {"load_average_start": os.getloadavg(), "settings": {
        "seconds": args.seconds, "clients": args.clients, "repositories": args.repositories, "backend": BACKEND}}
    with bench_run(args.workdir, args.time_limit) as (run_dir, children):
        secantusd, mongo_uri = start_secantusdb(children, run_dir)
        cyp = start_cyp(children, Services(run_dir, mongo_uri, None), BACKEND, {"CYP_WORKERS": "1"})
        layer_data = random.Random(LAYER_SEED).randbytes(4096)
        repos = [f"bench/app{index}" for index in range(args.repositories)]
        images = {repo: push_small_image(cyp, run_dir, repo, layer_data) for repo in repos}
        sessions = []
        for client in range(args.clients):
            repo = repos[client % len(repos)]
            session = RegistrySession(cyp)
            session.http.headers["Authorization"] = images[repo].authorization
            sessions.append((session, repo))
        latencies, failures = [], []
        meter = CpuMeter({"cyp": process_tree(cyp.proc.pid), "db": [secantusd.pid]})
        stop_at = time.monotonic() + args.seconds
        started = time.monotonic()
        threads = [threading.Thread(target=put_for, args=(session, repo, images[repo], client, stop_at, latencies,
                                                          failures))
                   for client, (session, repo) in enumerate(sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.monotonic() - started
        cpu = meter.read()
    latencies.sort()
    results["row"] = {
        "clients": args.clients, "repositories": args.repositories, "puts_per_s": len(latencies) / took,
        "p50_ms": latencies[len(latencies) // 2] * 1000, "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "max_ms": latencies[-1] * 1000, "failed": len(failures), "cyp_cpu_s": cpu["cyp_cpu_s"],
        "db_cpu_s": cpu["db_cpu_s"]}
    results["load_average_end"] = os.getloadavg()
    return results


def report(results, args):
    print(f"\nnew manifests PUT by digest for {args.seconds} s; cyp on {BACKEND}, one worker;"
          f" 1-min load average {load_average_text(results)}\n")
    print_table(COLUMNS, [results["row"]])
    if args.json:
        write_json(args.json, results)
    return 0 if results["row"]["failed"] == 0 else 1


def add_options(parser):
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--repositories", type=int, default=32,
                        help="repositories of the one project the clients share out (default 32)")
    parser.add_argument("--seconds", type=int, default=15, help="how long the clients PUT (default 15)")
    add_workdir_option(parser)
    add_limit_options(parser, default_time_limit=600)


if __name__ == "__main__":
    raise SystemExit(bench_main(__doc__, add_options, run, report))
