"""The webhook dispatcher: one pykka actor per process, its database work on its own thread.

Each tick it fans pending events out (one delivery per matching webhook, each event claimed under a
lease so one dispatcher does it, the deliveries unique per event and webhook so a dispatcher dying
half-way duplicates nothing), then claims the deliveries that are due, within
``webhook_max_in_flight`` for the process and ``webhook_max_in_flight_per_endpoint`` per webhook, so a
dead or slow receiver holds a few slots and never the others'. Each claimed delivery is sent on the
event loop (never blocking this thread); its outcome comes back as a message, and is recorded with
what comes next: success, a retry on the schedule (or after the receiver's Retry-After), or the end.

Every database step works on batches, since a round trip to the database costs far more than the
documents in it: a tick claims up to ``EVENTS_PER_TICK`` events with one update, reads the webhooks
once, inserts all their deliveries with one insert and marks the events with one update; the deliveries
it made wait here as candidates (no query finds them again); a send takes every candidate there is room
for with one update; the outcomes that arrived together are recorded with one bulk write.
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
# Deliveries a fan-out made that wait here as candidates, whole; beyond, they are found again by a query.
HELD_CANDIDATES = 2000
# The webhooks' health (last delivery, last status) is written at most this often, or at once before a
# failure that counts against the webhook, so busy webhooks cost one write a second rather than one a round.
HEALTH_SECONDS = 1.0
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
        self.due = collections.deque()  # candidates (made here, or found by a query for due ones), not yet taken
        self.looked_at = 0.0  # when the last query for them ran (time.monotonic)
        self.outcomes = []  # writes of the deliveries' outcomes not yet made
        self.webhook_outcomes = {}  # webhook id: (last status, whether any succeeded), not yet written
        self.health_written = 0.0  # when they were last written (time.monotonic)

    def on_receive(self, message):
        try:
            if message == "tick":
                self.tick_asked.clear()
                self._write_outcomes()
                unheld = self._fan_out()
                self._send_due(look_again=unheld or time.monotonic() >= self.looked_at + LOOK_AGAIN_SECONDS)
            elif message[0] == "sent":
                self._record(*message[1:])
                # The outcomes that arrived together are written together, once none is left waiting.
                if self.actor_inbox.empty():
                    self._write_outcomes()
                    self._send_due(look_again=False)
        except Exception:
            log.exception("webhook dispatcher step failed")

    def on_stop(self):
        try:
            self._write_outcomes(health_now=True)
        except Exception:  # their leases run out, and they are sent again under the same event id
            log.exception("writing the last webhook outcomes failed")

    # --- fan-out ---------------------------------------------------------------------------------

    def _fan_out(self):
        """Fan pending events out; whether it made deliveries beyond those held here as candidates (a query
        finds them)."""
        events = self.events.claim_pending(EVENT_LEASE_SECONDS, EVENTS_PER_TICK)
        if not events:
            return False
        webhooks = self.webhooks.subscribed({event["type"] for event in events})
        docs = []
        for event in events:
            rendered = {}  # the body of each format, rendered (and checked against its schema) once per event
            for webhook in webhooks:
                if not matches(webhook, event):
                    continue
                webhook_format = webhook.get("format", "default")
                if webhook_format not in rendered:
                    try:
                        rendered[webhook_format] = render(event, webhook_format, self.source)
                    except PayloadInvalid:
                        log.exception("event payload breaks its schema; not sent", extra={"event_id": event["_id"]})
                        rendered[webhook_format] = None
                if rendered[webhook_format] is not None:
                    docs.append(new_delivery(event, webhook["_id"], *rendered[webhook_format]))
        made = self.deliveries.insert_fan_out(docs)
        self.events.dispatched(events, self.retention)
        held = max(0, HELD_CANDIDATES - len(self.due))
        self.due.extend(made[:held])
        return len(made) > held

    # --- sending ---------------------------------------------------------------------------------

    def _room(self):
        return self.capacity - sum(self.in_flight.values())

    def _pick(self):
        """The candidates to send now: as many as there is room for, within each webhook's cap."""
        room, counts, picked = self._room(), dict(self.in_flight), []
        for candidate in self.due:
            if len(picked) >= room:
                break
            if counts.get(candidate["webhook_id"], 0) < self.per_endpoint:
                counts[candidate["webhook_id"]] = counts.get(candidate["webhook_id"], 0) + 1
                picked.append(candidate)
        return picked

    def _send_due(self, look_again):
        """Send what is due while there is room. Candidates (the deliveries a fan-out made here, and those one
        query for a batch found) wait here, those of a webhook at its cap included, until a slot frees up: a
        query per send would read the whole backlog each time (SecantusDB reads every document of a sorted
        range). A finished send asks for more only once the candidates are used up; ``look_again`` (a fan-out
        made more than are held here, or LOOK_AGAIN_SECONDS passed: retries come due, other nodes' deliveries
        wait) also asks while they hold nothing to send now, so a webhook at its cap never keeps the others'
        deliveries waiting for long."""
        queried = False
        while self._room() > 0:
            picked = self._pick()
            if not picked:
                if queried or (self.due and not look_again):
                    return
                busy = {webhook for webhook, count in self.in_flight.items() if count >= self.per_endpoint}
                known = {found["_id"] for found in self.due}
                self.due.extend(found for found in self.deliveries.due(DUE_BATCH, busy) if found["_id"] not in known)
                queried, self.looked_at = True, time.monotonic()
                continue
            ids = {candidate["_id"] for candidate in picked}
            self.due = collections.deque(found for found in self.due if found["_id"] not in ids)
            # Deliveries made here are held whole: taking them needs no read back.
            self._send(self.deliveries.take(picked, self.owner, self.timeout + SEND_LEASE_MARGIN_SECONDS,
                                            whole=all("body" in candidate for candidate in picked)))

    def _send(self, deliveries):
        if not deliveries:
            return
        webhooks = self.webhooks.get_many({delivery["webhook_id"] for delivery in deliveries})
        for delivery in deliveries:
            webhook = webhooks.get(delivery["webhook_id"])
            if webhook is None or not webhook.get("enabled"):
                self.deliveries.give_up(delivery, "the webhook was deleted or disabled", self.retention)
                continue
            self.in_flight[webhook["_id"]] = self.in_flight.get(webhook["_id"], 0) + 1
            future = self.sender.start(delivery, webhook)
            future.add_done_callback(lambda done, d=delivery, w=webhook: self.actor_ref.tell(
                ("sent", d, w, done.result() if not done.cancelled() and done.exception() is None
                 else {"error": "dispatcher stopped" if done.cancelled() else type(done.exception()).__name__,
                       "status": None})))

    def _write_outcomes(self, health_now=False):
        """Write the outcomes recorded since the last call in one bulk write, and the webhooks' health in another
        when ``health_now`` or HEALTH_SECONDS have passed since it was last written."""
        deliveries, self.outcomes = self.outcomes, []
        self.deliveries.record(deliveries)
        if self.webhook_outcomes and (health_now or time.monotonic() >= self.health_written + HEALTH_SECONDS):
            webhooks, self.webhook_outcomes = self.webhook_outcomes, {}
            self.health_written = time.monotonic()
            self.webhooks.record_outcomes(webhooks)

    def _record(self, delivery, webhook, outcome):
        self.in_flight[webhook["_id"]] -= 1
        if not self.in_flight[webhook["_id"]]:
            del self.in_flight[webhook["_id"]]
        status_code = outcome.get("status")
        attempt = {"at": utcnow(), **outcome}
        attempts_made = delivery.get("attempt_count", 0) + 1
        succeeded = status_code is not None and 200 <= status_code < 300
        _, succeeded_before = self.webhook_outcomes.get(webhook["_id"], (None, False))
        self.webhook_outcomes[webhook["_id"]] = (status_code, succeeded or succeeded_before)
        if succeeded:
            self.outcomes.append(self.deliveries.outcome(delivery, attempt, SUCCEEDED, None, self.retention))
            WEBHOOK_DELIVERIES.labels("succeeded").inc()
            return
        if status_code == 410 or attempts_made >= len(self.schedule):
            # Rare: written at once, after the round so far, so the webhook's count sees them in order.
            self.outcomes.append(self.deliveries.outcome(delivery, attempt, FAILED, None, self.retention))
            self._write_outcomes(health_now=True)
            WEBHOOK_DELIVERIES.labels("failed").inc()
            if status_code == 410:
                self.webhooks.disable(webhook["_id"], "the endpoint answered 410 Gone")
                log.warning("webhook disabled: its endpoint answered 410", extra={"webhook_id": webhook["_id"]})
            else:
                self.webhooks.event_failed(webhook["_id"], self.disable_after)
            return
        self.outcomes.append(self.deliveries.outcome(delivery, attempt, PENDING, utcnow() + datetime.timedelta(
            seconds=self._wait(attempts_made, outcome.get("retry_after"))), self.retention))
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

