"""Tomography reconstruction at a compute site: one DAG ``bl832_<site>_recon`` per enabled site of
include/config/sites.yaml (ALCF, the Airflow worker host ``local``, later OLCF); a new site is configuration."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from include.dag_params import file_path_param, recon_param, validate_conf
from include.pipelines.compute_site import recon_steps, site_doc
from include.sites import Site, load_sites


def make_recon_dag(site: Site) -> DAG:
    """The reconstruction DAG of one site."""
    with DAG(
        dag_id=site.dag_id,
        description=f"Reconstruct a scan at {site.name} and bring rec<ds>/ and rec<ds>.zarr/ to data832_scratch",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=8,
        doc_md=site_doc(site),
        tags=["bl832", "reconstruction", site.name, "globus-compute"],
        default_args={"owner": "bl832-computing", "retries": 2, "retry_delay": timedelta(seconds=30)},
        params={"file_path": file_path_param(), "recon": recon_param()},
    ) as dag:
        validated = validate_conf()
        first, _ = recon_steps(site)
        validated >> first
    return dag


for _site in load_sites().enabled():
    globals()[_site.dag_id] = make_recon_dag(_site)
