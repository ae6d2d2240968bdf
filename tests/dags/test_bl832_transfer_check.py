"""The transfer health check end to end on the local facility (dag.test)."""

from __future__ import annotations

import hashlib

import pytest

from include.endpoints import REPO_ROOT

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_probe_reaches_data832_and_nersc832_with_the_same_checksum(facility, local_endpoints):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "bl832_transfer_check.py")).get_dag("bl832_transfer_check")
    dag_run = dag.test(run_conf={"size_kib": 8})
    assert dag_run.state == "success"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    probe = tis["write_probe"].xcom_pull(task_ids="write_probe")
    outputs = tis["publish_outputs"].xcom_pull(task_ids="publish_outputs", key="outputs")
    assert [o["endpoint"] for o in outputs] == ["data832_raw", "nersc832"]
    source = local_endpoints["spot832"].posix_path(probe["path"])
    for output in outputs:
        copy = local_endpoints[output["endpoint"]].posix_path(output["path"])
        assert copy.stat().st_size == 8 * 1024
        assert hashlib.md5(copy.read_bytes()).hexdigest() == hashlib.md5(source.read_bytes()).hexdigest()
    stats = facility.stats()
    assert stats["transfer.task_created"] == 2 and stats["transfer.succeeded"] == 2


def test_a_failed_hop_fails_the_run(facility, local_endpoints):
    from airflow.dag_processing.dagbag import DagBag

    facility.inject("transfer", kind="task_failed", match="transfer_check", times=10, message="NERSC DTN offline")
    dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "bl832_transfer_check.py")).get_dag("bl832_transfer_check")
    dag_run = dag.test(run_conf={"size_kib": 1})
    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["spot832_to_data832"] == "failed"
    assert states["publish_outputs"] != "success"
