"""Issue 26 finding 1 on the real stack (PostgreSQL, scheduler, triggerer, LocalExecutor): an export-controlled
scan stays on site through a Clear of its run's off-site tasks (REST, as the UI's Clear), a site DAG and a
re-dispatch without the flag."""

from __future__ import annotations

import time

import pytest

from dags.pipelines.dag_ids import DISPATCHER_DAG_ID
from include.endpoints import load_endpoints
from include.paths import parse_scan

pytestmark = pytest.mark.e2e

ENDED = {"success", "failed", "skipped", "upstream_failed"}


def _clear_and_wait(stack, dag_id: str, run_id: str, task_ids: list[str], timeout: float = 600) -> dict[str, str]:
    body = {"dry_run": False, "task_ids": task_ids, "dag_run_id": run_id, "only_failed": False}
    stack.request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", json=body)
    time.sleep(3)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {
            t: stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{t}").json()
            for t in task_ids
        }
        if all(ti["state"] in ENDED for ti in found.values()) and stack.run_state(dag_id, run_id) in ENDED:
            return {t: ti["state"] for t, ti in found.items()}
        time.sleep(2)
    raise TimeoutError(f"{task_ids} did not run again within {timeout:.0f}s")


@pytest.mark.timeout(1500)
def test_i26_finding_1_an_export_controlled_scan_stays_on_site_on_the_real_stack(stack, write_scan):
    facility = stack.facility
    facility.reset()
    file_path = write_scan("export")
    scan = parse_scan(file_path)
    run_id = stack.trigger(DISPATCHER_DAG_ID, {"file_path": file_path, "is_export_controlled": True})
    assert stack.wait(DISPATCHER_DAG_ID, run_id, timeout=900) == "success"
    before = facility.stats()

    offsite = ["new_file.data832_to_nersc832", "alcf.stage_raw", "olcf.stage_raw"]
    catalogue = ["new_file.scicat_ingest", "local.scicat_derived"]
    cleared = _clear_and_wait(stack, DISPATCHER_DAG_ID, run_id, offsite + catalogue)
    assert all(cleared[t] in ("failed", "upstream_failed") for t in offsite), cleared
    assert all(cleared[t] in ("skipped", "upstream_failed") for t in catalogue), cleared

    site = stack.trigger("bl832_alcf_recon", {"file_path": file_path})
    assert stack.wait("bl832_alcf_recon", site, timeout=300) == "failed"
    again = stack.trigger(DISPATCHER_DAG_ID, {"file_path": file_path, "is_export_controlled": False})
    assert stack.wait(DISPATCHER_DAG_ID, again, timeout=900) == "success"

    after = facility.stats()
    for counter in ("sfapi.submit", "scicat.dataset_created"):
        assert after.get(counter, 0) == before.get(counter, 0) == 0, counter
    endpoints = load_endpoints("local", facility_root=stack.facility_root)
    for endpoint, relative in (
        ("nersc832", f"raw/{scan.relative_path}"),
        ("alcf832_raw", str(scan.relative_path)),
        ("olcf832_raw", str(scan.relative_path)),
        ("nersc832_alsdev_pscratch_raw", str(scan.relative_path)),
    ):
        assert not endpoints[endpoint].posix_path(relative).exists(), endpoint
