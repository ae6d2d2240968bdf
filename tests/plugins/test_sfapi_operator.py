"""SFAPIJobOperator and SFAPIJobSensor in real Airflow runs (dag.test) against the SFAPI stand-in."""

from __future__ import annotations

import pytest

from tests.fixture_dags.sfapi_operator_dags import DAGS, FORCED_STATES

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]


def run(name: str):
    dag_run = DAGS[name].test()
    return dag_run, {ti.task_id: ti for ti in dag_run.get_task_instances()}


def task_log(capfd) -> str:
    """What the in-process task printed (Airflow's task logger writes to the console under dag.test)."""
    out, err = capfd.readouterr()
    return out + err


def xcom(dag_run, task_id: str = "job", key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)


def test_completed_job_succeeds_with_its_id_in_xcom(facility):
    dag_run, _ = run("ok")
    assert dag_run.state == "success"
    result = xcom(dag_run)
    assert result["state"] == "COMPLETED"
    assert result["job_name"] == "test_ok"
    assert str(xcom(dag_run, key="job_id")) == result["job_id"]
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
    dag_run, tis = run("crash")
    assert "Re-attaching to job" in task_log(capfd)
    assert dag_run.state == "success"
    assert tis["job"].try_number == 2
    stats = facility.stats()
    assert stats["sfapi.submit"] == 1
    assert stats["sfapi.job_created"] == 1


def test_retry_after_the_job_completed_takes_its_result(facility, capfd):
    dag_run, tis = run("crash_done")
    assert "Re-attaching to job" in task_log(capfd)
    assert dag_run.state == "success" and tis["job"].try_number == 2
    assert xcom(dag_run)["state"] == "COMPLETED"
    assert facility.stats()["sfapi.job_created"] == 1


def test_retry_after_lost_submit_finds_the_job_by_name(facility, capfd):
    dag_run, tis = run("lost")
    assert "submitted by an earlier try; re-attaching" in task_log(capfd)
    assert dag_run.state == "success"
    assert tis["job"].try_number == 2
    assert facility.stats()["sfapi.job_created"] == 1


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
    dag_run, tis = run("lost_done")
    assert "submitted by an earlier try; re-attaching" in task_log(capfd)
    assert dag_run.state == "success" and tis["job"].try_number == 2
    assert facility.stats()["sfapi.job_created"] == 1
    assert xcom(dag_run)["state"] == "COMPLETED"


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
    assert xcom(dag_run)["state"] == "COMPLETED"


def test_sensor_waits_for_an_existing_job(facility):
    dag_run, tis = run("sensor_ok")
    assert dag_run.state == "success"
    assert tis["wait"].state == "success"
    assert facility.stats()["sfapi.job_created"] == 1


def test_sensor_fails_on_a_failed_job(facility, capfd):
    _, tis = run("sensor_fail")
    assert tis["wait"].state == "failed"
    assert "ended FAILED" in task_log(capfd)
