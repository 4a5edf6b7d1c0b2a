"""JSON Schema validation of request bodies, with messages that name the field (never echo its value)."""
import functools
import json
from pathlib import Path

import jsonschema

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


class InvalidBody(Exception):
    """The body breaks its schema; the message names the field."""


@functools.cache
def _validator(name):
    schema = json.loads((SCHEMA_DIR / "api" / f"{name}.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _describe(error):
    field = ".".join(str(part) for part in error.absolute_path) or "body"
    value = error.validator_value
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "a field"
        return f"{field + '.' if field != 'body' else ''}{missing} is required"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"unknown field {', '.join(extra)}" + ("" if field == "body" else f" in {field}")
    templates = {
        "type": "{field} must be of type {value}",
        "maxLength": "{field} must be at most {value} characters",
        "minLength": "{field} must be at least {value} characters",
        "format": "{field} must be a valid {value}",
        "pattern": "{field} has an invalid format",
        "minimum": "{field} must be at least {value}",
        "maximum": "{field} must be at most {value}",
        "minItems": "{field} must have at least {value} items",
        "maxItems": "{field} must have at most {value} items",
        "uniqueItems": "{field} must not repeat items",
        "minProperties": "{field} must not be empty",
    }
    if error.validator == "enum":
        return f"{field} must be one of {', '.join(map(str, value))}"
    return templates.get(error.validator, "{field} is invalid").format(field=field, value=value)

def validate(name, value):
    """Validate ``value`` against ``schemas/api/<name>.json``; raise InvalidBody naming the first bad field."""
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(value))
    if error is not None:
        raise InvalidBody(_describe(error))
    return value
