"""bl733_new_file end to end (dag.test) on the local profile: data733 → NERSC CFS (Globus stand-in), SciCat
ingest (stand-in), the HPSS archive job through SFAPI (local Slurm; a copy stands in for hsi), and deletion
entries that prune can verify: the CFS copy goes ~6 months after its tape copy is verified."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.dags.dag_helpers import load_dag, run_with_a_failing_job, states, xcom

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]
DAG_ID = "bl733_new_file"


@pytest.fixture(scope="module")
def dag():
    return load_dag(DAG_ID)


def entries_of(dag_run) -> dict[str, object]:
    """This run's manifest entries, by endpoint."""
    from include.manifests import KEY_PREFIX, ManifestEntry, default_store, load_entries

    store = default_store()
    return {
        e.endpoint: e
        for e in load_entries(store.keys(KEY_PREFIX), store=store)
        if isinstance(e, ManifestEntry) and e.dag_id == DAG_ID and e.run_id == dag_run.run_id
    }


def test_scan_moves_is_catalogued_archived_and_its_cfs_copy_is_pruned_after_six_months(dag, facility, local_endpoints):
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from compute_functions.sample_scan import write_sample_scan
    from include.pruning import verify_copy
    from include.records import Folders

    folder = f"ALS-07330_saxs{uuid.uuid4().hex[:6]}"
    scan = f"{folder}/20260402_090000_film.h5"
    write_sample_scan(local_endpoints["data733"].posix_path(scan), size="tiny")
    started = datetime.now(UTC)
    dag_run = dag.test(run_conf={"file_path": scan})
    assert dag_run.state == "success", states(dag_run)

    original = local_endpoints["data733"].posix_path(scan).read_bytes()
    assert local_endpoints["nersc733_raw"].posix_path(scan).read_bytes() == original
    tape = local_endpoints["nersc733_hpss"].posix_path(scan)
    assert tape.read_bytes() == original and "nersc_hpss" in tape.parts
    assert xcom(dag_run, "finish", "outputs") == [
        {"endpoint": "nersc733_raw", "path": scan},
        {"endpoint": "nersc733_hpss", "path": scan},
    ]
    assert xcom(dag_run, "scicat_ingest")["pid"]
    assert xcom(dag_run, "archive_to_hpss")["state"] == "COMPLETED"
    stats = facility.stats()
    assert stats["scicat.dataset_created"] == 1 and stats["sfapi.job_created"] == 1
    assert stats["transfer.task_created"] == 1

    entries = entries_of(dag_run)
    assert set(entries) == {"data733", "nersc733_raw"}
    beamline_copy, cfs_copy = entries["data733"], entries["nersc733_raw"]
    assert (beamline_copy.check_endpoint, beamline_copy.location) == ("nersc733_raw", "data733")
    assert (cfs_copy.check_endpoint, cfs_copy.location) == ("nersc733_hpss", "bl733_cfs")
    assert timedelta(days=179) < cfs_copy.not_before - started < timedelta(days=181)
    # What prune will decide: the tape copy verifies the CFS copy; a damaged tape copy keeps it.
    hook = GlobusTransferHook()
    assert verify_copy(Folders(hook), cfs_copy).action == "delete"
    tape.write_bytes(original[:-10])
    verdict = verify_copy(Folders(hook), cfs_copy)
    assert verdict.action == "keep" and "size differs" in verdict.reason


def test_a_failed_archive_fails_the_run_and_keeps_the_cfs_copy_out_of_the_manifest(dag, facility, local_endpoints):
    from compute_functions.sample_scan import write_sample_scan

    folder = f"ALS-07330_fail{uuid.uuid4().hex[:6]}"
    scan = f"{folder}/20260402_100000_film.h5"
    write_sample_scan(local_endpoints["data733"].posix_path(scan), size="tiny")
    dag_run, got = run_with_a_failing_job(dag, facility, {"file_path": scan}, match="^hpss_archive_", state="FAILED")
    assert got["archive_to_hpss"] == "failed" and got["verify_archive"] == "upstream_failed"
    assert got["scicat_ingest"] == "success" and got["finish"] == "failed"
    assert set(entries_of(dag_run)) == {"data733"}  # never the CFS copy without a verified tape copy


def test_a_list_of_files_moves_in_one_globus_task_and_each_is_catalogued_archived_and_recorded(
    dag, facility, local_endpoints
):
    """Issue 16 finding 8: upstream sends 7.3.3 runs as a list of files; one .h5 per run was all we took."""
    from compute_functions.sample_scan import write_sample_scan
    from tests.dags.dag_helpers import recorded

    folder = f"ALS-07330_run{uuid.uuid4().hex[:6]}"
    files = [f"{folder}/20260402_11000{i}_film.h5" for i in range(3)]
    for relative in files:
        write_sample_scan(local_endpoints["data733"].posix_path(relative), size="tiny")
    # the submit's answer is lost once: the SDK resends with the same submission id, Globus starts one task
    facility.inject("transfer", "lost_response", status=504, match=r"^POST /v0\.10/transfer$", times=1)
    dag_run = dag.test(run_conf={"file_path": files})
    assert dag_run.state == "success", states(dag_run)

    for relative in files:
        original = local_endpoints["data733"].posix_path(relative).read_bytes()
        assert local_endpoints["nersc733_raw"].posix_path(relative).read_bytes() == original
        assert local_endpoints["nersc733_hpss"].posix_path(relative).read_bytes() == original
    assert xcom(dag_run, "finish", "outputs") == [
        {"endpoint": endpoint, "path": relative} for relative in files for endpoint in ("nersc733_raw", "nersc733_hpss")
    ]
    ingested = xcom(dag_run, "scicat_ingest")
    assert len(set(ingested["pids"])) == 3
    nersc_folder = local_endpoints["nersc733_raw"].globus_path(folder)  # the long-term copy, not data733
    assert ingested["source_folder"] == nersc_folder
    stats = facility.stats()
    assert stats["fault.lost_response.504"] == 1
    assert stats["transfer.task_created"] == 1  # one Globus task holds every file, created once
    assert stats["scicat.dataset_created"] == 3 and stats["sfapi.job_created"] == 1
    assert sorted((r["endpoint"], r["path"], r["location"]) for r in recorded(dag_run)) == sorted(
        [(e, relative, loc) for relative in files for e, loc in (("data733", "data733"), ("nersc733_raw", "bl733_cfs"))]
    )
    # a second run of the same list copies nothing and makes no second dataset
    facility.reset()
    again = dag.test(run_conf={"file_path": files})
    assert again.state == "success", states(again)
    stats = facility.stats()
    assert stats.get("transfer.task_created", 0) == 0 and stats.get("scicat.dataset_created", 0) == 0


def test_each_entry_of_a_list_is_validated_before_anything_moves(dag, facility, local_endpoints):
    from compute_functions.sample_scan import write_sample_scan
    from include.errors import InvalidPathError
    from include.paths import parse_scans

    param = dag.params.get_param("file_path")  # the trigger form and the REST API validate the conf with it
    assert param.resolve("f/a.h5") == "f/a.h5" and param.resolve(["f/a.h5", "f/b.h5"]) == ["f/a.h5", "f/b.h5"]
    for bad in ([], ["f/a.h5", "../b.h5"], ["f/a.h5", 3], "f/a.tiff"):
        with pytest.raises(Exception, match=r"(?i)valid"):
            param.resolve(bad)
    with pytest.raises(InvalidPathError, match=r"file_path\[1\] '\.\./b\.h5'"):
        parse_scans(["f/a.h5", "../b.h5"])
    with pytest.raises(InvalidPathError, match="non-empty list"):
        parse_scans([])

    folder = f"ALS-07330_dup{uuid.uuid4().hex[:6]}"
    scan = f"{folder}/20260402_120000_film.h5"
    write_sample_scan(local_endpoints["data733"].posix_path(scan), size="tiny")
    for conf in ([scan, scan], [scan, f"/{scan}"]):  # the same file twice (absolute on data733, root /)
        dag_run = dag.test(run_conf={"file_path": conf})
        got = states(dag_run)
        assert dag_run.state == "failed" and got["plan"] == "failed" and got["move_to_nersc"] != "success"
    assert facility.stats().get("transfer.task_created", 0) == 0
    assert not local_endpoints["nersc733_raw"].posix_path(scan).exists()
