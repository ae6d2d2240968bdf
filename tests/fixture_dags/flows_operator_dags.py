"""DAGs the GlobusFlowOperator tests run with dag.test(); the flow id and input come from the run's conf."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from als_provider.operators.globus_flows import GlobusFlowOperator

with DAG(
    dag_id="test_globus_flow",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
    params={"flow_id": Param("", type="string"), "flow_input": Param({}, type="object")},
    render_template_as_native_obj=True,
    tags=["test"],
) as dag_globus_flow:
    GlobusFlowOperator(
        task_id="run_flow",
        flow_id="{{ params.flow_id }}",
        flow_input="{{ params.flow_input }}",
        poll_interval=0.3,
    )


class SimulatedWorkerCrash(RuntimeError):
    """Stands for the worker dying right after the run started, before its id reached the wait."""


class CrashAfterStart(GlobusFlowOperator):
    """First try: the run starts and its id is stored, then the worker dies before the wait begins."""

    def execute(self, context):
        self._try_number = context["ti"].try_number
        return super().execute(context)

    def defer(self, **kwargs):
        if self._try_number == 1:
            raise SimulatedWorkerCrash("worker died after starting the run")
        return super().defer(**kwargs)


with DAG(
    dag_id="test_globus_flow_crash",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
    params={"flow_id": Param("", type="string"), "flow_input": Param({}, type="object")},
    render_template_as_native_obj=True,
    tags=["test"],
) as dag_globus_flow_crash:
    CrashAfterStart(
        task_id="run_flow",
        flow_id="{{ params.flow_id }}",
        flow_input="{{ params.flow_input }}",
        poll_interval=0.3,
    )
