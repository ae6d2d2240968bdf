"""Globus triggers: serialisation round trip and every way a wait ends, against the stand-in."""

from __future__ import annotations

import time

from als_provider.hooks.globus_transfer import GlobusTransferHook
from als_provider.triggers.globus_transfer import GlobusPathTrigger, GlobusTaskTrigger
from als_provider.triggers.inline import first_event
from include.paths import EndpointPath


def rebuild(trigger):
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    cls = getattr(__import__(module, fromlist=[name]), name)
    clone = cls(**kwargs)
    assert clone.serialize() == (classpath, kwargs)
    return clone


def test_serialize_round_trips():
    rebuild(GlobusTaskTrigger("t-1", globus_conn_id="c", poll_interval=3.5, deadline=123.0, cancel_on_fatal=False))
    assert rebuild(GlobusTaskTrigger("t-1", stall_timeout=60)).stall_timeout == 60
    rebuild(GlobusPathTrigger("data832_raw", "a/b.h5", globus_conn_id="c", poll_interval=7))


def submit(local_endpoints, name: str, *, write: bool = True, payload: bytes = b"p" * 4096) -> str:
    source = EndpointPath("spot832", f"raw/trigger_test/{name}")
    if write:
        path = local_endpoints.posix(source)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    hook = GlobusTransferHook()
    result = hook.submit_transfer(
        source,
        EndpointPath("data832_raw", f"trigger_test/{name}"),
        submission_id=hook.new_submission_id(),
        recursive=False,
        label=name,
    )
    return result["task_id"]


def test_success_event_carries_the_summary(facility, local_endpoints):
    task_id = submit(local_endpoints, "ok.h5")
    event = first_event(GlobusTaskTrigger(task_id, poll_interval=0.1))
    assert event["status"] == "success"
    assert event["task"]["task_id"] == task_id
    assert event["task"]["bytes_transferred"] == 4096
    assert event["task"]["files_transferred"] == 1


def test_failed_task_reports_globus_message(facility, local_endpoints):
    facility.inject("transfer", kind="task_failed", match="failing.h5", message="disk quota exceeded on data832")
    task_id = submit(local_endpoints, "failing.h5")
    event = first_event(GlobusTaskTrigger(task_id, poll_interval=0.1))
    assert event["status"] == "error"
    assert "FAILED" in event["message"] and "disk quota exceeded on data832" in event["message"]


def test_fatal_event_on_a_retrying_task_cancels_it(facility, local_endpoints):
    """Globus keeps a task ACTIVE and retrying after PERMISSION_DENIED; we fail fast and cancel it."""
    facility.inject(
        "transfer", kind="permission_denied", match="denied.h5", message="no write access", params={"retrying": True}
    )
    task_id = submit(local_endpoints, "denied.h5")
    event = first_event(GlobusTaskTrigger(task_id, poll_interval=0.1, stall_timeout=0.5))
    assert event["status"] == "error"
    assert "PERMISSION_DENIED: no write access" in event["message"] and "cancelled" in event["message"]
    deadline = time.monotonic() + 10
    while GlobusTransferHook().get_task(task_id)["status"] == "ACTIVE" and time.monotonic() < deadline:
        time.sleep(0.1)
    task = GlobusTransferHook().get_task(task_id)
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "CANCELED"


def test_deadline_gives_up_and_cancels(facility, local_endpoints):
    facility.inject("transfer", kind="slow", match="slow.h5", params={"seconds": 30})
    task_id = submit(local_endpoints, "slow.h5")
    started = time.monotonic()
    event = first_event(GlobusTaskTrigger(task_id, poll_interval=0.1, deadline=time.time() + 1))
    assert event["status"] == "error" and "deadline" in event["message"]
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while GlobusTransferHook().get_task(task_id)["status"] == "ACTIVE" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert GlobusTransferHook().get_task(task_id)["status"] == "FAILED"


def test_path_trigger_waits_until_the_path_exists(facility, local_endpoints):
    where = EndpointPath("data832_raw", "trigger_test/appears.h5")
    task_id = submit(local_endpoints, "appears.h5")
    event = first_event(GlobusPathTrigger(where.endpoint, str(where.path), poll_interval=0.1))
    assert event["status"] == "success" and event["stat"]["name"] == "appears.h5"
    assert GlobusTransferHook().get_task(task_id)["status"] == "SUCCEEDED"


def test_the_triggerer_setting_task_id_does_not_change_which_globus_task_is_polled(facility, local_endpoints):
    """The triggerer assigns ``trigger.task_id`` (the Airflow task's id) when it loads a trigger."""
    task_id = submit(local_endpoints, "renamed.h5")
    trigger = rebuild(GlobusTaskTrigger(task_id, poll_interval=0.1))
    trigger.task_id = "new_file.spot832_to_data832"  # what BaseTrigger.task_instance's setter does
    assert trigger.serialize()[1]["task_id"] == task_id
    assert first_event(trigger)["status"] == "success"


def wait_until_ended(task_id: str) -> dict:
    deadline = time.monotonic() + 10
    while (task := GlobusTransferHook().get_task(task_id))["status"] == "ACTIVE" and time.monotonic() < deadline:
        time.sleep(0.1)
    return task


def test_a_task_stalled_on_a_full_destination_fails_after_the_stall_timeout(facility, local_endpoints):
    """Finding 3: Globus keeps a task ACTIVE on NO_SPACE_LEFT; we cancel it after a bound, with Globus's words."""
    facility.inject("transfer", kind="stall", match="full.h5", message="No space left on device: /data/raw")
    task_id = submit(local_endpoints, "full.h5")
    started = time.monotonic()
    event = first_event(GlobusTaskTrigger(task_id, poll_interval=0.1, stall_timeout=1))
    assert event["status"] == "error"
    assert "stalled on NO_SPACE_LEFT: No space left on device: /data/raw" in event["message"]
    assert "cancelled" in event["message"] and 1 <= time.monotonic() - started < 10
    task = wait_until_ended(task_id)
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "CANCELED"


def test_a_stall_shorter_than_the_bound_is_waited_out(facility, local_endpoints):
    facility.inject("transfer", kind="stall", match="blip.h5", params={"code": "PERMISSION_DENIED", "seconds": 1})
    task_id = submit(local_endpoints, "blip.h5")
    event = first_event(GlobusTaskTrigger(task_id, poll_interval=0.1, stall_timeout=15))
    assert event["status"] == "success" and event["task"]["files_transferred"] == 1


def test_the_stall_bound_comes_from_the_runtime_config():
    from include.runtime import load_runtime

    assert load_runtime("production").transfer_stall_seconds == 1800
    assert GlobusTaskTrigger("t-1").stall_limit == load_runtime().transfer_stall_seconds
