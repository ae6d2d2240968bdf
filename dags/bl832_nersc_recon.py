"""Tomography reconstruction at NERSC (Perlmutter) through SFAPI: ``bl832_nersc_recon``."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from include.dag_params import file_path_param, recon_param, validate_conf
from include.pipelines.nersc import DAG_ID, DOC, nersc_recon_steps

with DAG(
    dag_id=DAG_ID,
    description="Reconstruct a scan on Perlmutter (SFAPI/Slurm) and bring rec<ds>/ and rec<ds>.zarr/ home",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=8,
    doc_md=DOC,
    tags=["bl832", "reconstruction", "nersc", "sfapi"],
    default_args={"owner": "bl832-computing", "retries": 2, "retry_delay": timedelta(seconds=30)},
    params={"file_path": file_path_param(), "recon": recon_param()},
) as dag:
    validated = validate_conf()
    first, _ = nersc_recon_steps()
    validated >> first
