"""The webhook dispatcher: one pykka actor per process, its database work on its own thread.

Each tick it fans pending events out (one delivery per matching webhook, each event claimed under a
lease so one dispatcher does it, the deliveries unique per event and webhook so a dispatcher dying
half-way duplicates nothing), then claims the deliveries that are due, within
``webhook_max_in_flight`` for the process and ``webhook_max_in_flight_per_endpoint`` per webhook, so a
dead or slow receiver holds a few slots and never the others'. Each claimed delivery is sent on the
event loop (never blocking this thread); its outcome comes back as a message, and is recorded with
what comes next: success, a retry on the schedule (or after the receiver's Retry-After), or the end.
"""
import asyncio
import collections
import datetime
import logging
import random
import threading
import time

import pykka

from actors.bridge import inbox_depth
from services.metrics import WEBHOOK_DELIVERIES
from services.webhooks import PayloadInvalid, matches, render
from storage.clock import utcnow
from storage.deliveries import FAILED, PENDING, SUCCEEDED, new_delivery
from storage.leases import holder_name

log = logging.getLogger("cyp.webhooks")

TICK_SECONDS = 0.5
EVENT_LEASE_SECONDS = 30
EVENTS_PER_TICK = 200
DUE_BATCH = 200
LOOK_AGAIN_SECONDS = 2
# A delivery being sent is leased for its timeout and this much more; a dead sender's is taken over after.
SEND_LEASE_MARGIN_SECONDS = 5
JITTER = 0.2


def parse_schedule(text):
    return [float(part) for part in text.split(",")]


class DeliveryDispatcher(pykka.ThreadingActor):
    def __init__(self, events, webhooks, deliveries, sender, config, source, tick_asked):
        super().__init__()
        # Set while a tick is queued, so ticks asked meanwhile do not pile up in the mailbox.
        self.tick_asked = tick_asked
        self.events = events
        self.webhooks = webhooks
        self.deliveries = deliveries
        self.sender = sender
        self.source = source
        self.owner = holder_name()
        self.schedule = parse_schedule(config["webhook_retry_schedule"])
        self.timeout = config["webhook_timeout_seconds"]
        self.retry_after_max = config["webhook_retry_after_max_seconds"]
        self.disable_after = config["webhook_disable_after_failed_events"]
        self.per_endpoint = config["webhook_max_in_flight_per_endpoint"]
        self.capacity = config["webhook_max_in_flight"]
        self.retention = config["webhook_history_days"] * 86400
        self.in_flight = {}
        self.due = collections.deque()  # candidates of the last queries for due deliveries, not yet taken
        self.looked_at = 0.0  # when the last query for them ran (time.monotonic)

    def on_receive(self, message):
        try:
            if message == "tick":
                self.tick_asked.clear()
                fanned_out = self._fan_out()
                self._send_due(look_again=fanned_out or time.monotonic() >= self.looked_at + LOOK_AGAIN_SECONDS)
            elif message[0] == "sent":
                self._record(*message[1:])
                self._send_due(look_again=False)
        except Exception:
            log.exception("webhook dispatcher step failed")

    # --- fan-out ---------------------------------------------------------------------------------

    def _fan_out(self):
        """Fan pending events out; whether any delivery was made."""
        made = False
        for event in self.events.claim_pending(EVENT_LEASE_SECONDS, EVENTS_PER_TICK):
            docs = []
            for webhook in self.webhooks.subscribed(event.get("project_id"), event["type"]):
                if not matches(webhook, event):
                    continue
                try:
                    body, content_type = render(event, webhook.get("format", "default"), self.source)
                except PayloadInvalid:
                    log.exception("event payload breaks its schema; not sent", extra={"event_id": event["_id"]})
                    continue
                docs.append(new_delivery(event, webhook["_id"], body, content_type))
            self.deliveries.insert_for_event(docs)
            self.events.dispatched(event, self.retention)
            made = made or bool(docs)
        return made

    # --- sending ---------------------------------------------------------------------------------

    def _busy(self):
        return {webhook for webhook, count in self.in_flight.items() if count >= self.per_endpoint}

    def _room(self):
        return self.capacity - sum(self.in_flight.values())

    def _send_due(self, look_again):
        """Send what is due while there is room. Candidates come from one query for a batch and wait here,
        those of a webhook at its cap included, until a slot frees up: a query per send would read the whole
        backlog each time. A finished send asks for more only once the batch is used up; ``look_again`` (new
        deliveries were just made, or LOOK_AGAIN_SECONDS passed) also asks while the batch holds nothing to
        send now, so a webhook at its cap never keeps the others' deliveries waiting."""
        queried = False
        while self._room() > 0:
            busy = self._busy()
            candidate = next((found for found in self.due if found["webhook_id"] not in busy), None)
            if candidate is None:
                if queried or (self.due and not look_again):
                    return
                if len(self.due) >= DUE_BATCH:  # only busy webhooks' candidates: found again by a later query
                    self.due.clear()
                known = {found["_id"] for found in self.due}
                self.due.extend(found for found in self.deliveries.due(DUE_BATCH, busy) if found["_id"] not in known)
                queried, self.looked_at = True, time.monotonic()
                continue
            self.due.remove(candidate)
            delivery = self.deliveries.take(candidate, self.owner, self.timeout + SEND_LEASE_MARGIN_SECONDS)
            if delivery is not None:
                self._send(delivery)

    def _send(self, delivery):
        webhook = self.webhooks.get(delivery["webhook_id"])
        if webhook is None or not webhook.get("enabled"):
            self.deliveries.give_up(delivery, "the webhook was deleted or disabled", self.retention)
            return
        self.in_flight[webhook["_id"]] = self.in_flight.get(webhook["_id"], 0) + 1
        future = self.sender.start(delivery, webhook)
        future.add_done_callback(lambda done, d=delivery, w=webhook: self.actor_ref.tell(
            ("sent", d, w, done.result() if not done.cancelled() and done.exception() is None
             else {"error": "dispatcher stopped" if done.cancelled() else type(done.exception()).__name__,
                   "status": None})))

    def _record(self, delivery, webhook, outcome):
        self.in_flight[webhook["_id"]] -= 1
        if not self.in_flight[webhook["_id"]]:
            del self.in_flight[webhook["_id"]]
        status_code = outcome.get("status")
        attempt = {"at": utcnow(), **outcome}
        attempts_made = delivery.get("attempt_count", 0) + 1
        if status_code is not None and 200 <= status_code < 300:
            self.deliveries.record(delivery, attempt, SUCCEEDED, None, self.retention)
            WEBHOOK_DELIVERIES.labels("succeeded").inc()
            self.webhooks.record_outcome(webhook["_id"], status_code, True)
            return
        self.webhooks.record_outcome(webhook["_id"], status_code, False)
        if status_code == 410:
            self.deliveries.record(delivery, attempt, FAILED, None, self.retention)
            WEBHOOK_DELIVERIES.labels("failed").inc()
            self.webhooks.disable(webhook["_id"], "the endpoint answered 410 Gone")
            log.warning("webhook disabled: its endpoint answered 410", extra={"webhook_id": webhook["_id"]})
            return
        if attempts_made >= len(self.schedule):
            self.deliveries.record(delivery, attempt, FAILED, None, self.retention)
            WEBHOOK_DELIVERIES.labels("failed").inc()
            self.webhooks.event_failed(webhook["_id"], self.disable_after)
            return
        self.deliveries.record(delivery, attempt, PENDING, utcnow() + datetime.timedelta(
            seconds=self._wait(attempts_made, outcome.get("retry_after"))), self.retention)
        WEBHOOK_DELIVERIES.labels("retry").inc()

    def _wait(self, attempt, retry_after):
        if retry_after is not None:
            return min(retry_after, self.retry_after_max)
        base = self.schedule[attempt]
        return base * random.uniform(1 - JITTER, 1 + JITTER)


class DeliverySender:
    """Sends one delivery on the event loop, for the dispatcher's thread."""

    def __init__(self, send, loop):
        self.send = send
        self.loop = loop

    def start(self, delivery, webhook):
        return asyncio.run_coroutine_threadsafe(self.send(delivery, webhook), self.loop)


class Dispatchers:
    """This process's dispatcher and the ticker that keeps it turning."""

    def __init__(self, events, webhooks, deliveries, send, loop, config, source):
        self.stopping = threading.Event()
        self.tick_asked = threading.Event()
        self.ref = DeliveryDispatcher.start(events, webhooks, deliveries, DeliverySender(send, loop), config,
                                            source, self.tick_asked) if config["webhook_max_in_flight"] else None
        self._ticker = threading.Thread(target=self._tick, name="webhook-ticker", daemon=True)
        self._ticker.start()

    def wake(self):
        """Ask for a tick now (an event was just written here); never blocks."""
        if self.ref is not None and not self.tick_asked.is_set():
            self.tick_asked.set()
            self.ref.tell("tick")

    def mailbox_depth(self):
        return inbox_depth([self.ref] if self.ref is not None else [])

    def _tick(self):
        while not self.stopping.wait(TICK_SECONDS):
            self.wake()

    def stop(self):
        self.stopping.set()
        if self.ref is not None and self.ref.is_alive():
            self.ref.stop(timeout=10)

