"""Fixtures: one real SecantusDB and one real CYP-Registry server process for the session."""
import itertools

import pytest

from tests.support.processes import MongoServer, RegistryServer
from tests.support.projects import api_login, create_project
from tests.support.registry_client import RegistryClient

_names = itertools.count(1)


@pytest.fixture(scope="session")
def mongo(tmp_path_factory):
    server = MongoServer(tmp_path_factory.mktemp("mongo") / "db").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry(mongo, tmp_path_factory):
    # Behind-a-proxy mode lets tests that fail logins on purpose do so from addresses of their own.
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("registry"),
                            env={"CYP_TRUST_PROXY_HEADERS": "true"}).start()
    yield server
    server.stop()


@pytest.fixture
def admin(registry):
    return RegistryClient(registry.url, "admin", registry.admin_password)


@pytest.fixture
def anonymous(registry):
    return RegistryClient(registry.url)


@pytest.fixture(scope="session")
def admin_token(registry):
    """An /api/v1 access token of the bootstrap administrator."""
    return api_login(registry.url, "admin", registry.admin_password)


@pytest.fixture
def repo(registry, admin_token):
    """A fresh repository name in a fresh private project of the administrator."""
    project = f"project{next(_names)}"
    create_project(registry.url, admin_token, project)
    return f"{project}/app"


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """A real S3-compatible server (moto_server) for the S3 blob store; tests use buckets of their own."""
    from tests.support.s3 import MotoServer

    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()
