"""GlobusComputeHook against the facility's Compute stand-in, through the real globus-compute-sdk."""

from __future__ import annotations

import pytest

from als_provider.hooks.globus_compute import GlobusComputeHook
from compute_functions import remote
from include.sites import load_sites
from tests.dags.dag_helpers import wait_for_compute_task

ENDPOINT = load_sites()["local"].compute_endpoint_id  # the local profile registers the ids it serves


@pytest.fixture
def hook(facility):
    return GlobusComputeHook(max_retries=0)


def test_run_returns_the_function_result(hook, facility, tmp_path):
    (tmp_path / "scan.h5").write_bytes(b"x" * 10)
    function_id = hook.register_function(remote.check_environment)
    task_id = hook.run(function_id, ENDPOINT, {"paths": [str(tmp_path / "scan.h5")]})
    task = wait_for_compute_task(hook, task_id)
    assert task["status"] == "success", task
    assert task["result"]["paths"][str(tmp_path / "scan.h5")]["size"] == 10
    stats = facility.stats()
    assert stats["compute.register"] == 1
    assert stats["compute.submit"] == 1
    assert stats["compute.executed.check_environment"] == 1


def test_remote_exception_is_the_remote_traceback(hook, tmp_path):
    function_id = hook.register_function(remote.check_environment)
    task = wait_for_compute_task(hook, hook.run(function_id, ENDPOINT, {"paths": [str(tmp_path / "missing.h5")]}))
    assert task["status"] == "failed"
    assert task["pending"] is False
    assert "FileNotFoundError" in task["exception"]
    assert "missing.h5" in task["exception"]
    assert "Traceback" in task["exception"]


def test_injected_raise_fault(hook, facility):
    facility.inject("compute", "raise", match="^check_environment$", message="detector exploded")
    function_id = hook.register_function(remote.check_environment)
    task = wait_for_compute_task(hook, hook.run(function_id, ENDPOINT, {}))
    assert task["status"] == "failed"
    assert "RuntimeError: detector exploded" in task["exception"]


def test_unknown_task_raises_api_error(hook):
    import globus_sdk

    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        hook.get_task("00000000-0000-0000-0000-000000000000")
    assert info.value.http_status == 404


def test_bad_credentials_are_refused(facility, monkeypatch):
    import json
    import os

    import globus_sdk

    conn = json.loads(os.environ["AIRFLOW_CONN_GLOBUS_COMPUTE_DEFAULT"])
    conn["password"] = "wrong-secret"
    monkeypatch.setenv("AIRFLOW_CONN_GLOBUS_COMPUTE_BAD", json.dumps(conn))
    hook = GlobusComputeHook("globus_compute_bad", max_retries=0)
    with pytest.raises(globus_sdk.AuthAPIError) as info:
        hook.register_function(remote.check_environment)
    assert "wrong-secret" not in str(info.value)
    ok, message = hook.test_connection()
    assert not ok and "refused" in message


def test_client_is_not_built_at_construction(monkeypatch):
    hook = GlobusComputeHook("no_such_connection")
    assert "client" not in vars(hook)
