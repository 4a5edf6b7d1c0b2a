#!/usr/bin/env python3
"""Many clients at once: manifest GET by tag and 1 MiB blob GET at 32 connections, cyp against the reference.

One run starts SecantusDB, Debian's docker-registry (filesystem storage, no auth) and a fresh
CYP-Registry server (filesystem backend, its default number of workers), pushes the same small image
(a 1 MiB layer and its config) into both, then runs `hey` (Debian) for --seconds at --connections
against each, alternating reference and cyp, --rounds times: manifest GET by tag, then blob GET. cyp
is asked with a pull token as clients hold it. For each run it reads requests per second, the status
codes, p50/p99 latency and the CPU seconds every process used (cyp's workers, SecantusDB, the
reference, hey), the database's share of the work. With --profile it samples cyp's workers with
py-spy during one more run of each request and prints the top frames of their event loop.
See bench/README.md.
"""

import collections
import os
import random
import subprocess
import sys
from pathlib import Path

from common import (
    MB,
    PIECE,
    OCI_MANIFEST,
    BenchError,
    CpuMeter,
    Services,
    add_hey_options,
    add_limit_options,
    add_workdir_option,
    bench_main,
    bench_run,
    fmt,
    load_average_text,
    peak_rss_mb,
    print_table,
    process_tree,
    push_small_image,
    ratio,
    run_hey,
    start_cyp,
    start_reference,
    start_secantusdb,
    venv_program,
    write_json,
)

REPO = "bench/hot"
TAG = "v1"
BACKEND = "filesystem"  # the reference stores on the filesystem too
LAYER_BYTES = PIECE
LAYER_SEED = 20261129

# (request, minimum cyp/reference throughput): the issue's targets.
TARGETS = {"manifest": 0.8, "blob": 1.0}

COLUMNS = [
    ("request", "request", "s"),
    ("round", "round", "d"),
    ("ref req/s", "ref_rps", ".0f"),
    ("cyp req/s", "cyp_rps", ".0f"),
    ("cyp/ref", "ratio", ".2f"),
    ("ref p99 ms", "ref_p99", ".1f"),
    ("cyp p99 ms", "cyp_p99", ".1f"),
    ("cyp non-200", "cyp_non_200", "d"),
    ("cyp CPU s", "cyp_cpu", ".1f"),
    ("db CPU s", "db_cpu", ".1f"),
    ("ref CPU s", "ref_cpu", ".1f"),
    ("hey CPU s", "hey_cpu", ".1f"),
]


def hey_command(args, url, authorization=None, accept=None):
    command = ["-z", f"{args.seconds}s", "-c", str(args.connections), "-t", "30"]
    if authorization:
        command += ["-H", f"Authorization: {authorization}"]
    if accept:
        command += ["-A", accept]
    return command + [url]


def request_of(registry, image, request):
    """(URL, Accept) of the request measured, against one registry."""
    base = f"{registry.base_url}/v2/{REPO}"
    if request == "manifest":
        return f"{base}/manifests/{TAG}", OCI_MANIFEST
    return f"{base}/blobs/{image.layer.digest}", None


def load(args, name, url, accept, authorization, meter_pids):
    meter = CpuMeter(meter_pids)
    result = run_hey(hey_command(args, url, authorization, accept))
    result.update(meter.read())
    ok = result["statuses"].get(200, 0)
    if not ok:
        raise BenchError(f"{name}: no request answered 200 ({result['statuses']}, errors {result['errors']})")
    print(f"  {name}: {fmt(result['hey_req_per_s'], '.0f')} req/s, p99 {fmt(result['p99_ms'])} ms,"
          f" statuses {result['statuses']}, errors {result['errors']}", flush=True)
    return result


# ------------------------------------------------------------------ profile


def profile_top(raw_files, top):
    """Self and inclusive shares of the event-loop thread's samples in py-spy raw (collapsed) output."""
    own, inclusive = collections.Counter(), collections.Counter()
    total = idle = 0
    for path in raw_files:
        for line in Path(path).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            if not stack or not any("_run_once" in frame for frame in frames):
                continue  # not the event loop's thread
            count = int(count)
            total += count
            if "select (selectors.py" in frames[-1]:
                idle += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    if not total:
        raise BenchError("py-spy recorded no samples of the event loop")
    share = lambda counter: [(100 * count / total, frame) for frame, count in counter.most_common(top)]  # noqa: E731
    return {"samples": total, "idle_share": 100 * idle / total, "self": share(own), "inclusive": share(inclusive)}


def profile(args, cyp, run_dir, url, accept, authorization, name):
    """hey against cyp while py-spy samples each worker; the top frames."""
    py_spy = venv_program("py-spy", "py-spy")
    workers = [pid for pid in process_tree(cyp.proc.pid) if pid != cyp.proc.pid] or [cyp.proc.pid]
    recorders, files = [], []
    for pid in workers:
        out = run_dir / f"profile-{name}-{pid}.txt"
        files.append(out)
        recorders.append(subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--rate", "250", "--duration", str(args.seconds),
             "--format", "raw", "--idle", "--output", str(out), "--nonblocking"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    result = run_hey(hey_command(args, url, authorization, accept))
    for recorder in recorders:
        _, err = recorder.communicate(timeout=60)
        if recorder.returncode:
            raise BenchError(f"py-spy failed ({recorder.returncode}): {err.decode(errors='replace')[-500:]}")
    top = profile_top(files, args.profile_top)
    top["req_per_s"] = result["hey_req_per_s"]
    return top


# ---------------------------------------------------------------------- run


def run(args):
    results = {"load_average_start": os.getloadavg(), "settings": {
        "seconds": args.seconds, "connections": args.connections, "rounds": args.rounds, "backend": BACKEND},
        "runs": [], "profiles": {}}
    with bench_run(args.workdir, args.time_limit) as (run_dir, children):
        secantusd, mongo_uri = start_secantusdb(children, run_dir)
        reference = start_reference(children, run_dir)
        cyp = start_cyp(children, Services(run_dir, mongo_uri, None), BACKEND)
        cyp_pids = process_tree(cyp.proc.pid)
        results["cyp_processes"] = len(cyp_pids)
        print(f"cyp serves with {len(cyp_pids)} processes (supervisor and workers)", flush=True)

        layer_data = random.Random(LAYER_SEED).randbytes(LAYER_BYTES)
        images = {name: push_small_image(registry, run_dir, REPO, layer_data, tag=TAG)
                  for name, registry in (("reference", reference), ("cyp", cyp))}
        if images["reference"].manifest != images["cyp"].manifest:
            raise BenchError("the two registries were given different manifests")
        pids = {"cyp": cyp_pids, "db": [secantusd.pid], "ref": [reference.proc.pid]}
        for round_number in range(1, args.rounds + 1):
            for request in ("manifest", "blob"):
                measured = {}
                for name, registry in (("reference", reference), ("cyp", cyp)):
                    image = images[name]
                    url, accept = request_of(registry, image, request)
                    measured[name] = load(args, f"{request} GET, round {round_number}, {name}", url, accept,
                                          image.authorization, pids)
                results["runs"].append({"request": request, "round": round_number, **measured})
        if args.profile:
            for request in ("manifest", "blob"):
                url, accept = request_of(cyp, images["cyp"], request)
                print(f"profiling cyp's workers during {request} GET ...", flush=True)
                results["profiles"][request] = profile(args, cyp, run_dir, url, accept,
                                                       images["cyp"].authorization, request)
        results["peak_rss_mb"] = {
            **{f"cyp {pid}": peak_rss_mb(pid) for pid in cyp_pids},
            "secantusd": peak_rss_mb(secantusd.pid), "reference": peak_rss_mb(reference.proc.pid)}
    results["load_average_end"] = os.getloadavg()
    return results


# -------------------------------------------------------------------- report


def row_of(run):
    ref, cyp = run["reference"], run["cyp"]
    return {
        "request": run["request"], "round": run["round"],
        "ref_rps": ref["hey_req_per_s"], "cyp_rps": cyp["hey_req_per_s"],
        "ratio": ratio(cyp["hey_req_per_s"], ref["hey_req_per_s"]),
        "ref_p99": ref["p99_ms"], "cyp_p99": cyp["p99_ms"],
        "cyp_non_200": sum(count for code, count in cyp["statuses"].items() if code != 200) + cyp["errors"],
        "cyp_cpu": cyp["cyp_cpu_s"], "db_cpu": cyp["db_cpu_s"], "ref_cpu": ref["ref_cpu_s"],
        "hey_cpu": cyp["hey_cpu_s"],
    }


def target_checks(rows):
    checks = []
    for request, minimum in TARGETS.items():
        mine = [row for row in rows if row["request"] == request]
        worst = min(row["ratio"] for row in mine)
        checks.append((f"{request} GET cyp/ref >= {minimum} (worst round)", worst, worst >= minimum))
        non_200 = sum(row["cyp_non_200"] for row in mine)
        checks.append((f"{request} GET: no non-200 and no errors", non_200, non_200 == 0))
        worst_p99 = max(row["cyp_p99"] - row["ref_p99"] for row in mine)
        checks.append((f"{request} GET p99 not above the reference's (worst cyp - ref, ms)", worst_p99,
                       worst_p99 <= 0))
    return checks


def print_profile(name, top):
    print(f"\nprofile of cyp's workers during {name} GET ({top['req_per_s']:.0f} req/s while sampled):"
          f" {top['samples']} event-loop samples, {top['idle_share']:.0f}% waiting in select")
    print("  top self:")
    for share, frame in top["self"]:
        print(f"    {share:5.1f}%  {frame[:140]}")
    print("  top inclusive:")
    for share, frame in top["inclusive"]:
        print(f"    {share:5.1f}%  {frame[:140]}")


def report(results, args):
    settings = results["settings"]
    print(f"\n{settings['connections']} connections, {settings['seconds']} s each; cyp on {BACKEND} with"
          f" {results['cyp_processes']} processes; one 1 MiB layer ({LAYER_BYTES / MB:.2f} MB);"
          f" 1-min load average {load_average_text(results)}\n")
    rows = [row_of(run) for run in results["runs"]]
    print_table(COLUMNS, rows)
    print("\n(CPU seconds during the cyp run: cyp's processes, SecantusDB, hey; the reference's during its own)")
    print("\ntargets:")
    checks = target_checks(rows)
    for what, value, ok in checks:
        print(f"  {what}: {fmt(value, '.2f')} {'ok' if ok else 'MISSED'}")
    for name, top in results["profiles"].items():
        print_profile(name, top)
    print("\npeak RSS (VmHWM), MB: " + ", ".join(f"{name} {mb:.1f}" for name, mb in results["peak_rss_mb"].items()))
    if args.json:
        write_json(args.json, {**results, "rows": rows, "targets": checks})
    return 0


def add_options(parser):
    add_hey_options(parser)
    parser.add_argument("--rounds", type=int, default=2, help="reference/cyp pairs per request (default 2)")
    parser.add_argument("--profile", action="store_true",
                        help="sample cyp's workers with py-spy during one more run of each request")
    parser.add_argument("--profile-top", type=int, default=20, help="frames listed per profile table (default 20)")
    add_workdir_option(parser)
    add_limit_options(parser, default_time_limit=900)


def main(argv=None):
    return bench_main(__doc__, add_options, run, report, argv)


if __name__ == "__main__":
    sys.exit(main())
