"""The beamline's existing caller works unchanged (issue 16, finding 3): upstream's conf names on our DAGs."""

from __future__ import annotations

import pytest

from tests.dags.dag_helpers import load_dag, states, xcom
from tests.dags.test_bl832_dispatcher import new_scan
from tests.include.test_callers import PLANTED, upstream_config
from tools.run_dag import run_outputs

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]


def test_upstream_shaped_conf_runs_the_dispatcher(facility, local_endpoints, capfd):
    file_path, scan = new_scan(local_endpoints)
    conf = {"file_path": file_path, "is_export_control": False, "num_nodes": 1, "config": upstream_config()}
    run = load_dag("bl832_dispatcher").test(run_conf=conf)
    assert run.state == "success", states(run)
    assert xcom(run, "plan", "nersc.num_nodes") == 1  # upstream's num_nodes (PR #111), carried in the plan
    assert local_endpoints["nersc832"].posix_path(f"raw/{scan}").is_file()
    assert len(run_outputs(run.dag_id, run.run_id)) == 2 + 2 * 3
    assert PLANTED not in capfd.readouterr().out


def test_upstream_export_control_keeps_the_scan_at_the_beamline(facility, local_endpoints):
    file_path, scan = new_scan(local_endpoints)
    run = load_dag("bl832_new_file").test(run_conf={"file_path": file_path, "is_export_control": True, "config": {}})
    assert run.state == "success", states(run)
    assert local_endpoints["data832_raw"].posix_path(scan).is_file()
    assert not local_endpoints["nersc832"].posix_path(f"raw/{scan}").exists()
    assert facility.stats().get("scicat.dataset_created", 0) == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"config": {"globus": {"globus_endpoints": {"nersc832": {"uuid": "0", "root_path": "/"}}}}},
        {"config": {"decision_settings": {}}},
        {"is_export_control": True, "is_export_controlled": False},
        {"send_to_alcf": True},
    ],
)
def test_upstream_conf_that_cannot_be_honoured_is_refused_before_anything_moves(facility, local_endpoints, extra):
    file_path, _ = new_scan(local_endpoints)
    run = load_dag("bl832_dispatcher").test(run_conf={"file_path": file_path, **extra})
    assert run.state == "failed"
    assert states(run)["plan"] == "failed"
    assert facility.stats().get("transfer.submit", 0) == 0


def test_upstream_733_run_of_saxs_exposures(facility, local_endpoints):
    """Upstream's 7.3.3 caller: a list of files (each exposure a .txt header and its .edf image), its names."""
    import uuid

    from facility.scicat_samples import write_saxs_exposure

    folder = f"ALS-07331_saxs{uuid.uuid4().hex[:6]}"
    root = local_endpoints["data733"].posix_path(folder)
    files = []
    for index in range(2):
        for path in write_saxs_exposure(root, f"AgB_2m_0000{index}", seed=index):
            files.append(f"{folder}/{path.name}")
    dag = load_dag("bl733_new_file")
    run = dag.test(run_conf={"file_path": files, "is_export_control": False, "config": {}})
    assert run.state == "success", states(run)
    for relative in files:
        assert local_endpoints["nersc733_raw"].posix_path(relative).is_file()
        assert local_endpoints["nersc733_hpss"].posix_path(relative).is_file()
    assert facility.stats()["scicat.dataset_created"] == 2  # one dataset per exposure (its .txt and .edf)

    refused = dag.test(run_conf={"file_path": files, "is_export_control": True})  # as upstream: not processed
    assert refused.state == "failed" and states(refused)["plan"] == "failed"


def test_i22_item_4_num_nodes_is_a_whole_number_from_1_to_64():
    from dags.pipelines.params import num_nodes

    assert num_nodes({}) == num_nodes({"num_nodes": 1}) == 1
    assert num_nodes({"num_nodes": 4}) == 4  # upstream's multinode default
    for bad in (0, -1, True, 2.5, "2", None, 65):
        with pytest.raises(
            ValueError, match=r"^num_nodes: .*: must be a whole number from 1 to 64; e\.g\. \"num_nodes\": 2$"
        ):
            num_nodes({"num_nodes": bad})
    param = load_dag("bl832_dispatcher").params.get_param("num_nodes")
    assert param.resolve(1) == 1 and param.schema["title"] and param.description
    for bad in (0, "2", 65):
        with pytest.raises(Exception, match=r"(?i)valid"):
            param.resolve(bad)


def test_i22_item_4_upstream_733_call_with_absolute_paths_in_two_folders_copies_exactly_those_files(
    facility, local_endpoints
):
    """Upstream's 7.3.3 caller sends absolute paths on data733 (root /) of files in several folders
    (bl733/move.py:95-133); each lands at the same relative path, and each record names its own folder."""
    import uuid

    from facility.scicat_samples import write_saxs_exposure

    top = f"ALS-07332_abs{uuid.uuid4().hex[:6]}"
    folders = [f"{top}/2025/03/AgB", f"{top}/2025/04/run2"]
    files = []
    for index, folder in enumerate(folders):
        for path in write_saxs_exposure(local_endpoints["data733"].posix_path(folder), f"AgB_0000{index}", seed=index):
            files.append(f"/{folder}/{path.name}")
    unrelated = local_endpoints["data733"].posix_path(f"{top}/2025/03/AgB/unrelated.edf")
    unrelated.write_bytes(b"not listed")
    run = load_dag("bl733_new_file").test(run_conf={"file_path": files, "is_export_control": False, "config": {}})
    assert run.state == "success", states(run)
    for absolute in files:
        relative = absolute.lstrip("/")
        original = local_endpoints["data733"].posix_path(relative).read_bytes()
        assert local_endpoints["nersc733_raw"].posix_path(relative).read_bytes() == original
        assert local_endpoints["nersc733_hpss"].posix_path(relative).is_file()
    assert not local_endpoints["nersc733_raw"].posix_path(f"{top}/2025/03/AgB/unrelated.edf").exists()
    ingested = xcom(run, "scicat_ingest")
    assert ingested["source_folders"] == [local_endpoints["nersc733_raw"].globus_path(f) for f in folders]
    assert facility.stats()["scicat.dataset_created"] == 2 and facility.stats()["transfer.task_created"] == 1


def test_i22_item_4_upstream_7012_call_with_a_nested_cxi_runs(facility, local_endpoints):
    """Upstream's 7.0.1.2 files are nested .cxi relative to data7012's root (bl7012/move_recon.py:271)."""
    import uuid

    from compute_functions.ptycho import write_sample

    cxi = f"{uuid.uuid4().hex[:6]}/2023/02/230216/NS_230216033_ccdframes_0_0.cxi"
    write_sample(local_endpoints["data7012"].posix_path(cxi))
    run = load_dag("bl7012_new_file").test(run_conf={"file_path": cxi, "is_export_control": False, "config": {}})
    assert run.state == "success", states(run)
    copy = local_endpoints["nersc7012_raw"].posix_path(cxi)
    assert copy.read_bytes() == local_endpoints["data7012"].posix_path(cxi).read_bytes()
    results = f"{cxi.rsplit('/', 1)[0]}/ptycho/recNS_230216033_ccdframes_0_0"
    assert xcom(run, "finish", "outputs") == [
        {"endpoint": "nersc7012_raw", "path": cxi},
        {"endpoint": "nersc7012_scratch", "path": results},
    ]
    assert any(local_endpoints["nersc7012_scratch"].posix_path(results).glob("*.tiff"))


@pytest.mark.parametrize(
    ("bad", "refused_by"),
    [
        ("{folder}/../a.edf", "params"),  # the trigger form, REST API and dag.test refuse it (the Param's pattern)
        ("{folder}/.hidden/a.edf", "params"),
        ("/{folder}//a.edf", "params"),
        ("{folder}/a\\b.edf", "plan"),  # what the pattern lets through, plan refuses (include.paths.parse_file)
        ("{folder}/{first}", "plan"),  # the first file again, relative this time: listed twice
    ],
)
def test_i22_item_4_a_bad_path_in_an_upstream_733_call_is_refused_before_anything_moves(
    facility, local_endpoints, bad, refused_by
):
    import uuid

    from airflow.sdk.exceptions import ParamValidationError

    from facility.scicat_samples import write_saxs_exposure

    folder = f"ALS-07332_bad{uuid.uuid4().hex[:6]}"
    written = write_saxs_exposure(local_endpoints["data733"].posix_path(folder))
    files = [*(f"/{folder}/{p.name}" for p in written), bad.format(folder=folder, first=written[0].name)]
    dag = load_dag("bl733_new_file")
    if refused_by == "params":
        with pytest.raises(ParamValidationError, match="file_path"):
            dag.test(run_conf={"file_path": files})
    else:
        run = dag.test(run_conf={"file_path": files})
        assert run.state == "failed" and states(run)["plan"] == "failed"
    assert facility.stats().get("transfer.submit", 0) == 0
    assert not local_endpoints["nersc733_raw"].posix_path(folder).exists()
