"""Issue 21 on the local facility (dag.test): what a run leaves beside its results is pruned with them (finding
12), and a deterministic failure of ``finish`` is not retried (finding 15)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from include.endpoints import REPO_ROOT
from tests.dags.dag_helpers import backdate, load_dag, states, write_scan

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]


def new_scan(local_endpoints) -> tuple[str, str, str]:
    """A tiny sample scan on spot832; returns (its conf file_path, its folder, its dataset)."""
    token = uuid.uuid4()
    folder, dataset = f"BLS-{token.int % 10**5:05d}_leak{token.hex[:8]}", "20261201_120000_leak"
    write_scan(local_endpoints, "spot832", f"raw/{folder}/{dataset}.h5")
    return f"/global/raw/{folder}/{dataset}.h5", folder, dataset


def leftovers(local_endpoints, folder: str, dataset: str) -> list[str]:
    """Every run-once marker of the scan's results and every Slurm log of its jobs, wherever they are."""
    from include.runners.sfapi import log_of, slurm_logs
    from include.slurm import job_name

    found = []
    for endpoint in ("alcf832_scratch", "olcf832_scratch", "data832_scratch", "nersc832_alsdev_pscratch_scratch"):
        top = local_endpoints[endpoint].posix_path(folder)
        found += [f"{endpoint}:{p.relative_to(top)}" for p in top.rglob(".*.run-*")] if top.is_dir() else []
    logs = slurm_logs()
    jobs = log_of([job_name(f"{kind}_{folder}_{dataset}") for kind in ("tomo_recon", "tomo_multiscale")])
    log_dir = local_endpoints[logs.endpoint].posix_path(str(logs.path))
    found += [f"{logs}/{p.name}" for p in log_dir.iterdir() if jobs.match(p.name)] if log_dir.is_dir() else []
    return sorted(found)


def test_i21_finding_12_no_marker_or_slurm_log_outlives_the_pruned_results(facility, local_endpoints):
    """After a dispatcher run (new scan, alcf, nersc, local) and prunes at +7 and +60 days, neither a
    ``.rec<ds>*.run-result`` marker nor a Slurm log of the scan's jobs remains anywhere."""
    file_path, folder, dataset = new_scan(local_endpoints)
    run = load_dag("bl832_dispatcher").test(run_conf={"file_path": file_path})
    assert run.state == "success", states(run)
    before = leftovers(local_endpoints, folder, dataset)
    assert any(".run-result" in p for p in before) and any(p.endswith(".out") for p in before), before
    then = backdate(run, days=61)
    prune = load_dag("prune")
    for days in (7, 60):
        as_of = (then + timedelta(days=days, hours=1)).isoformat()
        pruned = prune.test(run_conf={"as_of": as_of, "dry_run": False})
        assert pruned.state == "success", states(pruned)
    assert leftovers(local_endpoints, folder, dataset) == []
    assert local_endpoints["nersc832"].posix_path(f"raw/{folder}/{dataset}.h5").is_file()  # the long-term copy


def test_i21_finding_15_finish_fails_once_for_a_failed_step(facility, local_endpoints):
    """A failed step fails ``finish`` for good (AirflowFailException): no retries of a deterministic failure."""
    folder = f"BLS-00021_finish{uuid.uuid4().hex[:6]}"
    write_scan(local_endpoints, "data832_raw", f"{folder}/20260101_120000_sample.h5")
    facility.inject("compute", "raise", match="^reconstruct$", times=10, message="GPU fell off the bus")
    dag = load_dag("bl832_alcf_recon", (REPO_ROOT / "dags" / "bl832_recon.py").name)
    dag.get_task("reconstruct").retries = 0
    dag_run = dag.test(run_conf={"file_path": f"{folder}/20260101_120000_sample.h5"})
    assert dag_run.state == "failed"
    finish = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "finish")
    assert dag.get_task("finish").retries > 0  # it could retry
    assert finish.state == "failed" and finish.try_number == 1
