"""DAGs the operator tests run with dag.test(); a test-only bundle (see tests/conftest.py)."""

from __future__ import annotations

import time
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from als_provider.operators.globus_transfer import GlobusTransferOperator
from als_provider.sensors.globus_transfer import GlobusPathSensor
from tests.dags.dag_helpers import SimulatedWorkerCrash, crash_after, first_try


class CrashAfterSubmit(GlobusTransferOperator):
    """First try dies after Globus accepted the transfer and its task id was stored, before the wait starts."""

    def defer(self, **kwargs):
        if first_try():
            raise SimulatedWorkerCrash("worker died after submitting")
        return super().defer(**kwargs)


class CrashAfterTheCopy(GlobusTransferOperator):
    """First try dies once its Globus task SUCCEEDED, before it could report: the retry takes the result."""

    def defer(self, **kwargs):
        if first_try():
            task_id = kwargs["trigger"].globus_task_id
            deadline = time.monotonic() + 30
            while self.hook.get_task(task_id)["status"] != "SUCCEEDED" and time.monotonic() < deadline:
                time.sleep(0.1)
            raise SimulatedWorkerCrash(f"worker died after task {task_id} succeeded")
        return super().defer(**kwargs)


class LoseSubmitResponse(GlobusTransferOperator):
    """First try's submit reaches Globus but its answer is lost (the worker dies mid-request)."""

    def get_hook(self):
        return crash_after(super().get_hook(), "submit_transfer", "connection lost after the transfer was submitted")


class CrashMidSwap(GlobusTransferOperator):
    """First try dies between its two renames: the old results renamed away, the new ones not yet in place."""

    def get_hook(self):
        def after_the_first_rename(_, old, new):
            return f"worker died after renaming {old} to {new}" if new.path.name.endswith(".replaced") else None

        return crash_after(super().get_hook(), "rename", after_the_first_rename)


def transfer_dag(name: str, operator_cls=GlobusTransferOperator, **kwargs) -> DAG:
    """One DAG with one transfer spot832:raw/operator_test/<name> -> data832_raw:operator_test/<name>."""
    with DAG(
        dag_id=f"test_transfer_{name}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
        tags=["test"],
    ) as dag:
        operator_cls(
            task_id="copy",
            **{
                "source_endpoint": "spot832",
                "source_path": f"raw/operator_test/{name}",
                "destination_endpoint": "data832_raw",
                "destination_path": f"operator_test/{name}",
                "poll_interval": 0.2,
                **kwargs,
            },
        )
    return dag


DAGS = {
    "plain": transfer_dag("plain"),
    "folder": transfer_dag("folder"),
    "replaced": transfer_dag("replaced", recursive=True, replace_destination=True),
    "replace_pruned": transfer_dag("replace_pruned", recursive=True, replace_destination=True),
    "replace_partial": transfer_dag("replace_partial", recursive=True, replace_destination=True),
    "replace_crash": transfer_dag("replace_crash", CrashMidSwap, recursive=True, replace_destination=True),
    "lost_answer": transfer_dag("lost_answer"),
    "doomed": transfer_dag("doomed"),
    "absent": transfer_dag("absent"),
    "crash": transfer_dag("crash", CrashAfterSubmit),
    "lost": transfer_dag("lost", LoseSubmitResponse),
    "done": transfer_dag("done", CrashAfterTheCopy),
    "bad_path": transfer_dag("bad_path", source_path="../etc/passwd"),
    "bad_endpoint": transfer_dag("bad_endpoint", destination_endpoint="nowhere"),
}
globals().update({f"dag_{name}": dag for name, dag in DAGS.items()})


with DAG(
    dag_id="test_path_sensor",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    default_args={"retries": 0},
    tags=["test"],
) as dag_path_sensor:
    GlobusPathSensor(task_id="appears", endpoint="data832_raw", path="sensor_test/appears.h5", poke_interval=0.2)
    # dag.test() does not enforce a deferred task's timeout, so the timing-out path runs in the worker (poke)
    GlobusPathSensor(
        task_id="never",
        endpoint="data832_raw",
        path="sensor_test/never.h5",
        poke_interval=0.2,
        timeout=2,
        deferrable=False,
    )
