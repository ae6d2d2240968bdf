"""The dispatcher on the real stack: triggered through the REST API and through the CLI, its outputs on the
facility, its SciCat records, and no connection secret in anything the runs wrote."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import h5py
import pytest

from include.endpoints import load_endpoints
from include.paths import EndpointPath
from tests.e2e.conftest import DISPATCHER, cli_trigger, connection_secrets, find_secrets
from tools.local_airflow import load_settings

pytestmark = pytest.mark.e2e

SCICAT_USER = "ingestor"


@pytest.fixture(scope="module")
def runs(stack):
    """Two dispatcher runs started together, one through the REST API and one through the CLI."""
    from compute_functions.sample_scan import write_sample_scan
    from tools.demo import DEMO_FOLDER

    started = {}
    endpoints = load_endpoints("local", facility_root=stack.facility_root)
    for how in ("rest", "cli"):
        name = f"20260101_000000_e2e{how}.h5"
        target = endpoints["spot832"].posix_path(f"raw/{DEMO_FOLDER}/{name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_sample_scan(target, size="tiny")
        conf = {"file_path": f"/global/raw/{DEMO_FOLDER}/{name}"}
        run_id = stack.trigger(DISPATCHER, conf) if how == "rest" else cli_trigger(stack, DISPATCHER, conf)
        started[how] = {"run_id": run_id, "scan": target}
    for run in started.values():
        run["state"] = stack.wait(DISPATCHER, run["run_id"], timeout=600)
    return started


def _report(stack, run_id: str) -> dict:
    path = f"/api/v2/dags/{DISPATCHER}/dagRuns/{run_id}/taskInstances/report/xcomEntries/return_value"
    return stack.request("GET", path).json()["value"]


@pytest.mark.parametrize("how", ["rest", "cli"])
def test_dispatcher_run_succeeds_with_its_outputs_and_catalogue(stack, runs, how):
    run = runs[how]
    assert run["state"] == "success", f"{how} run {run['run_id']} ended {run['state']}; logs under {stack.log_dir}"
    report = _report(stack, run["run_id"])

    # every pipeline the settings Variable enables ran (nothing is export-controlled here)
    settings = json.loads(stack.request("GET", "/api/v2/variables/bl832_dispatcher_settings").json()["value"])
    assert sorted(report["pipelines"]) == sorted(name for name, on in settings.items() if on)
    recons = [name for name in report["pipelines"] if name != "new_file"]
    assert recons, "no reconstruction ran"

    # the outputs are on the facility: raw copies of the same size, per site a TIFF per row and a Zarr store
    scan: Path = run["scan"]
    with h5py.File(scan, "r") as f:
        rows = f["/exchange/data"].shape[1]
    endpoints = load_endpoints("local", facility_root=stack.facility_root)
    outputs = [EndpointPath.from_dict(item) for item in report["outputs"]]
    local = {str(o.path): endpoints.posix(o) for o in outputs}
    raw_copies = [p for rel, p in local.items() if PurePosixPath(rel).name == scan.name]
    assert len(raw_copies) >= 2 and all(p.stat().st_size == scan.stat().st_size for p in raw_copies)
    tiff_dirs = [p for rel, p in local.items() if PurePosixPath(rel).name == f"rec{scan.stem}"]
    zarr_dirs = [p for rel, p in local.items() if PurePosixPath(rel).name == f"rec{scan.stem}.zarr"]
    assert len(tiff_dirs) == len(zarr_dirs) == len(recons), report["outputs"]
    for folder in tiff_dirs:
        assert len(list(folder.glob("*.tif*"))) == rows, f"{folder}: expected {rows} TIFFs (one per row)"
    for store in zarr_dirs:
        assert (store / "zarr.json").is_file() or (store / ".zgroup").is_file(), f"{store} is not a Zarr store"

    # SciCat: one raw dataset for the scan, one derived dataset per reconstruction, linked to it
    from pyscicat.client import from_credentials

    password = next(c["conn_password"] for c in load_settings()["connections"] if c["conn_id"] == "scicat_default")
    scicat = from_credentials(f"{stack.facility.url}/scicat/api/v3", SCICAT_USER, password)
    datasets = scicat.datasets_get_many({"datasetName": scan.stem}) or []
    raw = [d for d in datasets if d["type"] == "raw"]
    assert len(raw) == 1, f"{len(raw)} raw datasets for {scan.stem}"
    derived = [d for d in scicat.datasets_get_many({"type": "derived"}) or [] if raw[0]["pid"] in d["inputDatasets"]]
    assert len(derived) == len(recons), [d["datasetName"] for d in derived]


def test_no_connection_secret_in_anything_the_runs_wrote(stack, runs):
    secrets = connection_secrets()
    assert "local-secret" in secrets and any("PRIVATE KEY" in s for s in secrets)
    texts: list[tuple[str, str]] = []

    # task logs (every attempt, trigger logs too) and the logs of every component but the facility itself
    files = [p for p in stack.log_dir.rglob("*") if p.is_file() and p.name != "facility.log"]
    task_logs = [p for p in files if "dag_id=" in str(p)]
    for component in ("scheduler", "triggerer", "dag-processor", "api-server"):
        assert (stack.log_dir / f"{component}.log").stat().st_size > 0, f"{component}.log is empty"
    texts += [(str(p), p.read_text(errors="replace")) for p in files]

    # XCom values and rendered templates of every task instance, through the API
    for run in runs.values():
        base = f"/api/v2/dags/{DISPATCHER}/dagRuns/{run['run_id']}/taskInstances"
        tis = stack.task_instances(DISPATCHER, run["run_id"])
        ran = [ti for ti in tis if ti["try_number"] > 0]
        logged = {p.parent.name.removeprefix("task_id=") for p in task_logs if run["run_id"] in str(p)}
        assert {ti["task_id"] for ti in ran} <= logged, "a task that ran has no log file to search"
        for ti in ran:
            where = f"{run['run_id']}/{ti['task_id']}"
            texts.append((f"{where} rendered", json.dumps(ti.get("rendered_fields"))))
            entries = stack.request("GET", f"{base}/{ti['task_id']}/xcomEntries").json()["xcom_entries"]
            for entry in entries:
                value = stack.request("GET", f"{base}/{ti['task_id']}/xcomEntries/{entry['key']}").json()["value"]
                texts.append((f"{where} xcom {entry['key']}", json.dumps(value)))
    assert sum(1 for where, _ in texts if " xcom " in where) >= len(runs), "no XCom was searched"

    assert find_secrets(texts, secrets) == []
    assert find_secrets([("control", f"x {secrets[0]} y")], secrets), "the search itself finds nothing"
