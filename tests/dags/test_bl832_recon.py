"""bl832_local_recon and bl832_alcf_recon end to end on the local facility (dag.test), and their Params."""

from __future__ import annotations

import uuid

import pytest

from include.endpoints import REPO_ROOT
from tests.dags.dag_helpers import load_dag, states, write_scan

pytestmark = pytest.mark.usefixtures("airflow_db")
DAG_FILE = REPO_ROOT / "dags" / "bl832_recon.py"


def get_dag(dag_id: str, *, fast_retries: bool = True):
    return load_dag(dag_id, DAG_FILE.name, fast_retries=fast_retries)


def place_scan(local_endpoints, folder: str) -> tuple[str, int]:
    """A tiny generated scan at data832_raw:<folder>/<file>.h5; returns (relative path, detector rows)."""
    from compute_functions.scan_io import read_metadata

    relative = f"{folder}/20260101_120000_sample.h5"
    path = write_scan(local_endpoints, "data832_raw", relative)
    return relative, read_metadata(path).n_rows


def manifest_entries(dag_id: str, run_id: str) -> list[dict]:
    from include.manifests import KEY_PREFIX, default_store, load_entries

    store = default_store()
    entries = load_entries(store.keys(KEY_PREFIX), store=store)
    return [
        {"endpoint": e.endpoint, "path": e.path, "check_endpoint": e.check_endpoint, "location": e.location}
        for e in entries
        if getattr(e, "run_id", None) == run_id and e.dag_id == dag_id
    ]


def outputs_of(dag_run) -> list[dict]:
    ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "finish")
    return [{"endpoint": o["endpoint"], "path": o["path"]} for o in ti.xcom_pull(task_ids="finish", key="outputs")]


def test_local_recon_writes_tiffs_and_zarr_on_data832_scratch(facility, local_endpoints):
    folder = f"BLS-00001_local{uuid.uuid4().hex[:6]}"
    scan, rows = place_scan(local_endpoints, folder)
    dag_run = get_dag("bl832_local_recon").test(run_conf={"file_path": f"/global/raw/{scan}"})
    assert dag_run.state == "success", states(dag_run)
    assert "stage_raw" not in states(dag_run) and "copy_tiff" not in states(dag_run)
    # finding 6: results on data832_scratch go after 3 days once the long-term raw copy exists (regenerable)
    assert sorted(
        (e["endpoint"], e["path"], e["check_endpoint"], e["location"])
        for e in manifest_entries("bl832_local_recon", dag_run.run_id)
    ) == [
        # the run-once markers beside the results go with them (issue 21 finding 12)
        ("data832_scratch", f"{folder}/local/.rec20260101_120000_sample.run-result", "nersc832", "data832_scratch"),
        (
            "data832_scratch",
            f"{folder}/local/.rec20260101_120000_sample.zarr.run-result",
            "nersc832",
            "data832_scratch",
        ),
        ("data832_scratch", f"{folder}/local/rec20260101_120000_sample", "nersc832", "data832_scratch"),
        ("data832_scratch", f"{folder}/local/rec20260101_120000_sample.zarr", "nersc832", "data832_scratch"),
    ]
    outputs = outputs_of(dag_run)
    assert outputs == [
        {"endpoint": "data832_scratch", "path": f"{folder}/local/rec20260101_120000_sample"},
        {"endpoint": "data832_scratch", "path": f"{folder}/local/rec20260101_120000_sample.zarr"},
    ]
    tiffs = list(local_endpoints["data832_scratch"].posix_path(outputs[0]["path"]).glob("*.tiff"))
    assert len(tiffs) == rows
    assert (local_endpoints["data832_scratch"].posix_path(outputs[1]["path"]) / "zarr.json").exists() or any(
        local_endpoints["data832_scratch"].posix_path(outputs[1]["path"]).glob(".z*")
    )
    stats = facility.stats()
    assert stats["compute.executed.reconstruct"] == 1 and stats["compute.executed.multiscale"] == 1


def test_alcf_recon_copies_results_home_and_records_deletions(facility, local_endpoints):
    folder = f"BLS-00002_alcf{uuid.uuid4().hex[:6]}"
    scan, rows = place_scan(local_endpoints, folder)
    dag_run = get_dag("bl832_alcf_recon").test(
        run_conf={"file_path": scan, "recon": {"ring_removal": True, "engine": "auto"}}
    )
    assert dag_run.state == "success", states(dag_run)
    assert local_endpoints["alcf832_raw"].posix_path(scan).is_file()
    outputs = outputs_of(dag_run)
    tiff_dir = local_endpoints["data832_scratch"].posix_path(f"{folder}/alcf/rec20260101_120000_sample")
    assert outputs[0] == {"endpoint": "data832_scratch", "path": f"{folder}/alcf/rec20260101_120000_sample"}
    assert len(list(tiff_dir.glob("*.tiff"))) == rows
    entries = manifest_entries("bl832_alcf_recon", dag_run.run_id)
    assert sorted((e["endpoint"], e["path"], e["check_endpoint"]) for e in entries) == sorted(
        [
            ("alcf832_raw", scan, "data832_raw"),
            ("alcf832_scratch", f"{folder}/alcf/rec20260101_120000_sample", "data832_scratch"),
            ("alcf832_scratch", f"{folder}/alcf/rec20260101_120000_sample.zarr", "data832_scratch"),
            # brought home: pruned once the long-term raw copy exists (regenerate_from_raw, retention.yaml)
            ("data832_scratch", f"{folder}/alcf/rec20260101_120000_sample", "nersc832"),
            ("data832_scratch", f"{folder}/alcf/rec20260101_120000_sample.zarr", "nersc832"),
            # the run-once markers beside the results at ALCF go with them (issue 21 finding 12)
            ("alcf832_scratch", f"{folder}/alcf/.rec20260101_120000_sample.run-result", "nersc832"),
            ("alcf832_scratch", f"{folder}/alcf/.rec20260101_120000_sample.zarr.run-result", "nersc832"),
        ]
    )
    assert {e["location"] for e in entries} == {"alcf", "data832_scratch"}
    stats = facility.stats()
    assert stats["compute.task_created.reconstruct"] == stats["compute.task_created.multiscale"] == 1
    assert stats["compute.task_created.open_task_group"] == 2 and stats["transfer.task_created"] == 3


def test_failed_reconstruction_fails_the_run_and_still_records_the_copies(facility, local_endpoints, capfd):
    folder = f"BLS-00003_fail{uuid.uuid4().hex[:6]}"
    scan, _ = place_scan(local_endpoints, folder)
    facility.inject("compute", "raise", match="^reconstruct$", times=10, message="GPU fell off the bus")
    dag_run = get_dag("bl832_alcf_recon").test(run_conf={"file_path": scan})
    assert dag_run.state == "failed"
    got = states(dag_run)
    assert got["stage_raw"] == "success" and got["reconstruct"] == "failed"
    assert got["check_results"] == "upstream_failed" and got["finish"] == "failed"  # recorded, then failed
    captured = capfd.readouterr()
    assert "RuntimeError: GPU fell off the bus" in captured.out + captured.err
    stats = facility.stats()
    assert stats["compute.task_created.reconstruct"] == 3  # one per try: each earlier try's task had failed
    assert stats["compute.task_created.open_task_group"] == 1  # into the one task group of the run
    recorded = {(e["endpoint"], e["path"]) for e in manifest_entries("bl832_alcf_recon", dag_run.run_id)}
    assert ("alcf832_raw", scan) in recorded
    # a copy is recorded with what it holds, if the failed run left one; nothing there records nothing
    rec = f"{folder}/alcf/rec20260101_120000_sample"
    assert (("alcf832_scratch", rec) in recorded) == local_endpoints["alcf832_scratch"].posix_path(rec).exists()


@pytest.mark.parametrize(
    "conf",
    [
        {},
        {"file_path": "/data/raw/f/scan.h5"},
        {"file_path": "folder/scan.txt"},
        {"file_path": "f/s.h5", "recon": {"binning": 9}},
        {"file_path": "f/s.h5", "recon": {"engine": "magic"}},
        {"file_path": "f/s.h5", "recon": {"rows": "10"}},
        {"file_path": "f/s.h5", "recon": {"unknown": 1}},
        {"file_path": "f/s.h5", "recon": {"center": -1}},
        {"file_path": "f/s.h5", "recon": {"ring_removal": "yes"}},
    ],
)
def test_bad_conf_is_refused_by_the_params(conf):
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(get_dag("bl832_local_recon", fast_retries=False).params)
    with pytest.raises(ParamValidationError):
        params.update(conf)
        params.validate()


def test_good_conf_passes_the_params():
    import copy

    params = copy.deepcopy(get_dag("bl832_alcf_recon", fast_retries=False).params)
    params.update(
        {
            "file_path": "/global/raw/BLS-00564_dyparkinson/20230224_132553_sea_shell.h5",
            "recon": {"rows": "0:8", "center": 63.5, "ring_removal": False, "engine": "fbp", "binning": 2},
        }
    )
    assert params.validate()["recon"]["binning"] == 2


def test_unknown_conf_keys_and_bad_paths_are_refused_before_anything_moves(facility):
    from airflow.exceptions import ParamValidationError

    dag = get_dag("bl832_alcf_recon")
    dag_run = dag.test(run_conf={"file_path": "f/s.h5", "extra": 1})
    assert dag_run.state == "failed"
    assert states(dag_run)["plan"] == "failed"
    assert states(dag_run)["reconstruct"] == "upstream_failed"
    for conf in ({"file_path": "../s.h5"}, {"file_path": "f/s.tiff"}, {"file_path": "f/s.h5", "recon": {"x": 1}}):
        with pytest.raises(ParamValidationError):
            dag.test(run_conf=conf)
    stats = facility.stats()
    assert stats.get("compute.submit", 0) == 0 and stats.get("transfer.task_created", 0) == 0


def test_engines_match_the_science():
    from compute_functions.engines import ENGINES as SCIENCE_ENGINES
    from dags.pipelines.params import ENGINES
    from include.sites import load_sites

    assert list(SCIENCE_ENGINES) == ENGINES
    assert {site.dag_id for site in load_sites().enabled()} == {
        "bl832_alcf_recon",
        "bl832_olcf_recon",
        "bl832_local_recon",
        "bl832_nersc_recon",
    }


def test_every_dag_has_owner_retries_tags_and_docs():
    for dag_id in ("bl832_alcf_recon", "bl832_local_recon"):
        dag = get_dag(dag_id, fast_retries=False)
        assert dag.doc_md and dag.tags
        for task in dag.tasks:
            assert task.owner == "bl832-computing", task.task_id
            assert task.retries >= 1 or task.task_id == "plan", task.task_id
