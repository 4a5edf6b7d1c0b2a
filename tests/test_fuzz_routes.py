"""Every route under hostile input: whatever the method, path, query, headers and body, the answer is a
4xx (or a success), never a 5xx, never a hang, and a refusal leaves no stored state behind.

Hypothesis draws requests for each route of the one route table against a server of this module's own.
"""
import base64
import json
import re

import pymongo
import pytest
import requests
import tornado.web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import ROUTES
from tests.support.api_client import Api, ok
from tests.support.manifests import push_image
from tests.support.processes import RegistryServer
from tests.support.quota_support import gc_lease
from tests.support.registry_client import RegistryClient

EXAMPLES_PER_ROUTE = 50
# Bookkeeping that a refusal is meant to write: failed-login counters, the audit log's record of it, and the rate
# limits' request counters.
REFUSAL_BOOKKEEPING = {"login_attempts", "audit_logs", "rate_limits"}


@pytest.fixture(scope="module")
def target(mongo, tmp_path_factory):
    server = RegistryServer(mongo.uri, tmp_path_factory.mktemp("fuzz"), env={"CYP_TRUST_PROXY_HEADERS": "true"})
    server.start()
    admin = Api(server.url).session("admin", server.admin_password)
    project = ok(admin.post("/api/v1/projects", json={"name": "fuzz"}))
    client = RegistryClient(server.url, "admin", server.admin_password)
    image = push_image(client, "fuzz/app", "latest")
    registry_token = client.token("repository:fuzz/app:pull,push,delete", "registry:catalog:*")
    me = ok(admin.get("/api/v1/users/me"))
    db = pymongo.MongoClient(mongo.uri)[server.db_name]
    gc_lease(db["meta"])  # made by the collector's first look, which must not land in the first route's examples
    yield {"server": server, "db": db, "api_token": admin.token, "registry_token": registry_token,
           "digest": image.digest, "layer": list(image.blobs)[1], "project_id": project["id"], "user_id": me["id"]}
    db.client.close()
    server.stop()


# Each worker's journal mark (storage/mongo.py JOURNAL_MARK) is made by its first transaction, which may be
# background work's while a refused request is in flight: not the refusal's state.
NOT_THE_REQUESTS = {"meta": {"_id": {"$not": {"$regex": "^journal-mark:"}}}}


def state(db):
    return {name: db[name].count_documents(NOT_THE_REQUESTS.get(name, {})) for name in db.list_collection_names()
            if name not in REFUSAL_BOOKKEEPING}


TEXT = st.text(max_size=40)
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
DIGESTS = st.sampled_from(["sha256:" + "0" * 64, "sha512:" + "1" * 128, "sha256:BAD", "md5:abc", "sha256:"])
NUMBERS = st.sampled_from(["", "0", "1", "-1", "²", "9" * 5000, "9223372036854775808", "1e3", "NaN", " 5"])


def mostly(usual, other):
    """``usual`` seven times in ten: hostile values reach deep only when the rest of the request is valid."""
    return st.integers(0, 9).flatmap(lambda roll: usual if roll < 7 else other)


def group_values(name, facts):
    usual, other = {
        "name": (["fuzz/app"], ["fuzz/missing", "nope/app", "../../etc/passwd", "a" * 300, "FUZZ/APP", "fuzz//app"]),
        "reference": (["latest", facts["digest"]], ["v" * 129, "-tag"]),
        "digest": ([facts["digest"], facts["layer"]], []),
        "upload_id": (["00000000-0000-0000-0000-000000000000"], []),
        "project_id": ([facts["project_id"], "fuzz"], ["statistics"]),
        "user_id": ([facts["user_id"]], []),
        "pat_id": (["0" * 32], []),
    }.get(name, (["x"], []))
    return mostly(st.sampled_from(usual),
                  st.one_of(st.sampled_from(other or usual), TEXT.filter(lambda s: "/" not in s), DIGESTS))


def path_strategy(pattern, facts):
    """A path matching the route's pattern, its named groups drawn from known and hostile values."""
    parts = re.split(r"(\(\?P<\w+>[^)]*\)|\(\?:/\.\*\)\?|\.\*|/\?)", pattern)
    pieces = []
    for part in parts:
        group = re.fullmatch(r"\(\?P<(\w+)>[^)]*\)", part)
        if group:
            pieces.append(group_values(group.group(1), facts))
        elif part in ("(?:/.*)?", ".*"):
            pieces.append(st.sampled_from(["", "/x", "/a/b", "/%00", "/..%2F.."]))
        elif part == "/?":
            pieces.append(st.sampled_from(["", "/"]))
        else:
            pieces.append(st.just(part))
    return st.tuples(*pieces).map("".join)


def auth_values(pattern, facts):
    valid = facts["registry_token"] if pattern.startswith(("/v2", "/auth")) else facts["api_token"]
    return mostly(st.just(f"Bearer {valid}"), st.sampled_from([
        None, f"Bearer {facts['api_token']}", f"Bearer {facts['registry_token']}", "Bearer not-a-token",
        "Bearer cyp_made-up", "Basic !!!", "Basic " + base64.b64encode(b"admin:wrong").decode(), "Negotiate x",
        "Basic " + base64.b64encode(f"admin:{facts['server'].admin_password}".encode()).decode(),
    ]))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)
FIELDS = ["name", "password", "username", "storage_quota", "scopes", "expires_at", "description", "is_public",
          "refresh_token", "email", "old_password", "new_password", "is_admin", "disabled", "display_name"]
BODIES = st.one_of(
    st.none(),
    st.binary(max_size=2048),
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5).map(lambda fields: json.dumps(fields).encode()),
    st.sampled_from([b"[" * 5000 + b"]" * 5000, b'{"name": "\\ud800"}', b"\xff\xfe", b'{"storage_quota": 1e400}']),
)
HEADER_VALUES = {
    "Content-Type": st.sampled_from(["application/json", "application/octet-stream", "text/plain; charset=x",
                                     "application/vnd.oci.image.manifest.v1+json", ""]),
    "Range": st.sampled_from(["bytes=0-1", "bytes=-5", "bytes=9-1", "bytes=" + "9" * 5000 + "-", "items=1-2"]),
    "Content-Range": st.sampled_from(["0-0", "5-1", "0-" + "9" * 5000, "bytes */*", "x"]),
    "Accept": st.sampled_from(["*/*", "application/vnd.oci.image.index.v1+json", ""]),
    "X-Request-Id": HEADER_TEXT,
}


def methods_of(handler):
    own = [method for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
           if getattr(handler, method.lower()) is not getattr(tornado.web.RequestHandler, method.lower())]
    return own or ["GET"]


QUERY_KEYS = {"tags/list": ["n", "last"], "_catalog": ["n", "last"], "uploads": ["digest", "mount", "from"],
              "manifests": ["tag"], "/api/": ["page", "page_size", "search", "is_public", "force", "fix"],
              "/auth/token": ["scope", "service", "account"]}
ANY_KEYS = sorted({key for keys in QUERY_KEYS.values() for key in keys})


def query_strategy(pattern):
    keys = next((keys for marker, keys in QUERY_KEYS.items() if marker in pattern), ANY_KEYS)
    return st.dictionaries(mostly(st.sampled_from(keys), st.sampled_from(ANY_KEYS)),
                           mostly(NUMBERS, st.one_of(TEXT, DIGESTS)), max_size=3)


def request_strategy(pattern, handler, facts):
    query = query_strategy(pattern)
    headers = st.fixed_dictionaries({}, optional=HEADER_VALUES)
    return st.fixed_dictionaries({
        "method": mostly(st.sampled_from(methods_of(handler)),
                         st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])),
        "path": path_strategy(pattern, facts), "params": query, "headers": headers,
        "authorization": auth_values(pattern, facts), "body": BODIES,
    })


@pytest.mark.parametrize("pattern, handler", ROUTES, ids=[route[0] for route in ROUTES])
def test_no_route_answers_5xx_hangs_or_keeps_state_after_a_refusal(target, pattern, handler):
    facts = target

    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(request=request_strategy(pattern, handler, facts))
    def check(request):
        headers = {key: value for key, value in request["headers"].items() if value is not None}
        if request["authorization"]:
            headers["Authorization"] = request["authorization"]
        before = state(facts["db"])
        try:
            response = requests.request(request["method"], facts["server"].url + request["path"],
                                        params=request["params"], headers=headers, data=request["body"],
                                        timeout=15, allow_redirects=False)
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader):
            return  # the client itself refuses to send it
        assert response.status_code < 500, (request, response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert state(facts["db"]) == before, (request, response.status_code, response.text[:300])

    check()
