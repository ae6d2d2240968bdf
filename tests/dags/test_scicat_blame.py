"""Issue 23 finding 2: data errors are never blamed on SciCat. A SciCat step that failed on its input (XCom
``input_error``) fails the pipeline with that error; only SciCat being down is owed to the scicat_catchup DAG."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from als_provider.operators.scicat import INPUT_ERROR_KEY, SciCatIngestRawOperator

INGEST = "new_file.scicat_ingest"
ERROR = "KeyError: '/measurement/instrument/detector'"


def _ti(input_error: str | None):
    ingest = SciCatIngestRawOperator(task_id="scicat_ingest", file_path="BLS-00001_x/a.h5")

    def xcom_pull(task_ids, key):
        pulled = {("plan", "chosen"): ["new_file"], (INGEST, INPUT_ERROR_KEY): input_error}
        return pulled.get((task_ids, key))

    states = {"r": {INGEST: "failed", "new_file.finish": "failed", "new_file.to_nersc": "success"}}
    dag = NS(get_task=lambda task_id: ingest if task_id == INGEST else NS())
    return NS(xcom_pull=xcom_pull, get_task_states=lambda **_: states, task=NS(dag=dag))


def test_i23_finding_2_a_data_error_in_the_scicat_step_is_not_owed_to_scicat():
    from dags.pipelines.steps import report, split_catalogue

    ti = _ti(ERROR)
    assert split_catalogue(ti.task.dag, [INGEST, "new_file.to_nersc"], ti) == ([], [INGEST, "new_file.to_nersc"])
    with pytest.raises(RuntimeError) as info:
        report.function(["new_file"], ti=ti, dag_run=NS(dag_id="bl832_dispatcher", run_id="r"))
    assert str(info.value) == f"pipeline(s) failed: new_file (new_file.finish, {INGEST})"
    assert "SciCat" not in str(info.value)


def test_i23_finding_2_scicat_down_is_still_owed_to_the_catchup():
    from dags.pipelines.steps import report, split_catalogue

    ti = _ti(None)
    assert split_catalogue(ti.task.dag, [INGEST], ti) == ([INGEST], [])
    with pytest.raises(RuntimeError, match="scicat_catchup DAG registers them once SciCat answers"):
        report.function(["new_file"], ti=ti, dag_run=NS(dag_id="bl832_dispatcher", run_id="r"))
