"""Issue 17, finding 4, in real Airflow: what our Compute code does with the stand-in's unknown and offline
endpoints: an unknown endpoint fails the task at once; an offline one is reported while the task waits."""

from __future__ import annotations

import pytest

from als_provider.hooks.globus_compute import GlobusComputeHook
from als_provider.triggers.globus_compute import GlobusComputeTaskTrigger
from include.sites import load_sites
from tests.dags.dag_helpers import run_in_db
from tests.plugins.test_globus_compute_operator import first, make_dag

ENDPOINT = load_sites()["local"].compute_endpoint_id
UNKNOWN_ENDPOINT = "0c1f0c1f-0000-4000-8000-00000000dead"


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_an_unknown_endpoint_fails_at_once(facility):
    dag = make_dag("test_compute_unknown_endpoint", function_name="check_environment", endpoint_id=UNKNOWN_ENDPOINT)
    _, tis = run_in_db(dag)
    assert facility.stats().get("compute.task_created", 0) == 0
    assert tis["compute"].state == "failed" and tis["compute"].try_number == 1


def test_an_offline_endpoint_is_reported_while_the_task_waits(facility, capfd):
    hook = GlobusComputeHook()
    function_id = hook.register_function(__import__("compute_functions.remote").remote.check_environment)
    facility.inject("compute", "endpoint_offline", match=ENDPOINT, params={"seconds": 1.5})
    task_id = hook.run(function_id, ENDPOINT, {})
    event = first(GlobusComputeTaskTrigger(task_id, endpoint_id=ENDPOINT, poll_interval=0.2))
    assert event["status"] == "success"
    out, err = capfd.readouterr()
    assert f"endpoint {ENDPOINT} is offline" in out + err
