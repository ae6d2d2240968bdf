"""SciCat never blocks data or reconstruction (issue 16, finding 1): an outage during a dispatcher run, the
report that names SciCat, and the catch-up DAG that registers the scan once SciCat is back, once."""

from __future__ import annotations

import pytest

from include.tools.run_dag import run_outputs
from tests.dags.dag_helpers import load_dag, states, xcom
from tests.dags.test_bl832_dispatcher import new_scan

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]

SITES = ("alcf", "nersc", "local")


def owed_keys() -> list[str]:
    from include.catalogue_backlog import KEY_PREFIX
    from include.manifests import MetadataDbVariables

    return MetadataDbVariables().keys(KEY_PREFIX)


@pytest.fixture(autouse=True)
def scicat_gives_up_fast(monkeypatch):
    """One request per call, no back-off: an outage fails each SciCat task in seconds, not minutes."""
    import json
    import os

    conn = json.loads(os.environ["AIRFLOW_CONN_SCICAT_DEFAULT"])
    conn["extra"] = {**(conn.get("extra") or {}), "max_attempts": 1, "retry_delay": 0}
    monkeypatch.setenv("AIRFLOW_CONN_SCICAT_DEFAULT", json.dumps(conn))


@pytest.fixture
def empty_backlog():
    from include.catalogue_backlog import settle
    from include.manifests import MetadataDbVariables

    settle(owed_keys(), store=MetadataDbVariables())
    yield
    settle(owed_keys(), store=MetadataDbVariables())


def test_scicat_outage_reconstructs_everything_reports_scicat_and_catchup_registers_once(
    facility, local_endpoints, empty_backlog
):
    file_path, scan = new_scan(local_endpoints)
    folder, name = scan.split("/")
    facility.inject("scicat", "http", status=503, times=100_000)  # down for the whole run

    run = load_dag("bl832_dispatcher").test(run_conf={"file_path": file_path})

    got = states(run)
    assert run.state == "failed", got
    assert got["new_file.scicat_ingest"] == "failed"
    for site in SITES:  # every reconstruction finished, copied home and checked; only its catalogue is owed
        assert got[f"{site}.reconstruct"] == got[f"{site}.multiscale"] == got[f"{site}.check_results"] == "success"
        assert got[f"{site}.scicat_derived"] == "upstream_failed"
        tiffs = local_endpoints["data832_scratch"].posix_path(f"{folder}/{site}/rec{name[:-3]}")
        assert any(tiffs.glob("*.tiff")), site
    assert local_endpoints["nersc832"].posix_path(f"raw/{scan}").is_file()
    assert len(run_outputs(run.dag_id, run.run_id)) == 2 + 2 * len(SITES)  # published although SciCat is owed
    report = run.get_task_instance("report")
    assert report.state == "failed"
    assert facility.stats().get("scicat.dataset_created", 0) == 0
    assert len(owed_keys()) == 1 + len(SITES)  # the raw dataset, one derived per site

    catchup = load_dag("scicat_catchup")
    still_down = catchup.test()  # SciCat still down: nothing registered, the run fails, nothing is lost
    assert still_down.state == "failed", states(still_down)
    assert len(owed_keys()) == 1 + len(SITES)

    facility.reset()  # SciCat is back
    back = catchup.test()
    assert back.state == "success", states(back)
    assert owed_keys() == []
    stats = facility.stats()
    assert stats["scicat.dataset_created"] == 1 + len(SITES)
    raw = xcom(back, "settle")["registered"]
    assert len(raw) == 1 + len(SITES)

    again = catchup.test()  # nothing owed: nothing sent twice
    assert again.state == "success", states(again)
    assert facility.stats()["scicat.dataset_created"] == 1 + len(SITES)

    rerun = load_dag("bl832_dispatcher").test(run_conf={"file_path": file_path})  # the catalogue finds its own
    assert rerun.state == "success", states(rerun)
    assert facility.stats()["scicat.dataset_created"] == 1 + len(SITES)


def test_a_failed_reconstruction_is_not_owed_to_scicat(facility, local_endpoints, empty_backlog):
    """Only a pipeline whose data steps succeeded owes a registration: failed results are never catalogued."""
    file_path, _ = new_scan(local_endpoints)
    facility.inject("scicat", "http", status=503, times=100_000)
    facility.inject("compute", "raise", match="^reconstruct$", times=100)  # the Compute sites' reconstructions fail
    run = load_dag("bl832_dispatcher").test(run_conf={"file_path": file_path})
    assert run.state == "failed"
    kinds = {key.rsplit("/", 1)[-1] for key in owed_keys()}
    assert "new_file.scicat_ingest" in kinds
    assert "alcf.scicat_derived" not in kinds and "local.scicat_derived" not in kinds
    assert "nersc.scicat_derived" in kinds  # NERSC (Slurm jobs) reconstructed: its catalogue is owed
