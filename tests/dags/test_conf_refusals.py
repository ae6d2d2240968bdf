"""Issue 23 finding 2: a conf the Params refuse is explained in one line naming the key, the value and the fix."""

from __future__ import annotations

import copy

import pytest

from include.endpoints import REPO_ROOT
from tests.dags.dag_helpers import load_dag

pytestmark = pytest.mark.usefixtures("airflow_db")
DAG_FILE = REPO_ROOT / "dags" / "bl832_recon.py"
GOOD = "BLS-00564_dyparkinson/20230224_132553_sea_shell.h5"


@pytest.mark.parametrize(
    ("conf", "line"),
    [
        (
            {"file_path": "x"},
            'file_path: "x": must be <folder>/<file>.h5, optionally under /global/raw/; '
            'e.g. "file_path": "BLS-00564_dyparkinson/20230224_132553_sea_shell.h5"',
        ),
        (
            {"file_path": GOOD, "recon": {"binning": "2"}},
            'recon.binning: "2": must be an integer from 1 to 8; write "binning": 2 (no quotes)',
        ),
        (
            {"file_path": GOOD, "recon": {"ring_filter": "fw"}},
            "recon.ring_filter: unknown option; did you mean ring_method?",
        ),
        (
            {"file_path": GOOD, "recon": {"middle_rows": 99999999999999999999}},
            "recon.middle_rows: 99999999999999999999: must be an integer from 1 to 100000; give a value in that range",
        ),
    ],
)
def test_i23_finding_2_a_refused_conf_gets_one_line(conf, line):
    """Airflow's own refusal prints the regex or the whole schema; conf_refusal gives the line to show instead."""
    from airflow.sdk.exceptions import ParamValidationError

    from dags.pipelines.params import conf_refusal

    dag = load_dag("bl832_local_recon", DAG_FILE.name, fast_retries=False)
    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError):  # the Params still refuse it before any task runs
        params.update(conf)
        params.validate()
    assert conf_refusal(conf, dag.params) == line
    assert conf_refusal({"file_path": f"/global/raw/{GOOD}", "recon": {"binning": 2}}, dag.params) is None


def test_i23_finding_2_recon_that_is_not_an_object_is_named_once():
    from dags.pipelines.params import recon_options

    with pytest.raises(ValueError) as info:
        recon_options("binning=2")
    assert str(info.value) == 'recon: "binning=2": must be a JSON object of options; e.g. {"binning": 2}'


@pytest.mark.slow
def test_i23_finding_2_make_dags_test_prints_the_one_line_refusal(tmp_path):
    """`make dags-test` (tools.run_dag) ends a refused conf with the one line, not Airflow's schema dump."""
    import json
    import os
    import subprocess
    import sys

    conf = {"file_path": GOOD, "recon": {"binning": "2"}}
    done = subprocess.run(
        [sys.executable, "-m", "tools.run_dag", "bl832_local_recon", "--conf", json.dumps(conf),
         "--home", str(tmp_path / "airflow"), "--facility-root", str(tmp_path / "facility")],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'plugins'}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    refusal = 'recon.binning: "2": must be an integer from 1 to 8; write "binning": 2 (no quotes)'
    assert last == f"bl832_local_recon: conf refused: {refusal}"
    assert "does not match" not in done.stderr and "properties" not in done.stderr
