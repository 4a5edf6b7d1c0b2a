"""The webhook dispatcher: one pykka actor per process, its database work on its own thread.

Each tick it fans pending events out (one delivery per matching webhook, each event claimed under a
lease so one dispatcher does it, the deliveries unique per event and webhook so a dispatcher dying
half-way duplicates nothing), then sends the deliveries that are due, within ``webhook_max_in_flight``
for the process and ``webhook_max_in_flight_per_endpoint`` per webhook, so a dead or slow receiver holds
a few slots and never the others'. Each delivery is sent on the event loop (never blocking this thread);
its outcome comes back as a message, and is recorded with what comes next: success, a retry on the
schedule (or after the receiver's Retry-After), or the end.

The database is what every node shares, so each step costs it as few commands and document writes as it
can. A tick claims up to ``EVENTS_PER_TICK`` events with one update and reads the webhooks once. The
deliveries it makes wait here, and their first attempt is made before they are stored: within
``SEND_LEASE_MARGIN_SECONDS`` of the fan-out (else they are stored pending, and sent like retries), under
the lease on their event, which outlasts that wait and the attempt; each is then stored once, with that
attempt's outcome (in the history when it has ended: storage/deliveries.py), and an event is marked fanned
out once all of its deliveries are stored. A dispatcher
that dies before loses its lease on the event, and another fans it out again: the deliveries not stored
yet are sent again, under the same event id. Deliveries found by a query (retries come due, a dead
dispatcher's) are taken with an update, and their outcomes written with one more (one that has ended is
inserted in the history, then deleted). Outcomes are written together, ``OUTCOME_SECONDS`` after the first
of them (an insert to each collection and one bulk write). Every EXPIRE_SECONDS the dispatcher deletes the
history past its retention, a step a tick.
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
# Deliveries a fan-out made that wait here as candidates, whole; beyond, they are stored pending at once.
HELD_CANDIDATES = 2000
# The webhooks' health (last delivery, last status) is written at most this often, or at once before a
# failure that counts against the webhook, so busy webhooks cost one write a second rather than one a round.
HEALTH_SECONDS = 1.0
EVENTS_PER_TICK = 200
DUE_BATCH = 200
LOOK_AGAIN_SECONDS = 2
# A delivery being sent is leased for its timeout and this much more; a dead sender's is taken over after.
# A delivery a fan-out made is sent within this long, or stored pending.
SEND_LEASE_MARGIN_SECONDS = 5
# Outcomes of sends are written this long after the first of them, together.
OUTCOME_SECONDS = 0.25
# A webhook read this recently (by a fan-out or a send) is used as read: a change to it reaches the sends
# within this long.
WEBHOOK_FRESH_SECONDS = 1.0
JITTER = 0.2
# How often this dispatcher deletes the deliveries' history past its retention.
EXPIRE_SECONDS = 60


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
        self.lease_seconds = self.timeout + SEND_LEASE_MARGIN_SECONDS
        # An event's lease covers the wait of its deliveries here, their first attempt and writing it.
        self.event_lease_seconds = self.lease_seconds + 2 * SEND_LEASE_MARGIN_SECONDS
        self.in_flight = {}
        self.due = collections.deque()  # candidates (made here, or found by a query for due ones), not yet sent
        # Delivery id: (until when it may wait here, time.monotonic, or None once its send started; the delivery),
        # in fan-out order. Kept here, not only in ``due``, so a step that fails after taking one out of ``due``
        # leaves it to be stored pending when its wait is over, never forgotten with its event left unfinished.
        self.unstored = {}
        self.unstored_of_event = {}  # event id: its deliveries not stored yet
        self.backlog = False  # whether more deliveries are due than the candidates held here
        self.looked_at = 0.0  # when the last query for due deliveries ran (time.monotonic)
        self.known_webhooks = {}  # webhook id: (document, when it was read, time.monotonic)
        self.to_insert = []  # deliveries to store, not stored yet
        self.outcomes = []  # writes of stored deliveries' outcomes not yet made
        self.fanned_out = []  # events whose deliveries are all stored once ``to_insert`` is
        self.write_asked = False
        self.webhook_outcomes = {}  # webhook id: (last status, whether any succeeded), not yet written
        self.health_written = 0.0  # when they were last written (time.monotonic)
        self.expired = time.monotonic()  # when the last pass of the history's expiry began
        self.expiring = None  # where a pass cut short goes on from (storage/deliveries.py expire)

    def on_receive(self, message):
        try:
            if message in ("tick", "look"):
                if message == "tick":
                    self.tick_asked.clear()
                self._write_outcomes()
                look_again = message == "look" or time.monotonic() >= self.looked_at + LOOK_AGAIN_SECONDS
                self._fan_out()
                self._send_due(look_again=look_again or self.backlog)
                self._expire_history()
            elif message == "write":
                self.write_asked = False
                self._write_outcomes()
            elif message[0] == "sent":
                self._record(*message[1:])
                if self.actor_inbox.empty():
                    self._send_due(look_again=False)
        except Exception:
            log.exception("webhook dispatcher step failed")

    def on_stop(self):
        try:
            self._store_unsent([delivery_id for delivery_id, (send_by, _) in self.unstored.items() if send_by])
            self._write_outcomes(health_now=True)
        except Exception:  # their events' leases run out, and they are sent again under the same event id
            log.exception("writing the last webhook outcomes failed")

    def _expire_history(self):
        """A step of the history's expiry: a pass begins every EXPIRE_SECONDS and goes on a step a tick."""
        if self.expiring is None:
            if time.monotonic() < self.expired + EXPIRE_SECONDS:
                return
            self.expired = time.monotonic()
        _, self.expiring = self.deliveries.expire(self.retention, self.expiring)

    # --- fan-out ---------------------------------------------------------------------------------

    def _fan_out(self):
        """Fan pending events out into deliveries held here, to be sent before they are stored; those beyond
        HELD_CANDIDATES are stored pending at once."""
        events, again = self.events.claim_pending(self.owner, self.event_lease_seconds, EVENTS_PER_TICK)
        if not events:
            return
        webhooks = self.webhooks.subscribed({event["type"] for event in events})
        self._know(webhooks)
        made = []
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
                    made.append(new_delivery(event, webhook["_id"], *rendered[webhook_format]))
        made = self._not_made_before(made, again)
        held = max(0, HELD_CANDIDATES - len(self.due))
        if made[held:]:
            self.deliveries.insert(made[held:])
            self.backlog = True
        send_by = time.monotonic() + SEND_LEASE_MARGIN_SECONDS
        for delivery in made[:held]:
            self.due.append(delivery)
            self.unstored[delivery["_id"]] = (send_by, delivery)
            self.unstored_of_event[delivery["event_id"]] = self.unstored_of_event.get(delivery["event_id"], 0) + 1
        waiting = self.unstored_of_event
        self.events.dispatched([event for event in events if event["_id"] not in waiting], self.retention)

    def _not_made_before(self, made, event_ids):
        """``made`` but those of events claimed again (``event_ids``: their lease ran out) stored already or held
        here: a fan-out again makes only the others (a delivery's id is the same each time it is made), so a
        receiver that had its delivery stored is not sent the event again, and this dispatcher's count of an
        event's deliveries not stored yet counts each once."""
        again = [delivery["_id"] for delivery in made if delivery["event_id"] in event_ids]
        if not again:
            return made
        there = self.unstored.keys() | self.deliveries.stored(again)
        return [delivery for delivery in made if delivery["_id"] not in there]

    def _stored(self, delivery_id):
        """Note that a delivery made here is stored (or will be, with the next write of outcomes); its event is
        fanned out once none of its deliveries is left unstored."""
        event_id = self.unstored.pop(delivery_id)[1]["event_id"]
        self.unstored_of_event[event_id] -= 1
        if not self.unstored_of_event[event_id]:
            del self.unstored_of_event[event_id]
            self.fanned_out.append({"_id": event_id})

    def _late(self):
        """The deliveries made here that waited longer than SEND_LEASE_MARGIN_SECONDS, not sent."""
        now, late = time.monotonic(), []
        for delivery_id, (send_by, _) in self.unstored.items():
            if send_by is not None:
                if send_by > now:
                    break
                late.append(delivery_id)
        return late

    def _store_unsent(self, delivery_ids):
        """Store deliveries made here and not sent, pending, to be found by a query and sent like retries."""
        ids = set(delivery_ids)
        if not ids:
            return
        self.to_insert += [self.unstored[delivery_id][1] for delivery_id in ids]
        self.due = collections.deque(delivery for delivery in self.due if delivery["_id"] not in ids)
        for delivery_id in ids:
            self._stored(delivery_id)
        self.backlog = True
        self._write_outcomes()

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
        range). The query runs when ``look_again`` (the tick's, every LOOK_AGAIN_SECONDS: retries come due,
        other nodes' deliveries wait; or a backlog beyond what is held here) finds nothing to send now, so a
        webhook at its cap never keeps the others' deliveries waiting for long."""
        self._store_unsent(self._late())
        queried = False
        while self._room() > 0:
            picked = self._pick()
            if not picked:
                if queried or not (look_again or (self.backlog and not self.due)):
                    return
                busy = {webhook for webhook, count in self.in_flight.items() if count >= self.per_endpoint}
                known = {found["_id"] for found in self.due}
                found = self.deliveries.due(DUE_BATCH, busy)
                self.backlog = len(found) >= DUE_BATCH
                self.due.extend(delivery for delivery in found if delivery["_id"] not in known)
                queried, self.looked_at = True, time.monotonic()
                continue
            ids = {candidate["_id"] for candidate in picked}
            self.due = collections.deque(found for found in self.due if found["_id"] not in ids)
            unstored = [candidate for candidate in picked if candidate["_id"] in self.unstored]
            stored = [candidate for candidate in picked if candidate["_id"] not in self.unstored]
            self._send(unstored + self.deliveries.take(stored, self.owner, self.lease_seconds))

    def _know(self, webhooks):
        now = time.monotonic()
        self.known_webhooks.update((webhook["_id"], (webhook, now)) for webhook in webhooks)

    def _webhooks(self, webhook_ids):
        """``{id: webhook}`` of those of ``webhook_ids`` that exist, read again unless read recently."""
        stale = time.monotonic() - WEBHOOK_FRESH_SECONDS
        if any(self.known_webhooks.get(webhook_id, (None, stale))[1] <= stale for webhook_id in webhook_ids):
            found = self.webhooks.get_many(webhook_ids)
            for webhook_id in webhook_ids:
                self.known_webhooks.pop(webhook_id, None)
            self._know(found.values())
        return {webhook_id: self.known_webhooks[webhook_id][0] for webhook_id in webhook_ids
                if webhook_id in self.known_webhooks}

    def _send(self, deliveries):
        if not deliveries:
            return
        webhooks = self._webhooks({delivery["webhook_id"] for delivery in deliveries})
        for delivery in deliveries:
            webhook = webhooks.get(delivery["webhook_id"])
            if webhook is None or not webhook.get("enabled"):
                self._give_up(delivery, "the webhook was deleted or disabled")
                continue
            future = self.sender.start(delivery, webhook)
            self.in_flight[webhook["_id"]] = self.in_flight.get(webhook["_id"], 0) + 1
            if delivery["_id"] in self.unstored:
                self.unstored[delivery["_id"]] = (None, delivery)
            future.add_done_callback(lambda done, d=delivery, w=webhook: self._tell(
                ("sent", d, w, done.result() if not done.cancelled() and done.exception() is None
                 else {"error": "dispatcher stopped" if done.cancelled() else type(done.exception()).__name__,
                       "status": None})))

    def _give_up(self, delivery, reason):
        if delivery["_id"] in self.unstored:
            self._stored(delivery["_id"])
            self.to_insert.append({**delivery, "status": FAILED, "last_error": reason,
                                   "expire_at": utcnow() + datetime.timedelta(seconds=self.retention)})
            self._write_outcomes_soon()
        else:
            self.deliveries.give_up(delivery, reason, self.retention)

    # --- outcomes --------------------------------------------------------------------------------

    def _write_outcomes(self, health_now=False):
        """Write the deliveries and outcomes recorded since the last call (an insert to each collection, then one
        bulk write), mark the
        events whose deliveries are all stored (one update), and write the webhooks' health in another when
        ``health_now`` or HEALTH_SECONDS have passed since it was last written."""
        inserts, self.to_insert = self.to_insert, []
        updates, self.outcomes = self.outcomes, []
        events, self.fanned_out = self.fanned_out, []
        self.deliveries.insert(inserts)
        self.deliveries.record(updates)
        self.events.dispatched(events, self.retention)
        if self.webhook_outcomes and (health_now or time.monotonic() >= self.health_written + HEALTH_SECONDS):
            webhooks, self.webhook_outcomes = self.webhook_outcomes, {}
            self.health_written = time.monotonic()
            self.webhooks.record_outcomes(webhooks)

    def _write_outcomes_soon(self):
        """Ask for the outcomes to be written OUTCOME_SECONDS from now, unless that is asked already."""
        if not self.write_asked:
            self.write_asked = True
            timer = threading.Timer(OUTCOME_SECONDS, self._tell, ("write",))
            timer.daemon = True
            timer.start()

    def _tell(self, message):
        """Tell this actor from another thread; once it has stopped, the message has no one to act on it: on_stop
        wrote the outcomes it had, and a send that ends later is made again under its event's lease."""
        try:
            self.actor_ref.tell(message)
        except pykka.ActorDeadError:
            pass

    def _keep_outcome(self, delivery, attempt, status, next_attempt_at=None):
        """A delivery made here is stored with this outcome; a stored one that will be sent again is updated, and
        one that has ended is written to the history and then taken out of ``deliveries``."""
        after = self.deliveries.with_outcome(delivery, attempt, status, next_attempt_at, self.retention)
        if delivery["_id"] in self.unstored:
            self._stored(delivery["_id"])
            self.to_insert.append(after)
        elif status == PENDING:
            self.outcomes.append(self.deliveries.outcome(delivery, attempt, status, next_attempt_at, self.retention))
        else:
            self.to_insert.append(after)
            self.outcomes.append(self.deliveries.leave(delivery))

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
            self._keep_outcome(delivery, attempt, SUCCEEDED)
            self._write_outcomes_soon()
            WEBHOOK_DELIVERIES.labels("succeeded").inc()
            return
        if status_code == 410 or attempts_made >= len(self.schedule):
            # Rare: written at once, after the round so far, so the webhook's count sees them in order.
            self._keep_outcome(delivery, attempt, FAILED)
            # Counted before it is stored (as every outcome): whoever finds it stored finds it counted.
            WEBHOOK_DELIVERIES.labels("failed").inc()
            self._write_outcomes(health_now=True)
            if status_code == 410:
                self.webhooks.disable(webhook["_id"], "the endpoint answered 410 Gone")
                log.warning("webhook disabled: its endpoint answered 410", extra={"webhook_id": webhook["_id"]})
            else:
                self.webhooks.event_failed(webhook["_id"], self.disable_after)
            # Read again before the next send: it may be disabled now, and a Gone endpoint gets nothing more.
            self.known_webhooks.pop(webhook["_id"], None)
            return
        self._keep_outcome(delivery, attempt, PENDING, utcnow() + datetime.timedelta(
            seconds=self._wait(attempts_made, outcome.get("retry_after"))))
        WEBHOOK_DELIVERIES.labels("retry").inc()
        # Written at once, and looked for at once: the first retry is due immediately.
        self._write_outcomes()
        self.backlog = True

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
        """Ask for a tick now; never blocks."""
        if self.ref is not None and not self.tick_asked.is_set():
            self.tick_asked.set()
            self.ref.tell("tick")

    def look(self):
        """Ask for a tick that also looks for due deliveries now (one was just written here); never blocks."""
        if self.ref is not None:
            self.ref.tell("look")

    def mailbox_depth(self):
        return inbox_depth([self.ref] if self.ref is not None else [])

    def _tick(self):
        while not self.stopping.wait(TICK_SECONDS):
            self.wake()

    def stop(self):
        self.stopping.set()
        if self.ref is not None and self.ref.is_alive():
            self.ref.stop(timeout=10)

