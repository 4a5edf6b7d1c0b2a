"""Serving: the application, the listening socket (bound before anything else happens), background
work, and a clean stop on SIGTERM / SIGINT."""
import asyncio
import logging
import os
import signal

import tornado.netutil
import tornado.web

from handlers import ROUTES
from handlers.api.base import ApiFallbackHandler
from actors.deliveries import Dispatchers
from actors.imports import ImportActors
from handlers.http_server import RegistryHTTPServer
from handlers.metrics import api_of, labelled_routes
from runtime.backend import open_backend
from services.bootstrap import ensure_bootstrap_admin
from services.container import build_services
from services.gc import collect_forever
from services.metrics import (HTTP_REQUEST_DURATION, HTTP_REQUESTS, HTTP_RESPONSE_BYTES, sample_mailboxes_forever,
                              scrape_registry)
from services.tokens import JwtCodec, open_key_ring
from services.uploads import sweep_forever
from storage.deliveries import SyncDeliveries
from storage.events import SyncEvents
from storage.import_tasks import SyncImportTasks
from storage.leases import holder_name
from storage.mongo import DISPATCH
from storage.webhooks import SyncWebhooks

log = logging.getLogger("cyp.server")
access_log = logging.getLogger("cyp.access")

# Bodies that are not streamed (API JSON, token forms) stay small; upload handlers raise it per request.
MAX_BUFFERED_BODY = 8 * 1024 * 1024
# Read request bodies in MiB-sized pieces: fewer Python calls per GiB on the upload path.
BODY_CHUNK_SIZE = 1024 * 1024


class RequestTracker:
    """Counts requests in flight so shutdown can wait for them."""

    def __init__(self):
        self.active = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def enter(self):
        self.active += 1
        self.idle.clear()

    def leave(self):
        self.active -= 1
        if self.active <= 0:
            self.active = 0
            self.idle.set()


def _username(handler):
    """Who the request was answered for, when it authenticated anyone."""
    acting_user = getattr(handler, "acting_user", None)
    user = acting_user() if acting_user else None
    return user.get("username") if user else None


def log_request(handler):
    """The access log line and the request metrics (labelled by route template, never by path)."""
    status = handler.get_status()
    method = handler.request.method
    duration = handler.request.request_time()
    api, route = api_of(handler.request.path), getattr(handler, "route", "(unmatched)")
    # Tornado keeps the answer's headers private; its Content-Length is the body sent (none for HEAD, 204, 304).
    length = handler._headers.get("Content-Length", "0")
    sent = int(length) if method != "HEAD" and status not in (204, 304) and length.isdigit() else 0
    level = logging.INFO if status < 500 else logging.ERROR
    access_log.log(level, "%s %s %d", method, handler.request.path, status, extra={
        "trace_id": getattr(handler, "trace_id", None), "status": status, "method": method,
        "path": handler.request.path, "route": route, "remote_ip": handler.request.remote_ip,
        "user": _username(handler), "bytes_out": sent, "pid": os.getpid(), "duration_ms": round(duration * 1000, 1),
    })
    HTTP_REQUESTS.labels(api, route, method, status).inc()
    HTTP_REQUEST_DURATION.labels(api, route, method).observe(duration)
    if sent:
        HTTP_RESPONSE_BYTES.labels(api).inc(sent)


def make_app(config, services):
    return tornado.web.Application(
        labelled_routes(ROUTES),
        default_handler_class=ApiFallbackHandler,
        log_function=log_request,
        config=config,
        services=services,
        tracker=RequestTracker(),
        metrics_registry=scrape_registry(services.cluster_metrics),
    )


def announce_bootstrap_admin(hint):
    if hint and hint["password"]:
        print(f"\n  CYP-Registry first start: administrator '{hint['username']}' created with the one-time "
              f"password: {hint['password']}\n  It is shown only this once; change it after logging in.\n",
              flush=True)


class ListenError(RuntimeError):
    pass


def bind(config):
    """The listening sockets, bound first: a port that is taken fails the start before anything is written."""
    try:
        return tornado.netutil.bind_sockets(config["port"], config["host"])
    except OSError as exc:
        raise ListenError(f"cannot listen on {config['host']}:{config['port']}: {exc.strerror}") from None


async def wait_for_stop(embedded):
    """Until SIGTERM / SIGINT (answers 0), or the embedded database is lost for good (answers 1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.ensure_future(stop.wait())]
    if embedded is not None:
        waits.append(asyncio.ensure_future(embedded.failed.wait()))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiting in waits:
        waiting.cancel()
    return 0 if stop.is_set() else 1


async def end_tasks(tasks):
    """Cancel ``tasks`` and wait until each has ended: a writer cancelled mid-write puts its batch back as it ends,
    so only then may a last flush find it."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def prepare_state(collections, config):
    """What exists once per registry, made by whoever starts first: the token signing keys and the first
    administrator. Answers the bootstrap hint."""
    await collections.token_keys.ensure()
    hint = await ensure_bootstrap_admin(collections, config["bootstrap_admin_password"])
    announce_bootstrap_admin(hint)
    return hint


async def serve(config):
    """One process serving on its own: binds, opens the backend (the embedded database included), serves."""
    sockets = bind(config)
    async with open_backend(config) as backend:
        hint = await prepare_state(backend.collections, config)
        return await run_node(config, backend, sockets, hint)


async def serve_worker(config, sockets, hint):
    """A worker of a supervisor (runtime/supervisor.py): the sockets, the database and the state are its parent's."""
    async with open_backend(config) as backend:
        return await run_node(config, backend, sockets, hint)


async def run_node(config, backend, sockets, hint):
    """Serve until told to stop; answers the exit status."""
    keys = await open_key_ring(backend.collections, config)
    services = build_services(config, backend, JwtCodec(keys), hint)
    app = make_app(config, services)
    server = RegistryHTTPServer(app, xheaders=config["trust_proxy_headers"], max_body_size=MAX_BUFFERED_BODY,
                                chunk_size=BODY_CHUNK_SIZE, local_send_buffer_bytes=config["local_send_buffer_bytes"])
    loop = asyncio.get_running_loop()
    imports = ImportActors(SyncImportTasks(backend.sync_db), services.import_pipeline, loop, config)
    services.imports.wake = imports.wake
    dispatch_db = backend.sync_db.with_options(write_concern=DISPATCH)
    dispatchers = Dispatchers(SyncEvents(dispatch_db), SyncWebhooks(dispatch_db), SyncDeliveries(dispatch_db),
                              services.webhook_sender.send, loop, config, config["public_url"] or "/cyp-registry")
    services.webhooks.wake = dispatchers.look
    server.add_sockets(sockets)
    node_id = holder_name()
    background = [
        asyncio.create_task(sweep_forever(services.uploads, config["upload_sweep_interval_seconds"])),
        asyncio.create_task(collect_forever(services.gc, holder_name())),
        asyncio.create_task(services.pulls.flush_forever()),
        asyncio.create_task(services.audit.write_forever()),
        asyncio.create_task(services.rate_limits.sync_forever()),
        asyncio.create_task(keys.refresh_forever()),
        asyncio.create_task(backend.collections.end_abandoned_transactions_forever()),
        asyncio.create_task(backend.collections.watch_nodes_forever(node_id)),
        asyncio.create_task(sample_mailboxes_forever(
            {"quota": backend.quota, "imports": imports, "deliveries": dispatchers})),
    ]
    log.info("CYP-Registry listening on http://%s:%d", config["host"], config["port"],
             extra={"url": f"http://{config['host']}:{config['port']}", "storage": backend.blob_store.name})
    status = await wait_for_stop(backend.embedded)
    if status:
        log.error("stopping: the embedded database is gone and could not be restarted")
    log.info("shutting down: no new connections; waiting for requests in flight")
    server.stop()
    tracker = app.settings["tracker"]
    try:
        await asyncio.wait_for(asyncio.gather(server.drain(config["shutdown_idle_seconds"]), tracker.idle.wait()),
                               config["shutdown_grace_seconds"])
    except asyncio.TimeoutError:
        log.warning("requests still in flight after the grace period", extra={"active": tracker.active})
    await end_tasks(background)
    await services.pulls.flush()
    # Imports are handed back from the actors' threads, which wait on this loop: keep it turning.
    await loop.run_in_executor(None, imports.stop)
    await loop.run_in_executor(None, dispatchers.stop)
    await server.close_all_connections()
    # Last, once nothing can add a record or count a request any more.
    await services.audit.flush()
    if services.rate_limits.enabled:
        await services.rate_limits.sync()
    await services.close()
    log.info("stopped")
    return status
