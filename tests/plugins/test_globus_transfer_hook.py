"""GlobusTransferHook with the real globus-sdk against the local facility's Transfer stand-in."""

from __future__ import annotations

import json
import time

import globus_sdk
import pytest

from als_provider.hooks.globus_transfer import GlobusTransferHook, describe_globus_error, globus_label
from include.paths import EndpointPath


def wait_for(hook: GlobusTransferHook, task_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = hook.get_task(task_id)
        if task["status"] not in ("ACTIVE", "INACTIVE"):
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} still running after {timeout}s")


def place(local_endpoints, where: EndpointPath, data: bytes = b"x" * 1000):
    path = local_endpoints.posix(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_transfer_a_file_and_read_it_back(facility, local_endpoints):
    hook = GlobusTransferHook()
    source = EndpointPath("spot832", "raw/hook_test/a.h5")
    place(local_endpoints, source, b"scan-bytes" * 100)
    destination = EndpointPath("data832_raw", "hook_test/a.h5")
    assert hook.stat(destination) is None
    result = hook.submit_transfer(
        source, destination, submission_id=hook.new_submission_id(), recursive=False, label="hook test"
    )
    task = wait_for(hook, result["task_id"])
    assert task["status"] == "SUCCEEDED"
    assert local_endpoints.posix(destination).read_bytes() == b"scan-bytes" * 100
    assert hook.stat(destination)["size"] == 1000
    assert [entry["name"] for entry in hook.ls(EndpointPath("data832_raw", "hook_test"))] == ["a.h5"]


def test_same_submission_id_never_starts_a_second_task(facility, local_endpoints):
    hook = GlobusTransferHook()
    source = EndpointPath("spot832", "raw/hook_test/dup.h5")
    place(local_endpoints, source)
    submission_id = hook.new_submission_id()
    kwargs = dict(submission_id=submission_id, recursive=False, label="dup")
    first = hook.submit_transfer(source, EndpointPath("data832_raw", "hook_test/dup.h5"), **kwargs)
    second = hook.submit_transfer(source, EndpointPath("data832_raw", "hook_test/dup.h5"), **kwargs)
    assert first["task_id"] == second["task_id"]
    assert second["code"] == "Duplicate"
    stats = facility.stats()
    assert stats["transfer.submit"] == 2 and stats["transfer.task_created"] == 1


def test_delete_and_error_events(facility, local_endpoints):
    hook = GlobusTransferHook()
    target = EndpointPath("data832_raw", "hook_test/del/file.bin")
    place(local_endpoints, target)
    result = hook.submit_delete(
        "data832_raw", ["hook_test/del"], submission_id=hook.new_submission_id(), label="delete test"
    )
    assert wait_for(hook, result["task_id"])["status"] == "SUCCEEDED"
    assert not local_endpoints.posix(target).exists()

    missing = hook.submit_transfer(
        EndpointPath("spot832", "raw/hook_test/never-written.h5"),
        EndpointPath("data832_raw", "hook_test/never.h5"),
        submission_id=hook.new_submission_id(),
        recursive=False,
        label="missing",
    )
    task = wait_for(hook, missing["task_id"])
    assert task["status"] == "FAILED"
    assert any(event["code"] == "FILE_NOT_FOUND" for event in hook.error_events(missing["task_id"]))


def test_bad_credentials_fail_clearly_without_the_secret(facility, monkeypatch):
    connection = json.loads(__import__("os").environ["AIRFLOW_CONN_GLOBUS_DEFAULT"])
    connection["password"] = "wrong-secret-value"
    monkeypatch.setenv("AIRFLOW_CONN_GLOBUS_BAD", json.dumps(connection))
    hook = GlobusTransferHook("globus_bad", max_retries=0)
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        hook.new_submission_id()
    message = describe_globus_error(info.value)
    assert "refused the client credentials" in message
    assert "wrong-secret-value" not in message
    ok, text = hook.test_connection()
    assert not ok and "wrong-secret-value" not in text


def test_incomplete_connection_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GLOBUS_EMPTY", json.dumps({"conn_type": "generic"}))
    with pytest.raises(RuntimeError, match="client id as login"):
        GlobusTransferHook("globus_empty").get_conn()


def test_transient_5xx_are_retried_by_the_sdk(facility):
    facility.inject("transfer", status=503, times=2, match="GET /v0.10/submission_id")
    assert GlobusTransferHook().new_submission_id()
    assert facility.stats()["fault.http.503"] == 2


def test_labels_are_made_acceptable():
    assert globus_label("bl832 new_file: a/b;c") == "bl832 new_file_ a_b_c"
    assert len(globus_label("x" * 300)) == 128
