"""Benchmark DAG (not in dags/): N Globus transfers waiting at once, each deferred to the triggerer.

Loaded only by benchmarks/bench_orchestration.py, as an extra DAG bundle of its stack. One mapped
GlobusTransferOperator per file of ``spot832:<folder>/src/`` (the benchmark writes them) to
``data832:<folder>/dst/``; the benchmark makes the facility hold every transfer ACTIVE for a while (a
``slow`` fault), so all of them wait at once: deferred, holding no executor slot.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, task

from als_provider.operators.globus_transfer import GlobusTransferOperator

DAG_ID = "bench_deferred_transfers"

with DAG(
    dag_id=DAG_ID,
    description="Benchmark: N concurrent deferred Globus transfers",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["benchmark"],
    default_args={"owner": "benchmarks", "retries": 1, "retry_delay": timedelta(seconds=10)},
    params={
        "count": Param(200, type="integer", minimum=1, maximum=1000, description="number of transfers"),
        "folder": Param("bench_deferred", type="string", pattern=r"^[A-Za-z0-9_.-]+$"),
    },
) as dag:

    @task
    def files(params: dict | None = None) -> list[dict[str, str]]:
        folder, count = params["folder"], params["count"]
        return [
            {"source_path": f"{folder}/src/f{i:04d}.dat", "destination_path": f"{folder}/dst/f{i:04d}.dat"}
            for i in range(count)
        ]

    # default_pool, not the globus_transfers pool (16 slots, waits included): this measures the triggerer at scale
    GlobusTransferOperator.partial(
        task_id="transfer",
        source_endpoint="spot832",
        destination_endpoint="data832",
        recursive=False,
        pool="default_pool",
    ).expand_kwargs(files())
