"""The beamline's existing caller works unchanged (issue 16, finding 3): upstream's conf names on our DAGs."""

from __future__ import annotations

import pytest

from tests.dags.dag_helpers import load_dag, states
from tests.dags.test_bl832_dispatcher import new_scan
from tests.include.test_callers import PLANTED, upstream_config
from tools.run_dag import run_outputs

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]


def test_upstream_shaped_conf_runs_the_dispatcher(facility, local_endpoints, capfd):
    file_path, scan = new_scan(local_endpoints)
    run = load_dag("bl832_dispatcher").test(
        run_conf={"file_path": file_path, "is_export_control": False, "config": upstream_config()}
    )
    assert run.state == "success", states(run)
    assert local_endpoints["nersc832"].posix_path(f"raw/{scan}").is_file()
    assert len(run_outputs(run.dag_id, run.run_id)) == 2 + 2 * 3
    assert PLANTED not in capfd.readouterr().out


def test_upstream_export_control_keeps_the_scan_at_the_beamline(facility, local_endpoints):
    file_path, scan = new_scan(local_endpoints)
    run = load_dag("bl832_new_file").test(run_conf={"file_path": file_path, "is_export_control": True, "config": {}})
    assert run.state == "success", states(run)
    assert local_endpoints["data832_raw"].posix_path(scan).is_file()
    assert not local_endpoints["nersc832"].posix_path(f"raw/{scan}").exists()
    assert facility.stats().get("scicat.dataset_created", 0) == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"config": {"globus": {"globus_endpoints": {"nersc832": {"uuid": "0", "root_path": "/"}}}}},
        {"config": {"decision_settings": {}}},
        {"is_export_control": True, "is_export_controlled": False},
        {"send_to_alcf": True},
    ],
)
def test_upstream_conf_that_cannot_be_honoured_is_refused_before_anything_moves(facility, local_endpoints, extra):
    file_path, _ = new_scan(local_endpoints)
    run = load_dag("bl832_dispatcher").test(run_conf={"file_path": file_path, **extra})
    assert run.state == "failed"
    assert states(run)["plan"] == "failed"
    assert facility.stats().get("transfer.submit", 0) == 0


def test_upstream_733_run_of_saxs_exposures(facility, local_endpoints):
    """Upstream's 7.3.3 caller: a list of files (each exposure a .txt header and its .edf image), its names."""
    import uuid

    from facility.scicat_samples import write_saxs_exposure

    folder = f"ALS-07331_saxs{uuid.uuid4().hex[:6]}"
    root = local_endpoints["data733"].posix_path(folder)
    files = []
    for index in range(2):
        for path in write_saxs_exposure(root, f"AgB_2m_0000{index}", seed=index):
            files.append(f"{folder}/{path.name}")
    dag = load_dag("bl733_new_file")
    run = dag.test(run_conf={"file_path": files, "is_export_control": False, "config": {}})
    assert run.state == "success", states(run)
    for relative in files:
        assert local_endpoints["nersc733_raw"].posix_path(relative).is_file()
        assert local_endpoints["nersc733_hpss"].posix_path(relative).is_file()
    assert facility.stats()["scicat.dataset_created"] == 2  # one dataset per exposure (its .txt and .edf)

    refused = dag.test(run_conf={"file_path": files, "is_export_control": True})  # as upstream: not processed
    assert refused.state == "failed" and states(refused)["plan"] == "failed"
