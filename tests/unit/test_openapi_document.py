"""The OpenAPI document of /api/v1 (apidoc/) against what the server serves and validates: every route of the
route table and every method it answers is documented (and nothing else is), request bodies are the server's
own schema files, and docs/api.md is the document's rendering, never a hand-kept copy."""
import json
import re
from pathlib import Path

import pytest
import tornado.web
from openapi_spec_validator import validate

from apidoc.document import SCHEMA_DIR, build_document, component_name
from apidoc.markdown import render
from apidoc.operations import OPERATIONS
from handlers import ROUTES
from handlers.api.base import ApiFallbackHandler
from services.access import SCOPE_FOR_ACTION
from services.imports import STATUSES as IMPORT_STATUSES
from services.webhooks import DELIVERY_STATUSES, EVENT_TYPES

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def implemented_methods(handler):
    return {method for method in METHODS
            if getattr(handler, method) is not getattr(tornado.web.RequestHandler, method)}


def template_of(pattern):
    """A route's regular expression as an OpenAPI path template (``(?P<pat_id>[^/]+)`` → ``{pat_id}``)."""
    template = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
    return template.replace("(?:/.*)?", "").replace("\\.", ".")


API_ROUTES = [(pattern, handler) for pattern, handler in ROUTES
              if pattern.startswith("/api/v1/") and handler is not ApiFallbackHandler]


@pytest.fixture(scope="module")
def document():
    return build_document()


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"] == "3.1.0"


@pytest.mark.parametrize("pattern, handler", API_ROUTES, ids=[pattern for pattern, _ in API_ROUTES])
def test_every_route_and_method_it_answers_is_documented(document, pattern, handler):
    path = template_of(pattern)
    assert path in document["paths"], (
        f"{pattern} ({handler.__name__}) is not in the OpenAPI document: declare its operations in "
        "apidoc/operations.py, then regenerate docs/api.md (python server.py openapi --markdown > docs/api.md)")
    documented = set(document["paths"][path])
    missing = implemented_methods(handler) - documented
    assert not missing, f"{sorted(missing)} of {path} undocumented: declare them in apidoc/operations.py"


def test_every_documented_operation_is_served(document):
    served = {template_of(pattern): handler for pattern, handler in API_ROUTES}
    for path, operations in document["paths"].items():
        assert path in served, f"{path} is documented but no route serves it"
        implemented = implemented_methods(served[path])
        # A handler that implements no method answers every one from prepare() (the retired members API).
        assert not implemented or set(operations) <= implemented, (path, sorted(operations), sorted(implemented))


def test_operation_ids_are_unique():
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))


def test_links_name_operations_that_exist(document):
    ids = {op["operationId"] for operations in document["paths"].values() for op in operations.values()}
    for op in OPERATIONS:
        for target, _ in op.links.values():
            assert target in ids, (op.operation_id, target)


def test_request_bodies_are_the_schemas_the_server_validates_with(document):
    """One source: the component of each body is its file in schemas/api/, as the validator reads it."""
    bodies = [op for op in OPERATIONS if op.request]
    assert bodies
    for op in bodies:
        on_disk = json.loads((SCHEMA_DIR / f"{op.request}.json").read_text())
        on_disk.pop("$schema")
        assert document["components"]["schemas"][component_name(op.request, True)] == on_disk
        media = document["paths"][op.path][op.method.lower()]["requestBody"]["content"]["application/json"]
        assert media["schema"] == {"$ref": f"#/components/schemas/{component_name(op.request, True)}"}


def test_every_request_schema_file_is_used_by_some_operation():
    used = {op.request for op in OPERATIONS if op.request}
    assert {path.stem for path in SCHEMA_DIR.glob("*.json")} == used


def test_error_answers_are_the_envelope_with_a_code_of_their_status(document):
    for operations in document["paths"].values():
        for op in operations.values():
            for status, response in op["responses"].items():
                if status != "200":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": f"#/components/schemas/Error{status}"}, (op["operationId"], status)


def test_answer_schemas_name_the_servers_own_constants(document):
    schemas = document["components"]["schemas"]
    assert schemas["EventType"]["enum"] == list(EVENT_TYPES)
    assert schemas["Webhook"]["properties"]["events"]["items"]["enum"] == list(EVENT_TYPES)
    assert schemas["Delivery"]["properties"]["event_type"]["enum"] == list(EVENT_TYPES)
    assert schemas["Delivery"]["properties"]["status"]["enum"] == list(DELIVERY_STATUSES)
    assert schemas["ImportTask"]["properties"]["status"]["enum"] == list(IMPORT_STATUSES)
    assert sorted(schemas["PayloadSchemas"]["required"]) == sorted(EVENT_TYPES)
    scopes = set(schemas["Pat"]["properties"]["scopes"]["items"]["enum"])
    assert scopes == set(schemas["PatCreateRequest"]["properties"]["scopes"]["items"]["enum"])
    assert set(SCOPE_FOR_ACTION.values()) <= scopes


def test_docs_api_md_is_the_documents_rendering(document):
    generated = render(document)
    assert (ROOT / "docs" / "api.md").read_text() == generated, (
        "docs/api.md differs from the document: run python server.py openapi --markdown > docs/api.md")
