"""Remote work exactly once on the real stack (PostgreSQL, scheduler, triggerer, LocalExecutor).

- a lost answer to the first SFAPI job submit and to the first Compute submit: the runs succeed, SFAPI ran
  one job per step (the job is found by its name and comment, never submitted twice), and the Compute
  reconstruction ran once (the resubmitted task returned the first one's result);
- Clear means re-run: clearing a succeeded transfer makes exactly one new Globus submission, clearing a
  succeeded SFAPI job exactly one new Slurm job, clearing a Compute task exactly one new task;
- a retry re-attaches: a try whose wait gave up leaves its job running, and the retry takes it over.
"""

from __future__ import annotations

import time

import pytest

from dags.pipelines.dag_ids import NEW_FILE_DAG_ID

pytestmark = pytest.mark.e2e

LOCAL, NERSC = "bl832_local_recon", "bl832_nersc_recon"


def _clear(stack, dag_id: str, run_id: str, task_id: str) -> None:
    """Clear one task instance as the UI's Clear does (REST ``clearTaskInstances``; the CLI calls the same code)."""
    body = {"dry_run": False, "task_ids": [task_id], "dag_run_id": run_id, "only_failed": False}
    stack.request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", json=body)
    time.sleep(3)  # the scheduler sets the run running again


def _wait_rerun(stack, dag_id: str, run_id: str, task_id: str, timeout: float = 600) -> dict:
    """Wait until the cleared task has run again and the run has ended; return the task instance."""
    deadline = time.monotonic() + timeout
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
    while time.monotonic() < deadline:
        ti = stack.request("GET", path).json()
        if ti["state"] in ("success", "failed") and stack.run_state(dag_id, run_id) in ("success", "failed"):
            return ti
        time.sleep(2)
    raise TimeoutError(f"{dag_id}.{task_id} did not run again within {timeout:.0f}s")


def _xcom(stack, dag_id: str, run_id: str, task_id: str):
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    return stack.request("GET", path).json()["value"]


def _scan_at_nersc(stack, file_path: str):
    """A clean facility and a new scan moved by the new-scan DAG (so the NERSC copy exists): (facility, path)."""
    stack.facility.reset()
    new_file = stack.trigger(NEW_FILE_DAG_ID, {"file_path": file_path})
    assert stack.wait(NEW_FILE_DAG_ID, new_file, timeout=300) == "success"
    return stack.facility, file_path


def _created(stats: dict, name: str) -> int:
    return int(stats.get(name, 0))


@pytest.mark.timeout(1500)
def test_lost_submit_answers_and_clear_on_the_real_stack(stack, write_scan):
    facility, file_path = _scan_at_nersc(stack, write_scan("once"))

    # the first SFAPI job submit and the reconstruction's Compute submit are performed, their answers lost (504)
    facility.inject("sfapi", "lost_response", status=504, match=r"^POST /sfapi/.*/compute/jobs/", times=1)
    facility.inject("compute", "lost_submit", status=504, match="^reconstruct$", times=1)
    before = facility.stats()
    runs = {dag_id: stack.trigger(dag_id, {"file_path": file_path}) for dag_id in (NERSC, LOCAL)}
    states = {dag_id: stack.wait(dag_id, run_id, timeout=900) for dag_id, run_id in runs.items()}
    after = facility.stats()
    assert states == {NERSC: "success", LOCAL: "success"}, states
    assert after["fault.lost_response.504"] - before.get("fault.lost_response.504", 0) == 2
    # one Slurm job per SFAPI step (reconstruct, multiscale), although one answer was lost
    assert _created(after, "sfapi.job_created") - _created(before, "sfapi.job_created") == 2
    # the lost Compute task is found in the run's task group (issue 21 finding 11): one task per step
    for function in ("reconstruct", "multiscale"):
        name = f"compute.task_created.{function}"
        assert _created(after, name) - _created(before, name) == 1
    recon = _xcom(stack, LOCAL, runs[LOCAL], "reconstruct")
    assert "duplicate_of_earlier_call" not in recon and recon["manifest"]["count"] >= recon["n_slices"]

    # Clear of a succeeded copy home: its destination already holds the same complete results (checked against
    # the source's results manifest), so nothing is copied or replaced (issue 21 finding 5); the run succeeds
    before = facility.stats()
    _clear(stack, NERSC, runs[NERSC], "copy_tiff")
    ti = _wait_rerun(stack, NERSC, runs[NERSC], "copy_tiff")
    after = facility.stats()
    assert ti["state"] == "success" and stack.run_state(NERSC, runs[NERSC]) == "success"
    assert ti["try_number"] >= 2
    assert _created(after, "transfer.task_created") - _created(before, "transfer.task_created") == 0
    assert _created(after, "delete.task_created") - _created(before, "delete.task_created") == 0

    # Clear of a succeeded SFAPI job: exactly one new Slurm job
    before = facility.stats()
    _clear(stack, NERSC, runs[NERSC], "multiscale")
    ti = _wait_rerun(stack, NERSC, runs[NERSC], "multiscale")
    after = facility.stats()
    assert ti["state"] == "success"
    assert _created(after, "sfapi.job_created") - _created(before, "sfapi.job_created") == 1

    # Clear of a succeeded Compute task: exactly one new Compute task, and it runs (a new run_key)
    before = facility.stats()
    _clear(stack, LOCAL, runs[LOCAL], "multiscale")
    ti = _wait_rerun(stack, LOCAL, runs[LOCAL], "multiscale")
    after = facility.stats()
    assert ti["state"] == "success"
    created = "compute.task_created.multiscale"  # (and one call opening the new run's task group)
    assert _created(after, created) - _created(before, created) == 1
    assert _created(after, "compute.executed.multiscale") - _created(before, "compute.executed.multiscale") == 1


@pytest.mark.long
@pytest.mark.timeout(900)
def test_a_retry_reattaches_to_its_job_on_the_real_stack(stack, write_scan):
    """The first try's wait gives up (SFAPI answers 500 to every poll until the trigger's error budget is
    spent); the retry re-attaches to the job it submitted instead of submitting another.

    A long proof (about 2 minutes): `make bench` runs it; its short versions, on dag.test with the same
    facility, are tests/plugins/test_sfapi_operator.py's ``test_retry_*``."""
    facility, file_path = _scan_at_nersc(stack, write_scan("retry"))
    facility.inject("sfapi", "http", status=500, match=r"^GET /sfapi/.*/compute/jobs/perlmutter$", times=10)
    run_id = stack.trigger(NERSC, {"file_path": file_path})
    assert stack.wait(NERSC, run_id, timeout=600) == "success"
    reconstruct = stack.request("GET", f"/api/v2/dags/{NERSC}/dagRuns/{run_id}/taskInstances/reconstruct").json()
    assert reconstruct["try_number"] == 2  # the first try failed on the polls
    stats = facility.stats()
    assert stats["fault.http.500"] == 10
    assert stats["sfapi.job_created"] == 2  # reconstruct and multiscale: the retry made no second job
