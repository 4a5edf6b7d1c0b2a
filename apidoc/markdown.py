"""docs/api.md: the OpenAPI document rendered as Markdown (``python server.py openapi --markdown``).

Everything here reads the document only, so the reference cannot say what the document does not."""
import json
import re

HEADER = "# CYP-Registry API reference"
NOTICE = ("<!-- Generated from the OpenAPI document (apidoc/) by `python server.py openapi --markdown > "
          "docs/api.md`; edit the document, not this file. -->")
# Response components that are the envelope's own machinery, not objects of the API.
PLUMBING = re.compile(r"^(Envelope|Error\d*)$")


def anchor(heading):
    """The anchor GitHub (and the served page) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _ref_name(ref):
    return ref.rsplit("/", 1)[-1]


def type_text(schema):
    """A schema's type in a few words, objects linked to their section."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{anchor(name)})"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    if "oneOf" in schema:
        return " or ".join(type_text(choice) for choice in schema["oneOf"])
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    words = []
    for kind in kinds:
        if kind == "array" and "items" in schema:
            words.append(f"array of {type_text(schema['items'])}")
        elif kind == "string" and "format" in schema:
            words.append(f"string ({schema['format']})")
        else:
            words.append(kind)
    return " or ".join(words) or "any"


def limits_text(schema):
    parts = []
    low, high = schema.get("minLength"), schema.get("maxLength")
    if low is not None or high is not None:
        parts.append(f"at most {high} characters" if not low else
                     f"at least {low} characters" if high is None else f"{low}–{high} characters")
    if "minimum" in schema or "maximum" in schema:
        parts.append(f"{schema.get('minimum', '…')} … {schema.get('maximum', '…')}")
    if "pattern" in schema:
        parts.append(f"matches `{schema['pattern']}`")
    if "minItems" in schema:
        parts.append(f"at least {schema['minItems']} items")
    if "maxItems" in schema:
        parts.append(f"at most {schema['maxItems']} items")
    if schema.get("uniqueItems"):
        parts.append("no repeats")
    if "maxProperties" in schema:
        parts.append(f"at most {schema['maxProperties']} entries")
    if "default" in schema:
        parts.append(f"default `{schema['default']}`")
    if schema.get("writeOnly"):
        parts.append("never answered")
    if "description" in schema:
        parts.append(schema["description"])
    return "; ".join(parts)


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def fields_table(schema):
    """A table of an object schema's fields."""
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    rows = ["| field | type | required | limits, meaning |", "|---|---|---|---|"]
    for name, field in properties.items():
        nested = field.get("properties")
        kind = type_text(field) if not nested else "object of " + ", ".join(f"`{key}`" for key in nested)
        rows.append(f"| `{name}` | {_cell(kind)} | {'yes' if name in required else 'no'} | "
                    f"{_cell(limits_text(field))} |")
    notes = []
    if schema.get("additionalProperties") is False:
        notes.append("No other field is allowed.")
    if "minProperties" in schema:
        notes.append(f"Send at least {schema['minProperties']} field.")
    return "\n".join(rows) + ("\n\n" + " ".join(notes) if notes else "")


def _data_text(response):
    """What ``data`` holds, from the success response's schema."""
    schema = response["content"]["application/json"]["schema"]["allOf"][1]["properties"]["data"]
    if schema.get("type") == "null":
        return "`data` is `null`."
    if schema.get("type") == "object" and "items" in schema.get("properties", {}):
        return f"`data` is a page: `{{items: [{type_text(schema['properties']['items']['items'])}…], total, page, " \
               "page_size}`."
    return f"`data`: {type_text(schema)}."


def _heading(path, method):
    return f"{method.upper()} {path}"


def _operation(path, method, op, components, headings):
    lines = [f"### `{_heading(path, method)}`", "", f"**{op['summary']}.** Who: {op['x-access']}."
             + (f" PAT scope: `{op['x-pat-scope']}`." if "x-pat-scope" in op else ""), ""]
    if op.get("description"):
        lines += [op["description"], ""]
    if op.get("parameters"):
        lines += ["| parameter | in | type | meaning |", "|---|---|---|---|"]
        lines += [f"| `{p['name']}` | {p['in']} | {_cell(type_text(p['schema']))} | "
                  f"{_cell('; '.join(filter(None, [limits_text(p['schema']), p['description']])))} |"
                  for p in op["parameters"]]
        lines.append("")
    body = op.get("requestBody")
    if body:
        media, content = next(iter(body["content"].items()))
        if "$ref" in content["schema"]:
            name = _ref_name(content["schema"]["$ref"])
            schema = components[name]
            lines += [f"Body ({media}, `{name}`):", "", fields_table(schema), ""]
            if "example" in content:
                lines += ["```json", json.dumps(content["example"], indent=2, ensure_ascii=False), "```", ""]
        else:
            lines += [f"Body: the raw bytes ({media}).", ""]
    success = op["responses"]["200"]
    if "application/json" in success["content"] and "allOf" in success["content"]["application/json"]["schema"]:
        lines += [_data_text(success), ""]
        example = success["content"]["application/json"].get("example")
        if example is not None:
            lines += ["```json", json.dumps(example["data"], indent=2, ensure_ascii=False), "```", ""]
    else:
        lines += [f"Answer: {success['description']} ({', '.join(f'`{m}`' for m in success['content'])}).", ""]
    if "links" in success:
        lines += ["Links to what it created: " + ", ".join(
            f"[{link['operationId']}](#{anchor(headings[link['operationId']])})" for link in success["links"].values())
            + ".", ""]
    errors = [(status, response) for status, response in op["responses"].items() if status != "200"]
    if errors:
        lines += ["| HTTP | errors |", "|---|---|"]
        lines += [f"| {status} | {_cell(response['description'])} |" for status, response in errors]
        lines.append("")
    return lines


def render(document, notice=True):
    """docs/api.md from the document (``notice``: with the comment saying it is generated)."""
    components = document["components"]["schemas"]
    description = document["info"]["description"]
    sections = [*re.findall(r"^## (.+)$", description, re.M), "Routes at a glance",
                *(tag["name"] for tag in document["tags"]), "Objects"]
    lines = [HEADER, "", *([NOTICE, ""] if notice else []), *(f"- [{title}](#{anchor(title)})" for title in sections),
             "", description, "", "## Routes at a glance", "",
             "| method | path | who | PAT scope | |", "|---|---|---|---|---|"]
    by_tag = {}
    headings = {op["operationId"]: _heading(path, method)
                for path, methods in document["paths"].items() for method, op in methods.items()}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            lines.append(f"| {method.upper()} | `{path}` | {op['x-access']} | {op.get('x-pat-scope', '—')} | "
                         f"[{op['summary']}](#{anchor(_heading(path, method))}) |")
            by_tag.setdefault(op["tags"][0], []).append((path, method, op))
    lines.append("")
    for tag in document["tags"]:
        lines += [f"## {tag['name']}", "", tag["description"], ""]
        for path, method, op in by_tag.get(tag["name"], ()):
            lines += _operation(path, method, op, components, headings)
    lines += ["## Objects", "", "The answers' `data`, as `schemas/api/responses/` declares them.", ""]
    for name, schema in components.items():
        if name.endswith("Request") or PLUMBING.match(name):
            continue
        lines += [f"### {name}", "", schema.get("title", "") + (f": {schema['description']}" if "description"
                                                                in schema else ""), ""]
        if "properties" in schema and schema.get("type") == "object" and name != "PayloadSchemas":
            lines += [fields_table(schema), ""]
        elif "enum" in schema:
            lines += [type_text(schema) + ".", ""]
    return "\n".join(lines).rstrip() + "\n"
