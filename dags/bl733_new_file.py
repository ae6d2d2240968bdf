"""Airflow DAG for a new scan of beamline 7.3.3: configured in include/config/beamlines.yaml, key `bl733`."""

from __future__ import annotations

from include.beamlines import load_beamlines, make_beamline_dag

dag = make_beamline_dag(load_beamlines()["bl733"])
