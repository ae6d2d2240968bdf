"""SciCat never blocks data or reconstruction (issue 16, finding 1): an outage during a dispatcher run, the
report that names SciCat, and the catch-up DAG that registers the scan once SciCat is back, once."""

from __future__ import annotations

import uuid

import pytest

from include.paths import parse_scan
from include.sites import load_sites
from tests.dags.dag_helpers import load_dag, states, write_scan, xcom
from tests.dags.test_bl832_dispatcher import new_scan
from tools.run_dag import run_outputs

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]

SITES = ("alcf", "nersc", "local")


def owed_keys() -> list[str]:
    from include.catalogue_backlog import KEY_PREFIX
    from include.manifests import MetadataDbVariables

    return MetadataDbVariables().keys(KEY_PREFIX)


@pytest.fixture(autouse=True)
def scicat_gives_up_fast(monkeypatch):
    """One request per call, no back-off: an outage fails each SciCat task in seconds, not minutes; a dataset
    found again right after its creation is not waited for long."""
    import json
    import os

    conn = json.loads(os.environ["AIRFLOW_CONN_SCICAT_DEFAULT"])
    conn["extra"] = {**(conn.get("extra") or {}), "max_attempts": 1, "retry_delay": 0, "completion_grace": 1}
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
    folder = scan.split("/")[0]
    facility.inject("scicat", "http", status=503, times=100_000)  # down for the whole run

    run = load_dag("bl832_dispatcher").test(run_conf={"file_path": file_path})

    got = states(run)
    assert run.state == "failed", got
    assert got["new_file.scicat_ingest"] == "failed"
    for site in SITES:  # every reconstruction finished, copied home and checked; only its catalogue is owed
        assert got[f"{site}.reconstruct"] == got[f"{site}.multiscale"] == got[f"{site}.check_results"] == "success"
        assert got[f"{site}.scicat_derived"] == "upstream_failed"
        tiffs = local_endpoints["data832_scratch"].posix_path(str(parse_scan(scan).results(load_sites()[site]).tiff))
        assert any(tiffs.glob("*.tiff")), site
    assert local_endpoints["nersc832"].posix_path(f"raw/{scan}").is_file()
    assert len(run_outputs(run.dag_id, run.run_id)) == 2 + 2 * len(SITES)  # published although SciCat is owed
    report = run.get_task_instance("report")
    assert report.state == "failed"
    assert facility.stats().get("scicat.dataset_created", 0) == 0
    assert len(owed_keys()) == 1 + len(SITES)  # the raw dataset, one derived per site
    from include.catalogue_backlog import pending

    (owed_raw,) = [item.kwargs for _, item in pending()[0] if item.kind == "raw"]
    assert (owed_raw["source_folder"], owed_raw["long_term_endpoint"], owed_raw["long_term_path"]) == (
        f"/global/raw/{folder}",  # upstream's sourceFolder
        "nersc832",  # where the catch-up reads the scan once data832's copy is pruned
        f"raw/{scan}",
    )

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
    from tools.run_dag import task_errors

    with task_errors() as errors:
        run = load_dag("bl832_dispatcher").test(run_conf={"file_path": file_path})
    assert run.state == "failed"
    said = dict(errors)  # the last task, report, names the failed step and its own line (issue 23 finding 2)
    assert said["local.reconstruct"] and f"local.reconstruct: {said['local.reconstruct']}" in said["report"]
    kinds = {key.rsplit("/", 1)[-1] for key in owed_keys()}
    assert "new_file.scicat_ingest" in kinds
    assert "alcf.scicat_derived" not in kinds and "local.scicat_derived" not in kinds
    assert "nersc.scicat_derived" in kinds  # NERSC (Slurm jobs) reconstructed: its catalogue is owed


def _owe_raw_as_finish_does(folder: str, name: str, run_id: str) -> str:
    """Record the raw registration of ``<folder>/<name>`` as the dispatcher's finish does after an outage:
    the operator's rendered arguments (the scan at data832_raw, the plan's sourceFolder, its long-term copy)."""
    from als_provider.operators.scicat import SciCatIngestRawOperator
    from include.catalogue_backlog import OwedRegistration, record
    from include.manifests import MetadataDbVariables
    from include.paths import parse_scan
    from include.plans import new_file_plan

    file_path = f"/global/raw/{folder}/{name}"
    planned = new_file_plan(parse_scan(file_path), offsite=True)
    kwargs = {
        "file_path": file_path,
        "endpoint": "data832_raw",
        "source_folder": planned.scicat_source_folder,
        "long_term_endpoint": "nersc832",
        "long_term_path": planned.source_path,
        "ingester": "als_832_dx_4",
    }
    assert set(kwargs) == set(SciCatIngestRawOperator.template_fields)  # finish records every one
    owed = OwedRegistration("raw", kwargs, "bl832_dispatcher", run_id, "new_file.scicat_ingest")
    return record([owed], store=MetadataDbVariables())[0]


def test_i21_finding_6_an_owed_registration_holds_the_copies_it_reads(local_endpoints, empty_backlog):
    """What the prune asks before deleting (include/catalogue_backlog.held_copies): every copy an owed
    registration reads, kept while it is owed, released once the catch-up settled it."""
    from include.catalogue_backlog import OwedRegistration, held_copies, record, settle
    from include.manifests import MetadataDbVariables

    store = MetadataDbVariables()
    key = _owe_raw_as_finish_does("BLS-1_hold", "20260101_000000_a.h5", "r1")
    derived = OwedRegistration(
        "derived",
        {"file_path": "BLS-1_hold/20260101_000000_a.h5", "results_folder": "BLS-1_hold/alcf", "site": "alcf"},
        "bl832_alcf_recon",
        "r2",
        "scicat_derived",
    )
    record([derived], store=store)
    store.set("als_scicat_pending/x/y/z", "not json")  # unreadable: holds nothing, reported by the catch-up
    held = held_copies(store=store)
    assert held == {
        ("data832_raw", "BLS-1_hold/20260101_000000_a.h5"): f"registration owed: {key}",
        ("data832_scratch", "BLS-1_hold/alcf"): f"registration owed: {derived.key}",
    }
    settle([key, derived.key, "als_scicat_pending/x/y/z"], store=store)
    assert held_copies(store=store) == {}


def test_i21_finding_6_catchup_registers_from_the_long_term_copy_once_data832_is_pruned(
    facility, local_endpoints, empty_backlog
):
    """An owed raw registration whose data832 copy is gone (pruned after its retention before this fix, or
    lost) no longer fails forever: the catch-up reads the long-term copy its record names (nersc832 raw/) and
    records upstream's sourceFolder."""
    token = uuid.uuid4().hex[:8]
    folder, name = f"BLS-00007_pruned{token}", "20261122_101500_phantom.h5"
    path = write_scan(local_endpoints, "nersc832", f"raw/{folder}/{name}")  # only the long-term copy is left
    assert not local_endpoints["data832_raw"].posix_path(f"{folder}/{name}").exists()
    _owe_raw_as_finish_does(folder, name, f"r-{token}")

    run = load_dag("scicat_catchup").test()
    assert run.state == "success", states(run)
    assert owed_keys() == []
    assert facility.stats()["scicat.dataset_created"] == 1
    from als_provider.hooks.scicat import SciCatHook

    pid = SciCatHook().find_raw(f"/global/raw/{folder}", name[:-3])
    assert pid and SciCatHook().get_dataset(pid)["size"] == path.stat().st_size


def test_i21_finding_6_a_standalone_recon_of_a_scan_whose_raw_registration_is_owed_owes_its_derived_one(
    facility, local_endpoints, empty_backlog
):
    """bl832_local_recon of a scan whose raw dataset is still owed: its derived registration is owed too
    (never silently skipped), and the catch-up registers the raw one and then the derived one."""
    token = uuid.uuid4().hex[:8]
    folder, name = f"BLS-00008_owed{token}", "20261122_101500_phantom.h5"
    write_scan(local_endpoints, "data832_raw", f"{folder}/{name}")
    raw_key = _owe_raw_as_finish_does(folder, name, f"r-{token}")

    run = load_dag("bl832_local_recon", "bl832_recon.py").test(run_conf={"file_path": f"{folder}/{name}"})
    got = states(run)
    assert got["reconstruct"] == "success" and got["scicat_derived"] == "failed", got
    assert run.state == "failed"
    keys = owed_keys()
    assert raw_key in keys and any(k.endswith("/scicat_derived") and "bl832_local_recon" in k for k in keys)
    assert "scicat.dataset_created" not in facility.stats()

    back = load_dag("scicat_catchup").test()
    assert back.state == "success", states(back)
    assert owed_keys() == [] and facility.stats()["scicat.dataset_created"] == 2
