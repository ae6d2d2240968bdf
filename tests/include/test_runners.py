"""include/runners/: the registry of runners, what each validates in sites.yaml and plans, and that no other
module compares a runner's name."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from include.endpoints import REPO_ROOT, load_endpoints
from include.errors import ConfigError
from include.paths import parse_scan
from include.plans import site_plan
from include.runners import RUNNERS, STEPS, get_runner
from include.sites import SITES_FILE, load_sites, parse_sites

SCAN = parse_scan("BLS-00564_dyparkinson/20230224_132553_sea_shell.h5")
NAMES = set(load_endpoints("production").endpoints)


def document() -> dict:
    return copy.deepcopy(yaml.safe_load(SITES_FILE.read_text()))


def test_an_unknown_runner_is_refused_naming_the_key_and_the_known_ones():
    assert get_runner("sfapi").name == "sfapi"
    with pytest.raises(ConfigError, match=r"^runner: 'ssh' is not one of the known runners \(globus_compute, sfapi\)$"):
        get_runner("ssh")


def test_an_unknown_runner_is_refused_when_sites_yaml_loads_with_its_line(tmp_path):
    text = SITES_FILE.read_text().replace("runner: sfapi", "runner: slurm_ssh")
    (tmp_path / "sites.yaml").write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "runner: slurm_ssh" in row)
    with pytest.raises(ConfigError) as error:
        load_sites(tmp_path / "sites.yaml")
    assert str(error.value).startswith(f"{tmp_path / 'sites.yaml'}:{line}: sites.nersc.runner: 'slurm_ssh' is not one")


@pytest.mark.parametrize("key", sorted(RUNNERS["globus_compute"].keys))
def test_a_site_sets_only_its_own_runners_keys(key):
    doc = document()
    doc["sites"]["nersc"][key] = doc["sites"]["alcf"].get(key, 5)
    with pytest.raises(ConfigError, match=rf"sites\.nersc\.{key}: a key of runner globus_compute, not of sfapi"):
        parse_sites(doc, source=Path("sites.yaml"), endpoint_names=NAMES)


def test_every_runner_plans_both_steps_and_says_how_it_runs():
    sites = load_sites()
    for runner in RUNNERS.values():
        site = next(s for s in sites.enabled() if s.runner == runner.name)
        plan = site_plan(site, SCAN, {"rows": "0:4"})
        assert all(isinstance(plan.steps[step], dict) for step in STEPS), runner.name
        assert runner.label and runner.stages_by and runner.records


def test_the_sfapi_runner_names_its_jobs_and_prunes_their_logs_against_the_long_term_copy():
    plan = site_plan(load_sites()["nersc"], SCAN, {})
    assert plan.steps["job_names"] == {
        "reconstruct": "tomo_recon_BLS-00564_dyparkinson_20230224_132553_sea_shell",
        "multiscale": "tomo_multiscale_BLS-00564_dyparkinson_20230224_132553_sea_shell",
    }
    assert (plan.steps["job_logs"]["check_endpoint"], plan.steps["job_logs"]["check_path"]) == (
        "nersc832",
        f"raw/{SCAN.relative_path}",
    )


def test_no_module_outside_the_registries_compares_a_runner_name():
    """No ``== "sfapi"``, no ``{"globus_compute": ...}`` outside include/runners/ and dags/pipelines/runners/."""
    name = "[\"'](?:" + "|".join(map(re.escape, RUNNERS)) + ")[\"']"
    pattern = re.compile(rf"(?:==|!=)\s*{name}|{name}\s*(?:==|!=|:)")
    registries = (REPO_ROOT / "include" / "runners", REPO_ROOT / "dags" / "pipelines" / "runners")
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{n}"
        for top in ("include", "dags", "plugins")
        for path in sorted((REPO_ROOT / top).rglob("*.py"))
        if not any(path.is_relative_to(r) for r in registries)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
