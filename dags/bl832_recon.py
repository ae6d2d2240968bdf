"""Airflow DAGs: tomography reconstruction at a site: one DAG ``bl832_<site>_recon`` per enabled site of
include/config/sites.yaml for beamline 8.3.2 (built by dags/pipelines/tomography.py); a new site is configuration."""

from __future__ import annotations

from dags.pipelines.tomography import make_recon_dags
from include.beamlines import load_beamlines

globals().update(make_recon_dags(load_beamlines().tomography_beamline("bl832")))
