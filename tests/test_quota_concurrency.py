"""Concurrent pushes from several clients through several server processes into one project near its quota.

Two registry nodes share one database; skopeo copies and raw monolithic uploads run at once, spread over
the nodes, into a project whose quota fits about half of what is pushed. Usage is polled in MongoDB while
they run: it never passes the quota; at the end it equals the recount, and every refused push left nothing.
"""
import datetime
import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.api_client import admin_api_for, ok
from tests.support.clients import Skopeo, layout_manifest, require_tool
from tests.support.manifests import OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST, encode, image_manifest, pull, sha256
from tests.support.oci_layout import make_image_layout
from tests.support.processes import RegistryServer
from tests.support.quota_support import Db, MiB, new_project, recount
from tests.support.registry_client import cached_client

require_tool("skopeo")

IMAGES = 6
LAYER = 3 * MiB
RAW_UPLOADS = 4
RAW_SIZE = MiB


@pytest.fixture(scope="module")
def cluster(mongo, tmp_path_factory):
    """Two server processes on one database, sharing the bootstrap administrator's password."""
    password = f"Cluster-{secrets.token_urlsafe(9)}-9aZ"
    db_name = f"cyp_cluster_{secrets.token_hex(4)}"
    nodes = []
    try:
        for index in range(2):
            node = RegistryServer(mongo.uri, tmp_path_factory.mktemp(f"node{index}"), db_name=db_name,
                                  env={"CYP_BOOTSTRAP_ADMIN_PASSWORD": password})
            node.admin_password = password
            nodes.append(node.start())  # one after the other: the second finds the administrator created
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="module")
def cluster_store(mongo, cluster):
    db = Db(mongo.uri, cluster[0].db_name)
    yield db
    db.close()


@pytest.fixture(scope="module")
def cluster_api(cluster):
    return admin_api_for(cluster[0])


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """Six single-image OCI layouts, each with its own ~3 MiB layer; answers ``[(path, total bytes)]``."""
    base = tmp_path_factory.mktemp("concurrent-layouts")
    result = []
    for index in range(IMAGES):
        path = base / f"image{index}"
        make_image_layout(path, [LAYER], seed=f"concurrent-{secrets.token_hex(4)}-{index}")
        total = sum(p.stat().st_size for p in (Path(path) / "blobs" / "sha256").iterdir())
        result.append((path, total))
    return result


class UsagePoller(threading.Thread):
    """Reads the project's storage_used in MongoDB as fast as it can; remembers every value over the quota."""

    def __init__(self, store, project_id, quota):
        super().__init__(daemon=True)
        self.store, self.project_id, self.quota = store, project_id, quota
        self.stop_event = threading.Event()
        self.samples = 0
        self.maximum = 0
        self.over = []

    def run(self):
        while not self.stop_event.is_set():
            used = self.store.used(self.project_id)
            self.samples += 1
            self.maximum = max(self.maximum, used)
            if used > self.quota:
                self.over.append(used)
            time.sleep(0.005)

    def stop(self):
        self.stop_event.set()
        self.join(30)


def test_concurrent_pushes_through_two_nodes_never_exceed_the_quota_and_refusals_leave_nothing(
        cluster, cluster_api, cluster_store, layouts, tmp_path):
    image_sizes = [total for _, total in layouts]
    quota = 3 * max(image_sizes) + MiB // 2
    project = new_project(cluster_api, "race", storage_quota=quota)
    password = cluster[0].admin_password
    skopeos = [Skopeo(tmp_path / f"skopeo{i}") for i in range(IMAGES)]
    raws = [secrets.token_bytes(RAW_SIZE) for _ in range(RAW_UPLOADS)]
    clients = [cached_client(node.url, "admin", password) for node in cluster]
    for index, client in enumerate(clients):  # tokens fetched before the race starts
        for i in range(RAW_UPLOADS):
            client.token(f"repository:{project['name']}/raw{i}:pull,push")

    def copy(index):
        node = cluster[index % len(cluster)]
        path, _ = layouts[index]
        result = skopeos[index].run(
            "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", f"admin:{password}",
            f"oci:{path}:v1", f"docker://{node.host}/{project['name']}/img{index}:v1", check=False)
        return result.returncode, result.stderr

    def raw(index):
        client = clients[(index + 1) % len(clients)]
        return client.push_blob(f"{project['name']}/raw{index}", raws[index])

    poller = UsagePoller(cluster_store, project["id"], quota)
    poller.start()
    try:
        with ThreadPoolExecutor(IMAGES + RAW_UPLOADS) as pool:
            copies = [pool.submit(copy, i) for i in range(IMAGES)]
            uploads = [pool.submit(raw, i) for i in range(RAW_UPLOADS)]
            copy_results = [future.result() for future in copies]
            upload_results = [future.result() for future in uploads]
    finally:
        poller.stop()

    # Usage never passed the quota while the pushes ran.
    assert poller.samples > 10
    assert poller.over == [], f"storage_used went over the quota {quota}: {sorted(set(poller.over))[:5]}"
    used = cluster_store.used(project["id"])
    assert used <= quota

    # Each push either went through or was refused because of the quota.
    accepted_images = [i for i, (code, _) in enumerate(copy_results) if code == 0]
    for index, (code, stderr) in enumerate(copy_results):
        if code != 0:
            assert "exceeds the limit" in stderr or "denied" in stderr.lower(), stderr
    accepted_raw = [i for i, response in enumerate(upload_results) if response.status_code == 201]
    for response in upload_results:
        assert response.status_code in (201, 403), response.text
        if response.status_code == 403:
            assert "DENIED" in response.text and "exceeds the limit" in response.text, response.text

    # Something was refused (about twice the quota was pushed), something accepted, and what was accepted fits.
    assert len(accepted_images) + len(accepted_raw) < IMAGES + RAW_UPLOADS
    assert accepted_images or accepted_raw
    assert len(accepted_images) <= 3
    assert sum(image_sizes[i] for i in accepted_images) + RAW_SIZE * len(accepted_raw) <= used
    # Nothing is released during the run, so a refusal means the usage was already too high for its item.
    assert used > quota - (LAYER + 64 * 1024)

    # The accounting matches the links exactly.
    result = recount(cluster_api, project["id"])
    assert result["drift"] == 0 and result["actual"] == used, result
    assert sum(cluster_store.counted(project["id"]).values()) == used

    # Every refused push left nothing visible; every accepted one is whole.
    reader = clients[1]
    for index, (path, _) in enumerate(layouts):
        repo = f"{project['name']}/img{index}"
        digest = layout_manifest(path)[0]["digest"]
        by_tag = reader.request("GET", f"/v2/{repo}/manifests/v1", pull(repo), headers={"Accept": OCI_MANIFEST})
        by_digest = reader.request("GET", f"/v2/{repo}/manifests/{digest}", pull(repo),
                                   headers={"Accept": OCI_MANIFEST})
        if index in accepted_images:
            assert by_tag.status_code == 200 and by_tag.headers["Docker-Content-Digest"] == digest
        else:
            assert by_tag.status_code == 404 and by_digest.status_code == 404, (by_tag.text, by_digest.text)
            tags = reader.request("GET", f"/v2/{repo}/tags/list", pull(repo))
            assert tags.status_code == 404 or "v1" not in (tags.json().get("tags") or []), tags.text
            assert cluster_store["manifests"].find_one({"repo": repo}) is None
    for index, data in enumerate(raws):
        repo = f"{project['name']}/raw{index}"
        status = reader.request("HEAD", f"/v2/{repo}/blobs/{sha256(data)}", pull(repo)).status_code
        assert status == (200 if index in accepted_raw else 404)
        if index not in accepted_raw:
            assert cluster_store["blobs"].find_one({"_id": sha256(data)}) is None
    assert ok(cluster_api.get(f"/api/v1/projects/{project['id']}"))["image_count"] == len(accepted_images)


def test_concurrent_uploads_of_one_blob_to_several_repositories_all_succeed_when_it_fits_once(
        cluster, cluster_api, cluster_store):
    """A 2 MiB blob pushed at once into six repositories of a 3 MiB project, through two nodes (five rounds)."""
    clients = [cached_client(node.url, "admin", cluster[0].admin_password) for node in cluster]
    for _ in range(5):
        project = new_project(cluster_api, "same", storage_quota=3 * MiB)
        data = secrets.token_bytes(2 * MiB)
        repos = [f"{project['name']}/r{i}" for i in range(6)]
        for i, repo in enumerate(repos):
            clients[i % 2].token(f"repository:{repo}:pull,push")

        with ThreadPoolExecutor(len(repos)) as pool:
            responses = list(pool.map(lambda i, repos=repos, data=data: clients[i % 2].push_blob(repos[i], data),
                                      range(len(repos))))

        assert [r.status_code for r in responses] == [201] * len(repos), \
            [r.text for r in responses if r.status_code != 201]
        assert cluster_store.used(project["id"]) == 2 * MiB
        assert recount(cluster_api, project["id"])["drift"] == 0


def alternate(run_episode, check, seconds=8, episodes=150):
    """Run ``run_episode(linked, other)`` (two concurrent halves) until ``check()`` fails or time runs out.

    Answers ``(episodes run, first failure or None)``.
    """
    deadline = time.monotonic() + seconds
    linked = 0
    with ThreadPoolExecutor(2) as pool:
        for episode in range(episodes):
            if time.monotonic() > deadline:
                return episode, None
            first, second = run_episode(pool, linked, 1 - linked)
            first.result()
            second.result()
            linked = 1 - linked
            failure = check()
            if failure:
                return episode + 1, failure
    return episodes, None


@pytest.fixture
def two_repositories(cluster, cluster_api):
    """A fresh project with repositories a and b, a client on each node and a token for both."""
    project = new_project(cluster_api, "flip")
    repos = [f"{project['name']}/a", f"{project['name']}/b"]
    clients = [cached_client(node.url, "admin", cluster[0].admin_password) for node in cluster]
    scopes = [f"repository:{repo}:pull,push,delete" for repo in repos]
    headers = [{"Authorization": f"Bearer {client.token(*scopes)}"} for client in clients]
    return project, repos, clients, headers


def test_a_blob_pushed_to_one_repository_while_deleted_from_another_stays_counted(
        cluster_api, cluster_store, two_repositories):
    """Through two nodes: repository ``other`` pushes the blob while ``linked`` deletes its copy, back and forth.

    After each round exactly one repository links the blob, so the project must count it exactly once.
    """
    project, repos, clients, headers = two_repositories
    data = secrets.token_bytes(64 * 1024)
    digest = sha256(data)

    def push_to(index):
        response = clients[index].request("POST", f"/v2/{repos[index]}/blobs/uploads/", params={"digest": digest},
                                          data=data, headers={**headers[index],
                                                              "Content-Type": "application/octet-stream"})
        assert response.status_code == 201, response.text

    def delete_from(index):
        time.sleep(random.random() * 0.08)
        response = clients[index].request("DELETE", f"/v2/{repos[index]}/blobs/{digest}", headers=headers[index])
        assert response.status_code == 202, response.text

    def check():
        used = cluster_store.used(project["id"])
        return None if used == len(data) else (used, recount(cluster_api, project["id"]))

    push_to(0)
    episodes, failure = alternate(lambda pool, linked, other: (pool.submit(delete_from, linked),
                                                                pool.submit(push_to, other)), check)

    assert failure is None, f"after {episodes} rounds storage_used and recount are {failure}; expected {len(data)}"
    assert episodes > 10


def test_a_manifest_pushed_to_one_repository_while_deleted_from_another_stays_counted(
        cluster_api, cluster_store, two_repositories):
    """The same image manifest: PUT in ``other`` while ``linked`` deletes it, back and forth, through two nodes."""
    project, repos, clients, headers = two_repositories
    config, layer = b'{"os":"linux"}', secrets.token_bytes(4096)
    for index, repo in enumerate(repos):
        for blob in (config, layer):
            assert clients[index].push_blob(repo, blob).status_code == 201
    body = encode(image_manifest({"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                                 [{"mediaType": OCI_LAYER_TAR, "digest": sha256(layer), "size": len(layer)}]))
    expected = len(config) + len(layer) + len(body)

    def put_to(index):
        response = clients[index].request("PUT", f"/v2/{repos[index]}/manifests/v1", data=body,
                                          headers={**headers[index], "Content-Type": OCI_MANIFEST})
        assert response.status_code == 201, response.text

    def delete_from(index):
        time.sleep(random.random() * 0.08)
        response = clients[index].request("DELETE", f"/v2/{repos[index]}/manifests/{sha256(body)}",
                                          headers=headers[index])
        assert response.status_code == 202, response.text

    def check():
        used = cluster_store.used(project["id"])
        return None if used == expected else (used, recount(cluster_api, project["id"]))

    put_to(0)
    episodes, failure = alternate(lambda pool, linked, other: (pool.submit(delete_from, linked),
                                                                pool.submit(put_to, other)), check)

    assert failure is None, f"after {episodes} rounds storage_used and recount are {failure}; expected {expected}"
    assert episodes > 10


def image_blobs_in(client, repo):
    """A config and a layer pushed into ``repo``: image_manifest's ``(config, [layer])`` descriptors."""
    config, layer = b'{"os":"linux"}', secrets.token_bytes(4096)
    for blob in (config, layer):
        assert client.push_blob(repo, blob).status_code == 201
    return ({"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            [{"mediaType": OCI_LAYER_TAR, "digest": sha256(layer), "size": len(layer)}])


def test_a_tag_set_by_a_put_racing_a_delete_never_outlives_its_manifest(cluster_api, two_repositories):
    """Through two nodes, a new manifest PUT with tag ``a`` (then DELETEd by digest at once) and with tag ``b``:
    the PUT that finds it stored by the other one meanwhile sets its tag in a transaction that conflicts with the
    delete, so after every round either the manifest is stored or neither tag names it."""
    _, repos, clients, headers = two_repositories
    repo = repos[0]
    blobs = image_blobs_in(clients[0], repo)

    def put(index, body, tag):
        response = clients[index].request("PUT", f"/v2/{repo}/manifests/{tag}", data=body,
                                          headers={**headers[index], "Content-Type": OCI_MANIFEST})
        assert response.status_code == 201, response.text

    def put_then_delete(body):
        put(0, body, "a")
        response = clients[0].request("DELETE", f"/v2/{repo}/manifests/{sha256(body)}", headers=headers[0])
        assert response.status_code == 202, response.text

    def put_later(body):
        time.sleep(random.random() * 0.02)
        put(1, body, "b")

    def status(reference):
        return clients[0].request("HEAD", f"/v2/{repo}/manifests/{reference}", headers=headers[0]).status_code

    deadline, rounds, dangling = time.monotonic() + 10, 0, []
    with ThreadPoolExecutor(2) as pool:
        while time.monotonic() < deadline and not dangling:
            body = encode(image_manifest(*blobs, annotations={"round": str(rounds)}))
            for running in [pool.submit(put_then_delete, body), pool.submit(put_later, body)]:
                running.result()
            rounds += 1
            if status(sha256(body)) == 404:
                dangling = [tag for tag in ("a", "b") if status(tag) == 200]
            for tag in ("a", "b"):
                clients[0].request("DELETE", f"/v2/{repo}/manifests/{tag}", headers=headers[0])

    assert dangling == [], f"round {rounds}: tags {dangling} name a deleted manifest"
    assert rounds > 10


def test_a_tag_pushed_again_while_its_manifest_is_deleted_never_outlives_it(cluster_api, cluster_store,
                                                                             two_repositories):
    """Through two nodes, a manifest tagged ``a`` is pushed again under ``a`` while it is DELETEd by digest; in
    every other round the tag was set over a second ago (the push writes it again), else just now (the push
    writes nothing of it). After every round either the manifest is stored or ``a`` names nothing."""
    _, repos, clients, headers = two_repositories
    repo = repos[0]
    blobs = image_blobs_in(clients[0], repo)

    def request(index, method, reference, body=None):
        extra = {"Content-Type": OCI_MANIFEST} if body else {}
        return clients[index].request(method, f"/v2/{repo}/manifests/{reference}", data=body,
                                      headers={**headers[index], **extra}).status_code

    def push_again(body):
        time.sleep(random.random() * 0.02)
        return request(1, "PUT", "a", body)

    deadline, rounds, dangling = time.monotonic() + 6, 0, []
    with ThreadPoolExecutor(2) as pool:
        while time.monotonic() < deadline and not dangling:
            body = encode(image_manifest(*blobs, annotations={"round": str(rounds)}))
            assert request(0, "PUT", "a", body) == 201
            if rounds % 2:
                cluster_store["tags"].update_one({"repo": repo, "tag": "a"}, {"$set": {
                    "updated_at": datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=5)}})
            pushed = pool.submit(push_again, body)
            assert request(0, "DELETE", sha256(body)) == 202
            assert pushed.result() == 201
            rounds += 1
            if request(0, "HEAD", sha256(body)) == 404 and request(0, "HEAD", "a") == 200:
                dangling = ["a"]
            request(0, "DELETE", "a")

    assert dangling == [], f"round {rounds}: tag a names a deleted manifest"
    assert rounds > 10
