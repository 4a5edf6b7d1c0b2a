"""Rate limits: requests per user (per address for anonymous callers) in fixed windows, shared by every node
through the database: /api/v1 answers 429 with the envelope (30004) and Retry-After, /v2/ and /auth/token
TOOMANYREQUESTS; health and metrics are never limited; the defaults let a burst of the suite's kind through.

The servers here count in windows of an hour (a test first makes sure the hour has room left) with small
limits, and share their counts every 0.2 s; each test calls from addresses (X-Real-Ip) of its own. The last
tests drive one process's limiter in-process, on the session's database."""
import asyncio
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from services.errors import RateLimited
from services.rate_limits import RateLimiter
from storage.mongo import create_client
from storage.rate_limits import RateCounters
from tests.support.api_client import Api, admin_api_for, b64url, create_user, fresh_address, ok, refused, unique_name
from tests.support.processes import free_port, started_server
from tests.support.registry_client import RegistryClient
from tests.test_metrics import samples, value

WINDOW = 3600
PER_USER = 25
PER_ADDRESS = 10
SYNC = 0.2
# Long enough for every server to have shared its counts at least twice, also on a busy machine.
SHARED = 1.5
LIMITED_ENV = {"CYP_TRUST_PROXY_HEADERS": "true", "CYP_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW),
               "CYP_RATE_LIMIT_PER_USER": str(PER_USER), "CYP_RATE_LIMIT_PER_ADDRESS": str(PER_ADDRESS),
               "CYP_RATE_LIMIT_SYNC_SECONDS": str(SYNC)}
SHORT_WINDOW = 3
SHORT_PER_ADDRESS = 3


def room_in_window(window=WINDOW, needed=20):
    """Wait for the next window when the current one ends within ``needed`` seconds (windows start at multiples
    of their length since the epoch), so a test's requests all count in one window."""
    left = window - time.time() % window
    if left < needed:
        time.sleep(left + 0.05)


def seconds_left(window=WINDOW):
    return window - time.time() % window


@pytest.fixture(scope="module")
def limited(mongo, tmp_path_factory):
    with started_server(mongo, tmp_path_factory.mktemp("limited"), env=LIMITED_ENV) as server:
        yield server


@pytest.fixture(scope="module")
def peer(mongo, limited, tmp_path_factory):
    """Another node of the same registry: a second server on the same database."""
    with started_server(mongo, tmp_path_factory.mktemp("peer"), env=LIMITED_ENV, db_name=limited.db_name) as server:
        yield server


@pytest.fixture(scope="module")
def limited_admin(limited):
    return admin_api_for(limited)


@pytest.fixture
def limited_user(limited_admin):
    """A user of the limited server, logged in from an address of its own."""
    return create_user(limited_admin, address=fresh_address())


def registry_refused(response):
    """A /v2/ TOOMANYREQUESTS answer; answers its Retry-After in seconds."""
    assert response.status_code == 429, (response.status_code, response.text)
    assert [error["code"] for error in response.json()["errors"]] == ["TOOMANYREQUESTS"], response.text
    return int(response.headers["Retry-After"])


def exhaust(call, limit, status):
    """Make ``limit`` calls, each answered ``status``, the next one refused; answers that refusal."""
    for _ in range(limit):
        response = call()
        assert response.status_code == status, (response.status_code, response.text)
    return call()


def test_api_v1_refuses_a_user_past_its_limit_with_the_envelope_and_retry_after(limited_user):
    room_in_window()

    response = exhaust(lambda: limited_user.api.get("/api/v1/users/me"), PER_USER, 200)

    assert "too many requests" in refused(response, 30004)
    assert abs(int(response.headers["Retry-After"]) - seconds_left()) <= 2


def test_v2_and_the_token_endpoint_answer_toomanyrequests_past_a_users_limit(limited, limited_user):
    client = RegistryClient(limited.url, limited_user.username, limited_user.password, address=fresh_address())
    room_in_window()
    token = client.token()  # the token request is the user's first of the window

    response = exhaust(lambda: client.request("GET", "/v2/", headers={"Authorization": f"Bearer {token}"}),
                       PER_USER - 1, 200)

    assert abs(registry_refused(response) - seconds_left()) <= 2
    assert registry_refused(client.token_response()) > 0


def test_a_users_requests_count_against_one_budget_across_the_apis(limited, limited_user):
    client = RegistryClient(limited.url, limited_user.username, limited_user.password, address=fresh_address())
    room_in_window()
    token = client.token()
    for _ in range(PER_USER // 2):
        ok(limited_user.api.get("/api/v1/users/me"))

    response = exhaust(lambda: client.request("GET", "/v2/", headers={"Authorization": f"Bearer {token}"}),
                       PER_USER - 1 - PER_USER // 2, 200)

    registry_refused(response)
    refused(limited_user.api.get("/api/v1/users/me"), 30004)


def test_a_user_over_its_limit_leaves_other_users_alone(limited_admin):
    one = create_user(limited_admin, address=fresh_address())
    other = create_user(limited_admin, address=fresh_address())
    room_in_window()

    refused(exhaust(lambda: one.api.get("/api/v1/users/me"), PER_USER, 200), 30004)

    ok(other.api.get("/api/v1/users/me"))


def test_anonymous_callers_are_limited_per_address(limited, limited_user):
    address = fresh_address()
    room_in_window()

    registry_refused(exhaust(lambda: RegistryClient(limited.url, address=address).request("GET", "/v2/"),
                             PER_ADDRESS, 401))

    refused(Api(limited.url, address=address).login_response(limited_user.username, limited_user.password), 30004)
    assert RegistryClient(limited.url, address=fresh_address()).request("GET", "/v2/").status_code == 401
    # A user calling from that address counts as the user.
    ok(Api(limited.url, limited_user.api.token, address).get("/api/v1/users/me"))


def test_refused_credentials_count_against_the_address_never_the_user_they_name(limited, limited_user):
    # A token claiming the user, with a signature of nobody's: refused, so it spends the caller's address budget.
    forged = ".".join([b64url({"alg": "HS256", "typ": "JWT"}),
                       b64url({"sub": limited_user.id, "sid": "x", "typ": "access", "aud": "cyp-api",
                               "exp": int(time.time()) + 600}), b64url(b"not a signature")])
    attacker = Api(limited.url, forged, fresh_address())
    room_in_window()

    response = exhaust(lambda: attacker.get("/api/v1/users/me"), PER_ADDRESS, 401)

    refused(response, 30004)
    for _ in range(PER_USER):
        ok(limited_user.api.get("/api/v1/users/me"))


def registry_message(response):
    return response.json()["errors"][0]["message"]


def test_refused_token_requests_count_against_the_address(limited):
    address = fresh_address()
    room_in_window()

    # Names of nobody, so no user's failed-login lock answers first (the address's comes after 20 failures).
    response = exhaust(lambda: RegistryClient(limited.url, unique_name("nobody"), "wrong-password",
                                              address).token_response(), PER_ADDRESS, 401)

    registry_refused(response)
    assert registry_message(response).startswith("too many requests")


def test_unreadable_token_credentials_count_against_the_address(limited):
    headers = {"Authorization": "Basic not-base64!", "X-Real-Ip": fresh_address()}
    room_in_window()

    response = exhaust(lambda: requests.get(f"{limited.url}/auth/token", headers=headers, timeout=10), PER_ADDRESS, 401)

    registry_refused(response)


@pytest.mark.parametrize("path, status", [("/v2/Not_A/Valid-Name/tags/list", 400), ("/v2/no-such-endpoint", 404)])
def test_v2_requests_refused_for_their_path_count_against_the_address(limited, path, status):
    client = RegistryClient(limited.url, address=fresh_address())
    room_in_window()

    registry_refused(exhaust(lambda: client.request("GET", path), PER_ADDRESS, status))


def test_api_v1_bodies_refused_for_their_announced_size_count_against_the_address(limited):
    anonymous = Api(limited.url, address=fresh_address())
    body = b"x" * (256 * 1024 + 1)
    room_in_window()

    response = exhaust(lambda: anonymous.post("/api/v1/auth/login", data=body,
                                              headers={"Content-Type": "application/json"}), PER_ADDRESS, 413)

    refused(response, 30004)


def test_health_and_metrics_are_never_limited(limited):
    address = fresh_address()
    room_in_window()
    registry_refused(exhaust(lambda: RegistryClient(limited.url, address=address).request("GET", "/v2/"),
                             PER_ADDRESS, 401))

    for path in ("/health", "/api/health", "/metrics"):
        assert requests.get(f"{limited.url}{path}", headers={"X-Real-Ip": address}, timeout=10).status_code == 200


def test_refusals_are_counted_in_the_metrics_by_api_and_caller(limited, limited_user):
    address = fresh_address()
    room_in_window()
    registry_refused(exhaust(lambda: RegistryClient(limited.url, address=address).request("GET", "/v2/"),
                             PER_ADDRESS, 401))
    before = samples(limited.url)

    registry_refused(RegistryClient(limited.url, address=address).request("GET", "/v2/"))
    refused(Api(limited.url, address=address).get("/api/v1/projects"), 30004)
    after = samples(limited.url)

    for api in ("v2", "api"):
        labels = {"api": api, "caller": "address"}
        assert value(after, "cyp_rate_limited_requests_total", **labels) - \
            value(before, "cyp_rate_limited_requests_total", **labels) == 1


def test_a_user_at_the_limit_on_one_server_is_refused_by_the_other(limited, peer, limited_user):
    at_peer = Api(peer.url, limited_user.api.token, fresh_address())
    room_in_window()
    for _ in range(PER_USER):
        ok(limited_user.api.get("/api/v1/users/me"))
    time.sleep(SHARED)

    refused(at_peer.get("/api/v1/users/me"), 30004)


def test_two_servers_on_one_database_admit_one_limit_between_them(limited, peer, limited_user):
    at_peer = Api(peer.url, limited_user.api.token, fresh_address())
    first = PER_USER - 5
    room_in_window()
    for _ in range(first):
        ok(limited_user.api.get("/api/v1/users/me"))
    time.sleep(SHARED)
    # The peer has not counted this user yet: it admits until its next sync tells it the total (the slack).
    ok(at_peer.get("/api/v1/users/me"))
    time.sleep(SHARED)

    refused(exhaust(lambda: at_peer.get("/api/v1/users/me"), PER_USER - first - 1, 200), 30004)
    time.sleep(SHARED)
    refused(limited_user.api.get("/api/v1/users/me"), 30004)


@pytest.fixture(scope="module")
def short_windows(mongo, tmp_path_factory):
    with started_server(mongo, tmp_path_factory.mktemp("short-windows"), env={
            "CYP_RATE_LIMIT_WINDOW_SECONDS": str(SHORT_WINDOW), "CYP_RATE_LIMIT_PER_ADDRESS": str(SHORT_PER_ADDRESS),
            "CYP_RATE_LIMIT_SYNC_SECONDS": str(SYNC)}) as server:
        yield server


def test_a_new_window_admits_again(short_windows):
    anonymous = RegistryClient(short_windows.url)
    room_in_window(SHORT_WINDOW, needed=SHORT_WINDOW)  # start at the beginning of a window

    retry_after = registry_refused(exhaust(lambda: anonymous.request("GET", "/v2/"), SHORT_PER_ADDRESS, 401))
    assert 1 <= retry_after <= SHORT_WINDOW
    time.sleep(seconds_left(SHORT_WINDOW) + 0.05)

    assert anonymous.request("GET", "/v2/").status_code == 401


def test_the_default_limits_let_a_burst_like_the_suites_through(registry, admin):
    token = admin.token()
    calls = [{}] * 400 + [{"Authorization": f"Bearer {token}"}] * 400

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda headers: requests.get(f"{registry.url}/v2/", headers=headers,
                                                              timeout=30).status_code, calls))

    assert statuses.count(401) == 400 and statuses.count(200) == 400, set(statuses)


# -- one process's limiter, in-process --------------------------------------------------------------

CALLER = {"_id": "in-process-user"}


def one_process(counters, per_user):
    return RateLimiter(counters, {"rate_limit_window_seconds": WINDOW, "rate_limit_per_user": per_user,
                                  "rate_limit_per_address": 0, "rate_limit_sync_seconds": SYNC})


@pytest.fixture
async def counters(mongo):
    client = create_client(mongo.uri)
    name = f"rate_limits_{secrets.token_hex(4)}"
    counters = RateCounters(client[name])
    await counters.ensure_indexes()
    yield counters
    await client.drop_database(name)
    await client.close()


async def test_counts_on_their_way_to_the_database_still_count(counters):
    limiter = one_process(counters, 3)
    room_in_window()
    for _ in range(2):
        limiter.admit(CALLER, "10.0.0.1", "api")
    syncing = asyncio.create_task(limiter.sync())
    await asyncio.sleep(0)  # the sync has taken the two counts and waits for the database

    limiter.admit(CALLER, "10.0.0.1", "api")
    with pytest.raises(RateLimited):
        limiter.admit(CALLER, "10.0.0.1", "api")
    await syncing


async def test_without_the_database_a_process_still_limits_alone():
    client = create_client(f"mongodb://127.0.0.1:{free_port()}/")  # nothing listens there
    limiter = one_process(RateCounters(client["unreachable"]), 3)
    room_in_window()
    for _ in range(2):
        limiter.admit(CALLER, "10.0.0.1", "api")

    await limiter.sync()  # cannot share its counts: keeps them

    limiter.admit(CALLER, "10.0.0.1", "api")
    with pytest.raises(RateLimited):
        limiter.admit(CALLER, "10.0.0.1", "api")
    await client.close()
