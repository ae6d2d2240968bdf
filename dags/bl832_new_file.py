"""Airflow DAG: a new scan of beamline 8.3.2: spot832 → data832 → nersc832, SciCat, deletion manifests (include/config/
beamlines.yaml, tomography `bl832`; built by dags/pipelines/tomography.py)."""

from __future__ import annotations

from dags.pipelines.tomography import make_new_file_dag
from include.beamlines import load_beamlines

dag = make_new_file_dag(load_beamlines().tomography_beamline("bl832"))
