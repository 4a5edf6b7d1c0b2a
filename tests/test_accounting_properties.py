"""Property: whatever sequence of pushes, mounts, manifests, tag moves, deletes and GC, ``storage_used`` is exact.

A hypothesis state machine drives a grace-0 server with a model of what each of two repositories of one
project links and holds; after every step the project's ``storage_used`` equals the recount's ``actual``
(drift 0) and the size of everything the model says the project references.
"""
import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.support.manifests import OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST, sha256
from tests.support.quota_support import new_project, recount, run_gc

# A small pool per run, so the same blob is pushed again, to the other repository, after a delete, ...
POOL = st.lists(st.binary(min_size=1, max_size=3000), min_size=3, max_size=6, unique=True)
REPO = st.sampled_from([0, 1])
TAG = st.sampled_from(["t1", "t2", "t3"])


def test_storage_used_always_equals_the_recount(gc_api, gc_client, gc_store):
    class Accounting(RuleBasedStateMachine):
        @initialize(pool=POOL)
        def setup(self, pool):
            self.project = new_project(gc_api, "prop")
            self.repos = [f"{self.project['name']}/a", f"{self.project['name']}/b"]
            self.scope_token = gc_client.token(*[f"repository:{r}:pull,push,delete" for r in self.repos])
            self.pool = pool
            self.sizes = {sha256(data): len(data) for data in pool}
            self.links = [set(), set()]        # digests linked to each repository
            self.manifests = [{}, {}]          # digest -> (body, referenced digests) per repository
            self.tags = [{}, {}]               # tag -> digest per repository

        def call(self, method, path, **kwargs):
            headers = {"Authorization": f"Bearer {self.scope_token}", **kwargs.pop("headers", {})}
            return gc_client.request(method, path, headers=headers, **kwargs)

        # -- operations ---------------------------------------------------------------------------

        @rule(repo=REPO, index=st.integers(0, 5))
        def push_blob(self, repo, index):
            data = self.pool[index % len(self.pool)]
            response = self.call("POST", f"/v2/{self.repos[repo]}/blobs/uploads/", params={"digest": sha256(data)},
                                 data=data, headers={"Content-Type": "application/octet-stream"})
            assert response.status_code == 201, response.text
            self.links[repo].add(sha256(data))

        @rule(source=REPO, index=st.integers(0, 5))
        def mount(self, source, index):
            digest = sha256(self.pool[index % len(self.pool)])
            target = 1 - source
            response = self.call("POST", f"/v2/{self.repos[target]}/blobs/uploads/",
                                 params={"mount": digest, "from": self.repos[source]})
            if digest in self.links[source]:
                assert response.status_code == 201, response.text
                self.links[target].add(digest)
            else:
                assert response.status_code == 202, response.text  # falls back to an upload session
                self.call("DELETE", response.headers["Location"])

        def ensure_linked(self, repo, digests):
            """Push (monolithically) the pool blobs ``repo`` does not link yet."""
            for digest in sorted(set(digests) - self.links[repo]):
                data = next(d for d in self.pool if sha256(d) == digest)
                response = self.call("POST", f"/v2/{self.repos[repo]}/blobs/uploads/", params={"digest": digest},
                                     data=data, headers={"Content-Type": "application/octet-stream"})
                assert response.status_code == 201, response.text
                self.links[repo].add(digest)

        def put_manifest(self, repo, tag, body, references):
            response = self.call("PUT", f"/v2/{self.repos[repo]}/manifests/{tag}", data=body,
                                 headers={"Content-Type": OCI_MANIFEST})
            assert response.status_code == 201, response.text
            self.manifests[repo][sha256(body)] = (body, set(references))
            self.tags[repo][tag] = sha256(body)

        @rule(repo=REPO, tag=TAG, data=st.data())
        def push_image(self, repo, tag, data):
            """Push a manifest over pool blobs (pushing those the repository lacks first)."""
            digests = sorted(self.sizes)
            config = data.draw(st.sampled_from(digests), label="config")
            layers = data.draw(st.lists(st.sampled_from(digests), min_size=1, max_size=3, unique=True),
                               label="layers")
            variant = data.draw(st.integers(0, 1), label="variant")
            self.ensure_linked(repo, [config, *layers])
            document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": self.sizes[config]},
                        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": d, "size": self.sizes[d]} for d in layers],
                        "annotations": {"variant": str(variant)}}
            self.put_manifest(repo, tag, json.dumps(document, sort_keys=True).encode(), {config, *layers})

        @precondition(lambda self: any(self.manifests))
        @rule(source=REPO, tag=TAG, data=st.data())
        def copy_image(self, source, tag, data):
            """The same manifest into the other repository, its blobs mounted (or pushed when gone)."""
            if not self.manifests[source]:
                return
            digest = data.draw(st.sampled_from(sorted(self.manifests[source])), label="manifest")
            body, references = self.manifests[source][digest]
            target = 1 - source
            for blob in sorted(references & self.links[source] - self.links[target]):
                response = self.call("POST", f"/v2/{self.repos[target]}/blobs/uploads/",
                                     params={"mount": blob, "from": self.repos[source]})
                assert response.status_code == 201, response.text
                self.links[target].add(blob)
            self.ensure_linked(target, references)
            self.put_manifest(target, tag, body, references)

        @precondition(lambda self: any(self.manifests))
        @rule(repo=REPO, tag=TAG, data=st.data())
        def move_tag(self, repo, tag, data):
            if not self.manifests[repo]:
                return
            digest = data.draw(st.sampled_from(sorted(self.manifests[repo])), label="manifest")
            body, references = self.manifests[repo][digest]
            if not references <= self.links[repo]:
                # A blob it references was deleted meanwhile: the registry refuses the manifest again.
                response = self.call("PUT", f"/v2/{self.repos[repo]}/manifests/{tag}", data=body,
                                     headers={"Content-Type": OCI_MANIFEST})
                assert response.status_code == 400, response.text
                return
            response = self.call("PUT", f"/v2/{self.repos[repo]}/manifests/{tag}", data=body,
                                 headers={"Content-Type": OCI_MANIFEST})
            assert response.status_code == 201, response.text
            self.tags[repo][tag] = digest

        @precondition(lambda self: any(self.manifests))
        @rule(repo=REPO, data=st.data())
        def delete_manifest(self, repo, data):
            if not self.manifests[repo]:
                return
            digest = data.draw(st.sampled_from(sorted(self.manifests[repo])), label="manifest")
            response = self.call("DELETE", f"/v2/{self.repos[repo]}/manifests/{digest}")
            assert response.status_code == 202, response.text
            del self.manifests[repo][digest]
            self.tags[repo] = {t: d for t, d in self.tags[repo].items() if d != digest}

        @precondition(lambda self: any(self.tags))
        @rule(repo=REPO, tag=TAG)
        def delete_tag(self, repo, tag):
            response = self.call("DELETE", f"/v2/{self.repos[repo]}/manifests/{tag}")
            assert response.status_code == (202 if tag in self.tags[repo] else 404), response.text
            self.tags[repo].pop(tag, None)

        @rule(repo=REPO, index=st.integers(0, 5))
        def delete_blob(self, repo, index):
            digest = sha256(self.pool[index % len(self.pool)])
            response = self.call("DELETE", f"/v2/{self.repos[repo]}/blobs/{digest}")
            assert response.status_code == (202 if digest in self.links[repo] else 404), response.text
            self.links[repo].discard(digest)

        def collectable(self):
            """Links no manifest of their repository references: what a grace-0 GC drops."""
            return [self.links[r] - set().union(*(refs for _, refs in self.manifests[r].values())) for r in (0, 1)]

        @precondition(lambda self: any(self.collectable()) or any(self.manifests))
        @rule()
        def gc(self):
            result = run_gc(gc_api)
            assert set(result) == {"unlinked", "deleted_blobs", "freed_bytes"}
            for repo, stale in enumerate(self.collectable()):
                self.links[repo] -= stale

        # -- the property -------------------------------------------------------------------------

        @invariant()
        def usage_is_exact(self):
            if not hasattr(self, "project"):
                return
            counted = {d: self.sizes[d] for repo in (0, 1) for d in self.links[repo]}
            counted.update({d: len(body) for repo in (0, 1) for d, (body, _) in self.manifests[repo].items()})
            expected = sum(counted.values())
            result = recount(gc_api, self.project["id"])
            used = gc_store.used(self.project["id"])
            assert result["drift"] == 0, result
            assert used == result["actual"] == result["recorded"], (used, result)
            assert used == expected, (used, expected, counted, gc_store.counted(self.project["id"]))
            assert gc_store.counted(self.project["id"]) == counted

    run_state_machine_as_test(Accounting, settings=settings(
        max_examples=15, stateful_step_count=15, deadline=None, derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
