"""A new scan of beamline 8.3.2: spot832 → data832 → nersc832, SciCat, deletion manifests."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from include.dag_params import new_scan_params, validate_conf
from include.pipelines.new_file import DAG_ID, DOC, new_file_steps

with DAG(
    dag_id=DAG_ID,
    description="Move a new scan spot832 → data832 → nersc832 and register it in SciCat",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=16,
    doc_md=DOC,
    tags=["bl832", "new-scan", "globus", "scicat"],
    default_args={"owner": "bl832-computing", "retries": 2, "retry_delay": timedelta(seconds=30)},
    params=new_scan_params(),
) as dag:
    first, _ = new_file_steps()
    validate_conf() >> first
