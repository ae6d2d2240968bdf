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
        ({"file_path": GOOD, "recon": None}, "recon: null: leave recon out to take its default ({})"),
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


def _run_dag(tmp_path, dag_id: str, conf: dict):
    import json
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "tools.run_dag", dag_id, "--conf", json.dumps(conf),
         "--home", str(tmp_path / "airflow"), "--facility-root", str(tmp_path / "facility")],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'plugins'}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_i23_finding_2_a_failed_run_ends_on_the_failing_tasks_own_error(tmp_path):
    """A missing scan: the last line is plan's own one-line error, not a list of task ids nor SciCat."""
    scan = "BLS-00001_demo/20261207_101500_missing.h5"
    done = _run_dag(tmp_path, "bl832_new_file", {"file_path": scan})
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"bl832_new_file: plan failed: file_path: {scan}: not found on spot832"


def test_i23_finding_2_the_last_line_skips_retried_tries_and_the_summarising_tasks():
    """The first task that failed for good names the cause; a try that a retry fixed, and finish/report (which
    fail only because it did), do not."""
    from types import SimpleNamespace as NS

    from tools.run_dag import failure_line

    tis = [NS(task_id="to_data832", state="success"), NS(task_id="to_nersc", state="failed")]
    tis += [NS(task_id="scicat_ingest", state="upstream_failed"), NS(task_id="finish", state="failed")]
    run = NS(dag_id="bl832_new_file", state="failed", get_task_instances=lambda: tis)
    errors = [("to_data832", "Globus: 502"), ("to_nersc", "transfer FAILED: permission denied on nersc832")]
    errors.append(("finish", "new_file failed: to_nersc, scicat_ingest (copies made so far are recorded)"))
    assert (
        failure_line(run, errors) == "bl832_new_file: to_nersc failed: transfer FAILED: permission denied on nersc832"
    )
    assert failure_line(run, []) == "bl832_new_file: failed: finish, to_nersc (their logs say why)"


def test_i23_finding_2_finish_does_not_retry_when_plan_refused():
    """finish after a refused plan fails at once (AirflowFailException): no retries (they took 85 s)."""
    from types import SimpleNamespace as NS

    from airflow.sdk.exceptions import AirflowFailException

    from dags.pipelines.steps import finish

    ti = NS(xcom_pull=lambda **_: None)
    with pytest.raises(AirflowFailException) as info:
        finish.function("new_file", ["to_data832"], ti=ti, dag_run=NS(dag_id="d", run_id="r"))
    assert str(info.value) == "plan refused the conf or the settings: new_file started nothing"


@pytest.mark.slow
def test_i23_finding_2_report_and_finish_repeat_plans_refusal_on_the_stack(facility):
    """On the stack the run's last task is ``report`` (and each pipeline's ``finish``): they fail with plan's own
    line, not a generic "the conf was refused", so the UI's last failed task names the cause."""
    from tools.run_dag import task_errors

    scan = "BLS-00001_demo/20261207_101500_missing.h5"
    with task_errors() as errors:
        run = load_dag("bl832_dispatcher").test(run_conf={"file_path": scan})
    assert run.state == "failed"
    said = dict(errors)
    refusal = f"file_path: {scan}: not found on spot832"
    assert said["plan"] == refusal
    assert said["report"] == f"plan refused: {refusal}; the run started nothing"
    assert said["new_file.finish"] == f"plan refused: {refusal}; new_file started nothing"
