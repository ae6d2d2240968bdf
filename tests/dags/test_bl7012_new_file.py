"""bl7012_new_file end to end (dag.test) on the local profile: data7012 → nersc7012_raw (Globus stand-in), the
ptychography stand-in job through SFAPI (local Slurm), results checked through Globus, deletion manifests."""

from __future__ import annotations

import uuid

import pytest

from tests.dags.dag_helpers import load_dag, recorded, run_with_a_failing_job, states, xcom

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]
DAG_ID = "bl7012_new_file"


@pytest.fixture(scope="module")
def dag():
    return load_dag(DAG_ID)


def place_scan(local_endpoints, folder: str) -> str:
    from compute_functions.ptycho import write_sample

    relative = f"{folder}/20260301_101500_cell.h5"
    write_sample(local_endpoints["data7012"].posix_path(relative))
    return relative


def test_scan_moves_to_nersc_and_the_ptycho_job_writes_results(dag, facility, local_endpoints):
    import numpy as np
    import tifffile

    folder = f"ALS-07012_user{uuid.uuid4().hex[:6]}"
    scan = place_scan(local_endpoints, folder)
    dag_run = dag.test(run_conf={"file_path": scan})
    assert dag_run.state == "success", states(dag_run)

    nersc_copy = local_endpoints["nersc7012_raw"].posix_path(scan)
    assert nersc_copy.read_bytes() == local_endpoints["data7012"].posix_path(scan).read_bytes()
    results = f"{folder}/ptycho/rec20260301_101500_cell"
    assert xcom(dag_run, "finish", "outputs") == [
        {"endpoint": "nersc7012_raw", "path": scan},
        {"endpoint": "nersc7012_scratch", "path": results},
    ]
    image = tifffile.imread(local_endpoints["nersc7012_scratch"].posix_path(results) / "20260301_101500_cell_stxm.tiff")
    assert image.shape == (8, 8)
    assert image[4, 4] == pytest.approx(0.2) and image[0, 0] == pytest.approx(1.0)  # the disk absorbs
    assert np.isfinite(image).all()

    job = xcom(dag_run, "ptycho_reconstruct")
    assert job["state"] == "COMPLETED" and job["job_name"].startswith(f"ptycho_{folder}_")
    stats = facility.stats()
    assert stats["sfapi.job_created"] == 1 and stats["transfer.task_created"] == 1
    recorded = xcom(dag_run, "finish")["recorded"]
    assert [(r["endpoint"], r["path"], r["check_endpoint"], r["location"]) for r in recorded] == [
        ("data7012", scan, "nersc7012_raw", "data7012")
    ]


def test_a_failed_job_fails_the_run_and_the_move_is_still_recorded(dag, facility, local_endpoints, capfd):
    folder = f"ALS-07012_fail{uuid.uuid4().hex[:6]}"
    scan = place_scan(local_endpoints, folder)
    from tools.run_dag import task_errors

    with task_errors() as errors:
        dag_run, got = run_with_a_failing_job(
            dag, facility, {"file_path": scan}, match="^ptycho_", state="OUT_OF_MEMORY", after=0.2
        )
    assert got["move_to_nersc"] == "success" and got["ptycho_reconstruct"] == "failed"
    assert got["check_ptycho_results"] == "upstream_failed" and got["finish"] == "failed"
    # finish, the run's last task, repeats the job's own one line (issue 23 finding 2), not only the task ids
    job_line = dict(errors)["ptycho_reconstruct"]
    assert "OUT_OF_MEMORY" in job_line
    assert f"ptycho_reconstruct: {job_line}" in dict(errors)["finish"]
    out, err = capfd.readouterr()
    assert "ended OUT_OF_MEMORY" in out + err
    assert [r["endpoint"] for r in recorded(dag_run)] == ["data7012"]


@pytest.mark.parametrize(
    "conf",
    [
        {},
        {"file_path": "../s.h5"},
        {"file_path": "f//s.h5"},
        {"file_path": "f/.s.cxi"},
        {"file_path": "f/s.tiff"},
        {"file_path": "s.h5"},
    ],
)
def test_bad_conf_is_refused_by_the_params(dag, conf):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.test(run_conf=conf)
    # issue 22 item 4: upstream's shapes pass: nested .cxi, absolute on data7012 (root /, bl7012/move.py:28)
    param = dag.params.get_param("file_path")
    for upstream in ("2023/02/230216/NS_230216033_ccdframes_0_0.cxi", "/2023/02/230216/NS_0_0.cxi", "f/s.h5"):
        assert param.resolve(upstream) == upstream


def test_unknown_conf_keys_fail_before_anything_moves(dag, facility):
    dag_run = dag.test(run_conf={"file_path": "f/s.h5", "steps": ["ptycho"]})
    got = states(dag_run)
    assert dag_run.state == "failed" and got["plan"] == "failed", got
    assert got["move_to_nersc"] == "upstream_failed" and got["finish"] == "failed"
    assert facility.stats().get("transfer.task_created", 0) == 0


def test_a_list_of_scans_moves_in_one_task_and_one_job_reconstructs_each(dag, facility, local_endpoints):
    """Issue 16 finding 8 (lists of files, upstream's conf shape) for a beamline with a reconstruction."""
    from compute_functions.ptycho import write_sample

    folder = f"ALS-07012_list{uuid.uuid4().hex[:6]}"
    scans = [f"{folder}/20260301_10150{i}_cell.h5" for i in range(2)]
    for relative in scans:
        write_sample(local_endpoints["data7012"].posix_path(relative))
    dag_run = dag.test(run_conf={"file_path": scans})
    assert dag_run.state == "success", states(dag_run)
    results = [f"{folder}/ptycho/rec20260301_10150{i}_cell" for i in range(2)]
    assert xcom(dag_run, "finish", "outputs") == [
        {"endpoint": endpoint, "path": path}
        for scan, result in zip(scans, results, strict=True)
        for endpoint, path in (("nersc7012_raw", scan), ("nersc7012_scratch", result))
    ]
    for result in results:
        assert any(local_endpoints["nersc7012_scratch"].posix_path(result).glob("*.tiff"))
    stats = facility.stats()
    assert stats["sfapi.job_created"] == 1 and stats["transfer.task_created"] == 1
    assert sorted(r["path"] for r in recorded(dag_run)) == sorted(scans)
