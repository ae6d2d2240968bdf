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


def test_replace_destination_leaves_exactly_the_new_copy(facility, local_endpoints):
    """Issue 13 finding 5 (operator): Globus never deletes extra files at the destination; replace does."""
    for i in range(3):
        write_source(local_endpoints, f"replaced/rec_{i:05d}.tiff", bytes([i]) * 100)
    assert run("replaced")[0].state == "success"
    source = local_endpoints.posix(EndpointPath("spot832", "raw/operator_test/replaced"))
    (source / "rec_00002.tiff").unlink()  # a re-run that writes fewer slices
    assert run("replaced")[0].state == "success"
    copied = local_endpoints.posix(EndpointPath("data832_raw", "operator_test/replaced"))
    assert sorted(p.name for p in copied.iterdir()) == ["rec_00000.tiff", "rec_00001.tiff"]
    stats = facility.stats()
    assert stats["delete.task_created"] == 1 and stats["transfer.task_created"] == 2


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
