"""Settings: schema defaults < config file < CYP_* environment variables, validated at start."""
import json
import os
import tomllib
from pathlib import Path
from types import MappingProxyType

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.json"
ENV_PREFIX = "CYP_"
# CYP_* variables that are not settings but are read elsewhere.
OTHER_ENV = {"CYP_CONFIG"}


class SettingsError(Exception):
    """A setting is invalid; the message names it in one line."""


def _schema():
    return json.loads(SCHEMA_PATH.read_text())


def _read_file(path):
    text = Path(path).read_text()
    try:
        values = tomllib.loads(text) if str(path).endswith(".toml") else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    if not isinstance(values, dict):
        raise SettingsError(f"config file {path}: must hold an object of settings")
    return values


def _coerce(key, raw, prop):
    """Environment values are strings; turn them into the type the schema asks for."""
    kind = prop.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"invalid setting {key} ({ENV_PREFIX}{key.upper()}={raw!r}): expected {kind}") from None
    return raw


def load_settings(config_file=None, overrides=None, environ=None):
    """Return the validated settings as a read-only mapping.

    ``overrides`` are command-line values; they rank above the environment.
    """
    schema = _schema()
    props = schema["properties"]
    values = {key: prop["default"] for key, prop in props.items()}
    if config_file:
        try:
            values.update(_read_file(config_file))
        except OSError as exc:
            raise SettingsError(f"config file {config_file}: {exc.strerror}") from None
    environ = os.environ if environ is None else environ
    for key, prop in props.items():
        raw = environ.get(ENV_PREFIX + key.upper())
        if raw is not None:
            values[key] = _coerce(key, raw, prop)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(values))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "configuration"
        if error.validator == "additionalProperties":
            raise SettingsError(f"unknown setting: {error.message}")
        raise SettingsError(f"invalid setting {where}: {error.message}")
    return MappingProxyType(values)


def unknown_environment(environ=None):
    """The ``CYP_*`` variables that name no setting (a typo would otherwise be ignored in silence)."""
    environ = os.environ if environ is None else environ
    known = {ENV_PREFIX + key.upper() for key in _schema()["properties"]} | OTHER_ENV
    return sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)
