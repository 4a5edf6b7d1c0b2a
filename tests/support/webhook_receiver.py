"""A real webhook consumer for the tests, on 127.0.0.1: it verifies every delivery's signature with the
``standardwebhooks`` reference library and validates every payload against the JSON Schema the
registry publishes (schemas/webhooks/), and records what arrived. It can answer a chosen status, be
stopped and started again on the same port, or not answer at all (``Blackhole``)."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.processes import free_port

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "webhooks"


def schema_of(event_type):
    return json.loads((SCHEMAS / f"{event_type}.json").read_text())


class Receiver:
    def __init__(self, secrets=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.secrets = list(secrets)
        self.received = []
        self.status = 200
        self.headers = {}
        self.delay = 0  # seconds it waits before answering
        self.lock = threading.Lock()
        self.server = None

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                # Decided as the request arrives and recorded with it: a test that changes ``status`` meanwhile
                # still knows what this request was answered.
                answered = receiver.status
                receiver.take(body, {key.lower(): value for key, value in self.headers.items()}, answered)
                time.sleep(receiver.delay)
                self.send_response(answered)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def take(self, body, headers, answered):
        """Record a delivery with whether each known secret verifies it, whether its payload is valid and the
        status it is ``answered``."""
        text = body.decode()
        verified = []
        for secret in self.secrets:
            try:
                Webhook(secret).verify(text, headers)
                verified.append(secret)
            except WebhookVerificationError:
                pass
        document = json.loads(text)
        event_type = document.get("type", "")
        if headers.get("content-type", "").startswith("application/cloudevents+json"):
            valid = document.get("specversion") == "1.0"
        else:
            try:
                jsonschema.validate(document, schema_of(event_type), format_checker=jsonschema.FormatChecker())
                valid = True
            except (jsonschema.ValidationError, FileNotFoundError):
                valid = False
        with self.lock:
            self.received.append({"document": document, "headers": headers, "verified": verified, "valid": valid,
                                  "answered": answered, "at": time.monotonic()})

    def of_type(self, event_type):
        with self.lock:
            return [item for item in self.received if item["document"].get("type") == event_type]

    def wait_for(self, predicate, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [item for item in self.received if predicate(item)]
            if found:
                return found
            time.sleep(0.05)
        return []


class Blackhole:
    """A port that accepts connections and never answers: a receiver that hangs every request."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.sock = None

    def start(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        return self

    def stop(self):
        if self.sock is not None:
            self.sock.close()
