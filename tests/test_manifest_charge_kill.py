"""A manifest PUT charges the project and stores the manifest in one transaction, and a manifest DELETE gives the
charge back in its own: a server killed with SIGKILL in the middle of many of them leaves the project's usage equal
to the recount, with no recount run to repair it and nothing to wait for (no charge is given back later: none is
left over)."""
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.api_client import Api
from tests.support.manifests import delete, encode, image_blobs, image_manifest, sha256
from tests.support.processes import RegistryServer
from tests.support.quota_support import Db, new_project, recount
from tests.support.registry_client import cached_client

ROUNDS = 20
WRITERS = 12


@pytest.fixture(scope="module")
def server(isolated_mongo, tmp_path_factory):
    server = RegistryServer(isolated_mongo.uri, tmp_path_factory.mktemp("manifest-kill")).start()
    yield server
    server.stop()


def kill(server):
    server.process.kill()
    server.process.wait()


def put_until_stopped(client, repo, blobs, label, stopped):
    """PUT new manifests (each one unique, so each is charged), deleting every other one again, until ``stopped``;
    True when a request was cut off by the server's death (sent, then the connection dropped: not refused)."""
    config, layers = blobs
    for number in range(10**6):
        if stopped.is_set():
            return False
        body = encode(image_manifest(config, layers, annotations={"n": f"{label}-{number}"}))
        try:
            response = client.put_manifest(repo, sha256(body), body)
            assert response.status_code == 201, response.text
            if number % 2:
                response = client.request("DELETE", f"/v2/{repo}/manifests/{sha256(body)}", delete(repo))
                assert response.status_code == 202, response.text
        except requests.ConnectionError as exc:
            return "refused" not in str(exc).lower()
    return False


def test_usage_equals_the_recount_after_kills_in_the_middle_of_manifest_puts_and_deletes(server, isolated_mongo):
    admin = Api(server.url).session("admin", server.admin_password)
    project = new_project(admin, "killput")
    repo = f"{project['name']}/app"
    blobs = image_blobs(cached_client(server.url, "admin", server.admin_password), repo)
    store = Db(isolated_mongo.uri, server.db_name)
    cut_off = 0
    try:
        for round_number in range(ROUNDS):
            client = cached_client(server.url, "admin", server.admin_password)
            client.token(f"repository:{repo}:pull,push")
            client.token(delete(repo))
            stopped = threading.Event()
            with ThreadPoolExecutor(WRITERS) as pool:
                writers = [pool.submit(put_until_stopped, client, repo, blobs, f"{round_number}-{index}", stopped)
                           for index in range(WRITERS)]
                time.sleep(random.uniform(0.3, 0.8))
                kill(server)
                stopped.set()
                cut_off += sum(writer.result() for writer in writers)
            server.start()
        used = store.used(project["id"])
        counted = recount(admin, project["id"])
    finally:
        store.close()

    assert cut_off >= ROUNDS, f"only {cut_off} PUTs were in flight at the kills"
    assert counted["drift"] == 0 and counted["actual"] == used, counted
