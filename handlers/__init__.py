"""The one URL table of the service."""
from handlers.api.audit import AuditLogListHandler
from handlers.api.auth import (
                                   DefaultAdminOnceHandler,
                                   LoginHandler,
                                   LogoutHandler,
                                   RefreshHandler,
)
from handlers.api.base import ApiFallbackHandler
from handlers.api.imports import ImportListHandler, ImportTaskHandler
from handlers.api.projects import (
                                   MembersGoneHandler,
                                   ProjectHandler,
                                   ProjectListHandler,
                                   ProjectQuotaHandler,
                                   ProjectRecountHandler,
                                   ProjectStatisticsHandler,
                                   ProjectStorageHandler,
)
from handlers.api.reference import ApiReferencePageHandler, OpenApiHandler
from handlers.api.repositories import (
                                   RepositoryHandler,
                                   RepositoryListHandler,
                                   TagHandler,
                                   TagListHandler,
)
from handlers.api.system import GarbageCollectHandler
from handlers.api.users import (
                                   AvatarHandler,
                                   AvatarUploadHandler,
                                   MeHandler,
                                   NotificationSettingsHandler,
                                   PasswordHandler,
                                   PatHandler,
                                   PatListHandler,
                                   TokenInfoHandler,
                                   UserHandler,
                                   UserListHandler,
)
from handlers.api.webhooks import (
                                   DeliveryListHandler,
                                   PayloadSchemasHandler,
                                   RedeliverHandler,
                                   WebhookHandler,
                                   WebhookListHandler,
                                   WebhookTestHandler,
)
from handlers.console import ConsoleHandler
from handlers.health import HealthHandler
from handlers.metrics import MetricsHandler
from handlers.registry.base import RegistryFallbackHandler
from handlers.registry.blobs import BlobHandler
from handlers.registry.listings import (
                                   BaseV2Handler,
                                   CatalogHandler,
                                   ReferrersHandler,
                                   TagsHandler,
)
from handlers.registry.manifests import ManifestHandler
from handlers.registry.token import TokenHandler
from handlers.registry.uploads import UploadHandler, UploadStartHandler

_NAME = r"(?P<name>.+?)"
_REPOSITORY = r"(?P<repository>.+?)"

ROUTES = [
    (r"/health", HealthHandler),
    (r"/api/health", HealthHandler),
    (r"/metrics", MetricsHandler),
    (r"/api/v1/auth/login", LoginHandler),
    (r"/api/v1/auth/refresh", RefreshHandler),
    (r"/api/v1/auth/logout", LogoutHandler),
    (r"/api/v1/auth/default-admin-once", DefaultAdminOnceHandler),
    (r"/api/v1/users/me", MeHandler),
    (r"/api/v1/users/me/password", PasswordHandler),
    (r"/api/v1/users/me/avatar", AvatarUploadHandler),
    (r"/api/v1/users/me/token-info", TokenInfoHandler),
    (r"/api/v1/users/me/notification-settings", NotificationSettingsHandler),
    (r"/api/v1/users/me/pat", PatListHandler),
    (r"/api/v1/users/me/pat/(?P<pat_id>[^/]+)", PatHandler),
    (r"/api/v1/users", UserListHandler),
    (r"/api/v1/users/(?P<user_id>[^/]+)", UserHandler),
    (r"/api/v1/users/(?P<user_id>[^/]+)/avatar", AvatarHandler),
    (r"/api/v1/projects", ProjectListHandler),
    (r"/api/v1/projects/statistics", ProjectStatisticsHandler),
    (r"/api/v1/projects/(?P<project_id>[^/]+)", ProjectHandler),
    (r"/api/v1/projects/(?P<project_id>[^/]+)/quota", ProjectQuotaHandler),
    (r"/api/v1/projects/(?P<project_id>[^/]+)/storage", ProjectStorageHandler),
    (r"/api/v1/projects/(?P<project_id>[^/]+)/recount", ProjectRecountHandler),
    (r"/api/v1/projects/(?P<project_id>[^/]+)/images/import", ImportListHandler),
    (r"/api/v1/projects/(?P<project_id>[^/]+)/images/import/(?P<task_id>[^/]+)", ImportTaskHandler),
    (r"/api/v1/projects/(?P<project_id>[^/]+)/members(?:/.*)?", MembersGoneHandler),
    # :repository may hold slashes, as they are or as %2F (Tornado matches the raw path and unescapes groups after);
    # a path with a component named "tags" must use %2F (a/tags/b would read as tag b of a).
    (r"/api/v1/projects/(?P<project_id>[^/]+)/repositories", RepositoryListHandler),
    (rf"/api/v1/projects/(?P<project_id>[^/]+)/repositories/{_REPOSITORY}/tags", TagListHandler),
    (rf"/api/v1/projects/(?P<project_id>[^/]+)/repositories/{_REPOSITORY}/tags/(?P<tag>[^/]+)", TagHandler),
    (r"/api/v1/projects/(?P<project_id>[^/]+)/repositories/(?P<repository>.+)", RepositoryHandler),
    (r"/api/v1/webhooks", WebhookListHandler),
    (r"/api/v1/webhooks/schemas", PayloadSchemasHandler),
    (r"/api/v1/webhooks/schemas/(?P<event_type>[^/]+)", PayloadSchemasHandler),
    (r"/api/v1/webhooks/(?P<webhook_id>[^/]+)", WebhookHandler),
    (r"/api/v1/webhooks/(?P<webhook_id>[^/]+)/test", WebhookTestHandler),
    (r"/api/v1/webhooks/(?P<webhook_id>[^/]+)/deliveries", DeliveryListHandler),
    (r"/api/v1/webhooks/(?P<webhook_id>[^/]+)/deliveries/(?P<delivery_id>[^/]+)/redeliver", RedeliverHandler),
    (r"/api/v1/system/gc", GarbageCollectHandler),
    (r"/api/v1/audit-logs", AuditLogListHandler),
    (r"/api/v1/openapi\.json", OpenApiHandler),
    (r"/api/v1/docs", ApiReferencePageHandler),
    (r"/api/.*", ApiFallbackHandler),
    (r"/auth/token", TokenHandler),
    (r"/v2/?", BaseV2Handler),
    (r"/v2/_catalog", CatalogHandler),
    (rf"/v2/{_NAME}/tags/list", TagsHandler),
    (rf"/v2/{_NAME}/manifests/(?P<reference>[^/]+)", ManifestHandler),
    (rf"/v2/{_NAME}/blobs/uploads/?", UploadStartHandler),
    (rf"/v2/{_NAME}/blobs/uploads/(?P<upload_id>[^/]+)", UploadHandler),
    (rf"/v2/{_NAME}/blobs/(?P<digest>[^/]+)", BlobHandler),
    (rf"/v2/{_NAME}/referrers/(?P<digest>[^/]+)", ReferrersHandler),
    (r"/v2/.*", RegistryFallbackHandler),
    (r"/", ConsoleHandler),
    (r"/favicon\.ico", ConsoleHandler),
    (r"/console/(?P<path>[A-Za-z0-9_./-]+)", ConsoleHandler),
]
