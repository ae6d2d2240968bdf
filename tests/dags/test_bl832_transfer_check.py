"""The transfer health check end to end on the local facility (dag.test)."""

from __future__ import annotations

import pytest

from include.endpoints import REPO_ROOT

pytestmark = pytest.mark.usefixtures("airflow_db")


PROBE_FOLDERS = {"spot832": "raw/transfer_check", "data832_raw": "transfer_check", "nersc832": "transfer_check"}


def probes(local_endpoints) -> list[str]:
    """Every probe file left in the probe folders and in nersc832 ``raw/`` (the protected long-term copy)."""
    folders = [*PROBE_FOLDERS.items(), ("nersc832", "raw")]
    return sorted(
        str(path) for endpoint, rel in folders for path in local_endpoints[endpoint].posix_path(rel).rglob("*.probe")
    )


def test_probe_reaches_data832_and_nersc832_with_the_same_checksum_and_is_removed(facility, local_endpoints):
    """Found 5: every run left a probe on spot832, data832 and nersc832 raw/, which prune protects."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "bl832_transfer_check.py")).get_dag("bl832_transfer_check")
    dag_run = dag.test(run_conf={"size_kib": 8})
    assert dag_run.state == "success"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    probe = tis["write_probe"].xcom_pull(task_ids="write_probe")
    verified = tis["publish_outputs"].xcom_pull(task_ids="publish_outputs")
    assert [(c["endpoint"], c["path"]) for c in verified] == [
        ("data832_raw", f"transfer_check/{probe['name']}"),
        ("nersc832", f"transfer_check/{probe['name']}"),  # outside raw/: the health check can remove it
    ]
    removed = tis["remove_probes"].xcom_pull(task_ids="remove_probes")
    assert {endpoint for endpoint, names in removed.items() if probe["name"] in names} == set(PROBE_FOLDERS)
    assert probes(local_endpoints) == []
    stats = facility.stats()
    assert stats["transfer.task_created"] == 2 and stats["transfer.succeeded"] == 2
    assert stats["delete.task_created"] == 3 and stats["delete.succeeded"] == 3


def test_a_failed_hop_fails_the_run(facility, local_endpoints):
    from tests.dags.dag_helpers import load_dag

    facility.inject("transfer", kind="task_failed", match="^/data/raw/transfer_check", times=10, message="DTN offline")
    dag = load_dag("bl832_transfer_check")  # retries keep their count, not their delay
    dag_run = dag.test(run_conf={"size_kib": 1})
    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["spot832_to_data832"] == "failed"
    assert states["publish_outputs"] != "success"
    assert states["remove_probes"] == "success" and probes(local_endpoints) == []  # a failed run cleans up too
