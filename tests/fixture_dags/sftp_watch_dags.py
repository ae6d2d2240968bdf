"""A watcher whose trigger cannot see dispatcher runs: what a restart racing a dispatch looks like."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG

from als_provider.sensors.sftp_new_scan import SFTPNewScanSensor
from als_provider.triggers.sftp_new_scan import SFTPNewScanTrigger
from dags.pipelines.dag_ids import DISPATCHER_DAG_ID


class BlindNewScanTrigger(SFTPNewScanTrigger):
    """Treats every stable scan as undispatched (a trigger that checked just before another run dispatched)."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # This file is loaded under another module name by DagBag; the triggerer imports it by this path.
        return "tests.fixture_dags.sftp_watch_dags.BlindNewScanTrigger", super().serialize()[1]

    async def _undispatched(self, stable):
        return stable


class BlindNewScanSensor(SFTPNewScanSensor):
    def make_trigger(self, export_control=None) -> SFTPNewScanTrigger:
        return BlindNewScanTrigger(**super().make_trigger(export_control).serialize()[1])


with DAG(
    dag_id="test_sftp_watch_blind",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
    tags=["test"],
) as dag:
    watch = BlindNewScanSensor(
        task_id="watch",
        dispatch_dag_id=DISPATCHER_DAG_ID,
        poll_interval=0.5,
        stable_polls=3,
        file_pattern=r"^20230301_090000_restart\.h5$",
    )
    TriggerDagRunOperator.partial(
        task_id="dispatch",
        trigger_dag_id=DISPATCHER_DAG_ID,
        logical_date=None,
        skip_when_already_exists=True,
        openlineage_inject_parent_info=False,
    ).expand_kwargs(watch.output)
