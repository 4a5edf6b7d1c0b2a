"""Loading settings, in-process: schema defaults < file < CYP_* environment < command line."""
import json

import pytest

from config import SettingsError, load_settings, unknown_environment


def test_defaults_come_from_the_schema():
    settings = load_settings(environ={})

    assert (settings["port"], settings["storage_backend"], settings["mongo_db"]) == (5000, "gridfs", "cyp_registry")


def test_a_file_overrides_defaults_and_the_environment_overrides_the_file(tmp_path):
    path = tmp_path / "cyp.json"
    path.write_text(json.dumps({"port": 6000, "log_level": "DEBUG"}))

    settings = load_settings(path, environ={"CYP_PORT": "7000"})

    assert (settings["port"], settings["log_level"]) == (7000, "DEBUG")


def test_command_line_values_rank_above_the_environment():
    assert load_settings(overrides={"port": 8000, "host": None}, environ={"CYP_PORT": "7000"})["port"] == 8000


def test_a_toml_file_is_read_by_its_extension(tmp_path):
    path = tmp_path / "cyp.toml"
    path.write_text('storage_backend = "filesystem"\nupload_expiry_seconds = 60\n')

    settings = load_settings(path, environ={})

    assert (settings["storage_backend"], settings["upload_expiry_seconds"]) == ("filesystem", 60)


@pytest.mark.parametrize("raw, expected", [("true", True), ("ON", True), ("0", False), ("no", False)])
def test_boolean_environment_values(raw, expected):
    assert load_settings(environ={"CYP_S3_REDIRECT": raw})["s3_redirect"] is expected


@pytest.mark.parametrize("environ, named", [
    ({"CYP_PORT": "eighty"}, "port"),
    ({"CYP_PORT": "0"}, "port"),
    ({"CYP_STORAGE_BACKEND": "tape"}, "storage_backend"),
    ({"CYP_S3_REDIRECT": "maybe"}, "s3_redirect"),
])
def test_an_invalid_value_is_refused_naming_the_setting(environ, named):
    with pytest.raises(SettingsError) as refused:
        load_settings(environ=environ)

    assert named in str(refused.value)


def test_an_unknown_setting_in_a_file_is_refused(tmp_path):
    path = tmp_path / "cyp.json"
    path.write_text(json.dumps({"prot": 1}))

    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(path, environ={})


def test_settings_are_read_only():
    with pytest.raises(TypeError):
        load_settings(environ={})["port"] = 1


def test_unknown_cyp_environment_variables_are_named():
    environ = {"CYP_PORT": "1", "CYP_CONFIG": "x", "CYP_PROT": "1", "CYP_MONGO_URL": "y", "HOME": "/"}

    assert unknown_environment(environ) == ["CYP_MONGO_URL", "CYP_PROT"]
