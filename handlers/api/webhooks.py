"""/api/v1/webhooks: webhooks of a project (its owner) or of every project (administrators), their tests,
deliveries and redeliveries, and the JSON Schemas of the payloads they receive."""
from handlers.api.base import ApiHandler
from handlers.api.errors import ApiError
from services.webhooks import (
    DELIVERY_STATUSES,
    EVENT_TYPES,
    payload_schema,
    public_webhook,
)


class WebhookBase(ApiHandler):
    @property
    def webhooks(self):
        return self.services.webhooks

    def source(self):
        """What a CloudEvents envelope names as its source: this registry's public address."""
        return self.config["public_url"].rstrip("/") or f"{self.request.protocol}://{self.request.host}"

    def noted(self, webhook):
        """``webhook`` (as answered), its id and project noted for the audit record (never its secret)."""
        self.audit_notes.update(project_id=webhook["project_id"], resource={"webhook_id": webhook["id"]})
        return webhook


class WebhookListHandler(WebhookBase):
    audited = {"POST": "webhook.create"}

    async def get(self):
        page, page_size = self.page_args()
        docs, total = await self.webhooks.page(self.user, self.get_query_argument("project_id", None),
                                               (page - 1) * page_size, page_size)
        self.write_page([public_webhook(doc) for doc in docs], total, page, page_size)

    async def post(self):
        self.write_data(self.noted(await self.webhooks.create(self.user, self.json_body("webhook_create"))))


class WebhookHandler(WebhookBase):
    audited = {"PUT": "webhook.update", "DELETE": "webhook.delete"}

    async def get(self, webhook_id):
        self.write_data(public_webhook(await self.webhooks.get(self.user, webhook_id)))

    async def put(self, webhook_id):
        self.write_data(self.noted(await self.webhooks.update(self.user, webhook_id,
                                                              self.json_body("webhook_update"))))

    async def delete(self, webhook_id):
        self.noted(await self.webhooks.delete(self.user, webhook_id))
        self.write_data(None)


class WebhookTestHandler(WebhookBase):
    audited = {"POST": "webhook.test"}

    async def post(self, webhook_id):
        self.noted(public_webhook(await self.webhooks.get(self.user, webhook_id)))
        self.write_data(await self.webhooks.test(self.user, webhook_id, self.source()))


class DeliveryListHandler(WebhookBase):
    async def get(self, webhook_id):
        page, page_size = self.page_args()
        status = self.get_query_argument("status", None)
        if status not in (None, *DELIVERY_STATUSES):
            raise ApiError(10001, f"status must be one of {', '.join(DELIVERY_STATUSES)}")
        event_type = self.get_query_argument("event_type", None)
        if event_type not in (None, *EVENT_TYPES):
            raise ApiError(10001, f"event_type must be one of {', '.join(EVENT_TYPES)}")
        items, total = await self.webhooks.deliveries(self.user, webhook_id, status, event_type,
                                                      (page - 1) * page_size, page_size)
        self.write_page(items, total, page, page_size)


class RedeliverHandler(WebhookBase):
    audited = {"POST": "webhook.redeliver"}

    async def post(self, webhook_id, delivery_id):
        self.noted(public_webhook(await self.webhooks.get(self.user, webhook_id)))
        self.write_data(await self.webhooks.redeliver(self.user, webhook_id, delivery_id))


class PayloadSchemasHandler(WebhookBase):
    """The JSON Schema of each event type's payload: what a consumer validates with."""

    auth_required = False

    async def get(self, event_type=None):
        if event_type is None:
            self.write_data({kind: payload_schema(kind) for kind in EVENT_TYPES})
        elif event_type in EVENT_TYPES:
            self.write_data(payload_schema(event_type))
        else:
            raise ApiError(20001, f"no event type {event_type}; the types are {', '.join(EVENT_TYPES)}")

