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
    messages = {
        "type": f"{field} must be of type {value}",
        "maxLength": f"{field} must be at most {value} characters",
        "minLength": f"{field} must be at least {value} characters",
        "enum": f"{field} must be one of {', '.join(map(str, value or []))}",
        "format": f"{field} must be a valid {value}",
        "pattern": f"{field} has an invalid format",
        "minimum": f"{field} must be at least {value}",
        "maximum": f"{field} must be at most {value}",
        "minItems": f"{field} must have at least {value} items",
        "maxItems": f"{field} must have at most {value} items",
        "uniqueItems": f"{field} must not repeat items",
        "minProperties": f"{field} must not be empty",
    }
    return messages.get(error.validator, f"{field} is invalid")


def validate(name, value):
    """Validate ``value`` against ``schemas/api/<name>.json``; raise InvalidBody naming the first bad field."""
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(value))
    if error is not None:
        raise InvalidBody(_describe(error))
    return value
