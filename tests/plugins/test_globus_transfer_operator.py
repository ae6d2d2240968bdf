"""GlobusTransferOperator in real Airflow runs (dag.test): success, failure, and retries that re-attach."""

from __future__ import annotations

import pytest

from include.paths import EndpointPath
from tests.fixture_dags.transfer_operator_dags import DAGS

pytestmark = pytest.mark.usefixtures("airflow_db")


def run(name: str):
    dag_run = DAGS[name].test()
    return dag_run, {ti.task_id: ti for ti in dag_run.get_task_instances()}


def write_source(local_endpoints, name: str, payload: bytes = b"d" * 2048):
    path = local_endpoints.posix(EndpointPath("spot832", f"raw/operator_test/{name}"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_copies_a_file(facility, local_endpoints):
    write_source(local_endpoints, "plain", b"abc" * 1000)
    dag_run, _ = run("plain")
    assert dag_run.state == "success"
    assert local_endpoints.posix(EndpointPath("data832_raw", "operator_test/plain")).read_bytes() == b"abc" * 1000
    assert facility.stats()["transfer.task_created"] == 1


def test_a_lost_submit_answer_makes_one_task(facility, local_endpoints):
    """A Transfer submit is idempotent: resent with its submission id, Globus answers the task it created."""
    write_source(local_endpoints, "lost_answer")
    facility.inject("transfer", "lost_response", status=504, match=r"^POST /v0\.10/transfer$")
    dag_run, tis = run("lost_answer")
    assert dag_run.state == "success" and tis["copy"].try_number == 1
    stats = facility.stats()
    assert stats["fault.lost_response.504"] == 1
    assert stats["transfer.task_created"] == 1 and stats["transfer.duplicate"] == 1


def write_results(local_endpoints, name: str, slices: int, fill: int = 0):
    """A results folder at spot832 raw/operator_test/<name>: ``slices`` TIFFs, then its results manifest."""
    import shutil

    from compute_functions.results_manifest import write

    folder = local_endpoints.posix(EndpointPath("spot832", f"raw/operator_test/{name}"))
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(slices):
        write_source(local_endpoints, f"{name}/rec_{i:05d}.tiff", bytes([i + fill]) * 100)
    write(folder)
    return folder


def at_home(local_endpoints, name: str) -> dict[str, bytes]:
    """Every file of data832_raw:operator_test/<name> and whatever lies beside it named after it."""
    parent = local_endpoints.posix(EndpointPath("data832_raw", "operator_test"))
    found = {}
    for path in sorted(parent.rglob("*")):
        rel = path.relative_to(parent).as_posix()
        if path.is_file() and (rel.startswith(f"{name}/") or rel.startswith(f".{name}.")):
            found[rel] = path.read_bytes()
    return found


def fresh_home(local_endpoints, name: str) -> None:
    import shutil

    parent = local_endpoints.posix(EndpointPath("data832_raw", "operator_test"))
    for path in [parent / name, parent / f".{name}.incoming", parent / f".{name}.replaced"]:
        shutil.rmtree(path, ignore_errors=True)


def test_replace_destination_leaves_exactly_the_new_copy(facility, local_endpoints):
    """Issue 13 finding 5 (operator): Globus never deletes extra files at the destination; replace does."""
    fresh_home(local_endpoints, "replaced")
    write_results(local_endpoints, "replaced", 3)
    assert run("replaced")[0].state == "success"
    write_results(local_endpoints, "replaced", 2, fill=7)  # a re-run that writes fewer slices
    assert run("replaced")[0].state == "success"
    names = sorted(at_home(local_endpoints, "replaced"))
    assert names == [
        "replaced/rec_00000.tiff",
        "replaced/rec_00001.tiff",
        "replaced/results-manifest-2-files-200-bytes.json",
    ]
    assert at_home(local_endpoints, "replaced")["replaced/rec_00000.tiff"] == bytes([7]) * 100
    stats = facility.stats()
    assert stats["delete.task_created"] == 1 and stats["transfer.task_created"] == 2


def test_replace_destination_copies_nothing_when_the_same_results_are_there(facility, local_endpoints):
    fresh_home(local_endpoints, "replaced")
    write_results(local_endpoints, "replaced", 2)
    assert run("replaced")[0].state == "success"
    dag_run, tis = run("replaced")  # a Clear: the same complete results are at home already
    assert dag_run.state == "success"
    assert tis["copy"].xcom_pull(task_ids="copy")["status"] == "SKIPPED"
    assert facility.stats()["transfer.task_created"] == 1


def test_i21_finding_5_a_copy_after_the_source_was_pruned_leaves_the_results_at_home(facility, local_endpoints):
    """A Clear of a copy home after prune removed its source fails loudly and deletes nothing at home."""
    import shutil

    fresh_home(local_endpoints, "replace_pruned")
    source = write_results(local_endpoints, "replace_pruned", 3)
    assert run("replace_pruned")[0].state == "success"
    before = at_home(local_endpoints, "replace_pruned")
    assert len(before) == 4
    shutil.rmtree(source)  # pruned after its retention
    facility.reset()
    dag_run, tis = run("replace_pruned")
    assert dag_run.state == "failed" and tis["copy"].try_number == 1  # no retries: the source will not come back
    assert at_home(local_endpoints, "replace_pruned") == before
    stats = facility.stats()
    assert stats.get("delete.task_created", 0) == 0 and stats.get("transfer.task_created", 0) == 0


def test_i21_finding_5_an_incomplete_source_never_replaces_complete_results(facility, local_endpoints):
    fresh_home(local_endpoints, "replace_partial")
    source = write_results(local_endpoints, "replace_partial", 3)
    assert run("replace_partial")[0].state == "success"
    before = at_home(local_endpoints, "replace_partial")
    write_results(local_endpoints, "replace_partial", 3, fill=9)
    (source / "rec_00002.tiff").unlink()  # a partial result: the manifest counts a file that is not there
    facility.reset()
    assert run("replace_partial")[0].state == "failed"
    assert at_home(local_endpoints, "replace_partial") == before
    assert facility.stats().get("delete.task_created", 0) == 0


def test_i21_finding_5_a_swap_interrupted_between_its_renames_is_finished_by_the_retry(facility, local_endpoints):
    """The worker dies with the old results renamed away and the new ones staged: the retry puts the new in place."""
    fresh_home(local_endpoints, "replace_crash")
    write_results(local_endpoints, "replace_crash", 2)
    assert run("replace_crash")[0].state == "success"  # nothing to rename away on the first copy
    write_results(local_endpoints, "replace_crash", 3, fill=5)
    dag_run, tis = run("replace_crash")
    assert dag_run.state == "success" and tis["copy"].try_number == 2
    home = at_home(local_endpoints, "replace_crash")
    assert sorted(home) == [
        "replace_crash/rec_00000.tiff",
        "replace_crash/rec_00001.tiff",
        "replace_crash/rec_00002.tiff",
        "replace_crash/results-manifest-3-files-300-bytes.json",
    ]
    assert home["replace_crash/rec_00000.tiff"] == bytes([5]) * 100


def test_copies_a_folder_recursively_decided_from_the_listing(facility, local_endpoints):
    for i in range(3):
        write_source(local_endpoints, f"folder/rec_{i:05d}.tiff", bytes([i]) * 100)
    dag_run, _ = run("folder")
    assert dag_run.state == "success"
    copied = local_endpoints.posix(EndpointPath("data832_raw", "operator_test/folder"))
    assert sorted(p.name for p in copied.iterdir()) == [f"rec_{i:05d}.tiff" for i in range(3)]


def test_failed_globus_task_fails_the_airflow_task(facility, local_endpoints):
    write_source(local_endpoints, "doomed")
    facility.inject("transfer", kind="task_failed", match="doomed", times=5, message="endpoint storage offline")
    dag_run, tis = run("doomed")
    assert dag_run.state == "failed"
    assert tis["copy"].state == "failed"
    # each try found the earlier task FAILED and submitted afresh: one task per try, never more
    assert facility.stats()["transfer.task_created"] == 2


def test_missing_source_fails_before_anything_is_submitted(facility):
    dag_run, _ = run("absent")
    assert dag_run.state == "failed"
    assert facility.stats().get("transfer.submit", 0) == 0


def test_retry_after_a_crash_reattaches_to_the_first_transfer(facility, local_endpoints):
    write_source(local_endpoints, "crash")
    facility.inject("transfer", kind="slow", match="crash", params={"seconds": 2})
    dag_run, tis = run("crash")
    assert dag_run.state == "success"
    assert tis["copy"].try_number == 2
    stats = facility.stats()
    assert stats["transfer.submit"] == 1, stats
    assert stats["transfer.task_created"] == 1


def test_retry_after_the_task_succeeded_takes_its_result_without_submitting(facility, local_endpoints):
    write_source(local_endpoints, "done", b"x" * 3000)
    dag_run, tis = run("done")
    assert dag_run.state == "success"
    assert tis["copy"].try_number == 2
    assert tis["copy"].xcom_pull(task_ids="copy")["bytes_transferred"] == 3000
    stats = facility.stats()
    assert stats["transfer.submit"] == 1 and stats["transfer.task_created"] == 1


def test_retry_after_a_lost_answer_reuses_the_submission_id(facility, local_endpoints):
    write_source(local_endpoints, "lost")
    dag_run, tis = run("lost")
    assert dag_run.state == "success"
    assert tis["copy"].try_number == 2
    stats = facility.stats()
    assert stats["transfer.submit"] == 2 and stats["transfer.duplicate"] == 1
    assert stats["transfer.task_created"] == 1


@pytest.mark.parametrize("name", ["bad_path", "bad_endpoint"])
def test_bad_paths_and_endpoints_are_refused_before_anything_moves(facility, name):
    dag_run, _ = run(name)
    assert dag_run.state == "failed"
    assert facility.stats().get("transfer.submit", 0) == 0


def test_path_sensor_defers_until_the_path_exists_and_times_out_otherwise(facility, local_endpoints):
    from tests.fixture_dags.transfer_operator_dags import dag_path_sensor

    target = local_endpoints.posix(EndpointPath("data832_raw", "sensor_test/appears.h5"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"here")
    dag_run = dag_path_sensor.test()
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"appears": "success", "never": "failed"}


def test_rename_never_replaces_an_existing_path(facility, local_endpoints):
    """The stand-in's rename (Transfer ``operation/endpoint/{id}/rename``) refuses an existing new path, as Globus."""
    import globus_sdk

    from als_provider.hooks.globus_transfer import GlobusTransferHook

    old, new = (EndpointPath("data832_raw", f"operator_test/rename_{name}") for name in ("old", "new"))
    for where, payload in ((old, b"old"), (new, b"new")):
        path = local_endpoints.posix(where)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    hook = GlobusTransferHook()
    with pytest.raises(globus_sdk.TransferAPIError, match="already exists"):
        hook.rename(old, new)
    assert local_endpoints.posix(new).read_bytes() == b"new" and local_endpoints.posix(old).read_bytes() == b"old"
    local_endpoints.posix(new).unlink()
    hook.rename(old, new)
    assert local_endpoints.posix(new).read_bytes() == b"old" and not local_endpoints.posix(old).exists()
