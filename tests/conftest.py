"""Fixtures: one real SecantusDB and one real CYP-Registry server process for the session."""
import itertools

import pytest

from tests.support.processes import MongoServer, RegistryServer
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


@pytest.fixture
def repo():
    """A fresh repository name; its project is created by the administrator's first push."""
    return f"project{next(_names)}/app"
