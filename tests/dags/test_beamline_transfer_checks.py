"""The health checks of the configured beamlines (dags/bl733_transfer_check.py, dags/bl7012_transfer_check.py) and
the 8.3.2 one: every 12 h at the ALS; end to end on the local facility (dag.test)."""

from __future__ import annotations

import re

import pytest

from include.beamlines import load_beamlines
from include.transfer_seeds import SEED_NAME, seed_paths, write_local_seeds

pytestmark = pytest.mark.usefixtures("airflow_db")
CHECKS = ["bl733", "bl7012"]


def load(dag_id: str):
    """The DAG, its retries kept in number but not in delay."""
    from tests.dags.dag_helpers import load_dag

    return load_dag(dag_id)


def probe_folders(key: str) -> dict[str, str]:
    beamline = load_beamlines()[key]
    folder = beamline.transfer_check["folder"]
    return {beamline.source_endpoint: folder, beamline.transfer_check["endpoint"]: folder}


def probes(local_endpoints, key: str) -> list[str]:
    """Every probe left in the probe folders and anywhere in the NERSC raw copy's tree (scans only)."""
    beamline = load_beamlines()[key]
    folders = [*probe_folders(key).items(), (beamline.nersc_endpoint, ".")]
    return sorted(
        str(path) for endpoint, rel in folders for path in local_endpoints[endpoint].posix_path(rel).rglob("*.probe")
    )


@pytest.mark.parametrize("dag_id", ["bl832_transfer_check", *(f"{key}_transfer_check" for key in CHECKS)])
def test_every_health_check_runs_every_12_hours_at_the_als_and_notifies_on_failure(dag_id):
    """Issue 16 finding 7: the only check (8.3.2) ran daily."""
    dag = load(dag_id)
    assert dag.timetable.expression == "0 */12 * * *"
    assert str(dag.timetable.timezone) in ("America/Los_Angeles", "Timezone('America/Los_Angeles')")
    assert not dag.catchup and dag.max_active_runs == 1
    assert dag.on_failure_callback, f"{dag_id}: a failed check tells nobody"


@pytest.fixture(autouse=True)
def seeds(local_endpoints):
    """Every check's seed on the facility (as at deployment)."""
    write_local_seeds(local_endpoints.facility_root)


@pytest.mark.parametrize("dag_id", ["bl832_transfer_check", *(f"{key}_transfer_check" for key in CHECKS)])
def test_every_check_starts_from_its_seed_which_the_local_facility_has(dag_id):
    """Issue 22 item 6: the seed of each check is one that deployment (and every local Airflow) puts in place."""
    dag = load(dag_id)
    seed = dag.get_task("check_seed")
    [first_hop] = [t for t in seed.downstream_list if "_to_" in t.task_id]
    assert first_hop.upstream_task_ids == {"check_seed"} and first_hop.source_path.endswith(f"/{SEED_NAME}")
    endpoint, folder = seed.op_args
    assert (endpoint, f"{folder}/{SEED_NAME}") in {(s.endpoint, str(s.path)) for s in seed_paths()}


@pytest.mark.parametrize("key", CHECKS)
def test_a_probe_moves_to_nersc_is_verified_and_removed(key, facility, local_endpoints, monkeypatch):
    """Issue 16 finding 7: 7.3.3 and 7.0.1.2 had no health check. Issue 22 item 6: Globus only, nothing is read
    on the worker's disk (data733 and data7012 need not be mounted there)."""
    from include.endpoints import Endpoint

    beamline = load_beamlines()[key]
    nersc = beamline.transfer_check["endpoint"]
    dag = load(beamline.transfer_check_dag_id)
    monkeypatch.setattr(Endpoint, "posix_path", lambda self, rel: pytest.fail(f"read {self.name}:{rel} on disk"))
    dag_run = dag.test()
    monkeypatch.undo()
    assert dag_run.state == "success"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    probe = tis["check_seed"].xcom_pull(task_ids="check_seed")
    assert probe["seed"] == f"transfer_check/{SEED_NAME}" and probe["size"] > 0
    verified = tis["publish_outputs"].xcom_pull(task_ids="publish_outputs")
    assert [(c["endpoint"], c["path"]) for c in verified] == [(nersc, f"transfer_check/{probe['name']}")]
    assert nersc != beamline.nersc_endpoint  # never inside the raw copy's tree
    removed = tis["remove_probes"].xcom_pull(task_ids="remove_probes")
    assert {endpoint for endpoint, names in removed.items() if probe["name"] in names} == {nersc}
    assert probes(local_endpoints, key) == []
    assert local_endpoints[beamline.source_endpoint].posix_path(probe["seed"]).is_file()  # never deleted
    stats = facility.stats()
    assert stats["transfer.task_created"] == 1 and stats["transfer.succeeded"] == 1
    assert stats["delete.task_created"] == 1 and stats["delete.succeeded"] == 1


def test_a_failed_transfer_fails_the_check_loudly_and_still_removes_the_probe(facility, local_endpoints, capfd):
    beamline = load_beamlines()["bl733"]
    # the hop's destination fails (a delete matches its path too, but no probe ever reaches nersc733 to delete)
    arrival = re.escape(local_endpoints["nersc733"].globus_path("transfer_check"))
    facility.inject("transfer", kind="task_failed", match=f"^{arrival}/", times=10, message="DTN offline")
    dag = load(beamline.transfer_check_dag_id)
    dag_run = dag.test()
    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["data733_to_nersc733"] == "failed"
    assert states["verify_nersc733"] == "upstream_failed" and states["publish_outputs"] != "success"
    assert states["remove_probes"] == "success" and probes(local_endpoints, "bl733") == []
    out, err = capfd.readouterr()
    assert "DTN offline" in out + err  # Globus's own message
