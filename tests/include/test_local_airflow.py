"""airflow_settings.yaml as the one home of connections, variables and pools for local Airflow."""

import json

import pytest

from include.errors import ConfigError
from tools.local_airflow import _merge_new_keys, connection_env, load_settings


def test_settings_declare_what_the_dags_use():
    settings = load_settings()
    assert {c["conn_id"] for c in settings["connections"]} >= {
        "globus_default",
        "globus_compute_default",
        "sfapi_default",
        "scicat_default",
    }
    variables = {v["variable_name"]: json.loads(v["variable_value"]) for v in settings["variables"]}
    assert variables["als_retention_days"]["alcf"] == 1
    assert variables["als_retention_days"]["data832"] == 35
    assert variables["als_retention_days"]["nersc_pscratch"] == 7
    assert set(variables["bl832_dispatcher_settings"]) >= {"new_file", "alcf", "nersc", "local"}


def test_connections_are_pointed_at_the_running_facility():
    env = connection_env(load_settings(), "http://127.0.0.1:41234")
    globus = json.loads(env["AIRFLOW_CONN_GLOBUS_DEFAULT"])
    assert globus["extra"]["transfer_base_url"] == "http://127.0.0.1:41234/"
    assert "8765" not in json.dumps([json.loads(v) for v in env.values()])


def test_bad_settings_name_the_file_and_key(tmp_path):
    bad = tmp_path / "airflow_settings.yaml"
    bad.write_text("airflow:\n  connections:\n    - conn_type: generic\n")
    with pytest.raises(
        ConfigError, match=r"airflow_settings\.yaml:3: airflow\.connections\[0\]: missing key\(s\) conn_id"
    ):
        load_settings(bad)


def test_new_setting_keys_reach_an_existing_variable_without_touching_its_values():
    merged = _merge_new_keys('{"alcf": 5}', '{"alcf": 2, "olcf": 2}')
    assert json.loads(merged) == {"alcf": 5, "olcf": 2}
    assert _merge_new_keys('{"alcf": 5, "olcf": 1}', '{"alcf": 2, "olcf": 2}') is None
    assert _merge_new_keys("not json", '{"a": 1}') is None
