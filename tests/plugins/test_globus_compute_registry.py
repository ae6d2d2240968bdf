"""`python -m tools.register_functions`, include.compute_registry and the sites configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from include.compute_registry import FUNCTIONS, resolve
from include.endpoints import REPO_ROOT
from include.errors import ConfigError
from include.sites import SITES_FILE, load_sites, parse_sites


def test_registry_command_registers_every_function_and_prints_ids(facility):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "tools.register_functions"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ") for line in done.stdout.strip().splitlines())
    assert set(lines) == set(FUNCTIONS)
    for function_id in lines.values():
        uuid.UUID(function_id)
    assert facility.stats()["compute.register"] == len(FUNCTIONS)
    assert "local-secret" not in done.stdout + done.stderr


def test_registry_command_fails_loudly_on_bad_credentials(facility):
    import json

    conn = json.loads(os.environ["AIRFLOW_CONN_GLOBUS_COMPUTE_DEFAULT"])
    conn["password"] = "nope-secret"
    env = {**os.environ, "AIRFLOW_CONN_GLOBUS_COMPUTE_DEFAULT": json.dumps(conn)}
    done = subprocess.run(
        [sys.executable, "-m", "tools.register_functions", "--only", "reconstruct"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "refused the client credentials" in done.stderr
    assert "nope-secret" not in done.stderr


def test_resolve_refuses_unknown_names():
    assert resolve("reconstruct").__name__ == "reconstruct"
    with pytest.raises(ValueError, match="known: check_environment, multiscale, open_task_group, reconstruct"):
        resolve("rm_rf")


def test_shipped_sites_load():
    sites = load_sites()
    alcf, local = sites["alcf"], sites["local"]
    assert (alcf.raw_endpoint, alcf.scratch_endpoint, alcf.retention_location) == (
        "alcf832_raw",
        "alcf832_scratch",
        "alcf",
    )
    assert alcf.stages_raw and alcf.copies_back
    assert not local.stages_raw and not local.copies_back
    assert [s.name for s in sites.enabled()] == ["alcf", "nersc", "olcf", "local"]
    with pytest.raises(ConfigError, match="unknown site 'perlmutter'"):
        sites["perlmutter"]


def _document() -> dict:
    return yaml.safe_load(SITES_FILE.read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["sites"]["alcf"].pop("raw_endpoint"), r"sites\.alcf\.raw_endpoint: missing"),
        (lambda d: d["sites"]["alcf"].update(raw_endpoint="alcf_typo"), r"sites\.alcf\.raw_endpoint: unknown endpoint"),
        (lambda d: d["sites"]["alcf"].update(compute_endpoint_id="x"), r"sites\.alcf\.compute_endpoint_id: 'x' is not"),
        (lambda d: d["sites"]["alcf"].update(runner="ssh"), r"sites\.alcf\.runner: 'ssh' is not one of"),
        (lambda d: d["sites"]["alcf"].update(colour="red"), r"sites\.alcf: unknown key\(s\) colour"),
        (lambda d: d["sites"]["alcf"].update(function_ids={"rm": str(uuid.uuid4())}), r"function_ids: unknown"),
        (lambda d: d["sites"]["alcf"].update(task_timeout_minutes=0), r"task_timeout_minutes: must be a positive"),
        (lambda d: d["sites"].update({"Bad Name": {}}), r"sites\.Bad Name: site names"),
        (lambda d: d.update(sites={}), r"sites: missing or empty"),
    ],
)
def test_bad_sites_name_file_and_key(change, message):
    document = _document()
    change(document)
    names = {"alcf832_raw", "alcf832_scratch", "olcf832_raw", "olcf832_scratch", "data832_raw", "data832_scratch"}
    names |= {"nersc832_alsdev_raw", "nersc832_alsdev_pscratch_raw", "nersc832_alsdev_pscratch_scratch"}
    names |= {"nersc832_alsdev_scratch"}
    with pytest.raises(ConfigError, match=message) as info:
        parse_sites(document, source=Path("sites.yaml"), endpoint_names=names)
    assert str(info.value).startswith("sites.yaml: ")


def test_disabled_placeholder_sites_need_no_endpoints():
    document = _document()
    document["sites"]["olcf"]["enabled"] = False
    document["sites"]["nersc"]["enabled"] = False
    sites = parse_sites(
        document,
        source=Path("sites.yaml"),
        endpoint_names={"alcf832_raw", "alcf832_scratch", "data832_raw", "data832_scratch"},
    )
    assert not sites["olcf"].enabled
