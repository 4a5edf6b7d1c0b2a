"""The webhook dispatcher actor against a real SecantusDB and a real receiver, driven tick by tick, with the
database killed between two of its steps: what a failed step leaves behind is sent and finished later."""
import asyncio
import threading
import time

import aiohttp
import pymongo

from actors.deliveries import DeliveryDispatcher, DeliverySender
from storage.deliveries import SyncDeliveries
from storage.events import SyncEvents
from storage.webhooks import SyncWebhooks
from tests.support.clients import wait_until
from tests.support.processes import MongoServer
from tests.support.webhook_receiver import Receiver

TIMEOUT = 2
EVENT_LEASE = TIMEOUT + 15  # actors/deliveries.py: the webhook timeout and 15 s more
CONFIG = {"webhook_retry_schedule": "0,0.3,0.6", "webhook_timeout_seconds": TIMEOUT,
          "webhook_retry_after_max_seconds": 1, "webhook_disable_after_failed_events": 5,
          "webhook_max_in_flight_per_endpoint": 1, "webhook_max_in_flight": 8, "webhook_history_days": 1}


class EventLoop:
    """An asyncio loop on its own thread, posting deliveries over HTTP (the dispatcher's sends run on one)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    @staticmethod
    async def post(delivery, webhook):
        async with aiohttp.ClientSession() as session:
            async with session.post(webhook["url"], data=delivery["body"].encode(), timeout=aiohttp.ClientTimeout(
                    total=TIMEOUT), headers={"Content-Type": delivery["content_type"],
                                             "webhook-id": delivery["event_id"]}) as response:
                return {"status": response.status}

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_a_delivery_whose_send_could_not_start_is_sent_later_and_its_event_finished(tmp_path):
    """Two events for one webhook that takes one delivery at a time: the second waits in the dispatcher. The
    database dies while the first is sent, so the step that would send the second fails reading its webhook;
    the second is stored pending once its wait is over, sent, and its event marked fanned out, once."""
    mongo, receiver, events_loop = MongoServer(tmp_path / "db").start(), Receiver(), EventLoop()
    receiver.delay = 1.5  # the webhook read by the fan-out is old when the second is picked: it is read again
    receiver.start()
    client = pymongo.MongoClient(mongo.uri, tz_aware=True, journal=True, serverSelectionTimeoutMS=300)
    dispatcher = None
    try:
        db = client["dispatch"]
        db.webhooks.insert_one({"_id": "wh_one", "url": receiver.url, "events": ["PING"], "project_id": None,
                                "enabled": True})
        events = SyncEvents(db)
        first, second = (events.emit("PING", None, {"webhook_id": "wh_one", "message": f"ping {n}"}) for n in (1, 2))
        dispatcher = DeliveryDispatcher.start(events, SyncWebhooks(db), SyncDeliveries(db),
                                              DeliverySender(EventLoop.post, events_loop.loop), CONFIG, "/test",
                                              threading.Event())
        dispatcher.tell("tick")
        assert receiver.wait_for(lambda item: item["document"]["id"] == first["_id"], 10)
        mongo.kill()
        time.sleep(2.5)  # the first is answered; sending the second fails
        mongo.start()

        def ticked(predicate):
            dispatcher.tell("tick")
            return predicate()

        dispatched = wait_until(lambda: ticked(lambda: db.events.find_one(
            {"_id": second["_id"], "status": "dispatched"})), EVENT_LEASE + 10, interval=0.5)
        wait_until(lambda: ticked(lambda: db.delivery_history.find_one({"event_id": second["_id"]})), 10, interval=0.5)
        ended = list(db.delivery_history.find({"event_id": second["_id"]}))
        left = list(db.deliveries.find({"event_id": second["_id"]}))
    finally:
        if dispatcher is not None:
            dispatcher.stop()
        events_loop.stop()
        client.close()
        receiver.stop()
        mongo.stop()

    assert dispatched
    assert [delivery["status"] for delivery in ended] == ["succeeded"] and left == []
    assert len([item for item in receiver.received if item["document"]["id"] == second["_id"]]) == 1
