"""Remote work exactly once in whole DAG runs (dag.test and ``make dags-test``) on the local profile, with the
answers of submits lost on the way back (the facility's ``lost_response`` fault)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from include.endpoints import REPO_ROOT
from tests.dags.dag_helpers import load_dag, states, write_scan

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]

FOLDER = "BLS-00564_dyparkinson"
SFAPI_SUBMIT = r"^POST /sfapi/.*/compute/jobs/"


def place_scan(local_endpoints, file_name: str) -> str:
    write_scan(local_endpoints, "nersc832_alsdev_raw", f"{FOLDER}/{file_name}")
    return f"/global/raw/{FOLDER}/{file_name}"


def test_nersc_recon_with_a_lost_submit_answer_runs_one_job_per_step(facility, local_endpoints):
    """Issue 13 finding 1, whole DAG: the first job submit's answer is lost; still one Slurm job per step."""
    dag = load_dag("bl832_nersc_recon", "bl832_recon.py")
    file_path = place_scan(local_endpoints, "20230224_150000_lost.h5")
    facility.inject("sfapi", "lost_response", status=504, match=SFAPI_SUBMIT)
    dag_run = dag.test(run_conf={"file_path": file_path})
    assert dag_run.state == "success", states(dag_run)
    stats = facility.stats()
    assert stats["fault.lost_response.504"] == 1
    assert stats["sfapi.job_created"] == 2  # reconstruct and multiscale, one each


def test_dags_test_runs_against_an_already_running_facility(facility, local_endpoints, tmp_path):
    """``make dags-test ... FACILITY_URL=...``: run_dag uses the running facility, so faults injected from
    outside reach the run."""
    file_path = place_scan(local_endpoints, "20230224_150500_outside.h5")
    facility.inject("sfapi", "lost_response", status=504, match=SFAPI_SUBMIT)
    command = [sys.executable, "-m", "tools.run_dag", "bl832_nersc_recon", "--conf"]
    command += [f'{{"file_path": "{file_path}"}}', "--home", str(tmp_path / "airflow"), "--facility-url", facility.url]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"using the running facility at {facility.url}" in done.stderr
    stats = facility.stats()
    assert stats["fault.lost_response.504"] == 1
    assert stats["sfapi.job_created"] == 2


def test_a_rerun_with_fewer_rows_leaves_exactly_the_new_stack_at_home(facility, local_endpoints):
    """Issue 13 finding 5: Globus never deletes extra files, so a re-run with fewer rows left a mixed stack
    at home and the check ("at least one TIFF") passed it."""
    dag = load_dag("bl832_nersc_recon", "bl832_recon.py")
    file_path = place_scan(local_endpoints, "20230224_151000_rows.h5")
    first = dag.test(run_conf={"file_path": file_path})
    assert first.state == "success", states(first)
    home = local_endpoints["data832_scratch"].posix_path(f"{FOLDER}/rec20230224_151000_rows")
    assert len(list(home.glob("*.tiff"))) == 4

    second = dag.test(run_conf={"file_path": file_path, "recon": {"rows": "0:2"}})
    assert second.state == "success", states(second)
    assert len(list(home.glob("*.tiff"))) == 2
    from compute_functions.results_manifest import check

    assert check(home)["count"] == 2
    assert facility.stats()["delete.task_created"] >= 2  # the earlier results were replaced, not mixed


def test_already_done_means_complete_not_merely_present(facility, local_endpoints):
    """Issue 13 finding 6: the dispatcher skipped a site when rec<ds>.zarr merely existed."""
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from compute_functions.results_manifest import write
    from include.dispatch import results_at_home
    from include.paths import parse_scan
    from include.results import completeness
    from include.sites import load_sites

    scan = parse_scan(f"{FOLDER}/20230224_152000_done.h5")
    site = load_sites()["nersc"]
    results = scan.results(site)
    folders = [local_endpoints["data832_scratch"].posix_path(str(f)) for f in results.folders()]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "part.bin").write_bytes(b"0123456789")
    hook = GlobusTransferHook()

    def done() -> str | None:  # the dispatcher's look at the results at home (include/dispatch.py)
        return results_at_home(site, results, lambda where: completeness(hook, where))

    assert done() is None  # present, no manifest: a copy still under way

    for folder in folders:
        write(folder)
    assert "already complete" in done()

    (folders[1] / "part.bin").write_bytes(b"01234")  # a partial copy of the Zarr
    assert done() is None
    (folders[1] / "part.bin").write_bytes(b"0123456789")
    (folders[0] / "extra.tiff").write_bytes(b"old")  # a mix with an earlier run
    assert done() is None


@pytest.mark.parametrize("site", ["nersc", "local"])
def test_a_data_error_fails_the_reconstruction_once_with_its_line(facility, local_endpoints, site, capfd):
    """Issue 13 finding 7, whole DAG: a scan the reconstruction cannot use fails at once, not after 3 tries."""
    dag = load_dag(f"bl832_{site}_recon", "bl832_recon.py")
    endpoint = "nersc832_alsdev_raw" if site == "nersc" else "data832_raw"
    write_scan(local_endpoints, endpoint, f"{FOLDER}/20230224_153000_bad{site}.h5")
    conf = {"file_path": f"{FOLDER}/20230224_153000_bad{site}.h5", "recon": {"center": 99999}}
    dag_run = dag.test(run_conf=conf)
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert dag_run.state == "failed"
    assert tis["reconstruct"].state == "failed" and tis["reconstruct"].try_number == 1
    captured = capfd.readouterr()
    assert "reconstruct: center: bad center 99999" in captured.out + captured.err


COUNTED = ("compute.task_created", "compute.executed", "sfapi.job_created")


def _recon_runs(facility, local_endpoints, tag: str, faults: list[dict]) -> dict[str, int]:
    """Run bl832_local_recon (Compute) and bl832_nersc_recon (SFAPI) on fresh scans under ``faults``."""
    facility.reset()
    for fault in faults:
        facility.inject(**fault)
    for site, endpoint in (("local", "data832_raw"), ("nersc", "nersc832_alsdev_raw")):
        name = f"20230224_16{len(tag):02d}00_{tag}{site}.h5"
        write_scan(local_endpoints, endpoint, f"{FOLDER}/{name}")
        dag_run = load_dag(f"bl832_{site}_recon", "bl832_recon.py").test(run_conf={"file_path": f"{FOLDER}/{name}"})
        assert dag_run.state == "success", states(dag_run)
    stats = facility.stats()
    return {counter: stats.get(counter, 0) for counter in (*COUNTED, "fault.lost_response.504")}


def test_i21_finding_11_lost_submit_answers_cost_no_extra_task_or_job(facility, local_endpoints):
    """Issue 21 finding 11 (done when): with the answer of the first Compute submit of the reconstruction and
    of the first SFAPI job submit lost, the facility counts as many Compute tasks, Compute executions and Slurm
    jobs as a clean run."""
    clean = _recon_runs(facility, local_endpoints, "clean", [])
    lost = _recon_runs(
        facility,
        local_endpoints,
        "lost",
        [
            {"service": "compute", "kind": "lost_submit", "status": 504, "match": "^reconstruct$"},
            {"service": "sfapi", "kind": "lost_response", "status": 504, "match": SFAPI_SUBMIT},
        ],
    )
    assert lost.pop("fault.lost_response.504") == 2 and clean.pop("fault.lost_response.504") == 0
    assert lost == clean
    assert clean["sfapi.job_created"] == 2  # reconstruct and multiscale


def test_i21_finding_11_a_lost_answer_to_the_group_opening_costs_one_empty_call(facility, local_endpoints):
    """The first submit of a Compute step opens its task group; its answer lost leaves an orphan group with one
    call of ``open_task_group`` (which does nothing); the science still runs once."""
    facility.inject("compute", "lost_response", status=504, match=r"^POST /v3/endpoints/[^/]+/submit$")
    name = "20230224_170000_opener.h5"
    write_scan(local_endpoints, "data832_raw", f"{FOLDER}/{name}")
    dag_run = load_dag("bl832_local_recon", "bl832_recon.py").test(run_conf={"file_path": f"{FOLDER}/{name}"})
    assert dag_run.state == "success", states(dag_run)
    stats = facility.stats()
    assert stats["fault.lost_response.504"] == 1
    assert stats["compute.task_created.reconstruct"] == stats["compute.executed.reconstruct"] == 1
    assert stats["compute.task_created.multiscale"] == stats["compute.executed.multiscale"] == 1
    assert stats["compute.task_created.open_task_group"] == 3  # one per step, and the orphan
