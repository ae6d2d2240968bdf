"""Issue 22, item 2: ``make placeholders`` names dispatcher settings that run more than production (upstream's
decision-settings: new file and NERSC on, ALCF off)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tools.placeholders import SETTINGS_FILE, settings_placeholders


def settings_with(tmp_path, dispatch: dict) -> Path:
    document = yaml.safe_load(SETTINGS_FILE.read_text())
    for variable in document["airflow"]["variables"]:
        if variable["variable_name"] == "bl832_dispatcher_settings":
            variable["variable_value"] = json.dumps(dispatch)
    path = tmp_path / "airflow_settings.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def lines(path) -> list[str]:
    return [str(p) for p in settings_placeholders(path) if "bl832_dispatcher_settings" in p.key]


def test_the_demo_settings_are_named_with_productions_value():
    [line] = lines(SETTINGS_FILE)
    assert line.startswith("[local only] airflow_settings.yaml: variables.bl832_dispatcher_settings: alcf, local on")
    assert '{"new_file": true, "nersc": true}' in line


def test_upstreams_decision_settings_are_not_named(tmp_path):
    production = {"new_file": True, "nersc": True, "alcf": False, "local": False, "olcf": False}
    assert lines(settings_with(tmp_path, production)) == []
    assert len(lines(settings_with(tmp_path, {**production, "olcf": True}))) == 1
