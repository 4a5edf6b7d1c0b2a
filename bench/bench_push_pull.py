#!/usr/bin/env python3
"""Push/pull throughput benchmark: CYP-Registry per storage backend vs raw backend vs reference.

One run starts SecantusDB (and moto_server when S3 is measured), measures
Debian's docker-registry (CNCF distribution, filesystem storage) once, then for
each backend (filesystem, GridFS, S3) measures a raw write/read of the test
layer driven directly and pushes and pulls that layer through a fresh
CYP-Registry server (server.py) on that backend, with plain HTTP and another of
the same size with skopeo.  It reads each server's peak RSS, prints a table
with the ratios and targets, and stops every process it started.  See
bench/README.md.

Units: 1 MB = 1e6 bytes, for throughput and memory alike.
"""

import argparse
import operator
import os
import shutil
import statistics
import sys
import time
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

import bson
import gridfs
import pymongo
from boto3.s3.transfer import TransferConfig
from common import (
    BACKENDS,
    MB,
    PIECE,
    BenchError,
    Layer,
    RegistrySession,
    Services,
    add_limit_options,
    add_size_option,
    add_workdir_option,
    bench_main,
    bench_run,
    build_oci_layout,
    check_digest,
    docker_ref,
    elapsed,
    file_pieces,
    fmt,
    fresh_name,
    http_pull_blob,
    http_push_blob,
    load_average_text,
    mb_per_s,
    FirstByte,
    peak_rss_mb,
    print_table,
    ratio,
    settle_disk,
    sha256_digest,
    skopeo_copy,
    start_cyp,
    start_moto,
    start_reference,
    start_secantusdb,
    stop_process_group,
    tree_peak_rss_mb,
    write_json,
    write_skopeo_policy,
    write_test_layer,
)

# Fixed seeds, so every run pushes the same bytes.  Two layers, so that each
# push into a registry stores a new blob: a registry that already holds the
# digest may take a different (dedup) path, which real clients skip anyway.
HTTP_LAYER_SEED = 20240601
SKOPEO_LAYER_SEED = 20240602

# Raw GridFS: fail instead of hanging when SecantusDB stops answering.
MONGO_TIMEOUTS = {"serverSelectionTimeoutMS": 10_000, "connectTimeoutMS": 10_000, "socketTimeoutMS": 300_000}

RAW_REPO = "bench/big"
GRIDFS_READ_BATCH = 4  # chunks per ranged query, as the server reads (4 MiB)
SKOPEO_REPO = "bench/skopeo"
SKOPEO_TAG = "v1"

S3_PART = 8 << 20  # multipart part size, the same as storage/s3_store.py's
# boto3's own concurrency (10 threads) is kept: the raw figure is what boto3
# gets out of the server at its defaults.
S3_TRANSFER = TransferConfig(multipart_threshold=S3_PART, multipart_chunksize=S3_PART)

# Targets: (backends, row key, comparison, limit); row keys as in backend_row().
# Issue 5's, raised or added to by issue 12 (GridFS pulls that start at once, filesystem, memory).
TARGETS = [
    (("s3",), "push_over_raw", ">=", 0.9),
    (("s3",), "pull_over_raw", ">=", 0.9),
    (("gridfs",), "push_over_raw", ">=", 0.8),
    (("gridfs",), "pull_over_raw", ">=", 0.8),
    (("gridfs",), "cyp_over_ref_pull", ">=", 0.35),
    (("gridfs",), "cyp_first_byte_ms", "<=", 100),
    (("filesystem",), "cyp_over_ref_push", ">=", 1.2),
    (("filesystem",), "cyp_over_ref_pull", ">=", 1.0),
    (BACKENDS, "cyp_peak_rss_mb", "<=", 100),
]
COMPARE = {">=": operator.ge, "<=": operator.le}
# The filesystem, the backend compared with the reference, runs right after it: after the GridFS and S3 runs,
# their servers were still busy and its pulls ranged 820-1515 MB/s (1586-1680 in a filesystem-only run).
RUN_ORDER = ("filesystem", "gridfs", "s3")

# Table columns: (header, row key, format); "backend" is the row's name.
def push_pull(header, key, spec=".1f"):
    """Two columns, push then pull: `header` and `key` with the direction for {}."""
    return [(header.format(way), key.format(way), spec) for way in ("push", "pull")]


BACKEND_COLUMN = ("backend", "backend", "s")
MAIN_COLUMNS = [
    BACKEND_COLUMN,
    ("raw write MB/s", "raw_write", ".1f"),
    ("raw read MB/s", "raw_read", ".1f"),
    *push_pull("cyp {}", "cyp_{}"),
    *push_pull("{}/raw", "{}_over_raw", ".2f"),
    *push_pull("reference {}", "ref_{}"),
    *push_pull("cyp/ref {}", "cyp_over_ref_{}", ".2f"),
    ("cyp peak RSS MB", "cyp_peak_rss_mb", ".1f"),
]
FIRST_BYTE_COLUMNS = [
    BACKEND_COLUMN,
    ("raw read first byte ms", "raw_first_byte_ms", ".1f"),
    ("cyp pull first byte ms", "cyp_first_byte_ms", ".1f"),
    ("reference pull first byte ms", "ref_first_byte_ms", ".1f"),
]
COLUMN_HEADERS = {key: header for header, key, _ in MAIN_COLUMNS + FIRST_BYTE_COLUMNS}
SKOPEO_COLUMNS = [
    BACKEND_COLUMN,
    *push_pull("cyp skopeo {}", "cyp_skopeo_{}"),
    *push_pull("reference skopeo {}", "ref_skopeo_{}"),
    *push_pull("cyp/ref {}", "cyp_over_ref_skopeo_{}", ".2f"),
]


# ---------------------------------------------------------- raw backends
#
# Each writes the layer from its file in 1 MiB pieces and reads it back hashing
# as it goes, like the HTTP pull, so that client-side cost is on both sides of
# the cyp / raw ratios; then removes its copy before the server stores its own.


def measure_raw(name, layer, write, read):
    """Time write(), then the read of every piece read() yields, hashing them; return MB/s by direction
    and the seconds until the read's first byte."""
    _, write_s = elapsed(write)
    start = time.perf_counter()
    pieces = FirstByte(read())
    got = sha256_digest(pieces)
    read_s = time.perf_counter() - start
    check_digest(f"raw {name} read", got, layer.digest)
    return {"write": mb_per_s(layer.size, write_s), "read": mb_per_s(layer.size, read_s),
            "first_byte_ms": 1000 * (pieces.at - start)}


def bench_raw_gridfs(services, layer):
    """Plain sync pymongo GridFS, 1 MiB chunks (the server's default chunk size)."""
    db_name = fresh_name("cyp_bench_raw_")  # kept apart from the servers' databases
    client = pymongo.MongoClient(services.mongo_uri, **MONGO_TIMEOUTS)
    try:
        bucket = gridfs.GridFSBucket(client[db_name], chunk_size_bytes=PIECE)
        file_id = bson.ObjectId()

        def write():
            with bucket.open_upload_stream_with_id(file_id, "layer") as upload:
                for piece in file_pieces(layer.path):
                    upload.write(piece)

        chunks = client[db_name]["fs.chunks"]
        count = -(-layer.size // PIECE)

        def ranged_chunks():
            # Bounded ranges of n, one query each, as the server reads (not one sorted query of the whole file).
            for first in range(0, count, GRIDFS_READ_BATCH):
                query = {"files_id": file_id, "n": {"$gte": first, "$lt": min(first + GRIDFS_READ_BATCH, count)}}
                for chunk in chunks.find(query, sort=[("n", 1)]):
                    yield chunk["data"]

        return measure_raw("GridFS", layer, write, ranged_chunks)
    finally:
        with suppress(pymongo.errors.PyMongoError):  # do not hide the error that got us here
            client.drop_database(db_name)
        client.close()


def bench_raw_s3(services, layer):
    """boto3 upload_fileobj (multipart, 8 MiB parts), then one streamed get_object.

    The read asks for the whole blob as a Range, as the server does.
    """
    client = services.s3.client()
    bucket, key = fresh_name("cyp-bench-raw-"), "layer"
    client.create_bucket(Bucket=bucket)
    try:
        def write():
            with open(layer.path, "rb") as f:
                client.upload_fileobj(f, bucket, key, Config=S3_TRANSFER)

        def read():
            body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{layer.size - 1}")["Body"]
            with closing(body):
                yield from body.iter_chunks(PIECE)

        return measure_raw("S3", layer, write, read)
    finally:
        # moto keeps objects in memory: free it before the server uploads its copy
        with suppress(Exception):
            client.delete_object(Bucket=bucket, Key=key)
            client.delete_bucket(Bucket=bucket)
        client.close()


def bench_raw_filesystem(services, layer):
    """Plain file write + fsync, then a read in 1 MiB pieces, in the run dir (the servers' disk)."""
    path = services.run_dir / "raw-filesystem.bin"

    def write():
        with open(path, "wb") as f:
            f.writelines(file_pieces(layer.path))
            f.flush()
            os.fsync(f.fileno())  # the filesystem backend fsyncs every blob it commits

    try:
        return measure_raw("filesystem", layer, write, lambda: file_pieces(path))
    finally:
        path.unlink(missing_ok=True)


RAW_BENCHES = {"gridfs": bench_raw_gridfs, "s3": bench_raw_s3, "filesystem": bench_raw_filesystem}


# ---------------------------------------------------------------- skopeo


@dataclass
class SkopeoSource:
    policy: Path  # signature policy file passed to every skopeo call
    layout: Path  # OCI layout holding the image to push
    layer: Layer  # the image's only layer


def prepare_skopeo(run_dir, size):
    policy = write_skopeo_policy(run_dir)
    layer = write_test_layer(run_dir / "layer-skopeo.bin", size, SKOPEO_LAYER_SEED)
    layout = run_dir / "oci-src"
    build_oci_layout(layout, layer, SKOPEO_TAG)
    return SkopeoSource(policy, layout, layer)


def skopeo_push(skopeo, registry):
    """Copy the OCI layout's image into the registry; return seconds."""
    return skopeo_copy(skopeo.policy, f"oci:{skopeo.layout}:{SKOPEO_TAG}",
                       docker_ref(registry, SKOPEO_REPO, SKOPEO_TAG), dest_registry=registry)


def skopeo_pull(skopeo, registry, out_dir):
    """Pull into a fresh layout, check the layer's bytes, remove the copy; return seconds."""
    seconds = skopeo_copy(skopeo.policy, docker_ref(registry, SKOPEO_REPO, SKOPEO_TAG),
                          f"oci:{out_dir}:{SKOPEO_TAG}", src_registry=registry)
    digest = skopeo.layer.digest
    pulled = out_dir / "blobs" / "sha256" / digest.split(":")[1]
    if not pulled.exists():
        raise BenchError(f"skopeo pull from {registry.name}: layer {digest} missing in {out_dir}")
    check_digest(f"skopeo pull from {registry.name}", sha256_digest(file_pieces(pulled)), digest)
    shutil.rmtree(out_dir)
    return seconds


# ----------------------------------------------------------------- runs


def bench_registry(registry, run_dir, http_layer, skopeo, pulls):
    """Push and pull through one registry; return MB/s by path key.

    The HTTP pull runs `pulls` times and counts by its median (one pull of 1 GiB from the page cache
    lasts under a second, and moves by 15 % from one to the next); its first byte is the first pull's.
    `skopeo` is a SkopeoSource, or None to skip the skopeo paths.
    """
    print(f"benchmarking {registry.name} at {registry.base_url} ...", flush=True)
    session = RegistrySession(registry)
    session.authorize(f"repository:{RAW_REPO}:pull,push")
    push_s = http_push_blob(session, RAW_REPO, http_layer)
    timed = [http_pull_blob(session, RAW_REPO, http_layer) for _ in range(pulls)]
    pull_speeds = [mb_per_s(http_layer.size, pull_s) for pull_s, _ in timed]
    speeds = {
        "http_push": mb_per_s(http_layer.size, push_s),
        "http_pull": statistics.median(pull_speeds),
        "http_pull_each": pull_speeds,
        "first_byte_ms": 1000 * timed[0][1],  # of the first pull after the push, as the issue asks
    }
    if skopeo:
        size = skopeo.layer.size
        speeds["skopeo_push"] = mb_per_s(size, skopeo_push(skopeo, registry))
        out_dir = run_dir / f"oci-pulled-{registry.name}"
        speeds["skopeo_pull"] = mb_per_s(size, skopeo_pull(skopeo, registry, out_dir))
    return speeds


def measure_registry(registry, run_dir, http_layer, skopeo, pulls):
    """Push and pull through a started registry, read the peak RSS of each of its processes, stop it.

    Stopped at once, so the next server measured runs alone.
    """
    try:
        speeds = bench_registry(registry, run_dir, http_layer, skopeo, pulls)
        peaks = tree_peak_rss_mb(registry.proc.pid)
        return {"speeds": speeds, "peak_rss_mb": max(peaks.values()), "process_peak_rss_mb": peaks}
    finally:
        stop_process_group(registry.proc)  # still listed in `children`, for its log tail on failure


def bench_backend(children, services, backend, http_layer, skopeo, pulls):
    """Raw backend speed, then a fresh cyp server on that backend, back to back."""
    settle_disk()
    print(f"measuring raw {backend} ...", flush=True)
    raw = RAW_BENCHES[backend](services, http_layer)
    registry = start_cyp(children, services, backend)
    return {"raw": raw, "cyp": measure_registry(registry, services.run_dir, http_layer, skopeo, pulls)}


def run(args):
    size = args.size_mib * PIECE
    results = {
        "size_bytes": size,
        "load_average_start": os.getloadavg(),  # other work on the machine skews the numbers
        "backends": {},
        "reference": None,
        "peak_rss_mb": {},  # the helper servers'
    }
    with bench_run(args.workdir, args.time_limit) as (run_dir, children):
        http_layer = write_test_layer(run_dir / "layer-http.bin", size, HTTP_LAYER_SEED)
        skopeo = None if args.skip_skopeo else prepare_skopeo(run_dir, size)

        mongo, mongo_uri = start_secantusdb(children, run_dir)
        s3 = start_moto(children, run_dir) if "s3" in args.backends else None
        services = Services(run_dir, mongo_uri, s3)

        if not args.skip_reference:
            settle_disk()
            results["reference"] = measure_registry(
                start_reference(children, run_dir), run_dir, http_layer, skopeo, args.pulls
            )
        for backend in args.backends:
            results["backends"][backend] = bench_backend(children, services, backend, http_layer, skopeo,
                                                         args.pulls)

        results["peak_rss_mb"]["secantusd"] = peak_rss_mb(mongo.pid)
        if s3:
            results["peak_rss_mb"]["moto_server"] = peak_rss_mb(s3.proc.pid)
    results["load_average_end"] = os.getloadavg()
    return results


# --------------------------------------------------------------- report


def backend_row(results, backend):
    """One backend's speeds (MB/s), ratios and peak RSS, keyed as in the column lists."""
    measured = results["backends"][backend]
    raw, cyp = measured["raw"], measured["cyp"]["speeds"]
    ref = results["reference"]["speeds"] if results["reference"] else {}
    row = {
        "backend": backend,
        "raw_write": raw["write"],
        "raw_read": raw["read"],
        "push_over_raw": ratio(cyp["http_push"], raw["write"]),
        "pull_over_raw": ratio(cyp["http_pull"], raw["read"]),
        "cyp_peak_rss_mb": measured["cyp"]["peak_rss_mb"],
        "raw_first_byte_ms": raw["first_byte_ms"],
        "cyp_first_byte_ms": cyp["first_byte_ms"],
        "ref_first_byte_ms": ref.get("first_byte_ms"),
    }
    for key, short in (("http_push", "push"), ("http_pull", "pull"),
                       ("skopeo_push", "skopeo_push"), ("skopeo_pull", "skopeo_pull")):
        row[f"cyp_{short}"] = cyp.get(key)
        row[f"ref_{short}"] = ref.get(key)
        row[f"cyp_over_ref_{short}"] = ratio(cyp.get(key), ref.get(key))
    return row


def target_checks(rows):
    """Each target that applies to a measured backend, with its value and verdict (None: not measured)."""
    checks = []
    for backend, row in rows.items():
        for backends, key, comparison, limit in TARGETS:
            if backend in backends:
                value = row[key]
                ok = None if value is None else COMPARE[comparison](value, limit)
                checks.append({"backend": backend, "what": COLUMN_HEADERS[key], "value": value,
                               "target": f"{comparison} {limit}", "ok": ok})
    return checks


def print_report(results, rows, checks):
    print(f"\nlayer size: {results['size_bytes'] / MB:.1f} MB; speeds in MB/s (1 MB = 1e6 bytes);"
          f" 1-min load average {load_average_text(results)}\n")
    print_table(MAIN_COLUMNS, rows.values())
    print("\ntime to the first byte of the pull (raw: of the raw read), ms:\n")
    print_table(FIRST_BYTE_COLUMNS, rows.values())
    print("\n(cyp peak RSS: the largest of its processes', supervisor and workers alike)")
    if any(row["cyp_skopeo_push"] is not None for row in rows.values()):
        print("\nskopeo copy of a one-layer image of the same size (process start included):\n")
        print_table(SKOPEO_COLUMNS, rows.values())

    print("\ntargets:")
    for check in checks:
        verdict = {True: "ok", False: "MISSED", None: "not measured"}[check["ok"]]
        print(f"  {check['backend']:<10} {check['what']:<15} {fmt(check['value'], '.2f'):>7}"
              f"  (target {check['target']}): {verdict}")

    helpers = dict(results["peak_rss_mb"])
    if results["reference"]:
        helpers["reference"] = results["reference"]["peak_rss_mb"]
    print("\nother servers' peak RSS (VmHWM), MB: "
          + ", ".join(f"{name} {mb:.1f}" for name, mb in helpers.items()))


def report(results, args):
    rows = {backend: backend_row(results, backend) for backend in results["backends"]}
    checks = target_checks(rows)
    print_report(results, rows, checks)
    if args.json:
        write_json(args.json, {**results, "rows": rows, "targets": checks})
    return 0


def parse_backends(text):
    backends = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown or not backends:
        raise argparse.ArgumentTypeError(f"choose from {','.join(BACKENDS)}; got {text!r}")
    return backends


def add_options(parser):
    add_size_option(parser)
    parser.add_argument("--backends", type=parse_backends, default=list(RUN_ORDER),
                        help=f"comma-separated storage backends to measure, in order (default {','.join(RUN_ORDER)})")
    add_workdir_option(parser)
    parser.add_argument("--skip-skopeo", action="store_true", help="no skopeo push/pull")
    parser.add_argument("--pulls", type=int, default=3,
                        help="HTTP pulls of the layer per server; the median counts (default 3)")
    parser.add_argument("--skip-reference", action="store_true",
                        help="do not start or measure the reference registry")
    add_limit_options(parser)


def main(argv=None):
    return bench_main(__doc__, add_options, run, report, argv)


if __name__ == "__main__":
    sys.exit(main())
