"""SFAPIHook and SFAPIJobTrigger through the real sfapi_client against the facility's SFAPI stand-in."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from als_provider.hooks.sfapi import SFAPIHook, SFAPIJobNotFound
from als_provider.operators.sfapi import SFAPIJobOperator
from als_provider.triggers.sfapi import SFAPIJobTrigger

MACHINE = "perlmutter"


def script(body: str, name: str = "hook_test", error: str | None = None) -> str:
    header = f"#!/bin/bash\n#SBATCH --job-name={name}\n"
    if error:
        header += f"#SBATCH --error={error}\n"
    return header + body + "\n"


def wait_for(hook: SFAPIHook, jobid: str, states: set[str], timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = hook.job_state(MACHINE, jobid)
        if job.state in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {jobid} never reached {states}")


@pytest.fixture
def hook(facility):
    hook = SFAPIHook()
    yield hook
    hook.close()


def test_submit_then_squeue_then_sacct(hook, facility):
    jobid = hook.submit_job(MACHINE, script("sleep 1"))
    running = wait_for(hook, jobid, {"PENDING", "RUNNING"})
    assert running.name == "hook_test"
    # squeue lists the user's queued and running jobs (another test's long job may still run beside it)
    assert jobid in [j.jobid for j in hook.list_jobs(MACHINE)]
    assert wait_for(hook, jobid, {"COMPLETED"}).state == "COMPLETED"
    assert jobid not in [j.jobid for j in hook.list_jobs(MACHINE)]  # squeue forgets it; sacct still knows it
    stats = facility.stats()
    assert stats["sfapi.submit"] == 1 and stats["sfapi.job_created"] == 1


def test_cancel_kills_the_whole_process_group(hook, facility, local_endpoints, tmp_path):
    marker = local_endpoints["nersc832_alsdev_pscratch_scratch"].posix_path("hook_test/cancelled_child")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    # a grandchild that would write the marker after 2 s unless its process group is killed
    jobid = hook.submit_job(MACHINE, script(f"(sleep 2; touch '{marker}') &\nsleep 30"))
    wait_for(hook, jobid, {"RUNNING"})
    hook.cancel_job(MACHINE, jobid)
    assert wait_for(hook, jobid, {"CANCELLED"}).state == "CANCELLED"  # sacct says "CANCELLED by <uid>"
    time.sleep(2.5)
    assert not marker.exists()
    assert facility.stats()["sfapi.cancel"] == 1


def test_error_log_tail(hook, local_endpoints):
    log_dir = local_endpoints["nersc832_alsdev_pscratch_scratch"].posix_path("tomo_recon_logs")
    body = "for i in $(seq 1 100); do echo line$i >&2; done; exit 2"
    jobid = hook.submit_job(MACHINE, script(body, "tail_test", error=f"{log_dir}/%x_%j.err"))
    wait_for(hook, jobid, {"FAILED"})
    tail = hook.tail(MACHINE, f"{log_dir}/tail_test_{jobid}.err", lines=3)
    assert tail.splitlines() == ["line98", "line99", "line100"]


def test_tail_of_a_missing_or_forbidden_file_says_why(hook):
    assert "No such file" in hook.tail(MACHINE, f"{os.environ['LOCAL_FACILITY_ROOT']}/nope.err")
    assert "Permission denied" in hook.tail(MACHINE, "/etc/passwd")


def test_unknown_job(hook):
    with pytest.raises(SFAPIJobNotFound, match="99999"):
        hook.job_state(MACHINE, "99999")


def test_sbatch_error_is_reported(hook, facility):
    with pytest.raises(Exception, match="Invalid --time"):
        hook.submit_job(MACHINE, "#!/bin/bash\n#SBATCH --time=soon\ntrue\n")
    assert facility.stats().get("sfapi.job_created", 0) == 0


def _with_connection(monkeypatch, **changes):
    conn = json.loads(os.environ["AIRFLOW_CONN_SFAPI_DEFAULT"])
    conn.update(changes)
    monkeypatch.setenv("AIRFLOW_CONN_SFAPI_TEST", json.dumps(conn))
    return SFAPIHook("sfapi_test")


def test_wrong_key_is_refused_with_a_clear_message(facility, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    hook = _with_connection(monkeypatch, password=other)
    with pytest.raises(Exception, match=r"refused client 'local-client'.*invalid_client") as caught:
        hook.submit_job(MACHINE, script("true"))
    assert "PRIVATE KEY" not in str(caught.value)
    assert facility.stats()["sfapi.auth_refused"] == 1
    assert facility.stats().get("sfapi.submit", 0) == 0


def test_unknown_client_id_is_refused(facility, monkeypatch):
    hook = _with_connection(monkeypatch, login="someone-else")
    with pytest.raises(Exception, match="Unknown client"):
        hook.list_jobs(MACHINE)


def test_a_password_that_is_not_a_private_key_fails_before_any_request(facility, monkeypatch):
    hook = _with_connection(monkeypatch, password="local-secret")
    with pytest.raises(Exception, match="not an RSA private key") as caught:
        hook.list_jobs(MACHINE)
    assert "local-secret" not in str(caught.value)


def test_http_503_is_retried_by_sfapi_client(hook, facility):
    facility.inject("sfapi", "http", status=503, match="GET /sfapi/api/v1.2/status/perlmutter", times=1)
    assert hook.compute(MACHINE).name == MACHINE
    assert facility.stats()["fault.http.503"] == 1


def test_the_job_post_is_sent_once(hook, facility):
    """Issue 13 finding 1: sfapi_client resends a POST on 502/503/504; a job POST is sent once."""
    facility.inject("sfapi", "lost_response", status=504, match=r"^POST /sfapi/.*/compute/jobs/", times=1)
    with pytest.raises(Exception, match="HTTP 504"):
        hook.submit_job(MACHINE, script("true", name="hook_once"))
    stats = facility.stats()
    assert stats["sfapi.submit"] == 1 and stats["sfapi.job_created"] == 1
    assert hook.find_jobs(MACHINE, "hook_once", "airflow-other-task") == []  # another comment: not ours
    [job] = hook.query_jobs(MACHINE, sacct=True, name="hook_once")
    assert job.name == "hook_once"


def test_an_error_answer_to_a_job_query_is_an_error_not_an_unknown_job(hook, facility):
    """Issue 17 item 2: sfapi_client 0.6.0 reads {"status": "ERROR"} as an empty job list (job not found)."""
    jobid = hook.submit_job(MACHINE, script("true", name="hook_query_error"))
    wait_for(hook, jobid, {"COMPLETED"})
    facility.inject("sfapi", "query_error", match=f"^squeue {jobid}$", message="slurm_load_jobs error: timeout")
    with pytest.raises(Exception, match="answered ERROR: slurm_load_jobs error: timeout") as caught:
        hook.job_state(MACHINE, jobid)
    assert not isinstance(caught.value, SFAPIJobNotFound)
    assert hook.job_state(MACHINE, jobid).state == "COMPLETED"


def test_finished_jobs_carry_their_exit_code(hook):
    jobid = hook.submit_job(MACHINE, script("exit 2", name="hook_exit2"))
    job = wait_for(hook, jobid, {"FAILED"})
    assert job.exit_code == "2:0" and job.exit_status == 2


# --- trigger
def test_trigger_serialize_round_trips():
    trigger = SFAPIJobTrigger(job_id="123", poll_interval=2, error_log="/x/y.err", job_name="n", tail_lines=5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "als_provider.triggers.sfapi.SFAPIJobTrigger"
    clone = SFAPIJobTrigger(**json.loads(json.dumps(kwargs)))
    assert clone.serialize() == (classpath, kwargs)


async def _first_event(trigger: SFAPIJobTrigger) -> dict:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("no event")


def test_trigger_reports_completed(hook):
    jobid = hook.submit_job(MACHINE, script("true"))
    event = asyncio.run(_first_event(SFAPIJobTrigger(job_id=jobid, poll_interval=0.2)))
    assert event["status"] == "success" and event["state"] == "COMPLETED"


def test_trigger_reports_a_forced_state_with_the_log_tail(hook, facility, local_endpoints):
    log = local_endpoints["nersc832_alsdev_pscratch_scratch"].posix_path("tomo_recon_logs/forced.err")
    facility.inject("sfapi", "state", match="^forced$", params={"state": "NODE_FAIL", "after": 0.2})
    jobid = hook.submit_job(MACHINE, script("sleep 30", "forced", error=str(log)))
    event = asyncio.run(_first_event(SFAPIJobTrigger(job_id=jobid, poll_interval=0.2, error_log=str(log))))
    assert event["status"] == "error" and event["state"] == "NODE_FAIL"
    assert "DUE TO NODE FAILURE" in event["log_tail"]


def test_trigger_gives_up_on_an_unknown_job(facility):
    trigger = SFAPIJobTrigger(job_id="424242", poll_interval=0.05, max_poll_errors=2)
    event = asyncio.run(_first_event(trigger))
    assert event["status"] == "error" and "never found" in event["message"]


def test_trigger_on_kill_cancels_the_job(hook, facility):
    jobid = hook.submit_job(MACHINE, script("sleep 30"))
    wait_for(hook, jobid, {"RUNNING"})
    asyncio.run(SFAPIJobTrigger(job_id=jobid).on_kill())
    assert wait_for(hook, jobid, {"CANCELLED"}).state == "CANCELLED"
    assert facility.stats()["sfapi.cancel"] == 1


def test_operator_on_kill_cancels_the_job_it_waits_for(hook, facility):
    jobid = hook.submit_job(MACHINE, script("sleep 30"))
    wait_for(hook, jobid, {"RUNNING"})
    operator = SFAPIJobOperator(task_id="job", template="command.sh.j2", values={"command": ["true"]}, job_name="x")
    operator._remote = {"job_id": jobid, "machine": MACHINE}  # what execute() holds while it polls
    operator.on_kill()
    assert wait_for(hook, jobid, {"CANCELLED"}).state == "CANCELLED"
