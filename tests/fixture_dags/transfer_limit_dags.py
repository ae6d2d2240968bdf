"""A DAG of two transfers the Globus task-cap test runs with dag.test(); a test-only bundle (tests/conftest.py)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from als_provider.operators.globus_transfer import GlobusTransferOperator


class QuickLimitWait(GlobusTransferOperator):
    """A transfer that waits half a second, not thirty, before sending a submission refused for the cap again."""

    limit_wait = timedelta(seconds=0.5)


with DAG(
    dag_id="test_transfer_task_limit",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},  # deferrable: retries >= 1 (defaults.py)
    tags=["test"],
) as dag_task_limit:
    for name in ("a", "b"):
        QuickLimitWait(
            task_id=f"copy_{name}",
            source_endpoint="spot832",
            source_path=f"raw/limit_test/{name}.h5",
            destination_endpoint="data832_raw",
            destination_path=f"limit_test/{name}.h5",
            poll_interval=0.2,
        )
