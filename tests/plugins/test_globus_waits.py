"""Issue 24 finding 3: every wait on a Globus task is the deferred GlobusTaskTrigger of the RemoteWorkOperator core.

A replaced destination's clearing and the transfer check's probe removal used to poll Globus in a sleep loop
inside the worker; now each delete is a step of the core (submission id stored first, deferred, re-attached on
retry), driven here as the worker and the triggerer do.
"""

from __future__ import annotations

import shutil
import time
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

from als_provider.operators.globus_delete import GlobusDeleteOperator
from als_provider.operators.globus_transfer import GlobusTransferError, GlobusTransferOperator
from als_provider.triggers.globus_transfer import GlobusTaskTrigger
from als_provider.triggers.inline import first_event
from tests.dags.dag_helpers import TaskStateStore

pytestmark = pytest.mark.usefixtures("airflow_db")


def context(store: TaskStateStore, try_number: int, task_id: str) -> dict:
    ti = SimpleNamespace(dag_id="waits", run_id="manual__i24", task_id=task_id, map_index=-1,
                         try_number=try_number, max_tries=2, task=SimpleNamespace(retries=2))  # fmt: skip
    return {"ti": ti, "task_state_store": store, "params": {}}


def run_to_the_end(operator, ctx, event):
    """What the triggerer and the worker do: fire each deferred trigger and resume the task with its event."""
    while True:
        try:
            return operator.execute_complete(ctx, event)
        except TaskDeferred as deferred:
            assert isinstance(deferred.trigger, GlobusTaskTrigger)
            event = first_event(deferred.trigger)


def results(local_endpoints, endpoint: str, rel: str, slices: int, fill: int = 0):
    """A results folder ``endpoint:rel`` of ``slices`` TIFFs with its results manifest."""
    from compute_functions.results_manifest import write

    folder = local_endpoints[endpoint].posix_path(rel)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(slices):
        (folder / f"rec_{i:05d}.tiff").write_bytes(bytes([i + fill]) * 100)
    write(folder)
    return folder


def copy_home(name: str) -> GlobusTransferOperator:
    return GlobusTransferOperator(
        task_id="copy",
        source_endpoint="spot832",
        source_path=f"raw/waits_test/{name}",
        destination_endpoint="data832_raw",
        destination_path=f"waits_test/{name}",
        recursive=True,
        replace_destination=True,
        poll_interval=0.1,
    )


def test_clearing_a_destination_is_deferred_and_a_retry_submits_no_second_delete(facility, local_endpoints):
    """A staging copy left by an earlier run is deleted by a deferred Globus task before the copy; the worker
    that submitted it dies, and the retry re-attaches to the same delete task."""
    results(local_endpoints, "spot832", "raw/waits_test/clear", 2)
    home = local_endpoints["data832_raw"].posix_path("waits_test")
    shutil.rmtree(home, ignore_errors=True)
    results(local_endpoints, "data832_raw", "waits_test/.clear.incoming", 1, fill=9)  # never swapped in
    facility.inject("transfer", "slow", match=r"\.clear\.incoming$", params={"seconds": 2}, times=1)
    store = TaskStateStore()
    started = time.monotonic()
    with pytest.raises(TaskDeferred) as first:
        copy_home("clear").execute(context(store, 1, "copy"))
    assert time.monotonic() - started < 2  # deferred at once, not polled in the worker
    assert facility.stats()["delete.task_created"] == 1 and facility.stats().get("transfer.submit", 0) == 0
    retry = copy_home("clear")  # the worker died: a new try re-attaches to the delete still running
    with pytest.raises(TaskDeferred) as again:
        retry.execute(context(store, 2, "copy"))
    assert again.value.trigger.globus_task_id == first.value.trigger.globus_task_id
    summary = run_to_the_end(retry, context(store, 2, "copy"), first_event(again.value.trigger))
    assert summary["status"] == "SUCCEEDED" and summary["files_transferred"] == 3
    assert sorted(p.name for p in home.iterdir()) == ["clear"]  # the leftover is gone, the copy in place
    stats = facility.stats()
    assert (stats["delete.submit"], stats["delete.task_created"], stats["transfer.task_created"]) == (1, 1, 1)


def test_the_old_results_are_deleted_by_a_deferred_task_after_the_swap(facility, local_endpoints):
    results(local_endpoints, "spot832", "raw/waits_test/swap", 3)
    home = local_endpoints["data832_raw"].posix_path("waits_test")
    shutil.rmtree(home, ignore_errors=True)
    results(local_endpoints, "data832_raw", "waits_test/swap", 2, fill=7)  # older results at home
    facility.inject("transfer", "slow", match=r"\.swap\.replaced$", params={"seconds": 1}, times=1)
    store = TaskStateStore()
    operator = copy_home("swap")
    with pytest.raises(TaskDeferred) as copying:
        operator.execute(context(store, 1, "copy"))
    with pytest.raises(TaskDeferred) as deleting:  # the copy ended: swapped in, the old results' delete deferred
        operator.execute_complete(context(store, 1, "copy"), first_event(copying.value.trigger))
    assert home.joinpath(".swap.replaced").is_dir() and len(list(home.joinpath("swap").iterdir())) == 4
    summary = run_to_the_end(copy_home("swap"), context(store, 1, "copy"), first_event(deleting.value.trigger))
    assert summary["task_id"] == copying.value.trigger.globus_task_id and summary["files_transferred"] == 4
    assert sorted(p.name for p in home.iterdir()) == ["swap"]
    assert facility.stats()["delete.task_created"] == 1


def probes(local_endpoints, *where: tuple[str, str]) -> dict[str, list[str]]:
    found = {}
    for endpoint, folder in where:
        path = local_endpoints[endpoint].posix_path(folder)
        found[endpoint] = sorted(p.name for p in path.glob("*")) if path.is_dir() else []
    return found


def remover(**kwargs) -> GlobusDeleteOperator:
    folders = {"data832_raw": "waits_probes", "nersc832": "waits_probes"}
    return GlobusDeleteOperator(task_id="remove_probes", folders=folders, pattern="*.probe", **kwargs)


def put_probes(local_endpoints) -> None:
    for endpoint in ("data832_raw", "nersc832"):
        folder = local_endpoints[endpoint].posix_path("waits_probes")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / f"{endpoint}.probe").write_bytes(b"p")
        (folder / "keep.txt").write_bytes(b"k")


def test_probes_are_removed_by_deferred_deletes_and_a_retry_re_attaches(facility, local_endpoints):
    put_probes(local_endpoints)
    facility.inject("transfer", "slow", match=r"data832_raw\.probe$", params={"seconds": 2}, times=1)
    store = TaskStateStore()
    with pytest.raises(TaskDeferred) as first:
        remover(poll_interval=0.1).execute(context(store, 1, "remove_probes"))
    retry = remover(poll_interval=0.1)
    with pytest.raises(TaskDeferred) as again:
        retry.execute(context(store, 2, "remove_probes"))
    assert again.value.trigger.globus_task_id == first.value.trigger.globus_task_id
    removed = run_to_the_end(retry, context(store, 2, "remove_probes"), first_event(again.value.trigger))
    assert removed == {"data832_raw": ["data832_raw.probe"], "nersc832": ["nersc832.probe"]}
    where = [("data832_raw", "waits_probes"), ("nersc832", "waits_probes")]
    assert probes(local_endpoints, *where) == {"data832_raw": ["keep.txt"], "nersc832": ["keep.txt"]}
    assert (facility.stats()["delete.submit"], facility.stats()["delete.task_created"]) == (2, 2)


def test_a_failed_probe_delete_fails_the_task_with_globus_words_and_waits_in_the_worker_if_asked(
    facility, local_endpoints
):
    put_probes(local_endpoints)
    facility.inject("transfer", "task_failed", match=r"nersc832\.probe$", message="DTN offline", times=1)
    with pytest.raises(GlobusTransferError, match=r"nersc832:waits_probes.*DTN offline"):
        remover(poll_interval=0.1, deferrable=False).execute(context(TaskStateStore(), 1, "remove_probes"))
    assert probes(local_endpoints, ("nersc832", "waits_probes")) == {"nersc832": ["keep.txt", "nersc832.probe"]}
    assert not local_endpoints["data832_raw"].posix_path("waits_probes/data832_raw.probe").exists()


def test_a_folder_without_probes_submits_nothing(facility, local_endpoints):
    for endpoint in ("data832_raw", "nersc832"):
        shutil.rmtree(local_endpoints[endpoint].posix_path("waits_probes"), ignore_errors=True)
    assert remover().execute(context(TaskStateStore(), 1, "remove_probes")) == {}
    assert facility.stats().get("delete.submit", 0) == 0
