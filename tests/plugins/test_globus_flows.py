"""GlobusFlowOperator in real Airflow runs (dag.test) against the facility's Flows, Transfer and Compute stand-ins,
and ``python -m include.flows_registry``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from als_provider.hooks.globus_compute import GlobusComputeHook
from als_provider.hooks.globus_flows import GlobusFlowsHook
from include.compute_registry import resolve
from include.endpoints import REPO_ROOT
from include.flows_registry import flow_documents
from include.paths import EndpointPath
from include.sites import load_sites
from tests.fixture_dags.flows_operator_dags import dag_globus_flow, dag_globus_flow_crash

pytestmark = pytest.mark.usefixtures("airflow_db")

#: Copy a file, check at the Compute endpoint that it arrived, choose, summarise: Action, Choice, Pass, Fail.
COPY_AND_CHECK = {
    "StartAt": "Copy",
    "States": {
        "Copy": {
            "Type": "Action",
            "ActionUrl": "https://transfer.actions.globus.org/transfer",
            "Parameters": {
                "source_endpoint.$": "$.copy.source_endpoint",
                "destination_endpoint.$": "$.copy.destination_endpoint",
                "DATA": [{"source_path.$": "$.copy.source_path", "destination_path.$": "$.copy.destination_path"}],
            },
            "ResultPath": "$.Copy",
            "WaitTime": 60,
            "Next": "Check",
        },
        "Check": {
            "Type": "Action",
            "ActionUrl": "https://compute.actions.globus.org/v3",
            "Parameters": {
                "endpoint_id.$": "$.compute_endpoint_id",
                "tasks": [{"function_id.$": "$.function_id", "kwargs.$": "$.check"}],
            },
            "ResultPath": "$.Check",
            "WaitTime": 60,
            "Next": "Decide",
        },
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.Check.status", "StringEquals": "SUCCEEDED", "Next": "Done"}],
            "Default": "Unexpected",
        },
        "Done": {
            "Type": "Pass",
            "Parameters": {"bytes.$": "$.Copy.details.bytes_transferred", "host.$": "$.Check.details.result[0].host"},
            "ResultPath": "$.summary",
            "End": True,
        },
        "Unexpected": {"Type": "Fail", "Error": "Unexpected", "Cause": "the check did not succeed"},
    },
}


@pytest.fixture
def copy_and_check(facility, local_endpoints):
    """A registered COPY_AND_CHECK flow and a run input copying spot832:flow_test/<name> to data832_raw."""
    flow_id, _ = GlobusFlowsHook().deploy_flow("test copy and check", COPY_AND_CHECK, {"type": "object"})
    function_id = GlobusComputeHook().register_function(resolve("check_environment"))

    def make_input(name: str, payload: bytes = b"f" * 1500) -> dict:
        source = local_endpoints.posix(EndpointPath("spot832", f"flow_test/{name}"))
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(payload)
        spot, data = local_endpoints["spot832"], local_endpoints["data832_raw"]
        copied = local_endpoints.posix(EndpointPath("data832_raw", f"flow_test/{name}"))
        return {
            "copy": {
                "source_endpoint": spot.uuid,
                "source_path": spot.globus_path(f"flow_test/{name}"),
                "destination_endpoint": data.uuid,
                "destination_path": data.globus_path(f"flow_test/{name}"),
            },
            "compute_endpoint_id": load_sites()["local"].compute_endpoint_id,
            "function_id": function_id,
            "check": {"paths": [str(copied)], "require": True},
        }

    return flow_id, make_input


def run_dag(dag, flow_id: str, flow_input: dict):
    dag_run = dag.test(run_conf={"flow_id": flow_id, "flow_input": flow_input})
    return dag_run, {ti.task_id: ti for ti in dag_run.get_task_instances()}["run_flow"]


def test_a_registered_flow_runs_through_the_operator(copy_and_check, facility, local_endpoints):
    flow_id, make_input = copy_and_check
    dag_run, ti = run_dag(dag_globus_flow, flow_id, make_input("ok.h5"))
    assert dag_run.state == "success", ti.state
    assert local_endpoints.posix(EndpointPath("data832_raw", "flow_test/ok.h5")).read_bytes() == b"f" * 1500
    stats = facility.stats()
    assert stats["flows.run"] == 1 and stats["flows.succeeded"] == 1
    assert stats["transfer.succeeded"] == 1 and stats["compute.executed.check_environment"] == 1
    output = _return_value(dag_run)["output"]
    assert output["summary"]["bytes"] == 1500 and output["summary"]["host"]


def test_a_failing_step_fails_the_task_with_the_steps_message(copy_and_check, facility, capfd):
    flow_id, make_input = copy_and_check
    facility.inject("compute", kind="raise", match="check_environment", times=5, message="detector file unreadable")
    capfd.readouterr()
    dag_run, ti = run_dag(dag_globus_flow, flow_id, make_input("bad.h5"))
    assert dag_run.state == "failed" and ti.state == "failed"
    task_log = capfd.readouterr().out  # the task's log (dag.test() writes it to stdout)
    assert re.search(r"GlobusFlowError: Globus flow run \S+ FAILED: step 'Check' failed: Compute task", task_log)
    assert "RuntimeError: detector file unreadable" in task_log
    # each try found the earlier run FAILED and started a new one: one run per try, never more
    assert facility.stats()["flows.run"] == 2


def test_a_retry_reattaches_to_the_run_of_the_first_try(copy_and_check, facility):
    flow_id, make_input = copy_and_check
    dag_run, ti = run_dag(dag_globus_flow_crash, flow_id, make_input("crash.h5"))
    assert dag_run.state == "success"
    assert ti.try_number == 2
    assert facility.stats()["flows.run"] == 1


def test_flows_registry_registers_both_flows_and_is_idempotent(facility):
    def register(env=None):
        return subprocess.run(
            [sys.executable, "-m", "include.flows_registry"],
            cwd=REPO_ROOT,
            env=env or dict(os.environ),
            capture_output=True,
            text=True,
        )

    first = register()
    assert first.returncode == 0, first.stderr
    ids = dict(line.split(" ") for line in first.stdout.strip().splitlines())
    assert set(ids) == {"reconstruction", "multiscale"} == set(flow_documents())
    for flow_id in ids.values():
        uuid.UUID(flow_id)
    again = register()
    assert dict(line.split(" ") for line in again.stdout.strip().splitlines()) == ids
    assert facility.stats()["flows.create"] == 2
    hook = GlobusFlowsHook()
    assert hook.client.get_flow(ids["reconstruction"])["definition"]["StartAt"] == "TransferRaw"

    conn = json.loads(os.environ["AIRFLOW_CONN_GLOBUS_DEFAULT"])
    bad = register({**os.environ, "AIRFLOW_CONN_GLOBUS_DEFAULT": json.dumps({**conn, "password": "wrong-s3cret"})})
    assert bad.returncode == 1
    assert "refused the client credentials" in bad.stderr and "wrong-s3cret" not in bad.stderr + bad.stdout


def _return_value(dag_run):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == "run_flow",
                XComModel.key == "return_value",
            )
        )
    return json.loads(value) if isinstance(value, str) else value
