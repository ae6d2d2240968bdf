"""The Flows stand-in through globus-sdk's FlowsClient/SpecificFlowClient (via GlobusFlowsHook)."""

from __future__ import annotations

import json
import os
import time

import globus_sdk
import pytest

from als_provider.hooks.globus_flows import GlobusFlowsHook
from include.facility.flows import get_path, resolve, set_path

PASS_FLOW = {
    "StartAt": "Decide",
    "States": {
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}],
            "Default": "Small",
        },
        "Big": {"Type": "Pass", "Parameters": {"size": "big", "n.$": "$.n"}, "ResultPath": "$.out", "End": True},
        "Small": {"Type": "Fail", "Error": "TooSmall", "Cause": "n must exceed 10"},
    },
}
SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "number"}}}


def wait_for_end(hook: GlobusFlowsHook, run_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while (run := hook.get_run(run_id))["status"] == "ACTIVE":
        assert time.monotonic() < deadline, "run did not end"
        time.sleep(0.1)
    return run


@pytest.fixture
def hook(facility):
    return GlobusFlowsHook(max_retries=0)


def test_create_run_and_read_a_flow(hook, facility):
    flow_id, created = hook.deploy_flow("stand-in pass flow", PASS_FLOW, SCHEMA)
    assert created
    assert hook.client.get_flow(flow_id)["definition"] == PASS_FLOW
    run = hook.run_flow(flow_id, {"n": 12}, label="big")
    assert run["status"] == "ACTIVE" and run["flow_id"] == flow_id
    run = wait_for_end(hook, run["run_id"])
    assert run["status"] == "SUCCEEDED"
    assert run["details"]["output"] == {"n": 12, "out": {"size": "big", "n": 12}}
    codes = [entry["code"] for entry in hook.run_log(run["run_id"])]
    assert codes == ["FlowStarted", "ChoiceStarted", "ChoiceCompleted", "PassStarted", "PassCompleted", "FlowSucceeded"]
    # deploying the same title again updates that flow instead of adding one
    assert hook.deploy_flow("stand-in pass flow", PASS_FLOW, SCHEMA) == (flow_id, False)
    assert facility.stats()["flows.create"] == 1


def test_a_fail_state_fails_the_run_with_its_cause(hook):
    flow_id, _ = hook.deploy_flow("stand-in fail flow", PASS_FLOW, SCHEMA)
    run = wait_for_end(hook, hook.run_flow(flow_id, {"n": 3}, label="small")["run_id"])
    assert run["status"] == "FAILED"
    assert "TooSmall: n must exceed 10" in hook.failure_message(run)


def test_input_is_validated_against_the_schema(hook):
    flow_id, _ = hook.deploy_flow("stand-in schema flow", PASS_FLOW, SCHEMA)
    with pytest.raises(globus_sdk.FlowsAPIError) as caught:
        hook.run_flow(flow_id, {"n": "twelve"}, label="bad")
    assert caught.value.http_status == 400 and "input_schema at n" in caught.value.message


def test_definitions_the_stand_in_cannot_run_are_refused(hook):
    bad = {"StartAt": "A", "States": {"A": {"Type": "Action", "ActionUrl": "https://x.example/act", "End": True}}}
    with pytest.raises(globus_sdk.FlowsAPIError, match="not served by the local facility"):
        hook.deploy_flow("stand-in bad flow", bad, SCHEMA)


def test_a_run_needs_the_flows_own_scope(hook):
    flow_id, _ = hook.deploy_flow("stand-in scope flow", PASS_FLOW, SCHEMA)
    with pytest.raises(globus_sdk.FlowsAPIError) as caught:
        hook.client.post(f"/flows/{flow_id}/run", data={"body": {"n": 12}})
    assert caught.value.http_status == 403


def test_bad_credentials_are_refused(facility, monkeypatch):
    conn = json.loads(os.environ["AIRFLOW_CONN_GLOBUS_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_GLOBUS_BAD", json.dumps({**conn, "password": "nope"}))
    with pytest.raises(globus_sdk.AuthAPIError):
        GlobusFlowsHook("globus_bad", max_retries=0).client.list_flows()


def test_jsonpath_subset():
    document = {"a": {"b": [{"c": 1}]}}
    assert get_path(document, "$.a.b[0].c") == 1
    assert resolve({"x.$": "$.a.b[0]", "y": [{"z.$": "$.a.b[0].c"}], "k": 2}, document) == {
        "x": {"c": 1},
        "y": [{"z": 1}],
        "k": 2,
    }
    assert set_path({"a": 1}, "$.r.s", 5) == {"a": 1, "r": {"s": 5}}
