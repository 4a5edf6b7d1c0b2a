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
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("registry")).start()
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
