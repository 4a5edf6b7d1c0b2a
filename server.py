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
from services.imports import STATUSES as IMPORT_STATUSES
from services.logs import configure_logging
from services.webhooks import DELIVERY_STATUSES
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
    _add_commands(sub)
    return parser.parse_args(argv)


def _add_commands(sub):
    """The operator's commands (runtime/commands.py); each leaf sets ``run(config, args)``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file")
    common.add_argument("--data-dir", default=argparse.SUPPRESS, help="data directory")

    def command(parent, name, run, help_text):
        leaf = parent.add_parser(name, parents=[common], help=help_text, description=help_text)
        leaf.set_defaults(run=run)
        return leaf

    def group(name, help_text):
        return sub.add_parser(name, parents=[common], help=help_text).add_subparsers(
            dest=f"{name}_command", metavar="ACTION", required=True)

    recount = command(sub, "recount", lambda config, a: commands.recount(config, a.fix),
                      "recompute every project's storage usage and report drift (one JSON line per project)")
    recount.add_argument("--fix", action="store_true", help="repair the drift found")

    user = group("user", "manage users")
    create = command(user, "create", lambda config, a: commands.user_create(config, a.username, a.admin, a.email),
                     "create USER with a generated one-time password (printed once), to be changed at the first login")
    create.add_argument("username", metavar="USER")
    create.add_argument("--admin", action="store_true", help="make the user an administrator")
    create.add_argument("--email", metavar="E", help="the user's e-mail address")
    command(user, "list", lambda config, a: commands.user_list(config), "list every user (one JSON line each)")
    for name, disabled, text in (("disable", True, "disable USER: its sessions end and its logins are refused"),
                                 ("enable", False, "enable USER again")):
        command(user, name, lambda config, a, off=disabled: commands.user_set_disabled(config, a.username, off),
                text).add_argument("username", metavar="USER")
    command(user, "reset-password", lambda config, a: commands.reset_password(config, a.username),
            "print a new one-time password for USER (to be changed at the next login) and end the user's "
            "sessions").add_argument("username", metavar="USER")

    project = group("project", "manage projects")
    create = command(project, "create",
                     lambda config, a: commands.project_create(config, a.name, a.public, a.quota, a.owner),
                     "create project NAME (private unless --public, as through the API), owned by --owner")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--public", action="store_true", help="everyone may see and pull it")
    create.add_argument("--quota", type=int, metavar="BYTES", help="storage quota in bytes, -1 unlimited "
                                                                   "(default: default_project_quota)")
    create.add_argument("--owner", metavar="USER", default="admin", help="the owning user (default: admin)")
    quota = command(project, "quota", lambda config, a: commands.project_quota(config, a.name, a.quota),
                    "set the storage quota of project NAME")
    quota.add_argument("name", metavar="NAME")
    quota.add_argument("quota", type=int, metavar="BYTES", help="bytes, -1 for unlimited")

    command(group("gc", "garbage collection"), "run", lambda config, a: commands.gc_run(config),
            "collect garbage once now and print what was freed")

    imports = group("imports", "image import tasks")
    listing = command(imports, "list", lambda config, a: commands.imports_list(config, a.project, a.status),
                      "list import tasks (one JSON line each)")
    listing.add_argument("--project", metavar="NAME", help="only this project's tasks")
    listing.add_argument("--status", metavar="S", choices=IMPORT_STATUSES, help=", ".join(IMPORT_STATUSES))
    command(imports, "cancel", lambda config, a: commands.imports_cancel(config, a.task_id),
            "cancel import task TASK_ID").add_argument("task_id", metavar="TASK_ID")

    webhooks = group("webhooks", "webhook deliveries")
    deliveries = command(webhooks, "deliveries",
                         lambda config, a: commands.webhook_deliveries(config, a.webhook_id, a.status),
                         "list the deliveries of webhook WEBHOOK_ID (one JSON line each, newest first)")
    deliveries.add_argument("webhook_id", metavar="WEBHOOK_ID")
    deliveries.add_argument("--status", metavar="S", choices=DELIVERY_STATUSES, help=", ".join(DELIVERY_STATUSES))
    redeliver = command(webhooks, "redeliver",
                        lambda config, a: commands.webhook_redeliver(config, a.webhook_id, a.delivery_id),
                        "send delivery DELIVERY_ID of webhook WEBHOOK_ID again")
    redeliver.add_argument("webhook_id", metavar="WEBHOOK_ID")
    redeliver.add_argument("delivery_id", metavar="DELIVERY_ID")

    document = command(sub, "openapi", lambda config, a: commands.openapi(config, a.markdown),
                       "print the OpenAPI 3.1 document of /api/v1 (JSON)")
    document.add_argument("--markdown", action="store_true",
                          help="print the reference rendered from it instead (docs/api.md)")
    keys = group("keys", "token signing keys")
    command(keys, "list", lambda config, a: commands.keys_list(config),
            "list the token signing keys (one JSON line each, never a secret)")
    command(keys, "rotate", lambda config, a: commands.keys_rotate(config),
            "sign new tokens with a new key; the previous key verifies its tokens until they expire")
    command(keys, "remove", lambda config, a: commands.keys_remove(config, a.kid),
            "drop retired key KID now: every token it signed is refused").add_argument("kid", metavar="KID")


def command_for(args, config):
    if hasattr(args, "run"):
        return args.run(config, args)
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
