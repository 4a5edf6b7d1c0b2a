#!/usr/bin/env python3
"""Image import benchmark: CYP-Registry's import API against skopeo copy between the same two registries.

One run starts SecantusDB, Debian's docker-registry (the source; filesystem
storage in the run dir) and one CYP-Registry server (server.py) on the chosen
storage backend, pushes two distinct one-layer images of the same size into
docker-registry with skopeo, then times (a) the import of image A by the cyp
server (POST /api/v1/projects/:id/images/import until the task is completed)
and (b) `skopeo copy` of image B from docker-registry into the cyp server.
It checks that both arrive with the source's manifest digest, reads the cyp
server's peak RSS during each, prints a table with the time ratio
import/skopeo (target <= 1.0) and stops every process it started.  See
bench/README.md.

Units: 1 MB = 1e6 bytes, for throughput and memory alike.
"""

import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import requests
from common import (
    BACKENDS,
    HTTP_TIMEOUT,
    MB,
    PIECE,
    BenchError,
    Layer,
    Services,
    add_limit_options,
    add_size_option,
    add_workdir_option,
    api_login,
    bench_main,
    bench_run,
    build_oci_layout,
    check_blob,
    check_digest,
    cpu_seconds,
    docker_ref,
    expect_status,
    fmt,
    load_average_text,
    machine_cpu_ticks,
    manifest_digest,
    mb_per_s,
    peak_rss_mb,
    print_table,
    ratio,
    reset_peak_rss,
    skopeo_copy,
    start_cyp,
    start_moto,
    start_reference,
    start_secantusdb,
    write_json,
    write_skopeo_policy,
    write_test_layer,
)

DEFAULT_BACKEND = "filesystem"
# Fixed seeds, so every run moves the same bytes; two images, so that neither
# copy finds a blob the cyp server already holds.
IMAGES = {"import": ("bench/app", 20240611), "skopeo": ("bench/app-b", 20240612)}  # path: (source repo, seed)
TAG = "v1"
# The import refuses loopback and speaks plain HTTP only to registries listed as insecure.
IMPORT_ENV = {"CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32", "CYP_IMPORT_INSECURE_REGISTRIES": "127.0.0.1"}
POLL_S = 0.1  # how often the import task is read: the resolution of the import's time
PROGRESS_EVERY_S = 10
TARGET_RATIO = 1.0  # import seconds / skopeo seconds

COLUMNS = [
    ("path", "path", "s"),
    ("seconds", "seconds", ".2f"),
    ("MB/s", "mb_per_s", ".1f"),
    ("cyp peak RSS MB", "cyp_peak_rss_mb", ".1f"),
    ("cyp CPU s", "cyp_cpu_seconds", ".2f"),
    ("machine CPU busy", "machine_cpu_busy", ".0%"),
]


@dataclass
class SourceImage:
    """A one-layer image in an OCI layout, to be pushed to `repo`:TAG of the reference registry."""
    repo: str
    layer: Layer
    layout: Path
    manifest_digest: str
    blob_bytes: int  # layer and config: what a copy moves


def prepare_image(run_dir, path, size):
    """Write the test layer of `path` ("import" or "skopeo") and its OCI layout in the run dir."""
    repo, seed = IMAGES[path]
    layer = write_test_layer(run_dir / f"layer-{path}.bin", size, seed)
    layout = run_dir / f"oci-{path}"
    manifest, config = build_oci_layout(layout, layer, TAG)
    return SourceImage(repo, layer, layout, manifest["digest"], layer.size + config["size"])


def push_to_reference(policy, reference, image):
    """skopeo copy of the OCI layout into the reference registry, checked by a HEAD; return seconds."""
    seconds = skopeo_copy(policy, f"oci:{image.layout}:{TAG}", docker_ref(reference, image.repo, TAG),
                          dest_registry=reference)
    check_digest(f"{image.repo} in the reference registry", manifest_digest(reference, image.repo, TAG),
                 image.manifest_digest)
    print(f"pushed {image.repo}:{TAG} into the reference registry in {seconds:.1f} s", flush=True)
    return seconds


def server_seconds(task):
    """The task's created_at -> updated_at (the server's own view, millisecond precision)."""
    return (datetime.fromisoformat(task["updated_at"]) - datetime.fromisoformat(task["created_at"])).total_seconds()


def import_image(cyp, api, reference, image):
    """POST the import of the image and read the task until it ends; return (seconds, task, timeline).

    `api` is a requests.Session logged in to cyp's API.  The time runs from
    the POST to the answer that shows the task completed.
    The timeline lists [seconds since the POST, status, phase, bytes_done] at
    each answer that changed one of them (the server saves progress every 2 s).
    """
    url = f"{cyp.base_url}/api/v1/projects/{cyp.project['id']}/images/import"
    start = time.perf_counter()
    resp = api.post(url, json={"image": f"{reference.host_port}/{image.repo}:{TAG}"}, timeout=HTTP_TIMEOUT)
    expect_status(resp, 200, "import request")
    task = resp.json()["data"]
    timeline, shown = [], start
    while True:
        now = time.perf_counter()
        state = [task["status"], task["details"]["phase"], task["details"]["bytes_done"]]
        if not timeline or timeline[-1][1:] != state:
            timeline.append([round(now - start, 3), *state])
        if task["status"] not in ("pending", "running"):
            break
        if now - shown >= PROGRESS_EVERY_S:
            shown = now
            print(f"  import {task['status']}: {task['message']}", flush=True)
        time.sleep(POLL_S)
        resp = api.get(f"{url}/{task['task_id']}", timeout=HTTP_TIMEOUT)
        expect_status(resp, 200, "import task")
        task = resp.json()["data"]
    seconds = now - start
    if task["status"] != "completed":
        raise BenchError(f"import {task['status']} after {seconds:.1f} s: {task['message']!r};"
                         f" details: {task['details']}\n{server_log_tail(cyp)}")
    return seconds, task, timeline


def server_log_tail(cyp, lines=30):
    """The last lines of cyp's log less its access log (the task polls would fill a plain tail)."""
    log = cyp.log.read_text(errors="replace").splitlines()
    kept = [line for line in log if '"logger": "cyp.access"' not in line][-lines:]
    return f"--- last lines of {cyp.name} log, access log left out ---\n" + "\n".join(kept)


def measure(cyp, copy, image):
    """Run copy(image) with cyp's peak RSS reset before it; check the digest of what it stored.

    copy returns (seconds, the cyp repository it copied the image to, a dict of notes).
    """
    os.sync()  # the previous step's writes are not flushed on this one's time
    reset_peak_rss(cyp.proc.pid)
    cpu_before, machine_before = cpu_seconds(cyp.proc.pid), machine_cpu_ticks()
    seconds, repo, notes = copy(image)
    rss = peak_rss_mb(cyp.proc.pid)
    cpu = cpu_seconds(cyp.proc.pid) - cpu_before
    busy, total = (after - before for after, before in zip(machine_cpu_ticks(), machine_before))
    check_digest(f"{repo}:{TAG} in cyp", manifest_digest(cyp, repo, TAG), image.manifest_digest)
    check_blob(cyp, repo, image.layer)
    print(f"  {seconds:.2f} s, {mb_per_s(image.blob_bytes, seconds):.1f} MB/s, cyp peak RSS {rss:.1f} MB;"
          f" {repo}:{TAG} has the source's digest and layer", flush=True)
    return {"seconds": seconds, "bytes": image.blob_bytes, "mb_per_s": mb_per_s(image.blob_bytes, seconds),
            "cyp_peak_rss_mb": rss, "cyp_cpu_seconds": cpu, "machine_cpu_busy": busy / total if total else None,
            "repository": repo, **notes}


def api_session(cyp):
    """A requests.Session logged in to cyp's management API (the login's argon2 runs now, not in a copy)."""
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {api_login(cyp)}"
    return api


def cyp_import(cyp, api, reference, image):
    """The import of the image through cyp's API; return (seconds, cyp repository, notes)."""
    seconds, task, timeline = import_image(cyp, api, reference, image)
    return seconds, task["repository"], {"server_seconds": server_seconds(task), "task": task, "timeline": timeline}


def skopeo_into_cyp(cyp, reference, policy, image):
    """skopeo copy of the image from the reference registry into cyp; return (seconds, cyp repository, notes)."""
    seconds = skopeo_copy(policy, docker_ref(reference, image.repo, TAG), docker_ref(cyp, image.repo, TAG),
                          src_registry=reference, dest_registry=cyp)
    return seconds, image.repo, {}


WHAT = {"import": "importing {source}", "skopeo": "skopeo copy of {source}"}  # by path


def run(args):
    size = args.size_mib * PIECE
    results = {
        "size_bytes": size,
        "backend": args.backend,
        "load_average_start": os.getloadavg(),  # other work on the machine skews the numbers
        "source_push_seconds": {},
        "peak_rss_mb": {},  # the helper servers', and cyp's at startup
    }
    with bench_run(args.workdir, args.time_limit) as (run_dir, children):
        policy = write_skopeo_policy(run_dir)
        images = {path: prepare_image(run_dir, path, size) for path in IMAGES}

        mongo, mongo_uri = start_secantusdb(children, run_dir)
        s3 = start_moto(children, run_dir) if args.backend == "s3" else None
        reference = start_reference(children, run_dir)
        for path, image in images.items():
            results["source_push_seconds"][path] = push_to_reference(policy, reference, image)

        cyp = start_cyp(children, Services(run_dir, mongo_uri, s3), args.backend, IMPORT_ENV)
        results["peak_rss_mb"]["cyp_startup"] = peak_rss_mb(cyp.proc.pid)

        copies = {"import": partial(cyp_import, cyp, api_session(cyp), reference),
                  "skopeo": partial(skopeo_into_cyp, cyp, reference, policy)}
        order = ("skopeo", "import") if args.skopeo_first else ("import", "skopeo")
        results["order"] = order
        for path in order:
            image = images[path]
            print(f"{WHAT[path].format(source=docker_ref(reference, image.repo, TAG))} into {cyp.name} ...",
                  flush=True)
            results[path] = measure(cyp, copies[path], image)

        results["peak_rss_mb"]["secantusd"] = peak_rss_mb(mongo.pid)
        results["peak_rss_mb"]["reference"] = peak_rss_mb(reference.proc.pid)
        if s3:
            results["peak_rss_mb"]["moto_server"] = peak_rss_mb(s3.proc.pid)
    results["load_average_end"] = os.getloadavg()
    results["import_over_skopeo"] = ratio(results["import"]["seconds"], results["skopeo"]["seconds"])
    return results


def report(results, args):
    print(f"\nimage: one layer of {results['size_bytes'] / MB:.1f} MB; cyp on {results['backend']};"
          f" 1 MB = 1e6 bytes; 1-min load average {load_average_text(results)}\n")
    rows = [{"path": name, **results[key]} for name, key in
            (("cyp import", "import"), ("skopeo copy", "skopeo"))]
    print_table(COLUMNS, rows)
    value = results["import_over_skopeo"]
    results["target_ok"] = value <= TARGET_RATIO
    print(f"\nimport/skopeo time {fmt(value, '.2f')} (target <= {TARGET_RATIO}):"
          f" {'ok' if results['target_ok'] else 'MISSED'}")
    print(f"import task on the server (created_at -> updated_at): {results['import']['server_seconds']:.2f} s")
    pushes = results["source_push_seconds"]
    print("skopeo pushes of the two images into the reference registry: "
          + ", ".join(f"{IMAGES[path][0]} {seconds:.1f} s" for path, seconds in pushes.items()))
    print("other peak RSS (VmHWM), MB: "
          + ", ".join(f"{name} {mb:.1f}" for name, mb in results["peak_rss_mb"].items()))
    if args.json:
        write_json(args.json, results)
    return 0


def add_options(parser):
    add_size_option(parser, "image layer")
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                        help=f"the cyp server's storage backend (default {DEFAULT_BACKEND})")
    parser.add_argument("--skopeo-first", action="store_true",
                        help="run the skopeo copy before the import (to see what the order does)")
    add_workdir_option(parser)
    add_limit_options(parser)


def main(argv=None):
    return bench_main(__doc__, add_options, run, report, argv)


if __name__ == "__main__":
    sys.exit(main())
