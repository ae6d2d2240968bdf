"""Airflow DAG for a new scan of beamline 7.0.1.2 (ptychography): include/config/beamlines.yaml, key `bl7012`."""

from __future__ import annotations

from dags.pipelines.beamline import make_beamline_dag
from include.beamlines import load_beamlines

dag = make_beamline_dag(load_beamlines()["bl7012"])
