"""CYP-Registry entry point: settings, logging, then serve (the default) or run an operator's command."""
import argparse
import asyncio
import ctypes
import json
import logging
import os
import socket
import sys
from types import MappingProxyType

from pymongo.errors import PyMongoError

from config import SettingsError, load_settings, unknown_environment
from runtime import commands
from runtime.serve import serve, serve_worker
from runtime.supervisor import supervise, worker_count
from services.errors import DomainError
from services.logs import configure_logging
from storage.blobstore import StorageUnavailable

log = logging.getLogger("cyp.server")

M_ARENA_MAX = -8  # glibc mallopt parameters
M_MMAP_THRESHOLD = -3
M_TRIM_THRESHOLD = -1


def tune_malloc(arenas=2, mmap_threshold=2 * 1024 * 1024, trim_threshold=16 * 1024 * 1024):
    """Bound glibc malloc's hold on freed memory, before any thread starts.

    - Per-thread arenas (MALLOC_ARENA_MAX): the executor, actor and driver threads would each grow an
      arena of their own and keep its freed memory; with two, peak RSS under a 1 GiB S3 push fell
      from 147 to 130 MB.
    - A fixed mmap threshold (MALLOC_MMAP_THRESHOLD_): buffers of 2 MiB and more (S3 parts, GridFS
      write batches) are mapped and given back when freed. glibc's default raises the threshold to
      the largest buffer freed, after which such buffers come from the heap and stay resident: an
      S3 push of 256 MiB left the process at 144 MB, 90 MB with a fixed threshold. Smaller ones (the
      1 MiB socket reads every request makes) stay on the heap: with a 1 MiB threshold each of those
      was a mapping, and manifest GETs fell to about 650 req/s (1700 at 2 MiB; a loaded machine).
    - A trim threshold (MALLOC_TRIM_THRESHOLD_) that keeps that much free heap for reuse instead of
      giving it back and faulting it in again on the next request.
    An operator's own MALLOC_* setting wins.
    """
    try:
        libc = ctypes.CDLL(None)
        for name, parameter, value in (("MALLOC_ARENA_MAX", M_ARENA_MAX, arenas),
                                       ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, mmap_threshold),
                                       ("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, trim_threshold)):
            if name not in os.environ:
                libc.mallopt(parameter, value)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def parse_args(argv):
    parser = argparse.ArgumentParser(description="CYP-Registry: an OCI / Docker container registry.")
    parser.add_argument("--config", metavar="FILE", help="configuration file, JSON or TOML (CYP_CONFIG)")
    parser.add_argument("--data-dir", help="data directory (CYP_DATA_DIR; default ./data)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve_parser = sub.add_parser("serve", help="serve the registry (the default)")
    for target in (parser, serve_parser):
        target.add_argument("--host", help="address to listen on (CYP_HOST; default 0.0.0.0)")
        target.add_argument("--port", type=int, help="port to listen on (CYP_PORT; default 5000)")
        target.add_argument("--workers", type=int, help="processes serving the port (CYP_WORKERS; default: one per CPU)")
        target.add_argument("--log-format", choices=("json", "text"),
                            help="json lines (the default) or readable text (CYP_LOG_FORMAT)")
    # A supervisor's own way of starting its workers (runtime/supervisor.py), not for people.
    serve_parser.add_argument("--worker-pipe", type=int, help=argparse.SUPPRESS)
    serve_parser.add_argument("--listen-fds", help=argparse.SUPPRESS)
    recount = sub.add_parser("recount", help="recompute every project's storage usage and report drift "
                                             "(one JSON line per project)")
    recount.add_argument("--fix", action="store_true", help="repair the drift found")
    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    reset = user_sub.add_parser("reset-password", help="print a new one-time password for USER (to be changed at "
                                                        "the next login) and end the user's sessions")
    reset.add_argument("username", metavar="USER")
    for target in (recount, user, reset):
        target.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file")
        target.add_argument("--data-dir", default=argparse.SUPPRESS, help="data directory")
    return parser.parse_args(argv)


def command_for(args, config):
    if args.command == "recount":
        return commands.recount(config, args.fix)
    if args.command == "user":
        return commands.reset_password(config, args.username)
    return supervise(config) if worker_count(config) > 1 else serve(config)


def worker_start(args):
    """``(settings, sockets, bootstrap hint)`` a supervisor handed this worker."""
    with os.fdopen(args.worker_pipe) as pipe:
        given = json.load(pipe)
    sockets = [socket.socket(fileno=int(fd)) for fd in args.listen_fds.split(",")]
    for sock in sockets:
        sock.setblocking(False)
    return MappingProxyType(given["config"]), sockets, given["hint"]


def main(argv=None):
    tune_malloc()
    args = parse_args(argv)
    if getattr(args, "worker_pipe", None) is not None:
        config, sockets, hint = worker_start(args)
        configure_logging(config["log_level"], config["log_format"])
        return asyncio.run(serve_worker(config, sockets, hint))
    try:
        config = load_settings(args.config or os.environ.get("CYP_CONFIG"), overrides={
            "host": getattr(args, "host", None), "port": getattr(args, "port", None), "data_dir": args.data_dir,
            "workers": getattr(args, "workers", None), "log_format": getattr(args, "log_format", None)})
    except SettingsError as exc:
        print(f"cyp-registry: {exc}", file=sys.stderr)
        return 2
    configure_logging(config["log_level"], config["log_format"])
    unknown = unknown_environment()
    if unknown:
        log.warning("ignoring unknown environment variables: %s", ", ".join(unknown), extra={"variables": unknown})
    try:
        return asyncio.run(command_for(args, config))
    except PyMongoError as exc:
        log.error("cannot start: the database is unavailable: %s", exc)
    except StorageUnavailable as exc:
        log.error("cannot start: the blob storage is unavailable: %s", exc)
    except DomainError as exc:
        log.error("%s", exc.message)
    except (OSError, RuntimeError) as exc:
        log.error("cannot start: %s", exc)
    return 1


if __name__ == "__main__":
    sys.exit(main())
