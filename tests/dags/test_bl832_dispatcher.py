"""The dispatcher end to end on the local facility: every pipeline, idempotence, export control, bad conf,
and the prune that follows (issues 5 and 6)."""

from __future__ import annotations

import uuid

import pytest

from include.paths import parse_scan
from include.sites import load_sites
from tests.dags.dag_helpers import backdate, load_dag, states, write_scan
from tools.run_dag import run_outputs

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]


def new_scan(local_endpoints) -> tuple[str, str]:
    """A tiny sample scan on spot832; returns (its conf file_path, its <folder>/<file>.h5)."""
    token = uuid.uuid4()  # unique per call: two scans of a session never share a folder (and its results)
    folder, name = f"BLS-{token.int % 10**5:05d}_tester{token.hex[:8]}", "20261122_101500_phantom.h5"
    write_scan(local_endpoints, "spot832", f"raw/{folder}/{name}")
    return f"/global/raw/{folder}/{name}", f"{folder}/{name}"


def test_every_pipeline_runs_once_per_scan_and_prune_then_keeps_what_must_stay(facility, local_endpoints):
    from compute_functions.scan_io import read_metadata

    dag = load_dag("bl832_dispatcher")
    file_path, scan = new_scan(local_endpoints)
    folder, name = scan.split("/")
    dataset = name[:-3]
    rows = read_metadata(local_endpoints["spot832"].posix_path(f"raw/{scan}")).n_rows

    first = dag.test(run_conf={"file_path": file_path})
    assert first.state == "success", states(first)
    published = [str(o) for o in run_outputs(first.dag_id, first.run_id)]
    assert len(published) == len(set(published)) == 2 + 2 * 3  # the scan's two copies, two results per site
    assert local_endpoints["data832_raw"].posix_path(scan).is_file()
    assert local_endpoints["nersc832"].posix_path(f"raw/{scan}").is_file()
    sites = load_sites()
    homes = {site: sites[site].beamline.scratch_endpoint for site in ("alcf", "nersc", "local")}
    results = {site: parse_scan(scan).results(sites[site]) for site in homes}
    # nersc (the primary site) writes upstream's <folder>/rec<ds>/, the others <folder>/<site>/rec<ds>/
    assert str(results["nersc"].tiff) == f"{folder}/rec{dataset}", results
    assert len({str(r.tiff) for r in results.values()}) == 3  # nothing overwritten
    for site, result in results.items():
        tiffs = local_endpoints[homes[site]].posix_path(str(result.tiff))
        assert len(list(tiffs.glob("*.tiff"))) == rows, site
        assert (tiffs.parent / f"rec{dataset}.zarr" / "preview.png").is_file()
    after_first = facility.stats()
    assert after_first["scicat.dataset_created"] == 4  # the raw dataset and one derived per site
    from als_provider.hooks.scicat import SciCatHook

    assert SciCatHook().find_raw(f"/global/raw/{folder}", dataset)  # upstream's sourceFolder (issue 22.5)
    ingest, to_nersc = (first.get_task_instance(f"new_file.{t}") for t in ("scicat_ingest", "data832_to_nersc832"))
    assert ingest.start_date >= to_nersc.end_date  # catalogued once the long-term copy exists

    second = dag.test(run_conf={"file_path": file_path})
    assert second.state == "success", states(second)
    after_second = facility.stats()
    assert after_second["transfer.task_created"] == after_first["transfer.task_created"]  # one transfer per hop
    assert after_second["scicat.dataset_created"] == 4  # one raw dataset, no second derived
    assert after_second.get("compute.submit") == after_first.get("compute.submit")
    skipped = second.get_task_instance("plan").xcom_pull(task_ids="plan", key="skipped")
    assert set(skipped) >= {"alcf", "nersc", "local"}

    # prune 30 days on: a check copy that is gone keeps its entry (and the copy)
    cfs_check = local_endpoints["nersc832_alsdev_scratch"].posix_path(f"{folder}/rec{dataset}")
    for tiff in cfs_check.glob("*.tiff"):
        tiff.unlink()
    backdate(first, days=30)  # prune refuses a future as_of: the run's deletions move 30 days into the past
    pruned = load_dag("prune").test(run_conf={"dry_run": False})
    assert pruned.state == "success", states(pruned)
    assert not local_endpoints["spot832"].posix_path(f"raw/{scan}").exists()
    assert not local_endpoints["alcf832_raw"].posix_path(scan).exists()
    assert not local_endpoints["alcf832_scratch"].posix_path(f"{folder}/alcf/rec{dataset}").exists()
    assert not local_endpoints["nersc832_alsdev_pscratch_raw"].posix_path(scan).exists()
    # pscratch results are checked against the NERSC archive copy, damaged above: kept, as is the home copy
    assert local_endpoints["nersc832_alsdev_pscratch_scratch"].posix_path(f"{folder}/rec{dataset}").exists()
    assert local_endpoints["nersc832"].posix_path(f"raw/{scan}").is_file()  # the long-term copy stays
    kept = local_endpoints["data832_scratch"].posix_path(f"{folder}/rec{dataset}")
    assert len(list(kept.glob("*.tiff"))) == rows  # its check copy failed: kept


def test_export_controlled_scan_never_leaves_the_beamline(facility, local_endpoints):
    file_path, scan = new_scan(local_endpoints)
    run = load_dag("bl832_dispatcher").test(run_conf={"file_path": file_path, "is_export_controlled": True})
    assert run.state == "success", states(run)
    assert local_endpoints["data832_raw"].posix_path(scan).is_file()
    assert not local_endpoints["nersc832"].posix_path(f"raw/{scan}").exists()
    assert not local_endpoints["alcf832_raw"].posix_path(scan).exists()
    stats = facility.stats()
    assert stats.get("sfapi.submit", 0) == 0 and stats.get("scicat.dataset_created", 0) == 0
    skipped = run.get_task_instance("plan").xcom_pull(task_ids="plan", key="skipped")
    assert "export-controlled" in skipped["alcf"] and "export-controlled" in skipped["nersc"]
    assert states(run)["new_file.data832_to_nersc832"] == states(run)["new_file.scicat_ingest"] == "skipped"
    assert states(run)["local.finish"] == "success"  # reconstructed on site
    assert states(run)["report"] == "success"  # the branch that skipped the off-site steps does not skip it


@pytest.mark.parametrize(
    "conf",
    [
        {"file_path": "../etc/passwd.h5"},
        {"file_path": "/data/raw/BLS-00001_x/a.h5"},
        {"file_path": "/globalraw/BLS-00001_x/a.h5"},
        {"file_path": "/global/rawdata/BLS-00001_x/a.h5"},
        {"file_path": "BLS-00001_x/a.tiff"},
        {"file_path": "BLS-00001_x/a.h5", "recon": {"binning": 99}},
        {"file_path": "BLS-00001_x/a.h5", "send_to_nersc": "yes"},
    ],
)
def test_bad_conf_is_refused_before_any_task_runs(facility, conf):
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        load_dag("bl832_dispatcher").test(run_conf=conf)
    assert facility.stats().get("transfer.submit", 0) == 0


def test_unknown_conf_key_fails_the_first_task_and_nothing_moves(facility):
    run = load_dag("bl832_dispatcher").test(run_conf={"file_path": "BLS-00001_x/a.h5", "priority": "high"})
    assert run.state == "failed"
    assert states(run)["plan"] == "failed"
    assert facility.stats().get("transfer.submit", 0) == 0
