"""GlobusComputeOperator and its trigger in real Airflow (dag.test) against the Compute stand-in."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest

from als_provider.hooks.globus_compute import GlobusComputeHook
from als_provider.operators.globus_compute import GlobusComputeOperator, GlobusComputeTaskError
from als_provider.triggers.globus_compute import GlobusComputeTaskTrigger
from include.sites import load_sites
from tests.dags.dag_helpers import run_in_db, xcom

ENDPOINT = load_sites()["local"].compute_endpoint_id  # the local profile registers the ids it serves
pytestmark = pytest.mark.usefixtures("airflow_db")


def make_dag(dag_id: str, operator_cls=GlobusComputeOperator, **op_kwargs):
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        operator_cls(
            task_id="compute",
            retries=op_kwargs.pop("retries", 1),
            retry_delay=timedelta(seconds=0),
            poll_interval=0.2,
            **op_kwargs,
        )
    return dag


def run_check_environment(dag_id: str, **op_kwargs):
    """A DAG of one ``check_environment`` call on the local endpoint, run: (dag run, task instances by id)."""
    return run_in_db(make_dag(dag_id, function_name="check_environment", endpoint_id=ENDPOINT, **op_kwargs))


def created_and_ran_once(facility) -> dict:
    """The facility's counters, once Compute created and ran ``check_environment`` exactly once."""
    stats = facility.stats()
    assert stats["compute.task_created.check_environment"] == 1
    assert stats["compute.executed.check_environment"] == 1
    return stats


def test_success_puts_the_summary_in_xcom(facility, tmp_path):
    scan = tmp_path / "scan.h5"
    scan.write_bytes(b"0123456789")
    dag_run, tis = run_check_environment("test_compute_success", function_kwargs={"paths": [str(scan)]})
    assert tis["compute"].state == "success"
    result = xcom(dag_run, "compute")
    assert result["paths"][str(scan)] == {"size": 10, "is_dir": False}
    stats = facility.stats()
    assert stats["compute.submit"] == 2  # the call that opens the run's task group, then the function's
    assert stats["compute.task_created.open_task_group"] == 1
    assert stats["compute.executed.check_environment"] == 1


def test_remote_exception_fails_the_task_with_the_remote_traceback(facility, tmp_path, capfd):
    missing = tmp_path / "nowhere" / "scan.h5"
    dag_run, tis = run_check_environment(
        "test_compute_remote_error", function_kwargs={"paths": [str(missing)]}, retries=0
    )
    assert tis["compute"].state == "failed"
    assert dag_run.state == "failed"
    captured = capfd.readouterr()
    logged = captured.out + captured.err
    assert "FileNotFoundError" in logged and str(missing) in logged
    assert "failed at the endpoint" in logged


def test_injected_raise_fault_fails_the_task(facility):
    facility.inject("compute", "raise", match="^check_environment$", message="detector on fire")
    _, tis = run_check_environment("test_compute_raise_fault", retries=0)
    assert tis["compute"].state == "failed"
    assert facility.stats()["fault.compute.raise"] == 1


class CrashAfterSubmit(GlobusComputeOperator):
    """The first try dies right after submitting (as a worker would), before it can wait."""

    def defer(self, **kwargs):
        from airflow.sdk import get_current_context

        if get_current_context()["ti"].try_number == 1:
            raise RuntimeError("simulated worker crash after submitting")
        return super().defer(**kwargs)


def test_retry_after_a_worker_crash_reattaches_instead_of_running_again(facility):
    facility.inject("compute", "slow", match="^check_environment$", params={"seconds": 2})
    dag_run, tis = run_check_environment("test_compute_crash_retry", operator_cls=CrashAfterSubmit)
    assert tis["compute"].state == "success"
    assert tis["compute"].try_number == 2
    assert xcom(dag_run, "compute")["python"]
    assert created_and_ran_once(facility)["compute.task_created.open_task_group"] == 1


class CrashAfterTheRun(GlobusComputeOperator):
    """The first try dies once its Compute task succeeded, before it could report."""

    def defer(self, **kwargs):
        from airflow.sdk import get_current_context

        if get_current_context()["ti"].try_number == 1:
            task_id, deadline = kwargs["trigger"].compute_task_id, time.monotonic() + 30
            while self.hook.get_task(task_id)["pending"] and time.monotonic() < deadline:
                time.sleep(0.1)
            raise RuntimeError("simulated worker crash after the task succeeded")
        return super().defer(**kwargs)


def test_retry_after_the_task_succeeded_takes_its_result_without_running_again(facility):
    dag_run, tis = run_check_environment("test_compute_done_retry", operator_cls=CrashAfterTheRun)
    assert tis["compute"].state == "success" and tis["compute"].try_number == 2
    assert xcom(dag_run, "compute")["python"]
    created_and_ran_once(facility)


def test_retry_after_a_remote_failure_submits_afresh(facility):
    facility.inject("compute", "raise", match="^check_environment$", message="transient")
    _, tis = run_check_environment("test_compute_failed_retry")
    assert tis["compute"].state == "success"
    stats = facility.stats()
    assert stats["compute.task_created.check_environment"] == 2
    assert stats["compute.task_created.open_task_group"] == 1  # the retry submits into the run's group


SUBMIT = r"^POST /v3/endpoints/[^/]+/submit$"


def test_lost_submit_answer_is_not_resent_by_the_sdk(facility, capfd):
    """Issue 13 finding 2: globus-sdk resent the submit after a 504, so Compute ran the function twice."""
    facility.inject("compute", "lost_response", status=504, match=SUBMIT)
    _, tis = run_check_environment("test_compute_lost_answer", retries=0)
    stats = facility.stats()
    assert stats["fault.lost_response.504"] == 1
    assert stats["compute.submit"] == 1 and stats["compute.task_created"] == 1
    assert tis["compute"].state == "failed"
    assert "failed without an answer" in task_log(capfd)


def test_i21_finding_11_a_lost_submit_answer_is_found_in_the_task_group(facility, capfd):
    """Issue 21 finding 11: a lost answer still created a second task (the function ran twice). The call now
    goes into the run's own task group, which is read before anything is sent again."""
    facility.inject("compute", "lost_submit", status=504, match="^check_environment$")
    dag_run, tis = run_check_environment("test_compute_lost_in_group", retries=1)
    assert tis["compute"].state == "success" and tis["compute"].try_number == 1
    assert xcom(dag_run, "compute")["python"]
    assert created_and_ran_once(facility)["fault.lost_response.504"] == 1
    assert "its task group holds it" in task_log(capfd)


class DieAfterTheLostAnswer(GlobusComputeOperator):
    """The first try's submit answer is lost and the try dies before it can look in the group."""

    def _lookup_after_lost_answer(self, state):
        from airflow.sdk import get_current_context

        if get_current_context()["ti"].try_number == 1:
            raise RuntimeError("simulated worker crash after a lost submit answer")
        return super()._lookup_after_lost_answer(state)


def test_i21_finding_11_the_retry_finds_the_lost_task_before_sending_again(facility, capfd):
    facility.inject("compute", "lost_submit", status=504, match="^check_environment$")
    _, tis = run_check_environment("test_compute_lost_retry", operator_cls=DieAfterTheLostAnswer)
    assert tis["compute"].state == "success" and tis["compute"].try_number == 2
    assert created_and_ran_once(facility)["compute.task_created.open_task_group"] == 1
    assert "submitted by an earlier try; re-attaching" in task_log(capfd)


def test_i26_finding_4_a_pickled_result_is_refused_unread(facility, tmp_path, capfd):
    """Issue 26 finding 4: a dill payload returned as a task result was unpickled in the worker (code ran in a
    process holding every secret). Only JSON data is read now; the task fails at once, without retries."""
    import os

    from globus_compute_sdk.serialize import DillDataBase64

    canary = tmp_path / "canary"

    class Exploit:
        def __reduce__(self):
            return (os.mkdir, (str(canary),))

    payload = DillDataBase64().serialize(Exploit())
    facility.inject("compute", "forge_result", match="^check_environment$", params={"payload": payload})
    dag_run, tis = run_check_environment("test_compute_forged_result", retries=2)
    assert not canary.exists()
    assert tis["compute"].state == "failed" and tis["compute"].try_number == 1
    assert dag_run.state == "failed"
    logged = task_log(capfd)
    assert "refused a task result serialised with DillDataBase64" in logged
    assert facility.stats()["fault.compute.forge_result"] == 1


def test_i21_finding_15_a_function_is_registered_once_per_code_version(facility):
    """Issue 21 finding 15: an unpinned function was registered on every submit."""
    assert run_check_environment("test_compute_register_once_a")[1]["compute"].state == "success"
    facility.reset()
    dag_run, tis = run_check_environment("test_compute_register_once_b")
    assert tis["compute"].state == "success" and xcom(dag_run, "compute")["python"]
    stats = facility.stats()
    assert stats["compute.executed.check_environment"] == 1
    assert stats.get("compute.register", 0) == 0  # the same code: the id pinned by the first run


def test_i21_finding_15_a_pinned_id_naming_other_code_is_not_used(facility):
    """The Variable pinning a function is checked against Compute: an id whose code differs (an edited
    Variable) is not run; the function is registered again and the Variable rewritten."""
    from airflow.models.variable import Variable

    from als_provider.hooks.globus_compute import FUNCTION_VARIABLE_PREFIX
    from compute_functions import remote
    from include.compute_registry import code_version

    hook = GlobusComputeHook()
    other = hook.register_function(remote.open_task_group)
    version = code_version(hook.function_code(remote.check_environment))
    key = "__".join((FUNCTION_VARIABLE_PREFIX, hook.globus_compute_conn_id, "check_environment", version[:16]))
    Variable.set(key, other)
    facility.reset()
    dag_run, tis = run_check_environment("test_compute_pinned_other_code")
    assert tis["compute"].state == "success"
    assert xcom(dag_run, "compute")["python"]  # check_environment ran, not the other
    assert facility.stats()["compute.register"] >= 1
    assert Variable.get(key) not in (None, other)


def test_other_calls_keep_the_sdks_retries(facility):
    """Only the submit is sent once: a 503 on the task poll is still retried by the SDK."""
    facility.inject("compute", "http", status=503, match=r"^GET /v2/tasks/", times=2)
    _, tis = run_check_environment("test_compute_poll_retried", retries=0)
    assert tis["compute"].state == "success"
    assert facility.stats()["fault.http.503"] == 2


def test_data_error_fails_once_with_the_functions_line(facility, tmp_path, capfd):
    """Issue 13 finding 7: a ScanError at the endpoint was retried three times; it now fails the task once."""
    scan = tmp_path / "corrupt.h5"
    scan.write_bytes(b"not an HDF5 file")
    dag = make_dag(
        "test_compute_data_error",
        function_name="reconstruct",
        function_kwargs={"scan_path": str(scan), "out_dir": str(tmp_path / "out")},
        endpoint_id=ENDPOINT,
        retries=2,
    )
    dag_run, tis = run_in_db(dag)
    assert dag_run.state == "failed"
    assert tis["compute"].try_number == 1
    assert facility.stats()["compute.task_created.reconstruct"] == 1
    logged = task_log(capfd)
    assert "AirflowFailException: reconstruct: " in logged and "not an HDF5 file" in logged


def test_transient_remote_failures_are_still_retried(facility):
    facility.inject("compute", "raise", match="^check_environment$", message="endpoint lost its worker")
    _, tis = run_check_environment("test_compute_transient_retried")
    assert tis["compute"].state == "success" and tis["compute"].try_number == 2


def task_log(capfd) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err


def test_site_resolves_the_endpoint_and_non_deferrable_mode_waits_inline(facility):
    dag = make_dag(
        "test_compute_site_inline", function_name="check_environment", site="local", deferrable=False, retries=0
    )
    dag_run, tis = run_in_db(dag)
    assert tis["compute"].state == "success"
    assert xcom(dag_run, "compute")["host"]


def test_timeout_fails_the_task(facility):
    facility.inject("compute", "slow", match="^check_environment$", params={"seconds": 5})
    _, tis = run_check_environment("test_compute_timeout", task_timeout=timedelta(seconds=1), retries=0)
    assert tis["compute"].state == "failed"


def test_operator_needs_exactly_one_target():
    with pytest.raises(ValueError, match="exactly one"):
        GlobusComputeOperator(task_id="x", function_name="check_environment")
    with pytest.raises(ValueError, match="exactly one"):
        GlobusComputeOperator(task_id="x", function_name="check_environment", site="local", endpoint_id=ENDPOINT)


def test_trigger_serialize_round_trips():
    trigger = GlobusComputeTaskTrigger(
        "task-1", globus_compute_conn_id="c", poll_interval=3.0, deadline=123.5, function_name="reconstruct"
    )
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    import importlib

    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert kwargs == {
        "task_id": "task-1",
        "endpoint_id": None,
        "globus_compute_conn_id": "c",
        "poll_interval": 3.0,
        "deadline": 123.5,
        "function_name": "reconstruct",
    }
    again.task_id = "alcf.reconstruct"  # the triggerer sets the Airflow task's id on every trigger it loads
    assert again.serialize() == (path, kwargs) and again.compute_task_id == "task-1"


def first(trigger):
    async def go():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(go())


def test_trigger_events(facility):
    hook = GlobusComputeHook()
    function_id = hook.register_function(__import__("compute_functions.remote").remote.check_environment)
    ok = first(GlobusComputeTaskTrigger(hook.run(function_id, ENDPOINT, {}), poll_interval=0.1))
    assert ok["status"] == "success" and ok["result"]["python"]

    failed = first(
        GlobusComputeTaskTrigger(hook.run(function_id, ENDPOINT, {"paths": ["/no/such"]}), poll_interval=0.1)
    )
    assert failed["status"] == "error" and "FileNotFoundError" in failed["message"]

    unknown = first(GlobusComputeTaskTrigger("00000000-0000-0000-0000-000000000000", poll_interval=0.1))
    assert unknown["status"] == "error" and "404" in unknown["message"]

    facility.inject("compute", "slow", match="^check_environment$", params={"seconds": 3})
    slow_id = hook.run(function_id, ENDPOINT, {})
    timed_out = first(GlobusComputeTaskTrigger(slow_id, poll_interval=0.1, deadline=time.time() + 0.5))
    assert timed_out["status"] == "timeout"


def test_execute_complete_raises_the_message():
    operator = GlobusComputeOperator(task_id="x", function_name="check_environment", endpoint_id=ENDPOINT)
    with pytest.raises(GlobusComputeTaskError, match="boom"):
        operator.execute_complete({}, {"status": "error", "task_id": "t", "message": "Traceback...\nboom"})
