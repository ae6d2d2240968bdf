"""DAGs the notification tests run with dag.test(): one that fails, one that succeeds; both ``notify=True``."""

from __future__ import annotations

from airflow.sdk import DAG, task

from dags.pipelines.defaults import dag_defaults


@task
def fine() -> str:
    return "ok"


@task
def breaks() -> None:
    raise RuntimeError("the failing step of the fixture")


@task
def after() -> None:
    """Never runs: its upstream fails."""


with DAG(
    dag_id="test_notify_failing",
    tags=["test"],
    **dag_defaults(notify=True, default_args={"retries": 0}),
) as dag_notify_failing:
    fine()
    breaks() >> after()


with DAG(
    dag_id="test_notify_succeeding",
    tags=["test"],
    **dag_defaults(notify=True, default_args={"retries": 0}),
) as dag_notify_succeeding:
    fine()
