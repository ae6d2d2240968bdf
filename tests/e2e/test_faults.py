"""Faults survived on the real stack, with the facility's counters as evidence of nothing lost and nothing
done twice. The long proof (``make bench``: ``pytest -m long``) puts them all on one dispatcher run (minutes on two
cores); ``make test`` runs the short version on the new-scan DAG alone (a killed triggerer, transient answers of
Transfer and SciCat, a restarted scheduler). The long proof's faults:

- the first transfer is slowed, and the triggerer is killed (SIGKILL) and restarted while it waits;
- transient 429/503 answers from Transfer, Compute and the SFAPI;
- SciCat down (503 on its next requests): the ingest retries with back-off;
- the scheduler is restarted while the reconstructions run.
"""

from __future__ import annotations

import time

import pytest

from dags.pipelines.dag_ids import NEW_FILE_DAG_ID
from tests.e2e.conftest import DISPATCHER, wait_for_task_state

pytestmark = pytest.mark.e2e

FIRST_TRANSFER = "new_file.spot832_to_data832"
SCICAT_DOWN_REQUESTS = 6  # the hook tries 4 times per call with back-off, then Airflow retries the task


def _task_states(stack, run_id: str, dag_id: str = DISPATCHER) -> dict[str, dict]:
    return {ti["task_id"]: ti for ti in stack.task_instances(dag_id, run_id)}


def _scan_with_transfer_faults(stack, file_path: str, *, slow: float, times: int):
    """A clean facility whose first transfer of ``file_path`` takes ``slow`` s and whose Transfer API answers
    ``times`` 429s to submits and ``times`` 503s to task polls: ``(facility, file_path)``."""
    facility = stack.facility
    facility.reset()
    stem = file_path.rsplit("/", 1)[-1].removesuffix(".h5")
    facility.inject("transfer", "slow", match=stem, times=1, params={"seconds": slow})
    facility.inject("transfer", "http", status=429, match=r"^POST /v0\.10/transfer$", times=times)
    facility.inject("transfer", "http", status=503, match=r"^GET /v0\.10/task/", times=times)
    return facility, file_path


def _kill_triggerer(stack) -> None:
    """SIGKILL the triggerer and start a new one (which takes the running triggers over)."""
    old = stack.pid("triggerer")
    stack.restart("triggerer", kill=True)
    assert stack.pid("triggerer") not in (None, old)


@pytest.mark.timeout(600)
def test_new_file_survives_a_killed_triggerer_and_transient_errors(stack, write_scan):
    """Short version of the proof below: the new-scan DAG's first transfer is slowed, its triggerer killed while it
    waits, Transfer answers 429/503 and SciCat 503 for a while, the scheduler restarts; one Globus task per copy,
    one dataset, and the run succeeds."""
    facility, file_path = _scan_with_transfer_faults(stack, write_scan("shortfaults"), slow=15, times=1)
    facility.inject("scicat", "http", status=503, times=2)

    run_id = stack.trigger(NEW_FILE_DAG_ID, {"file_path": file_path})
    wait_for_task_state(stack, NEW_FILE_DAG_ID, run_id, "spot832_to_data832", {"deferred"}, timeout=180)
    _kill_triggerer(stack)
    assert facility.stats().get("transfer.task_created", 0) == 1
    stack.restart("scheduler")

    state = stack.wait(NEW_FILE_DAG_ID, run_id, timeout=300)
    tis = _task_states(stack, run_id, NEW_FILE_DAG_ID)
    assert state == "success", {k: v["state"] for k, v in tis.items() if v["state"] != "success"}
    stats = facility.stats()
    assert stats.get("fault.transfer.slow") == 1 and stats.get("fault.http.429") == 1
    assert stats.get("fault.http.503") == 1 + 2
    transfers = stats["transfer.task_created"]
    assert transfers == 2, stats  # spot832 -> data832 -> NERSC, once each although the triggerer died
    assert stats.get("transfer.duplicate", 0) == stats["transfer.submit"] - transfers
    assert stats["transfer.succeeded"] == transfers and "transfer.failed" not in stats
    assert stats["scicat.dataset_created"] == 1


@pytest.mark.long
@pytest.mark.timeout(900)
def test_dispatcher_survives_faults_and_restarts(stack, write_scan):
    facility, file_path = _scan_with_transfer_faults(stack, write_scan("faults"), slow=45, times=2)
    facility.inject("compute", "http", status=503, match=r"^POST /v3/endpoints/.+/submit$", times=1)
    facility.inject("sfapi", "http", status=503, match=r"^GET /sfapi/", times=1)
    facility.inject("scicat", "http", status=503, times=SCICAT_DOWN_REQUESTS)

    run_id = stack.trigger(DISPATCHER, {"file_path": file_path})

    # the triggerer dies while the first transfer waits in it; a new one takes the trigger over
    wait_for_task_state(stack, DISPATCHER, run_id, FIRST_TRANSFER, {"deferred"}, timeout=240)
    time.sleep(3)
    _kill_triggerer(stack)
    submitted_before_kill = facility.stats().get("transfer.task_created", 0)
    assert submitted_before_kill == 1

    # the scheduler restarts (gracefully) while the reconstructions are under way
    wait_for_task_state(stack, DISPATCHER, run_id, "new_file.finish", {"success"}, timeout=420)
    old_scheduler = stack.pid("scheduler")
    stack.restart("scheduler")
    assert stack.pid("scheduler") not in (None, old_scheduler)

    state = stack.wait(DISPATCHER, run_id, timeout=600)
    tis = _task_states(stack, run_id)
    assert state == "success", {k: v["state"] for k, v in tis.items() if v["state"] != "success"}
    stats = facility.stats()

    # every injected fault happened
    assert stats.get("fault.transfer.slow") == 1
    assert stats.get("fault.http.429") == 2
    assert stats.get("fault.http.503") == 2 + 1 + 1 + SCICAT_DOWN_REQUESTS
    # SciCat down: the raw ingest retried (its log says so), and the data moved regardless
    ingest_logs = stack.log_dir.glob(f"dag_id={DISPATCHER}/run_id={run_id}/task_id=new_file.scicat_ingest/*.log")
    assert any("retrying in" in path.read_text(errors="replace") for path in ingest_logs)
    assert tis["new_file.data832_to_nersc832"]["state"] == "success"

    # nothing done twice: the killed triggerer's wait resumed on the same Globus task (no new submission
    # for it), every transfer ran once, every Compute function ran once, one dataset per result
    transfers = stats["transfer.task_created"]
    assert stats.get("transfer.duplicate", 0) == stats["transfer.submit"] - transfers
    assert stats["transfer.succeeded"] == transfers and "transfer.failed" not in stats
    assert stats["compute.executed"] == stats["compute.task_created"]
    assert stats.get("sfapi.job_created") == stats.get("sfapi.submit")
    report = stack.request(
        "GET", f"/api/v2/dags/{DISPATCHER}/dagRuns/{run_id}/taskInstances/report/xcomEntries/return_value"
    ).json()["value"]
    recons = [name for name in report["pipelines"] if name != "new_file"]
    assert stats["scicat.dataset_created"] == 1 + len(recons)
    print(f"fault run counters: {stats}")
