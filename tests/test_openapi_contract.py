"""The OpenAPI document against a live server: schemathesis draws requests for every operation of the document
the server serves (GET /api/v1/openapi.json), valid and invalid, sends them as the administrator and fails on
any 5xx, any status, content type, header or body the document does not declare, and any invalid input the
server accepts; then walks the document's links (create → read → update → delete of projects, users, PATs,
webhooks, import tasks) as a state machine.

The server is this module's own, on a fresh database, so random input disturbs no other test. Nothing leaves
the machine: every URL and image reference drawn is pointed at a closed loopback port, imports never start
(``import_max_running_per_node`` 0) and a webhook's one attempt is refused at once.
"""
import base64
import hashlib
import itertools
import json
import re
import subprocess
import sys

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation

from apidoc.document import build_document
from tests.support.api_client import ok, strong_password
from tests.support.manifests import (
    OCI_INDEX,
    encode,
    image_blobs,
    image_manifest,
    index_manifest,
    push_artifact,
    push_image,
    put_manifest,
    sha256,
)
from tests.support.processes import ROOT, free_port, started_server
from tests.support.projects import api_login
from tests.support.registry_client import RegistryClient

EXAMPLES_PER_OPERATION = 25
STATEFUL_SCENARIOS = 25
STATEFUL_STEPS = 10
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
          "use_after_free", "ensure_resource_availability", "ignored_auth")
SEED = {"project_id": "seed", "repository": "app", "tag": "v1"}
LOGOUT_USER = {"username": "logout-only", "password": strong_password()}
_project_numbers = itertools.count(1)
_addresses = (f"10.0.{n // 250}.{n % 250 + 1}" for n in itertools.count())
# Where every outbound destination drawn is sent instead: loopback (admitted below), nothing listening.
CLOSED_PORT = free_port()
CONTRACT_ENV = {
    # Wrong passwords lock their user and address at once (429), instead of answering ever more slowly first;
    # the sessions logout ends come from addresses of their own (below).
    "CYP_LOGIN_MAX_FAILURES": "1",
    "CYP_TRUST_PROXY_HEADERS": "true",
    "CYP_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32",
    "CYP_IMPORT_MAX_RUNNING_PER_NODE": "0",
    "CYP_WEBHOOK_RETRY_SCHEDULE": "0",
    "CYP_WEBHOOK_TIMEOUT_SECONDS": "2",
}


@pytest.fixture(scope="module")
def contract_server(mongo, tmp_path_factory):
    with started_server(mongo, tmp_path_factory.mktemp("contract"), env=CONTRACT_ENV) as server:
        yield server


@pytest.fixture(scope="module")
def contract_schema(contract_server):
    token = api_login(contract_server.url, "admin", contract_server.admin_password)
    admin = {"Authorization": f"Bearer {token}"}
    ok(requests.post(f"{contract_server.url}/api/v1/users", json=LOGOUT_USER, headers=admin, timeout=30))
    seed_project(contract_server, admin)
    checks = {name: {"enabled": name in CHECKS} for name in (
        *CHECKS, "positive_data_acceptance", "missing_required_header", "unsupported_method",
    )}
    # A refusal of a body over its limit is 413, of the retired members API 410: both a rejection.
    checks["negative_data_rejection"]["expected-statuses"] = ["400", "401", "403", "404", "405", "409", "410",
                                                               "413", "429"]
    config = schemathesis.Config.from_dict({
        "base-url": contract_server.url,
        "headers": {"Authorization": f"Bearer {token}"},
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "database": "none",
                       "with-security-parameters": False},
        "checks": checks,
    })
    return schemathesis.openapi.from_url(f"{contract_server.url}/api/v1/openapi.json", config=config)


def seed_project(server, admin):
    """Project ``seed`` holding an image (tagged v1, with a referrer) and an index (tagged multi), so operations
    on repositories and tags answer real ones too, not only 404."""
    ok(requests.post(f"{server.url}/api/v1/projects", json={"name": SEED["project_id"], "is_public": True},
                     headers=admin, timeout=30))
    client = RegistryClient(server.url, "admin", server.admin_password)
    repo = f"{SEED['project_id']}/{SEED['repository']}"
    image = push_image(client, repo, "v1")
    push_artifact(client, repo, subject=image.descriptor, annotations={"org.example": "sbom"})
    children = []
    for platform in ({"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm", "variant": "v7"}):
        config, layers = image_blobs(client, repo)
        body = encode(image_manifest(config, layers))
        children.append({**put_manifest(client, repo, sha256(body), body).descriptor, "platform": platform})
    put_manifest(client, repo, "multi", index_manifest(children), OCI_INDEX)


def adjust(case):
    """In a valid body, a webhook URL or an image to import names a closed loopback port instead, and a project
    name is one of the name grammar (services/names.py, which the schema leaves to the server), so projects get
    created and their links walked."""
    body_info = case.meta.components.get(ParameterLocation.BODY) if case.meta else None
    # An invalid body is refused by its schema before anything is resolved, and must stay invalid.
    if isinstance(case.body, dict) and (body_info is None or body_info.mode == GenerationMode.POSITIVE):
        if isinstance(case.body.get("url"), str):
            case.body["url"] = f"http://127.0.0.1:{CLOSED_PORT}/hook"
        if isinstance(case.body.get("image"), str):
            case.body["image"] = f"127.0.0.1:{CLOSED_PORT}/contract/app:v1"
        if case.operation.path == "/api/v1/projects" and isinstance(case.body.get("name"), str):
            case.body["name"] = f"contract{next(_project_numbers)}"


def own_session(case, server):
    """Logout ends the session it is sent with: it gets a session of its own (of a user whose logins never fail,
    from an address of its own), so the run's token stays valid."""
    if case.operation.method.upper() == "POST" and case.operation.path == "/api/v1/auth/logout":
        response = requests.post(f"{server.url}/api/v1/auth/login", json=LOGOUT_USER, timeout=30,
                                 headers={"X-Real-Ip": next(_addresses)})
        return {"Authorization": f"Bearer {ok(response)['access_token']}"}
    return None


OPERATIONS = [(path, method.upper()) for path, methods in build_document()["paths"].items() for method in methods]


@pytest.mark.parametrize("path, method", OPERATIONS, ids=[f"{method} {path}" for path, method in OPERATIONS])
def test_every_operation_answers_as_documented(contract_schema, contract_server, path, method):
    operation = contract_schema[path][method]
    strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    names = set(re.findall(r"\{(\w+)\}", path))
    # Reads and changes of what the seed project holds (its deletes would leave later operations nothing).
    if names and names <= set(SEED) and method != "DELETE":
        strategies += [operation.as_strategy(mode, path_parameters={name: SEED[name] if name != "tag" else tag
                                                                    for name in names})
                       for mode in GenerationMode for tag in ("v1", "multi")]
    drawn = st.one_of(strategies)

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=drawn)
    def check(case):
        adjust(case)
        case.call_and_validate(headers=own_session(case, contract_server))

    check()


def test_created_resources_are_read_changed_and_deleted_through_the_documents_links(contract_schema,
                                                                                  contract_server):
    failures, calls = [], []

    class Links(contract_schema.as_state_machine()):
        def before_call(self, case):
            adjust(case)
            calls.append(case.operation.label)

        def get_call_kwargs(self, case):
            headers = own_session(case, contract_server)
            return {"headers": headers} if headers else {}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            """Failures are collected, not raised: hypothesis would replay the scenario to report it, and which
            links a step may follow depends on what the server answered before, which no replay reproduces."""
            try:
                super().validate_response(response, case, additional_checks, **kwargs)
            except FailureGroup as group:
                failures.append(f"{case.operation.label}: {group.exceptions[0]}")

    for _ in range(3):
        try:
            Links.run(settings=settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS,
                                        deadline=None, suppress_health_check=list(HealthCheck), database=None,
                                        phases=[Phase.generate]))
            break
        except Flaky:  # the same draws met other answers (see above): the scenarios run so far stand
            continue
    assert not failures, "\n\n".join(failures[:5])
    assert len(calls) >= STATEFUL_SCENARIOS, calls


def test_the_served_document_is_the_built_one_and_public(contract_server):
    response = requests.get(f"{contract_server.url}/api/v1/openapi.json", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == build_document()


def test_the_reference_page_is_html_rendered_on_the_server_with_nothing_from_elsewhere(contract_server):
    response = requests.get(f"{contract_server.url}/api/v1/docs", timeout=30)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none';")
    page = response.text
    assert "<script" not in page and " src=" not in page and "<link" not in page
    links = set(re.findall(r'href="([^"]*)"', page))
    assert links and all(link.startswith("#") for link in links), links
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert {link[1:] for link in links} <= set(ids)
    [style] = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert f"'sha256-{base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()}'" in policy
    assert '<h3 id="post-apiv1projects"><code>POST /api/v1/projects</code></h3>' in page


def test_the_openapi_command_prints_the_document_and_docs_api_md():
    printed = subprocess.run([sys.executable, "server.py", "openapi"], cwd=ROOT, capture_output=True, check=True)
    assert json.loads(printed.stdout) == build_document()
    markdown = subprocess.run([sys.executable, "server.py", "openapi", "--markdown"], cwd=ROOT, capture_output=True,
                              check=True)
    assert markdown.stdout.decode() == (ROOT / "docs" / "api.md").read_text()
