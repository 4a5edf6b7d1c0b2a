"""Webhooks: the resource (who manages which, secrets, filters), the payloads (one JSON Schema per event
type, checked before anything leaves), Standard Webhooks signatures, and the deliveries' history.

The sending itself is the dispatcher's (actors/deliveries.py); this module renders what it sends.
"""
import asyncio
import base64
import binascii
import datetime
import fnmatch
import functools
import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema

from services.access import can_write
from services.credentials import CredentialsUnavailable
from services.errors import Conflict, Forbidden, Invalid, NotFound
from services.outbound import OutboundRefused
from services.timestamps import iso_z
from storage.clock import utcnow
from storage.deliveries import FAILED, PENDING, SENDING, SUCCEEDED, new_delivery
from storage.events import DISPATCHED, event_document

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas" / "webhooks"
EVENT_TYPES = ("PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "QUOTA_WARNING", "QUOTA_EXCEEDED",
               "IMPORT_COMPLETED", "IMPORT_FAILED", "PING")
DELIVERY_STATUSES = (PENDING, SENDING, SUCCEEDED, FAILED)
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
CLOUDEVENTS_TYPE_PREFIX = "io.cyp-registry."
# Headers the registry sets itself; extra headers may not replace them.
RESERVED_HEADERS = {"content-type", "content-length", "host", "user-agent", "webhook-id", "webhook-timestamp",
                    "webhook-signature", "connection", "transfer-encoding"}
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
REDACTED = "[redacted]"
RESPONSE_EXCERPT_BYTES = 4096


@functools.cache
def payload_schema(event_type):
    return json.loads((SCHEMA_DIR / f"{event_type}.json").read_text())


@functools.cache
def _validator(event_type):
    return jsonschema.Draft202012Validator(payload_schema(event_type), format_checker=jsonschema.FormatChecker())


class PayloadInvalid(Exception):
    """A payload broke its own schema: a bug of this registry, never sent."""


def payload(event):
    """The event as a consumer receives it (default format), checked against its schema."""
    body = {"id": event["_id"], "type": event["type"], "occurred_at": iso_z(event["occurred_at"]),
            "operator": event.get("operator") or "anonymous", "data": event["data"]}
    error = next(iter(_validator(event["type"]).iter_errors(body)), None)
    if error is not None:
        raise PayloadInvalid(f"{event['type']} payload breaks its schema at {list(error.absolute_path)}: "
                             f"{error.message}")
    return body


def render(event, webhook_format, source):
    """``(body, content type)`` of the event in the webhook's format: the payload itself, or the payload's
    content in a CloudEvents 1.0 structured envelope."""
    body = payload(event)
    if webhook_format == "cloudevents":
        body = {"specversion": "1.0", "id": body["id"], "source": source,
                "type": CLOUDEVENTS_TYPE_PREFIX + event["type"].lower(), "time": body["occurred_at"],
                "datacontenttype": "application/json", "subject": event["data"].get("repository"),
                "data": {"operator": body["operator"], **body["data"]}}
        return json.dumps(body, separators=(",", ":")), "application/cloudevents+json"
    return json.dumps(body, separators=(",", ":")), "application/json"


def new_secret():
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret):
    """The HMAC key of a ``whsec_`` secret (base64 after the prefix)."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        raise Invalid("secret must be whsec_ followed by base64") from None
    if not secret.startswith(SECRET_PREFIX) or len(key) < MIN_SECRET_BYTES:
        raise Invalid(f"secret must be whsec_ followed by the base64 of at least {MIN_SECRET_BYTES} bytes")
    return key


def signature(secrets_, message_id, timestamp, body):
    """The ``webhook-signature`` header of Standard Webhooks: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``
    for each secret, space-separated (two while a rotated secret overlaps the new one)."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    return " ".join("v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()
                    for secret in secrets_)


def matches(webhook, event):
    """Whether the webhook wants this event: its type, its project (or any, for a global one), its filters.
    The repository and tag filters apply to events that have a repository or tags."""
    if event["type"] not in webhook["events"]:
        return False
    if webhook.get("project_id") is not None and webhook["project_id"] != event.get("project_id"):
        return False
    data = event["data"]
    if "repository" in data and not fnmatch.fnmatchcase(data["repository"], webhook.get("repository_filter", "*")):
        return False
    tag_filter = webhook.get("tag_filter", "*")
    tags = data.get("tags") if "tags" in data else ([data["reference"]] if "reference" in data else None)
    if tags is not None and tag_filter != "*" and not any(fnmatch.fnmatchcase(tag, tag_filter) for tag in tags):
        return False
    return True


def public_webhook(doc):
    return {
        "id": doc["_id"], "name": doc["name"], "url": doc["url"], "events": doc["events"],
        "project_id": doc.get("project_id"), "repository_filter": doc.get("repository_filter", "*"),
        "tag_filter": doc.get("tag_filter", "*"), "format": doc.get("format", "default"),
        "enabled": doc.get("enabled", True),
        "headers": {name: REDACTED for name in sorted(doc.get("header_names") or [])},
        "created_at": iso_z(doc["created_at"]), "updated_at": iso_z(doc["updated_at"]),
        "last_delivery_at": iso_z(doc.get("last_delivery_at")), "last_status": doc.get("last_status"),
        "consecutive_failures": doc.get("consecutive_failures", 0), "disabled_reason": doc.get("disabled_reason"),
    }


def public_delivery(doc):
    return {
        "id": doc["_id"], "webhook_id": doc["webhook_id"], "event_id": doc["event_id"],
        "event_type": doc["event_type"], "status": doc["status"], "redelivery": doc.get("redelivery", 0),
        "body": doc["body"], "attempts": [{**attempt, "at": iso_z(attempt["at"])} for attempt in doc.get("attempts", [])],
        "attempt_count": doc.get("attempt_count", 0),
        "next_attempt_at": iso_z(doc.get("next_attempt_at")) if doc["status"] in ("pending", "sending") else None,
        "last_error": doc.get("last_error"), "created_at": iso_z(doc["created_at"]),
        "updated_at": iso_z(doc["updated_at"]),
    }


class WebhookService:
    """The API's side: who manages which webhook, secrets and headers sealed at rest, tests and redeliveries."""

    def __init__(self, collections, box, outbound, config, wake=None):
        self.collections = collections
        self.box = box
        self.outbound = outbound
        self.overlap = datetime.timedelta(seconds=config["webhook_secret_overlap_seconds"])
        self.wait_seconds = config["webhook_timeout_seconds"] + 5
        self.wake = wake or (lambda: None)

    # --- who may manage what ---------------------------------------------------------------------

    async def _project_for(self, user, project_id):
        """The project a webhook of ``user`` may belong to; None for a global one (administrators only)."""
        if project_id is None:
            if not user.get("is_admin"):
                raise Forbidden("only administrators manage global webhooks (project_id null)")
            return None
        project = await self.collections.projects.get(project_id)
        if project is None or not can_write(user, project):
            raise NotFound("project not found")
        return project

    async def _own(self, user, webhook_id):
        doc = await self.collections.webhooks.get(webhook_id)
        if doc is None:
            raise NotFound("webhook not found")
        try:
            await self._project_for(user, doc.get("project_id"))
        except (Forbidden, NotFound):
            raise NotFound("webhook not found") from None
        return doc

    # --- the resource ----------------------------------------------------------------------------

    async def _check_url(self, url):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise Invalid("url must be an http or https URL without credentials in it")
        try:
            await self.outbound.check_host(parts.hostname)
        except OutboundRefused as exc:
            raise Invalid(f"url: {exc}") from None

    def _sealed_headers(self, webhook_id, headers):
        for name in headers:
            if not _HEADER_NAME_RE.match(name) or name.lower() in RESERVED_HEADERS:
                raise Invalid(f"headers: {name!r} is not a header name this registry lets you set")
        return {"header_names": sorted(headers), "headers_sealed": self.box.seal(headers, webhook_id)}

    def _sealed_secrets(self, webhook_id, entries):
        return self.box.seal([[secret, iso_z(expires) if expires else None] for secret, expires in entries],
                             webhook_id)

    def secrets_of(self, doc):
        """The secrets that sign now: the current one, and a rotated one until its overlap ends."""
        now = utcnow()
        return [secret for secret, expires in self.box.open(doc["secrets_sealed"], doc["_id"])
                if expires is None or datetime.datetime.fromisoformat(expires.replace("Z", "+00:00")) > now]

    def headers_of(self, doc):
        return self.box.open(doc["headers_sealed"], doc["_id"]) if doc.get("headers_sealed") else {}

    async def create(self, user, fields):
        project = await self._project_for(user, fields.get("project_id"))
        await self._check_url(fields["url"])
        secret = fields.get("secret") or new_secret()
        secret_key(secret)
        webhook_id = f"wh_{secrets.token_hex(16)}"
        doc = await self.collections.webhooks.create({
            "_id": webhook_id, "name": fields["name"], "url": fields["url"], "events": sorted(set(fields["events"])),
            "project_id": project["_id"] if project else None,
            "repository_filter": fields.get("repository_filter", "*"), "tag_filter": fields.get("tag_filter", "*"),
            "format": fields.get("format", "default"), "enabled": fields.get("enabled", True),
            "secrets_sealed": self._sealed_secrets(webhook_id, [(secret, None)]),
            **self._sealed_headers(webhook_id, fields.get("headers") or {}), "created_by": user["_id"]})
        return {**public_webhook(doc), "secret": secret}

    async def page(self, user, project_id, skip, limit):
        if project_id is not None:
            await self._project_for(user, project_id)
            return await self.collections.webhooks.page([project_id], False, skip, limit)
        if user.get("is_admin"):
            return await self.collections.webhooks.page(None, True, skip, limit)
        owned = await self.collections.projects.owned_by(user["_id"])
        return await self.collections.webhooks.page([p["_id"] for p in owned], False, skip, limit)

    async def get(self, user, webhook_id):
        return await self._own(user, webhook_id)

    async def update(self, user, webhook_id, fields):
        """Change what is given; ``rotate_secret`` answers the new secret once, the old one signing along for
        the overlap. Enabling a webhook again clears its failure count and reason."""
        doc = await self._own(user, webhook_id)
        changes, unset, answer = {}, [], {}
        for key in ("name", "events", "repository_filter", "tag_filter", "format", "enabled"):
            if key in fields:
                changes[key] = sorted(set(fields[key])) if key == "events" else fields[key]
        if "url" in fields:
            await self._check_url(fields["url"])
            changes["url"] = fields["url"]
        if "headers" in fields:
            changes.update(self._sealed_headers(webhook_id, fields["headers"]))
        if fields.get("enabled") and not doc.get("enabled"):
            changes.update(consecutive_failures=0, disabled_reason=None)
        if fields.get("rotate_secret") or fields.get("secret"):
            secret = fields.get("secret") or new_secret()
            secret_key(secret)
            previous = self.secrets_of(doc)[:1]
            changes["secrets_sealed"] = self._sealed_secrets(
                webhook_id, [(secret, None)] + [(old, utcnow() + self.overlap) for old in previous])
            answer["secret"] = secret
        updated = await self.collections.webhooks.update(webhook_id, changes, unset)
        return {**public_webhook(updated), **answer}

    async def delete(self, user, webhook_id):
        """Answers the webhook as it was."""
        doc = await self._own(user, webhook_id)
        await self.collections.webhooks.delete(webhook_id)
        await self.collections.deliveries.delete_for_webhook(webhook_id)
        return public_webhook(doc)

    # --- deliveries --------------------------------------------------------------------------------

    async def deliveries(self, user, webhook_id, status, event_type, skip, limit):
        await self._own(user, webhook_id)
        docs, total = await self.collections.deliveries.page(webhook_id, status, event_type, skip, limit)
        return [public_delivery(doc) for doc in docs], total

    async def test(self, user, webhook_id, source):
        """Send a PING through the same pipeline and guards; answers the delivery once its first attempt is made."""
        doc = await self._own(user, webhook_id)
        await self._check_url(doc["url"])
        project = await self.collections.projects.get(doc["project_id"]) if doc.get("project_id") else None
        event = event_document("PING", project, {"webhook_id": webhook_id, "message": "ping from CYP-Registry"},
                               user["username"])
        event["status"] = DISPATCHED  # it goes to this webhook alone, not through the fan-out
        await self.collections.events.collection.insert_one(event)
        body, content_type = render(event, doc.get("format", "default"), source)
        delivery = await self.collections.deliveries.insert(new_delivery(event, webhook_id, body, content_type))
        return await self._after_first_attempt(delivery)

    async def redeliver(self, user, webhook_id, delivery_id):
        await self._own(user, webhook_id)
        original = await self.collections.deliveries.get(webhook_id, delivery_id)
        if original is None:
            raise NotFound("delivery not found")
        redelivery = await self.collections.deliveries.next_redelivery(original)
        if redelivery is None:
            raise Conflict("another redelivery of this delivery is still pending; try again once it has ended")
        return await self._after_first_attempt(redelivery)

    async def _after_first_attempt(self, delivery):
        self.wake()
        deadline = asyncio.get_running_loop().time() + self.wait_seconds
        while asyncio.get_running_loop().time() < deadline:
            current = await self.collections.deliveries.get(delivery["webhook_id"], delivery["_id"])
            if current is None or current.get("attempt_count") or current["status"] == "failed":
                return public_delivery(current or delivery)
            await asyncio.sleep(0.05)
        return public_delivery(current)


class WebhookSender:
    """One attempt of one delivery: signed (Standard Webhooks), through the outbound client and its guard,
    redirects not followed, within the timeout; answers what the attempt shows (secrets redacted)."""

    def __init__(self, webhooks, outbound, config):
        self.webhooks = webhooks
        self.outbound = outbound
        self.timeout = config["webhook_timeout_seconds"]

    async def send(self, delivery, webhook):
        timestamp = str(int(utcnow().timestamp()))
        try:
            extra = self.webhooks.headers_of(webhook)
            signed = signature(self.webhooks.secrets_of(webhook), delivery["event_id"], timestamp, delivery["body"])
        except CredentialsUnavailable as exc:
            return {"status": None, "error": str(exc), "request": {"url": webhook["url"]}, "duration_ms": 0}
        headers = {**extra, "Content-Type": delivery["content_type"], "User-Agent": "CYP-Registry-Webhooks/1",
                   "webhook-id": delivery["event_id"], "webhook-timestamp": timestamp, "webhook-signature": signed}
        shown = {name: (REDACTED if name in extra else value) for name, value in headers.items()}
        started = asyncio.get_running_loop().time()
        outcome = {"request": {"url": webhook["url"], "headers": shown}, "status": None, "error": None}
        try:
            async with self.outbound.request("POST", webhook["url"], headers=headers,
                                             data=delivery["body"].encode(),
                                             timeout=self.timeout) as response:
                excerpt = await response.content.read(RESPONSE_EXCERPT_BYTES)
                outcome.update(status=response.status, response={
                    "headers": dict(response.headers), "body": excerpt.decode("utf-8", "replace")},
                    retry_after=_seconds(response.headers.get("Retry-After")))
                if 300 <= response.status < 400:
                    outcome["error"] = "redirect (not followed)"
        except OutboundRefused as exc:
            outcome["error"] = f"refused: {exc}"
        except asyncio.TimeoutError:
            outcome["error"] = "timeout"
        except Exception as exc:
            outcome["error"] = type(exc).__name__
        outcome["duration_ms"] = round((asyncio.get_running_loop().time() - started) * 1000, 1)
        return outcome


def _seconds(value):
    return float(value) if value and value.isdigit() else None
