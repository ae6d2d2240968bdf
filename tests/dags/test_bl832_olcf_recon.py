"""OLCF as a configured compute site: bl832_olcf_recon end to end (dag.test) on the local facility, and the
dispatcher running it when Variable bl832_dispatcher_settings enables ``olcf``."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.dags.dag_helpers import load_dag, states, xcom

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]
DATASET = "20260101_120000_sample"


def get_dag(file_name: str, dag_id: str):
    return load_dag(dag_id, file_name)


def test_olcf_is_an_enabled_site_on_orion_with_its_own_retention():
    from include.endpoints import load_endpoints
    from include.sites import load_sites
    from tools.local_airflow import load_settings

    site = load_sites()["olcf"]
    assert site.enabled and site.dag_id == "bl832_olcf_recon" and site.stages_raw and site.copies_back
    production = load_endpoints("production")
    for name in (site.raw_endpoint, site.scratch_endpoint):
        assert production[name].collection.name == "olcf_orion"
        assert str(production[name].root).startswith("/lustre/orion/")
    retention = next(
        json.loads(v["variable_value"])
        for v in load_settings()["variables"]
        if v["variable_name"] == "als_retention_days"
    )
    assert retention[site.retention_location] == 2


def test_olcf_recon_stages_the_scan_reconstructs_and_brings_results_home(facility, local_endpoints):
    from compute_functions.sample_scan import write_sample_scan
    from compute_functions.scan_io import read_metadata

    folder = f"BLS-00008_olcf{uuid.uuid4().hex[:6]}"
    scan = f"{folder}/{DATASET}.h5"
    rows = read_metadata(write_sample_scan(local_endpoints["data832_raw"].posix_path(scan), size="tiny")).n_rows
    dag_run = get_dag("bl832_recon.py", "bl832_olcf_recon").test(run_conf={"file_path": f"/global/raw/{scan}"})
    assert dag_run.state == "success", states(dag_run)

    staged = local_endpoints["olcf832_raw"].posix_path(scan)
    assert staged.is_file() and "olcf_orion" in staged.parts
    results = f"{folder}/olcf/rec{DATASET}"
    assert xcom(dag_run, "finish", "outputs") == [
        {"endpoint": "data832_scratch", "path": results},
        {"endpoint": "data832_scratch", "path": f"{results}.zarr"},
    ]
    assert len(list(local_endpoints["data832_scratch"].posix_path(results).glob("*.tiff"))) == rows
    recorded = xcom(dag_run, "finish")["recorded"]
    assert sorted((r["endpoint"], r["check_endpoint"], r["location"]) for r in recorded) == [
        ("data832_scratch", "nersc832", "data832_scratch"),  # regenerable from the long-term raw copy
        ("data832_scratch", "nersc832", "data832_scratch"),
        ("olcf832_raw", "data832_raw", "olcf"),
        ("olcf832_scratch", "data832_scratch", "olcf"),
        ("olcf832_scratch", "data832_scratch", "olcf"),
        ("olcf832_scratch", "nersc832", "olcf"),  # the run-once markers (issue 21 finding 12)
        ("olcf832_scratch", "nersc832", "olcf"),
    ]
    stats = facility.stats()
    assert stats["compute.executed.reconstruct"] == 1 and stats["transfer.task_created"] == 3


def test_dispatcher_runs_olcf_when_the_settings_enable_it(facility, local_endpoints):
    from airflow.models import Variable

    from compute_functions.sample_scan import write_sample_scan

    folder = f"BLS-00009_disp{uuid.uuid4().hex[:6]}"
    scan = f"{folder}/{DATASET}.h5"
    write_sample_scan(local_endpoints["spot832"].posix_path(f"raw/{scan}"), size="tiny")
    before = Variable.get("bl832_dispatcher_settings")
    Variable.set("bl832_dispatcher_settings", json.dumps({"new_file": True, "olcf": True}))
    try:
        dag_run = get_dag("bl832_dispatcher.py", "bl832_dispatcher").test(run_conf={"file_path": f"/global/raw/{scan}"})
    finally:
        Variable.set("bl832_dispatcher_settings", before)
    got = states(dag_run)
    assert dag_run.state == "success", got
    assert got["olcf.reconstruct"] == "success"
    assert got["alcf.reconstruct"] == "skipped" and got["nersc.reconstruct"] == "skipped", got
    assert xcom(dag_run, "plan", "chosen") == ["new_file", "olcf"]
    assert {"endpoint": "data832_scratch", "path": f"{folder}/olcf/rec{DATASET}.zarr"} in xcom(dag_run, "report")[
        "outputs"
    ]
