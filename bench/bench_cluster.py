#!/usr/bin/env python3
"""Several nodes behind nginx: manifest GET by tag and 1 MiB blob GET at 32 connections through the balancer with
1, 2 and 3 nodes (one worker each), and the reference docker-registry alone.

One run starts SecantusDB and Debian's docker-registry (filesystem storage, no auth), then for each node count a
cluster of the harness (runtime/cluster.py: the nodes on that database with a shared filesystem blob store, nginx
configured as docs/operations.md explains), pushes the same small image (a 1 MiB layer and its config) and runs
`hey` (Debian) for --seconds at --connections: manifest GET by tag, then blob GET, with a pull token as clients
hold it. Each cluster is stopped before the next starts. For each run it reads requests per second (and MB/s for
the blob), p99 latency, non-200 answers and the CPU seconds of every process: each node, nginx, SecantusDB, the
reference, hey, and the machine's busy share. Ratios are against one node and against the reference.

On a two-core machine the load generator, nginx, the database and the nodes share the two cores, so adding
nodes cannot add throughput there: read the CPU columns (a machine at 100 % busy has nothing more to give).
See bench/README.md.
"""

import os
import random
import sys

from common import (
    ADMIN_USER,
    MB,
    BenchError,
    CpuMeter,
    Registry,
    add_hey_options,
    add_limit_options,
    add_workdir_option,
    bench_main,
    bench_run,
    create_cyp_project,
    fmt,
    fresh_name,
    load_average_text,
    print_table,
    push_small_image,
    ratio,
    run_hey,
    start_reference,
    start_secantusdb,
    write_json,
    REPO_ROOT,
)
from bench_concurrency import LAYER_BYTES, LAYER_SEED, REPO, TAG, hey_command, request_of

sys.path.insert(0, str(REPO_ROOT))
from runtime.cluster import Cluster  # noqa: E402

NODE_COUNTS = (1, 2, 3)

COLUMNS = [
    ("request", "request", "s"),
    ("setup", "setup", "s"),
    ("req/s", "rps", ".0f"),
    ("MB/s", "mbps", ".0f"),
    ("x 1 node", "vs_one", ".2f"),
    ("x ref", "vs_ref", ".2f"),
    ("p99 ms", "p99", ".1f"),
    ("non-200", "non_200", "d"),
    ("nodes CPU s", "nodes_cpu", "s"),
    ("nginx CPU s", "nginx_cpu", ".1f"),
    ("db CPU s", "db_cpu", ".1f"),
    ("ref CPU s", "ref_cpu", ".1f"),
    ("hey CPU s", "hey_cpu", ".1f"),
    ("machine busy", "busy", ".0%"),
]


def measure(args, name, registry, image, pids):
    """hey against one setup for both requests; {request: result with CPU seconds}."""
    results = {}
    for request in ("manifest", "blob"):
        url, accept = request_of(registry, image, request)
        meter = CpuMeter(pids)
        result = run_hey(hey_command(args, url, image.authorization, accept))
        result.update(meter.read())
        if not result["statuses"].get(200):
            raise BenchError(f"{name}: no {request} GET answered 200 ({result['statuses']}, errors {result['errors']})")
        print(f"  {name}, {request} GET: {fmt(result['hey_req_per_s'], '.0f')} req/s, p99 {fmt(result['p99_ms'])} ms,"
              f" statuses {result['statuses']}, errors {result['errors']}, machine busy "
              f"{result['machine_cpu_busy']:.0%}", flush=True)
        results[request] = result
    return results


def measure_cluster(args, run_dir, mongo_uri, secantusd_pid, nodes, layer_data):
    cluster = Cluster(run_dir / f"cluster-{nodes}", nodes=nodes, workers=1, backend="filesystem", mongo_uri=mongo_uri,
                      mongo_db=fresh_name(f"cyp_bench_cluster{nodes}_"), tied=True)
    cluster.start()
    try:
        registry = Registry(f"cluster{nodes}", cluster.url, cluster.balancer.popen,
                            (ADMIN_USER, cluster.admin_password))
        registry.project = create_cyp_project(registry, "bench")
        image = push_small_image(registry, run_dir, REPO, layer_data, tag=TAG)
        pids = {f"node{node.index}": [node.process.pid] for node in cluster.nodes}
        pids.update(nginx=[cluster.balancer.pid], db=[secantusd_pid])
        return image.manifest, measure(args, f"{nodes} node{'s' if nodes > 1 else ''}", registry, image, pids)
    finally:
        cluster.stop()


def run(args):
    results = {"load_average_start": os.getloadavg(), "settings": {
        "seconds": args.seconds, "connections": args.connections, "nodes": list(args.nodes)}, "setups": {}}
    with bench_run(args.workdir, args.time_limit) as (run_dir, children):
        secantusd, mongo_uri = start_secantusdb(children, run_dir)
        reference = start_reference(children, run_dir)
        layer_data = random.Random(LAYER_SEED).randbytes(LAYER_BYTES)
        image = push_small_image(reference, run_dir, REPO, layer_data, tag=TAG)
        results["setups"]["reference"] = measure(args, "reference", reference, image,
                                                 {"ref": [reference.proc.pid], "db": [secantusd.pid]})
        for nodes in args.nodes:
            manifest, results["setups"][f"{nodes} nodes"] = measure_cluster(args, run_dir, mongo_uri, secantusd.pid,
                                                                            nodes, layer_data)
            if manifest != image.manifest:
                raise BenchError("the cluster was given a different manifest than the reference")
    results["load_average_end"] = os.getloadavg()
    return results


def rows_of(results):
    setups = results["setups"]
    rows = []
    for request in ("manifest", "blob"):
        reference = setups["reference"][request]["hey_req_per_s"]
        one = setups.get("1 nodes", {}).get(request, {}).get("hey_req_per_s")
        for name, measured in setups.items():
            result = measured[request]
            rps = result["hey_req_per_s"]
            nodes = sorted(key[:-6] for key in result if key.startswith("node") and key.endswith("_cpu_s"))
            rows.append({
                "request": request, "setup": name.replace("1 nodes", "1 node"), "rps": rps,
                "mbps": rps * LAYER_BYTES / MB if request == "blob" else None,
                "vs_one": ratio(rps, one) if name != "reference" else None, "vs_ref": ratio(rps, reference),
                "p99": result["p99_ms"],
                "non_200": sum(n for code, n in result["statuses"].items() if code != 200) + result["errors"],
                "nodes_cpu": " ".join(f"{result[f'{node}_cpu_s']:.1f}" for node in nodes) or "-",
                "nginx_cpu": result.get("nginx_cpu_s"), "db_cpu": result.get("db_cpu_s"),
                "ref_cpu": result.get("ref_cpu_s"), "hey_cpu": result["hey_cpu_s"], "busy": result["machine_cpu_busy"],
            })
    return rows


def report(results, args):
    settings = results["settings"]
    print(f"\n{settings['connections']} connections, {settings['seconds']} s each; nodes of one worker on a shared "
          f"filesystem blob store behind nginx; one 1 MiB layer ({LAYER_BYTES / MB:.2f} MB);"
          f" {os.cpu_count()} CPUs; 1-min load average {load_average_text(results)}\n")
    rows = rows_of(results)
    print_table(COLUMNS, rows)
    print("\n(x 1 node: throughput against one node behind the same nginx; x ref: against the reference alone, no"
          " balancer; CPU seconds of each process during the run; machine busy: share of all CPUs in use)")
    if args.json:
        write_json(args.json, {**results, "rows": rows})
    return 0


def add_options(parser):
    add_hey_options(parser)
    parser.add_argument("--nodes", type=int, nargs="+", default=list(NODE_COUNTS),
                        help="node counts to measure (default 1 2 3)")
    add_workdir_option(parser)
    add_limit_options(parser, default_time_limit=900)


def main(argv=None):
    return bench_main(__doc__, add_options, run, report, argv)


if __name__ == "__main__":
    sys.exit(main())
