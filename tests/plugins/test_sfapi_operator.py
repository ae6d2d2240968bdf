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
