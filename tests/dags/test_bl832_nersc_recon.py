"""bl832_nersc_recon end to end (dag.test) on the local profile: SFAPI stand-in jobs, Globus stand-in copies."""

from __future__ import annotations

import stat

import pytest

from include.paths import parse_scan
from tests.dags.dag_helpers import load_dag, write_scan, xcom

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]

FOLDER = "BLS-00564_dyparkinson"
#: Spaces, quotes, ';', $(...) and backticks: any of them reaching the shell unquoted would create a canary.
NASTY = "20230224_132553_sea shell; touch canary_a $(touch canary_b) `touch canary_c` 'q\" x.h5"


@pytest.fixture(scope="module")
def nersc_dag():
    return load_dag("bl832_nersc_recon", "bl832_recon.py", fast_retries=False)


def place_scan(local_endpoints, file_name: str) -> str:
    """A tiny synthetic scan at NERSC CFS raw, where the new-scan flow would have put it."""
    write_scan(local_endpoints, "nersc832_alsdev_raw", f"{FOLDER}/{file_name}")
    return f"/global/raw/{FOLDER}/{file_name}"


_SHARED = {True: 0o2775, False: 0o664}  # folder, file


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tis_of(dag_run) -> dict:
    return {ti.task_id: ti for ti in dag_run.get_task_instances()}


def test_reconstructs_a_nastily_named_scan_without_running_anything_else(nersc_dag, facility, local_endpoints):
    file_path = place_scan(local_endpoints, NASTY)
    dag_run = nersc_dag.test(run_conf={"file_path": file_path, "recon": {"engine": "auto"}})
    tis = tis_of(dag_run)
    assert dag_run.state == "success", {k: v.state for k, v in tis.items()}

    scan = parse_scan(file_path)
    expected = [
        # upstream's layout (bl832/nersc.py:469-470): NERSC is 8.3.2's primary site, no <site>/ level
        {"endpoint": "data832_scratch", "path": f"{FOLDER}/{scan.recon_dir_name}"},
        {"endpoint": "data832_scratch", "path": f"{FOLDER}/{scan.zarr_dir_name}"},
    ]
    assert xcom(dag_run, "finish", "outputs") == expected
    home = local_endpoints["data832_scratch"].posix_path(FOLDER)
    tiffs = sorted((home / scan.recon_dir_name).glob("*.tiff"))
    assert len(tiffs) == 4  # the tiny scan has 4 detector rows
    assert (home / scan.zarr_dir_name).is_dir()
    assert local_endpoints["nersc832_alsdev_scratch"].posix_path(f"{FOLDER}/{scan.recon_dir_name}").is_dir()

    # Issue 16, finding 4: the jobs leave what they made shared (folders 2775, files 664), so the service account
    # of the group can prune it.
    staged = local_endpoints["nersc832_alsdev_pscratch_raw"].posix_path(f"{FOLDER}/{NASTY}")
    at_site = local_endpoints["nersc832_alsdev_pscratch_scratch"].posix_path(FOLDER)
    assert _mode(staged) == 0o664 and _mode(staged.parent) == 0o2775 and _mode(at_site) == 0o2775
    for tree in (at_site / scan.recon_dir_name, at_site / scan.zarr_dir_name):
        wrong = {p.name: oct(_mode(p)) for p in [tree, *tree.rglob("*")] if _mode(p) != _SHARED[p.is_dir()]}
        assert wrong == {}, tree.name

    canaries = [
        p for p in local_endpoints.facility_root.rglob("canary_*") if p.name in {"canary_a", "canary_b", "canary_c"}
    ]
    assert canaries == []
    stats = facility.stats()
    assert stats["sfapi.submit"] == 2 and stats["sfapi.job_created"] == 2
    recon = xcom(dag_run, "reconstruct")
    assert recon["state"] == "COMPLETED" and recon["job_name"].startswith("tomo_recon_BLS-00564_dyparkinson_")

    recorded = xcom(dag_run, "finish")["recorded"]
    assert {(r["endpoint"], r["check_endpoint"], r["location"]) for r in recorded} == {
        ("nersc832_alsdev_pscratch_raw", "nersc832_alsdev_raw", "nersc_pscratch"),
        ("nersc832_alsdev_pscratch_scratch", "nersc832_alsdev_scratch", "nersc_pscratch"),  # the archive outlives it
        ("data832_scratch", "nersc832_alsdev_scratch", "data832_scratch"),
        ("nersc832_alsdev_pscratch_scratch", "nersc832", "nersc_pscratch"),  # the jobs' Slurm logs (i21 f.12)
    }
    logs = [r for r in recorded if r["path"].startswith("tomo_recon_logs/")]
    assert sorted(r["path"].rpartition(".")[2] for r in logs) == ["err", "err", "out", "out"]  # two jobs
    copies = [r for r in recorded if r not in logs]
    assert all(r["files"] >= 1 and r["size"] > 0 and r["digest"] for r in copies)  # what each copy held
    assert len(copies) == 5


def test_timeout_of_the_multiscale_job_after_a_completed_reconstruction_fails_the_run(
    nersc_dag, facility, local_endpoints, capfd
):
    file_path = place_scan(local_endpoints, "20230224_140000_timeout.h5")
    facility.inject("sfapi", "state", match="^tomo_multiscale_", times=5, params={"state": "TIMEOUT", "after": 0.2})
    for task in nersc_dag.tasks:  # no retries in this test: each would resubmit and TIME OUT again
        task.retries = 0
    dag_run = nersc_dag.test(run_conf={"file_path": file_path})
    tis = tis_of(dag_run)
    assert dag_run.state == "failed"
    assert tis["reconstruct"].state == "success"
    assert tis["multiscale"].state == "failed"
    assert tis["copy_tiff"].state == "upstream_failed"
    assert tis["check_results"].state == "upstream_failed"
    assert tis["finish"].state == "failed"  # it records the cleanup of a failed run too, then fails
    out, err = capfd.readouterr()
    assert "ended TIMEOUT" in out + err and "DUE TO TIME LIMIT" in out + err


def test_bad_conf_is_refused(nersc_dag):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        nersc_dag.test(run_conf={"file_path": "/etc/passwd"})
    with pytest.raises(ParamValidationError):
        nersc_dag.test(run_conf={"file_path": f"{FOLDER}/x.h5", "recon": {"shell": "rm -rf /"}})
