"""Every service of one process, built once from the backend and handed to the handlers and commands."""
from dataclasses import dataclass

from services.access import AccessService, LiveAccounts
from services.audit import AuditLog
from services.auth import AuthService
from services.bootstrap import BootstrapHint
from services.cluster_metrics import ClusterCollector
from services.credentials import CredentialBox, load_key
from services.gc import GarbageCollector
from services.health import HealthService
from services.imports import ImportPipeline, ImportService
from services.outbound import NetworkPolicy, OutboundClient
from services.pats import PatService
from services.projects import ProjectService
from services.pull_events import PullEvents
from services.rate_limits import RateLimiter
from services.registry import RegistryService
from services.repositories import RepositoryService
from services.tokens import RegistryTokens
from services.uploads import BlobUploads
from services.users import UserService
from services.webhooks import WebhookSender, WebhookService
from storage.meta import ScheduledLease


@dataclass
class Services:
    registry: RegistryService
    uploads: BlobUploads
    access: AccessService
    auth: AuthService
    users: UserService
    pats: PatService
    projects: ProjectService
    repositories: RepositoryService
    gc: GarbageCollector
    health: HealthService
    bootstrap_hint: BootstrapHint
    outbound: OutboundClient
    imports: ImportService
    import_pipeline: ImportPipeline
    webhooks: WebhookService
    webhook_sender: WebhookSender
    pulls: PullEvents
    cluster_metrics: ClusterCollector
    audit: AuditLog
    rate_limits: RateLimiter

    async def close(self):
        await self.outbound.close()


def build_services(config, backend, codec, bootstrap_hint=None):
    """``backend`` holds the collections, the blob store and the quota actors (server.open_backend)."""
    collections, store, quota = backend.collections, backend.blob_store, backend.quota
    auth = AuthService(collections, codec, config)
    tokens = RegistryTokens(codec, config["registry_service"], config["registry_token_ttl_seconds"])
    accounts = LiveAccounts(collections)
    rate_limits = RateLimiter(collections.rate_counters, config)
    access = AccessService(collections, tokens, accounts)
    registry = RegistryService(collections, store, quota, access, config["gc_grace_seconds"])
    uploads = BlobUploads(collections, store, registry, config["upload_expiry_seconds"],
                          config["upload_lease_seconds"])
    outbound = OutboundClient(NetworkPolicy.from_settings(config), config["import_ca_bundle"])
    box = CredentialBox(load_key(config))
    projects = ProjectService(collections, quota, config["default_project_quota"])
    webhooks = WebhookService(collections, box, outbound, config)
    audit = AuditLog(collections)
    return Services(
        registry=registry,
        uploads=uploads,
        access=access,
        auth=auth,
        users=UserService(collections, store, auth, accounts),
        pats=PatService(collections, accounts),
        projects=projects,
        repositories=RepositoryService(collections, projects, registry),
        gc=GarbageCollector(collections, store, registry, config["gc_grace_seconds"], ScheduledLease(
            collections.meta, "gc", config["gc_interval_seconds"], config["gc_lease_seconds"])),
        health=HealthService(collections, store),
        bootstrap_hint=BootstrapHint(collections, bootstrap_hint),
        outbound=outbound,
        imports=ImportService(collections, projects, box, outbound),
        import_pipeline=ImportPipeline(collections, registry, uploads, box, outbound, config, audit),
        webhooks=webhooks,
        webhook_sender=WebhookSender(webhooks, outbound, config),
        pulls=PullEvents(collections),
        cluster_metrics=ClusterCollector(backend.sync_db, config["metrics_cache_seconds"],
                                         config["metrics_project_series"]),
        audit=audit,
        rate_limits=rate_limits,
    )
