"""The OpenAPI 3.1 document of /api/v1, built from the operations table (apidoc/operations.py), the prose
(apidoc/prose.py), the error table (handlers/api/errors.py) and the JSON Schema files: request bodies from
schemas/api/*.json (what the server validates with), answers from schemas/api/responses/*.json. The files
are embedded as components, their relative ``$ref``s (``user.json``) turned into component references."""
import copy
import functools
import json
import re
from pathlib import Path

from apidoc import prose
from apidoc.operations import OPERATIONS, PATH_PARAMETERS, QUERY_PARAMETERS
from handlers.api.errors import API_ERRORS, SUCCESS
from services.health import VERSION
from services.webhooks import EVENT_TYPES

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas" / "api"
RESPONSE_DIR = SCHEMA_DIR / "responses"
SECURITY_SCHEME = "bearer"
HEADERS = {
    "TraceId": {"description": "the request's trace id, as in the envelope and the server's logs", "required": True,
                "schema": {"type": "string"}},
    "RetryAfter": {"description": "seconds to wait before retrying", "required": True,
                   "schema": {"type": "string", "pattern": "^[0-9]+$"}},
}
TRACE_HEADER = {"X-Trace-Id": {"$ref": "#/components/headers/TraceId"}}
RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
ACCESS_TEXT = {
    "anyone": "anyone",
    "optional": "anyone; a token sent must be valid",
    "user": "user",
    "session": "session (a password login; not a PAT)",
    "owner": "owner (the project's owner or an administrator)",
    "admin": "admin",
}
# Errors any operation of a kind may answer, beside its own (the prose's "Errors common to every route").
GENERIC_ERRORS = {
    "no_token": (30001, "no token sent"),
    "bad_token": (30002, "the token is invalid or expired, its session ended, its PAT revoked, its account gone"),
    "refused": (30003, "the account is disabled, or a PAT lacks the scope"),
    "not_admin": (30003, "`administrator rights required`"),
    "body": (10001, "the body breaks its schema; the message names the field"),
    "not_json": (10002, "the body is not JSON in UTF-8, or is missing"),
    "too_large": (10003, "the body is over its limit"),
    "query": (10001, "a query parameter is out of its range; the message names it"),
    "unavailable": (50003, "the database or the blob store cannot be reached"),
    "rate_limited": (30004, "the caller's rate limit is spent (README *Rate limits*)"),
}


def component_name(file_name, request):
    camel = "".join(part.capitalize() for part in file_name.split("_"))
    return f"{camel}Request" if request else camel


def _reference(file_name, request=False):
    return {"$ref": f"#/components/schemas/{component_name(file_name, request)}"}


def _embedded(path):
    """A schema file as a component: its ``$schema`` dropped (3.1's dialect is 2020-12), its file references
    pointing at the components the sibling files become."""
    def rewrite(node):
        if isinstance(node, dict):
            return {key: (_reference(value[:-len(".json")])["$ref"]
                          if key == "$ref" and value.endswith(".json") else rewrite(value))
                    for key, value in node.items() if key != "$schema"}
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node
    return rewrite(json.loads(path.read_text()))


def _components():
    schemas = {component_name(path.stem, True): _embedded(path) for path in sorted(SCHEMA_DIR.glob("*.json"))}
    schemas.update({component_name(path.stem, False): _embedded(path) for path in sorted(RESPONSE_DIR.glob("*.json"))})
    schemas["EventType"] = {"title": "An event type a webhook receives", "enum": list(EVENT_TYPES)}
    for status in sorted({status for status, _ in API_ERRORS.values()}):
        codes = sorted(code for code, (code_status, _) in API_ERRORS.items() if code_status == status)
        schemas[f"Error{status}"] = {"allOf": [{"$ref": "#/components/schemas/Error"},
                                              {"properties": {"code": {"enum": codes}}}]}
    return {
        "schemas": schemas,
        "headers": HEADERS,
        "securitySchemes": {SECURITY_SCHEME: {
            "type": "http", "scheme": "bearer",
            "description": "a session's access token (a JWT from `POST /api/v1/auth/login`) or a personal access "
                           "token (`cyp_…`, from `POST /api/v1/users/me/pat`)"}},
    }


def _data_schema(answer):
    if answer.kind == "null":
        return {"type": "null"}
    item = _reference(answer.schema)
    if answer.kind == "one":
        return item
    if answer.kind == "list":
        return {"type": "array", "items": item}
    return {"type": "object", "additionalProperties": False, "required": ["items", "total", "page", "page_size"],
            "properties": {"items": {"type": "array", "items": item}, "total": {"type": "integer", "minimum": 0},
                           "page": {"type": "integer", "minimum": 1}, "page_size": {"type": "integer", "minimum": 1}}}


def _success(op):
    answer = op.answer
    if answer.kind == "raw":
        schema = {"type": "object"} if answer.schema == "openapi" else {"type": "string"}
        response = {"description": answer.description,
                    "content": {media: {"schema": schema} for media in answer.media_types}}
    else:
        schema = {"allOf": [{"$ref": "#/components/schemas/Envelope"},
                            {"properties": {"code": {"const": SUCCESS}, "data": _data_schema(answer)}}]}
        content = {"schema": schema}
        if op.example is not None:
            content["example"] = {"code": SUCCESS, "message": "success", "data": op.example,
                                  "timestamp": 1795984184, "trace_id": "15eba921aab34a6c"}
        response = {"description": "success: the envelope with `data` as below",
                    "headers": TRACE_HEADER, "content": {"application/json": content}}
    if op.links:
        response["links"] = {name: {"operationId": target, "parameters": parameters}
                             for name, (target, parameters) in op.links.items()}
    return response


def errors_of(op):
    """``[(code, when)]`` the operation may answer: its own, then those of its kind."""
    generic = []
    if op.access != "anyone":
        generic += [GENERIC_ERRORS["bad_token"], GENERIC_ERRORS["refused"]]
        if op.access != "optional":
            generic.insert(0, GENERIC_ERRORS["no_token"])
        if op.access == "admin":
            generic.append(GENERIC_ERRORS["not_admin"])
    if op.request:
        generic += [GENERIC_ERRORS["body"], GENERIC_ERRORS["not_json"], GENERIC_ERRORS["too_large"]]
    if op.query:
        generic.append(GENERIC_ERRORS["query"])
    if op.tag != "reference":
        generic.append(GENERIC_ERRORS["unavailable"])
    generic.append(GENERIC_ERRORS["rate_limited"])
    return list(op.errors) + generic


def _error_responses(op):
    by_status = {}
    for code, when in errors_of(op):
        by_status.setdefault(API_ERRORS[code][0], []).append(f"`{code}` {when}")
    responses = {}
    for status, lines in sorted(by_status.items()):
        responses[str(status)] = {
            "description": "; ".join(dict.fromkeys(lines)),
            "headers": {**TRACE_HEADER, **(RETRY_AFTER if status in (429, 503) else {})},
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/Error{status}"}}},
        }
    return responses


def _parameters(op):
    parameters = []
    for name in re.findall(r"\{(\w+)\}", op.path):
        schema = {"$ref": "#/components/schemas/EventType"} if name == "event_type" else {"type": "string",
                                                                                          "minLength": 1}
        parameters.append({"name": name, "in": "path", "required": True, "description": PATH_PARAMETERS[name],
                           "schema": schema})
    for key in op.query:
        declared = QUERY_PARAMETERS[key]
        parameters.append({"name": declared["name"], "in": "query", "required": False,
                           "description": declared["description"], "schema": declared["schema"],
                           **({"explode": declared["explode"]} if "explode" in declared else {})})
    return parameters


def _operation(op, tag_names):
    scope = "api:read" if op.method == "GET" else "api:write"
    if op.extra_scope:
        scope += f" and {op.extra_scope}"
    operation = {
        "operationId": op.operation_id, "tags": [tag_names[op.tag]], "summary": op.summary,
        "description": op.description,
        "x-access": ACCESS_TEXT[op.access],
        "security": ([] if op.access == "anyone" else
                     [{}, {SECURITY_SCHEME: []}] if op.access == "optional" else [{SECURITY_SCHEME: []}]),
        "responses": {"200": _success(op), **_error_responses(op)},
    }
    if op.access != "anyone":
        operation["x-pat-scope"] = scope
    parameters = _parameters(op)
    if parameters:
        operation["parameters"] = parameters
    if op.request:
        media = {"schema": _reference(op.request, request=True)}
        if op.request_example is not None:
            media["example"] = op.request_example
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    elif op.request_media:
        operation["requestBody"] = {"required": True, "content": {
            media: {"schema": {"type": "string", "contentMediaType": media}} for media in op.request_media}}
    return operation


def error_table():
    rows = ["| code | HTTP | default message | used for |", "|---|---|---|---|",
            f"| {SUCCESS} | 200 | success | {prose.CODE_USES[SUCCESS]} |"]
    rows += [f"| {code} | {status} | {message} | {prose.CODE_USES[code]} |"
             for code, (status, message) in API_ERRORS.items()]
    return "\n".join(rows)


@functools.cache
def _document():
    tag_names = {key: title for key, title, _ in prose.TAGS}
    paths = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, tag_names)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": prose.TITLE, "version": VERSION,
                 "description": prose.INTRO.replace("{error_table}", error_table())},
        "servers": [{"url": "/", "description": "this server"}],
        "security": [{SECURITY_SCHEME: []}],
        "tags": [{"name": title, "description": text} for _, title, text in prose.TAGS],
        "paths": paths,
        "components": _components(),
    }


def build_document():
    """The document (a fresh copy: callers may change theirs)."""
    return copy.deepcopy(_document())


@functools.cache
def document_bytes():
    """The document as served: compact JSON, built once per process."""
    return json.dumps(_document(), separators=(",", ":"), ensure_ascii=False).encode()
