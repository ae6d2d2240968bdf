"""Airflow DAG: health check of beamline 7.0.1.2 every 12 h (include/config/beamlines.yaml, `bl7012`)."""

from __future__ import annotations

from dags.pipelines.transfer_check import make_beamline_transfer_check_dag
from include.beamlines import load_beamlines

dag = make_beamline_transfer_check_dag(load_beamlines()["bl7012"])
