"""Airflow DAG: the one entry point beamline 8.3.2 calls for a new scan: new-scan first, then the
reconstructions in parallel (include/config/beamlines.yaml, tomography `bl832`; dags/pipelines/tomography.py)."""

from __future__ import annotations

from dags.pipelines.tomography import make_dispatcher_dag
from include.beamlines import load_beamlines

dag = make_dispatcher_dag(load_beamlines().tomography_beamline("bl832"))
