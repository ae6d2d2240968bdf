"""The Globus Compute stand-in over HTTP: the SDK's routes, auth, the worker pool, counters and faults."""

from __future__ import annotations

import time

import httpx
import pytest

from als_provider.hooks.globus_compute import GlobusComputeHook
from compute_functions import remote
from include.sites import load_sites
from tests.dags.dag_helpers import wait_for_compute_task

ENDPOINT = load_sites()["local"].compute_endpoint_id  # the local profile registers the ids it serves


@pytest.fixture
def hook(facility):
    return GlobusComputeHook(max_retries=0)


def token(facility) -> str:
    answer = httpx.post(
        f"{facility.url}/v2/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "scope": "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all",
        },
        auth=("local-client", "local-secret"),
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def test_routes_refuse_requests_without_a_compute_token(facility):
    assert httpx.get(f"{facility.url}/v2/tasks/x").status_code == 401
    transfer_token = httpx.post(
        f"{facility.url}/v2/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "urn:globus:auth:scope:transfer.api.globus.org:all"},
        auth=("local-client", "local-secret"),
    ).json()["access_token"]
    answer = httpx.post(
        f"{facility.url}/v3/functions",
        json={"function_name": "f", "function_code": "x"},
        headers={"Authorization": f"Bearer {transfer_token}"},
    )
    assert answer.status_code == 401
    assert facility.stats().get("compute.register", 0) == 0


def test_version_and_endpoint_status(hook, facility):
    hook.client.version_check()
    assert hook.endpoint_status(ENDPOINT)["status"] == "online"
    answer = httpx.get(
        f"{facility.url}/v2/endpoints/not-a-uuid/status", headers={"Authorization": f"Bearer {token(facility)}"}
    )
    assert answer.status_code == 400


def test_submit_of_an_unknown_function_is_refused(facility):
    headers = {"Authorization": f"Bearer {token(facility)}"}
    answer = httpx.post(
        f"{facility.url}/v3/endpoints/{ENDPOINT}/submit",
        json={"tasks": {"11111111-1111-1111-1111-111111111111": ["x"]}},
        headers=headers,
    )
    assert answer.status_code == 404
    assert answer.json()["code"] == "FunctionNotFound"
    assert facility.stats().get("compute.task_created", 0) == 0


def test_batch_status_and_task_group_list_submitted_tasks(hook, facility):
    function_id = hook.register_function(remote.check_environment)
    first = hook.submit(function_id, ENDPOINT, {})
    second = hook.submit(function_id, ENDPOINT, {})
    for submitted in (first, second):
        wait_for_compute_task(hook, submitted["task_id"])
    results = hook.client.get_batch_result([first["task_id"], second["task_id"]])
    assert {r["status"] for r in results.values()} == {"success"}
    group = hook.client._compute_web_client.v2.get_task_group(first["task_group_id"]).data
    assert [t["id"] for t in group["tasks"]] == [first["task_id"]]
    stats = facility.stats()
    assert stats["compute.submit"] == 2 and stats["compute.task_created"] == 2 and stats["compute.executed"] == 2


def test_crashed_worker_fails_the_task_and_the_pool_recovers(hook, facility):
    facility.inject("compute", "crash", match="^check_environment$")
    function_id = hook.register_function(remote.check_environment)
    crashed = wait_for_compute_task(hook, hook.run(function_id, ENDPOINT, {}))
    assert crashed["status"] == "failed"
    assert "WorkerLost" in crashed["exception"]
    again = wait_for_compute_task(hook, hook.run(function_id, ENDPOINT, {}))
    assert again["status"] == "success"
    assert facility.stats()["compute.executed"] == 1


def test_slow_fault_keeps_the_task_pending(hook, facility):
    facility.inject("compute", "slow", match="^check_environment$", params={"seconds": 1.5})
    function_id = hook.register_function(remote.check_environment)
    task_id = hook.run(function_id, ENDPOINT, {})
    time.sleep(0.5)
    pending = hook.get_task(task_id)
    assert pending["pending"] is True and pending["status"] in ("waiting-for-ep", "running")
    assert wait_for_compute_task(hook, task_id)["status"] == "success"


def test_get_function_describes_a_registered_function(hook, facility):
    function_id = hook.register_function(remote.check_environment)
    description = hook.client.get_function(function_id)
    assert description["function_name"] == "check_environment"


UNKNOWN_ENDPOINT = "0c1f0c1f-0000-4000-8000-00000000dead"


def test_an_unknown_endpoint_is_404_endpoint_not_found(hook, facility):
    """Finding 4: the service refuses an endpoint id it does not know; the local profile knows sites.yaml's."""
    import globus_sdk

    function_id = hook.register_function(remote.check_environment)
    with pytest.raises(globus_sdk.GlobusAPIError) as raised:
        hook.submit(function_id, UNKNOWN_ENDPOINT, {})
    assert (raised.value.http_status, raised.value.code) == (404, "EndpointNotFound")
    with pytest.raises(globus_sdk.GlobusAPIError) as raised:
        hook.endpoint_status(UNKNOWN_ENDPOINT)
    assert (raised.value.http_status, raised.value.code) == (404, "EndpointNotFound")
    assert facility.stats().get("compute.task_created", 0) == 0
    for site in load_sites().sites.values():
        if site.compute_endpoint_id:
            assert hook.endpoint_status(site.compute_endpoint_id)["status"] == "online"


def test_forbidden_endpoint_and_function_are_403(hook, facility):
    """Finding 4: EndpointAccessForbidden and FunctionNotPermitted, in the service's error shape."""
    import globus_sdk

    function_id = hook.register_function(remote.check_environment)
    facility.inject("compute", "endpoint_forbidden", match=ENDPOINT)
    with pytest.raises(globus_sdk.GlobusAPIError) as raised:
        hook.submit(function_id, ENDPOINT, {})
    assert (raised.value.http_status, raised.value.code) == (403, "EndpointAccessForbidden")
    assert facility.stats().get("compute.task_created", 0) == 0
    facility.inject("compute", "function_not_permitted", match="^check_environment$")
    with pytest.raises(globus_sdk.GlobusAPIError) as raised:
        hook.submit(function_id, ENDPOINT, {})
    assert (raised.value.http_status, raised.value.code) == (403, "FunctionNotPermitted")


def test_an_offline_endpoint_keeps_tasks_waiting_for_ep(hook, facility):
    """Finding 4/6: offline status without workers; tasks wait (``waiting-for-ep``) and run when it is back."""
    facility.inject("compute", "endpoint_offline", match=ENDPOINT, params={"seconds": 2})
    status = hook.endpoint_status(ENDPOINT)
    assert status["status"] == "offline" and status["details"]["total_workers"] == 0
    function_id = hook.register_function(remote.check_environment)
    task_id = hook.run(function_id, ENDPOINT, {})
    time.sleep(0.5)
    assert hook.get_task(task_id)["status"] == "waiting-for-ep"
    assert hook.endpoint_status(ENDPOINT)["details"]["pending_tasks"] == 1
    assert wait_for_compute_task(hook, task_id)["status"] == "success"
    online = hook.endpoint_status(ENDPOINT)
    assert online["status"] == "online" and online["details"]["total_workers"] >= 1
    assert {"idle_workers", "pending_tasks", "outstanding_tasks", "managers"} <= set(online["details"])


def test_i21_finding_11_task_groups_as_the_service_keeps_them(hook, facility):
    """A submit opens a group, a submit may name an existing one, an unknown one is refused, and
    ``GET /v2/taskgroup/{id}`` lists a group's tasks (the shape Executor.reload_tasks reads)."""
    import uuid

    import globus_sdk

    function_id = hook.register_function(remote.open_task_group)
    with pytest.raises(globus_sdk.GlobusAPIError) as raised:
        hook.submit(function_id, ENDPOINT, {}, task_group_id=str(uuid.uuid4()))
    assert raised.value.http_status == 404 and "GROUP" in raised.value.code
    assert facility.stats().get("compute.task_created", 0) == 0
    opened = hook.submit(function_id, ENDPOINT, {})
    second = hook.submit(function_id, ENDPOINT, {}, task_group_id=opened["task_group_id"])
    assert second["task_group_id"] == opened["task_group_id"]
    assert hook.task_group(opened["task_group_id"]) == [opened["task_id"], second["task_id"]]
    assert facility.stats()["compute.task_created.open_task_group"] == 2


def test_i26_finding_4_results_are_serialised_as_the_submit_asks(hook, facility):
    """The endpoint serialises a result with the submit's ``result_serializers`` (JSON for our hook); without
    them it uses the SDK default (dill), which the hook refuses to read."""
    function_id = hook.register_function(remote.check_environment)
    task_id = hook.run(function_id, ENDPOINT, {})
    wait_for_compute_task(hook, task_id)
    raw = hook.client._compute_web_client.v2.get_task(task_id).data["result"]
    assert raw.startswith("11\n")  # JSONData
    headers = {"Authorization": f"Bearer {token(facility)}"}
    batch = hook.client.create_batch()  # no result_serializers: the endpoint's default
    batch.add(function_id, (), {})
    answer = httpx.post(f"{facility.url}/v3/endpoints/{ENDPOINT}/submit", json=batch.prepare(), headers=headers)
    dill_task = answer.json()["tasks"][function_id][0]
    task = wait_for_compute_task(hook, dill_task)
    assert task["status"] == "failed" and task["unsafe_result"] is True
    assert "DillDataBase64" in task["exception"]
