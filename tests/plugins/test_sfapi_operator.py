"""SFAPIJobOperator and SFAPIJobSensor in real Airflow runs (dag.test) against the SFAPI stand-in."""

from __future__ import annotations

import pytest

from als_provider.operators.sfapi import SFAPIJobOperator
from tests.dags.dag_helpers import run_in_db, xcom
from tests.fixture_dags.sfapi_operator_dags import DAGS, FORCED_STATES

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]


def run(name: str):
    dag_run = DAGS[name].test()
    return dag_run, {ti.task_id: ti for ti in dag_run.get_task_instances()}


def task_log(capfd) -> str:
    """What the in-process task printed (Airflow's task logger writes to the console under dag.test)."""
    out, err = capfd.readouterr()
    return out + err


def reattached_run(facility, capfd, name: str, logged: str):
    """Run ``name``: its retry (try 2) logs ``logged`` and succeeds, and SFAPI created one job only."""
    dag_run, tis = run(name)
    assert logged in task_log(capfd)
    assert dag_run.state == "success" and tis["job"].try_number == 2
    assert facility.stats()["sfapi.job_created"] == 1
    return dag_run


def test_completed_job_succeeds_with_its_id_in_xcom(facility):
    dag_run, _ = run("ok")
    assert dag_run.state == "success"
    result = xcom(dag_run, "job")
    assert result["state"] == "COMPLETED"
    assert result["job_name"] == "test_ok"
    assert str(xcom(dag_run, "job", "job_id")) == result["job_id"]
    assert result["error_log"].endswith(f"tomo_recon_logs/test_ok_{result['job_id']}.err")
    with open(result["output_log"]) as out:
        assert "hello" in out.read()
    assert facility.stats()["sfapi.submit"] == 1


def test_failed_job_fails_the_task_with_state_and_log_tail(facility, capfd):
    dag_run, tis = run("exit3")
    assert tis["job"].state == "failed"
    assert dag_run.state == "failed"
    logged = task_log(capfd)
    assert "ended FAILED" in logged
    assert "reconstruction blew up" in logged


def test_time_limit_gives_timeout(facility, capfd):
    _, tis = run("timeout")
    assert tis["job"].state == "failed"
    logged = task_log(capfd)
    assert "ended TIMEOUT" in logged
    assert "DUE TO TIME LIMIT" in logged


@pytest.mark.parametrize("state", FORCED_STATES)
def test_each_failure_state_fails_the_task_naming_it(facility, capfd, state):
    facility.inject("sfapi", "state", match=f"^test_state_{state}$", params={"state": state, "after": 0.3})
    _, tis = run(f"state_{state}")
    assert tis["job"].state == "failed"
    logged = task_log(capfd)
    assert f"ended {state}" in logged
    assert f"[state {state}]" in logged
    assert facility.stats()["sfapi.job_created"] == 1


def test_retry_after_crash_reattaches_to_the_stored_job(facility, capfd):
    reattached_run(facility, capfd, "crash", "Re-attaching to job")
    assert facility.stats()["sfapi.submit"] == 1


def test_retry_after_the_job_completed_takes_its_result(facility, capfd):
    dag_run = reattached_run(facility, capfd, "crash_done", "Re-attaching to job")
    assert xcom(dag_run, "job")["state"] == "COMPLETED"


def test_retry_after_lost_submit_finds_the_job_by_name(facility, capfd):
    reattached_run(facility, capfd, "lost", "submitted by an earlier try; re-attaching")


def test_retry_after_a_failed_job_submits_a_new_one(facility):
    dag_run, tis = run("retry_failed")
    assert dag_run.state == "failed"
    assert tis["job"].try_number == 2
    assert facility.stats()["sfapi.job_created"] == 2


def test_lost_submit_answer_starts_one_job_and_attaches_to_it(facility, capfd):
    """Issue 13 finding 1: sfapi_client resent the POST on a 504, so SFAPI ran two jobs of one name."""
    facility.inject("sfapi", "lost_response", status=504, match=r"^POST /sfapi/.*/compute/jobs/perlmutter$")
    dag_run, tis = run("lost_answer")
    stats = facility.stats()
    assert stats["fault.lost_response.504"] == 1
    assert stats["sfapi.job_created"] == 1
    assert stats["sfapi.submit"] == 1
    assert dag_run.state == "success" and tis["job"].try_number == 1
    assert "SFAPI has its job" in task_log(capfd)


def test_retry_finds_the_lost_job_after_it_finished(facility, capfd):
    """Issue 13 finding 3: the retry looked only at queued/running jobs and ran a finished job again."""
    dag_run = reattached_run(facility, capfd, "lost_done", "submitted by an earlier try; re-attaching")
    assert xcom(dag_run, "job")["state"] == "COMPLETED"


def test_an_error_answer_to_the_retrys_job_query_never_submits_again(facility):
    """Issue 17 item 2: sfapi_client read an {"status": "ERROR"} answer as "no such job", so the retry
    submitted a second job. Now each ERROR fails that try, and the next one re-attaches."""
    facility.inject("sfapi", "query_error", match=r"^(squeue|sacct) \d+$", times=2, message="slurm down")
    dag_run, tis = run("crash_query_error")
    assert dag_run.state == "success"
    assert tis["job"].try_number == 4  # try 1 crashed, tries 2 and 3 met an ERROR, try 4 re-attached
    stats = facility.stats()
    assert stats["fault.sfapi.query_error"] == 2
    assert stats["sfapi.job_created"] == 1


def test_data_error_fails_once_with_the_programs_line(facility, capfd):
    """Issue 13 finding 7: exit status 2 (ScanError) is a data error: no retries, the one-line reason."""
    dag_run, tis = run("data_error")
    assert dag_run.state == "failed"
    assert tis["job"].try_number == 1
    assert facility.stats()["sfapi.job_created"] == 1
    assert "reconstruct: rows: 5 is not A:B" in task_log(capfd)


def test_other_job_failures_are_still_retried(facility):
    dag_run, tis = run("exit1_retried")
    assert dag_run.state == "failed"
    assert tis["job"].try_number == 2
    assert facility.stats()["sfapi.job_created"] == 2


def test_non_deferrable_mode_waits_in_the_worker(facility):
    dag_run, _ = run("sync_ok")
    assert dag_run.state == "success"
    assert xcom(dag_run, "job")["state"] == "COMPLETED"


def test_sensor_waits_for_an_existing_job(facility):
    dag_run, tis = run("sensor_ok")
    assert dag_run.state == "success"
    assert tis["wait"].state == "success"
    assert facility.stats()["sfapi.job_created"] == 1


def test_sensor_fails_on_a_failed_job(facility, capfd):
    _, tis = run("sensor_fail")
    assert tis["wait"].state == "failed"
    assert "ended FAILED" in task_log(capfd)


# --- issue 21 finding 9: a generation that only a Clear changes


class RetriesRaisedBetweenTries(SFAPIJobOperator):
    """The code says ``retries=2`` in the first try and ``retries=3`` in the next (a deploy between tries); the
    first try dies after its job was submitted and its id stored."""

    code_retries = 2

    @property
    def retries(self):
        return type(self).code_retries

    @retries.setter
    def retries(self, value):
        pass

    def execute(self, context):
        self._first_try = context["ti"].try_number == 1
        return super().execute(context)

    def defer(self, *args, **kwargs):
        if self._first_try:
            type(self).code_retries = 3
            raise RuntimeError("worker died after submitting; the next try runs code with retries=3")
        return super().defer(*args, **kwargs)


def test_i21_finding_9_changing_retries_between_tries_reattaches(facility, capfd):
    """Issue 21 finding 9: ``generation`` used the current ``task.retries``, so retries 2 -> 3 between tries
    looked like a Clear and a second Slurm job was submitted after the first completed."""
    from datetime import timedelta

    import pendulum
    from airflow.sdk import DAG

    RetriesRaisedBetweenTries.code_retries = 2
    with DAG(
        dag_id="test_sfapi_retries_raised",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        default_args={"retry_delay": timedelta(seconds=0)},
    ) as dag:
        RetriesRaisedBetweenTries(
            task_id="job",
            template="command.sh.j2",
            values={"command": ["sleep", "1"]},
            job_name="test_retries_raised",
            poll_interval=0.3,
        )
    dag_run, tis = run_in_db(dag)
    assert dag_run.state == "success" and tis["job"].try_number == 2
    assert "Re-attaching to job" in task_log(capfd)
    assert facility.stats()["sfapi.job_created"] == 1


def test_i21_finding_9_generation_is_kept_across_a_retries_change_and_renewed_by_a_clear():
    from types import SimpleNamespace

    from als_provider.operators.base import end_run, generation

    class Store(dict):
        def set(self, key, value):
            self[key] = value

    store = Store()

    def context(try_number, max_tries, retries):
        ti = SimpleNamespace(try_number=try_number, max_tries=max_tries, task=SimpleNamespace(retries=retries))
        return {"ti": ti, "task_state_store": store}

    assert generation(context(1, 2, 2)) == 1
    assert generation(context(2, 2, 3)) == 1  # the code's retries changed: still a retry of run 1
    end_run(context(2, 2, 3))  # succeeded
    # retries lowered to 0, then a Clear: max_tries = 2 + 0 = 2, unchanged; the ended run makes it a new one
    assert generation(context(3, 2, 0)) == 3
    assert generation(context(4, 5, 2)) == 4  # a Clear that raised max_tries


def seconds_past_next_midnight(extra: float = 60.0) -> float:
    """How far the stand-in's clock must move so that it reads ``extra`` seconds after the next midnight."""
    import datetime as dt
    import time

    tomorrow = (dt.datetime.now() + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return tomorrow.timestamp() - time.time() + extra


def test_i21_finding_13_a_job_from_before_midnight_is_found_after_it(facility, capfd):
    """Issue 21 finding 13: sacct's default window starts at midnight, so a finished job of a try that died
    before midnight was not found by the retry after midnight, and was submitted again."""
    facility.inject("sfapi", "clock", times=10**9, params={"offset_seconds": seconds_past_next_midnight()})
    reattached_run(facility, capfd, "lost_done", "submitted by an earlier try; re-attaching")
