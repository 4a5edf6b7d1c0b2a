"""Fixtures: one real SecantusDB and one real CYP-Registry server process for the session, and the clients,
users and database views the test modules share."""
import itertools
import time

import pymongo
import pytest

from tests.support.api_client import Api, admin_api_for, create_user
from tests.support.cluster import TestCluster, cluster_under_test
from tests.support.processes import MongoServer, RegistryServer
from tests.support.projects import api_login, create_project
from tests.support.quota_support import GC_NOW_ENV, Db, MiB
from tests.support.registry_client import RegistryClient, cached_client
from tests.support.remotes import DockerRegistry, HttpFront
from tests.support.sent_secrets import found_in, remember

_names = itertools.count(1)


# -- servers --------------------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failure with the session's SecantusDB no longer answering ends the run at once: every later test
    would wait out its timeouts against it (a CI run then ends at its time limit, saying nothing)."""
    outcome = yield
    mongo = item.funcargs.get("mongo") if hasattr(item, "funcargs") else None
    if outcome.get_result().failed and mongo is not None and not mongo.answers(20):
        item.session.shouldstop = (f"the session's SecantusDB stopped answering (during {item.nodeid}); its log, "
                                   f"with the stacks of its stuck threads once it is stopped: {mongo.log_path}")


@pytest.fixture(scope="session")
def mongo(tmp_path_factory):
    # SecantusDB 0.7.0b3 keeps its global lock while WiredTiger has a thread help evict, and has wedged there
    # (every command waiting) late in a run: with room for everything the suite writes (about 1 GB) in its
    # cache, eviction has no reason to hold anyone up.
    server = MongoServer(tmp_path_factory.mktemp("mongo") / "db", cache_size="3G").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def isolated_mongo(tmp_path_factory):
    """A SecantusDB of the module's own, for the modules that kill nodes in the middle of transactions:
    SecantusDB 0.7.0b3 can stall every command while it holds a dead client's transaction, and on the session's
    server (large by then) such a stall reached every later test of the run."""
    server = MongoServer(tmp_path_factory.mktemp("isolated-mongo") / "db").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry(mongo, tmp_path_factory):
    if cluster_under_test():  # three nodes behind nginx instead of one server (tests/support/cluster.py)
        server = TestCluster(tmp_path_factory.mktemp("cluster"), mongo.uri).start()
    else:
        # Behind-a-proxy mode lets tests that fail logins on purpose do so from addresses of their own.
        server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("registry"),
                                env={"CYP_TRUST_PROXY_HEADERS": "true"}).start()
    remember(server.admin_password)
    yield server
    server.stop()
    # The whole run's log of the shared server holds none of the passwords and tokens the tests sent it.
    leaked = found_in(server.log_text())
    assert not leaked, f"{len(leaked)} secrets in {server.log_path}, e.g. one starting {leaked[0][:6]}"


@pytest.fixture
def own_registry(mongo, tmp_path):
    """A server of this test's own (its own database on the session's SecantusDB), free to be stopped."""
    server = RegistryServer(mongo.uri, tmp_path / "registry").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gc_server(mongo, tmp_path_factory):
    """A server of the module's own whose garbage collector has no grace period (collections are triggered by
    hand)."""
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("gc-now"), env=GC_NOW_ENV).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow_remote(tmp_path_factory):
    """Debian's docker-registry behind nginx sending 8 MiB/s, so an import is still running when its node dies."""
    base = tmp_path_factory.mktemp("slow-remote")
    upstream = DockerRegistry(base / "registry").start()
    front = HttpFront(base / "slow", upstream.host, limit_rate=8 * MiB).start()
    yield upstream, front
    front.stop()
    upstream.stop()


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """A real S3-compatible server (moto_server) for the S3 blob store; tests use buckets of their own."""
    from tests.support.s3 import MotoServer

    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


# -- /v2/ clients ---------------------------------------------------------------------------------

@pytest.fixture
def admin(registry):
    """The administrator's RegistryClient; it fetches one token per scope in a test (each fetch costs an argon2
    verification)."""
    return cached_client(registry.url, "admin", registry.admin_password)


@pytest.fixture
def anonymous(registry):
    return RegistryClient(registry.url)


@pytest.fixture(scope="module")
def gc_client(gc_server):
    return cached_client(gc_server.url, "admin", gc_server.admin_password)


@pytest.fixture
def repo(registry, admin_token):
    """A fresh repository name in a fresh private project of the administrator."""
    project = f"project{next(_names)}"
    create_project(registry.url, admin_token, project)
    return f"{project}/app"


# -- /api/v1 clients and users --------------------------------------------------------------------

@pytest.fixture(scope="session")
def admin_token(registry):
    """An /api/v1 access token of the bootstrap administrator."""
    return api_login(registry.url, "admin", registry.admin_password)


@pytest.fixture
def api(registry):
    """Anonymous /api/v1 client."""
    return Api(registry.url)


@pytest.fixture(scope="session")
def admin_session(registry):
    """The administrator's login, shared by the run (no test logs it out or changes its password)."""
    return {"api": None}


@pytest.fixture
def admin_api(registry, admin_session):
    """The administrator's logged-in client (logged in again when its access token is about to expire)."""
    current = admin_session["api"]
    if current is None or current.tokens["expires_at"] - time.time() < 120:
        admin_session["api"] = current = admin_api_for(registry)
    return current


@pytest.fixture(scope="module")
def gc_api(gc_server):
    return admin_api_for(gc_server)


@pytest.fixture
def make_user(admin_api):
    """Factory: a new ordinary (or admin) user created through POST /api/v1/users, already logged in."""

    def make(is_admin=False, **fields):
        return create_user(admin_api, is_admin, **fields)

    return make


@pytest.fixture
def user(make_user):
    return make_user()


# -- databases ------------------------------------------------------------------------------------

@pytest.fixture
def db(mongo, registry):
    """The shared server's database (pymongo)."""
    client = pymongo.MongoClient(mongo.uri, tz_aware=True)
    yield client[registry.db_name]
    client.close()


@pytest.fixture(scope="module")
def store(mongo, registry):
    """The shared server's database through quota_support.Db (usage and counted objects of projects)."""
    db = Db(mongo.uri, registry.db_name)
    yield db
    db.close()


@pytest.fixture(scope="module")
def gc_store(mongo, gc_server):
    db = Db(mongo.uri, gc_server.db_name)
    yield db
    db.close()
