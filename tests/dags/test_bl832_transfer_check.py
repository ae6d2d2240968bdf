"""The transfer health check end to end on the local facility (dag.test)."""

from __future__ import annotations

import pytest

from include.endpoints import REPO_ROOT
from include.transfer_seeds import SEED_NAME, write_local_seeds

pytestmark = pytest.mark.usefixtures("airflow_db")


PROBE_FOLDERS = {"spot832": "raw/transfer_check", "data832_raw": "transfer_check", "nersc832": "transfer_check"}


def probes(local_endpoints) -> list[str]:
    """Every probe file left in the probe folders and in nersc832 ``raw/`` (the protected long-term copy)."""
    folders = [*PROBE_FOLDERS.items(), ("nersc832", "raw")]
    return sorted(
        str(path) for endpoint, rel in folders for path in local_endpoints[endpoint].posix_path(rel).rglob("*.probe")
    )


@pytest.fixture
def seed(local_endpoints):
    """The 8.3.2 check's seed on the facility's spot832 (as at deployment)."""
    write_local_seeds(local_endpoints.facility_root)
    return local_endpoints["spot832"].posix_path(f"raw/transfer_check/{SEED_NAME}")


def no_local_disk(monkeypatch):
    """Any read of an endpoint's files on this worker fails the task that tries it (Globus only)."""
    from include.endpoints import Endpoint

    def refuse(self, relative):
        raise AssertionError(f"a health-check task read {self.name}:{relative} on the worker's disk")

    monkeypatch.setattr(Endpoint, "posix_path", refuse)


def test_the_seed_reaches_data832_and_nersc832_through_globus_only_and_the_probes_are_removed(
    facility, local_endpoints, seed, monkeypatch
):
    """Found 5: every run left a probe on spot832, data832 and nersc832 raw/, which prune protects. Issue 22
    item 6: the probe was written (and its md5 read) on the worker's disk, so the worker had to mount spot832."""
    from airflow.dag_processing.dagbag import DagBag

    before = seed.read_bytes()
    dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "bl832_transfer_check.py")).get_dag("bl832_transfer_check")
    hops = [t for t in dag.tasks if t.task_id.endswith(("_to_data832", "_to_nersc832"))]
    assert len(hops) == 2 and all(hop.verify_checksum for hop in hops)
    no_local_disk(monkeypatch)
    dag_run = dag.test()
    monkeypatch.undo()
    assert dag_run.state == "success"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    probe = tis["check_seed"].xcom_pull(task_ids="check_seed")
    assert probe["seed"] == f"raw/transfer_check/{SEED_NAME}" and probe["size"] == len(before)
    verified = tis["publish_outputs"].xcom_pull(task_ids="publish_outputs")
    assert [(c["endpoint"], c["path"]) for c in verified] == [
        ("data832_raw", f"transfer_check/{probe['name']}"),
        ("nersc832", f"transfer_check/{probe['name']}"),  # outside raw/: the health check can remove it
    ]
    removed = tis["remove_probes"].xcom_pull(task_ids="remove_probes")
    assert {endpoint for endpoint, names in removed.items() if probe["name"] in names} == {"data832_raw", "nersc832"}
    assert probes(local_endpoints) == []
    assert seed.read_bytes() == before  # the seed stays, unchanged
    stats = facility.stats()
    assert stats["transfer.task_created"] == 2 and stats["transfer.succeeded"] == 2
    assert stats["delete.task_created"] == 2 and stats["delete.succeeded"] == 2


def test_a_missing_seed_fails_the_check_in_one_line_naming_it(facility, local_endpoints, seed, capfd):
    from tests.dags.dag_helpers import load_dag

    seed.unlink()
    try:
        dag_run = load_dag("bl832_transfer_check").test()
    finally:
        write_local_seeds(local_endpoints.facility_root)
    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["check_seed"] == "failed" and states["spot832_to_data832"] == "upstream_failed"
    out, err = capfd.readouterr()
    assert f"health-check seed spot832:raw/transfer_check/{SEED_NAME} is missing" in out + err
    assert facility.stats().get("transfer.task_created", 0) == 0


def test_a_failed_hop_fails_the_run(facility, local_endpoints, seed):
    from tests.dags.dag_helpers import load_dag

    facility.inject("transfer", kind="task_failed", match="^/data/raw/transfer_check", times=10, message="DTN offline")
    dag = load_dag("bl832_transfer_check")  # retries keep their count, not their delay
    dag_run = dag.test()
    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["spot832_to_data832"] == "failed"
    assert states["publish_outputs"] != "success"
    assert states["remove_probes"] == "success" and probes(local_endpoints) == []  # a failed run cleans up too
    assert seed.is_file()
