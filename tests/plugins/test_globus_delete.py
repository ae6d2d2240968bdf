"""include.pruning's checks through the real GlobusTransferHook against the facility's Transfer stand-in."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

from als_provider.hooks.globus_transfer import GlobusTransferHook, describe_globus_error
from als_provider.operators.globus_delete import PruneManifestsOperator, SideFolderComparison
from als_provider.triggers.globus_transfer import GlobusTaskTrigger
from als_provider.triggers.inline import first_event
from include import manifests
from include.manifests import ManifestEntry
from include.pruning import check_entries, reason_kind
from tests.dags.dag_helpers import TaskStateStore, entry_of_copy

NOW = datetime(2026, 11, 2, tzinfo=UTC)
LOG = logging.getLogger("test_globus_delete")
UNKNOWN_UUID = "00000000-0000-4000-8000-00000000dead"


def recorded(hook, endpoint: str, path: str, check: str, location: str = "alcf") -> ManifestEntry:
    """The entry a pipeline's finish records right after the copy (a listing of what is there now)."""
    key = f"als_prune/20261102/{endpoint}/{path}"
    return entry_of_copy(hook, endpoint, path, check, location, key=key, not_before=NOW, dag_id="d", run_id="r")


@pytest.fixture
def put(local_endpoints):
    def put(endpoint: str, rel: str, payload: bytes, mtime: float | None = None) -> None:
        path = local_endpoints[endpoint].posix_path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        if mtime is not None:
            os.utime(path, (mtime, mtime))

    return put


@pytest.fixture
def hook(facility, airflow_db):
    return GlobusTransferHook()


def check(hook, items, content: bool = True):
    sync = (
        SideFolderComparison(hook, label="test", timeout=timedelta(seconds=60), poll_interval=0.1) if content else None
    )
    plan = check_entries(hook, items, hook.endpoints, content=sync, log=LOG, describe_error=describe_globus_error)
    return plan, sync


def md5s(root) -> dict[str, str]:
    """Every file under ``root`` with its md5 (what must not change)."""
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def no_side_folders(local_endpoints, *endpoints: str) -> bool:
    return not any(list(local_endpoints[e].posix_path(".als-verify").rglob("*")) for e in endpoints)


def test_a_verified_copy_may_go_after_a_comparison_that_found_no_difference(hook, put, facility, local_endpoints):
    put("alcf832_raw", "v1/a.h5", b"a" * 10)
    put("data832_raw", "v1/a.h5", b"a" * 10)
    for name, size in (("x_00000.tiff", 5), ("sub/x_00001.tiff", 7)):
        put("alcf832_scratch", f"v2/rec/{name}", b"t" * size)
        put("data832_scratch", f"v2/rec/{name}", b"t" * size)
    items = [recorded(hook, "alcf832_raw", "v1/a.h5", "data832_raw"),
             recorded(hook, "alcf832_scratch", "v2/rec", "data832_scratch")]  # fmt: skip
    plan, sync = check(hook, items)
    assert set(plan.deletable) == {("alcf832_raw", "v1/a.h5"), ("alcf832_scratch", "v2/rec")}
    assert plan.bytes[("alcf832_scratch", "v2/rec")] == 12 and plan.errors == 0
    # per pair of endpoints: a copy (check copy -> side folder) and a checksum sync (target -> side folder)
    # that transferred nothing, then the side folder deleted
    tasks = [hook.get_task(t) for t in sync.tasks]
    assert [(t["type"], t["sync_level"]) for t in tasks] == [("TRANSFER", None)] * 2 + [("TRANSFER", 3)] * 2 + [
        ("DELETE", None)
    ] * 2
    assert all(t["verify_checksum"] for t in tasks[:4]) and [t["files_transferred"] for t in tasks[2:4]] == [0, 0]
    assert no_side_folders(local_endpoints, "alcf832_raw", "alcf832_scratch")


def test_finding_1_a_scan_edited_in_place_is_kept(hook, put, local_endpoints):
    """Found 1: spot832 scan edited in place (same size, newer time) was deleted against data832's old copy."""
    then = time.time() - 3600
    put("spot832", "raw/e1/s.h5", b"old-content", mtime=then)
    put("data832", "raw/e1/s.h5", b"old-content", mtime=then)
    due = recorded(hook, "spot832", "raw/e1/s.h5", "data832", location="spot832")
    put("spot832", "raw/e1/s.h5", b"new-content")  # same size, newer time
    plan, sync = check(hook, [due])
    assert plan.deletable == {} and [reason_kind(r) for _, _, r in plan.kept] == ["target changed"]
    assert sync.tasks == []  # nothing compared
    assert local_endpoints["data832"].posix_path("raw/e1/s.h5").read_bytes() == b"old-content"


def test_i21_finding_1_a_zero_filled_copy_of_the_same_size_is_kept_and_never_repaired(hook, put, local_endpoints):
    """Issue 14 found a zero-filled check copy of the same size counted as verified; the checksum sync then
    "repaired" it from the target (issue 21 finding 1: a sync into the check copy). Now the content is compared
    in a side folder: both copies kept, neither written, the next run finds the same."""
    payload = os.urandom(4096)
    put("spot832", "raw/e2/s.h5", payload)
    put("data832", "raw/e2/s.h5", bytes(4096))  # zero-filled, same size
    due = recorded(hook, "spot832", "raw/e2/s.h5", "data832", location="spot832")
    before = md5s(local_endpoints["data832"].posix_path("raw")), md5s(local_endpoints["spot832"].posix_path("raw"))
    for _ in range(2):
        plan, _ = check(hook, [due])
        assert plan.deletable == {} and [reason_kind(r) for _, _, r in plan.kept] == ["content differs"]
        assert plan.mismatches and plan.errors == 0
        assert md5s(local_endpoints["data832"].posix_path("raw")) == before[0]
        assert md5s(local_endpoints["spot832"].posix_path("raw")) == before[1]
    assert no_side_folders(local_endpoints, "spot832")


def test_finding_4_an_unknown_collection_keeps_the_entry_and_fails_the_run(hook, put):
    """Found 4: any 404 counted as "already absent"; an unknown collection silently dropped the entry."""
    put("alcf832_raw", "v4/a.h5", b"a")
    put("data832_raw", "v4/a.h5", b"a")
    due = recorded(hook, "alcf832_raw", "v4/a.h5", "data832_raw")
    endpoints = hook.endpoints
    eagle = dataclasses.replace(endpoints.collections["alcf_eagle"], uuid=UNKNOWN_UUID)  # a placeholder UUID
    hook.endpoints = dataclasses.replace(
        endpoints,
        collections={**endpoints.collections, "alcf_eagle": eagle},
        endpoints={
            name: dataclasses.replace(e, collection=eagle) if e.collection.name == "alcf_eagle" else e
            for name, e in endpoints.endpoints.items()
        },
    )
    plan = check_entries(hook, [due], endpoints, log=LOG, describe_error=describe_globus_error)
    assert plan.absent == [] and plan.errors == 1
    assert "EndpointNotFound" in plan.kept[0][2] and UNKNOWN_UUID in plan.kept[0][2]
    with pytest.raises(Exception, match="EndpointNotFound"):
        hook.stat(due.target)


def test_absent_means_missing_on_a_known_collection(hook, put):
    gone = dataclasses.replace(recorded_file(hook, put), path="v5/gone.h5", key="als_prune/20261102/gone")
    nowhere = dataclasses.replace(gone, path="no-such-folder/gone.h5", key="als_prune/20261102/nowhere")
    plan, _ = check(hook, [gone, nowhere])
    assert sorted(plan.absent) == sorted([gone.key, nowhere.key]) and plan.errors == 0


def recorded_file(hook, put) -> ManifestEntry:
    put("alcf832_raw", "v5/a.h5", b"a")
    put("data832_raw", "v5/a.h5", b"a")
    return recorded(hook, "alcf832_raw", "v5/a.h5", "data832_raw")


def test_an_offline_check_endpoint_keeps_the_entry_with_the_services_message(hook, put, facility):
    due = recorded_file(hook, put)
    hook = GlobusTransferHook(max_retries=0)  # no SDK back-off on the 502s
    uuid = hook.endpoints["data832_raw"].collection.uuid
    facility.inject("transfer", status=502, match=f"GET /v0.10/operation/endpoint/{uuid}/ls", times=50,
                    message="data832 endpoint is offline")  # fmt: skip
    plan, _ = check(hook, [due])
    assert plan.errors == 1 and plan.absent == [] and "data832 endpoint is offline" in plan.kept[0][2]


def test_i21_finding_3_a_differing_file_past_the_first_page_is_found(hook, put, facility, local_endpoints):
    """Found 3: only the first page of the sync's transferred files was read; a pair whose differing file was on
    a later page counted as verified. With pages of 2 records, the last pair's one differing file is on page 3."""
    for name in ("a", "b"):
        for k in range(3):
            payload = os.urandom(64)
            put("alcf832_scratch", f"p3/rec_{name}/x_{k}.tiff", payload)
            put("data832_scratch", f"p3/rec_{name}/x_{k}.tiff", payload if (name, k) == ("b", 0) else bytes(64))
    # rec_a: every file differs (3 records); rec_b: x_1 and x_2 differ (records 4 and 5: pages 2 and 3)
    items = [recorded(hook, "alcf832_scratch", f"p3/rec_{n}", "data832_scratch") for n in ("a", "b")]
    facility.inject("transfer", "page_size", params={"size": 2}, times=100)
    plan, _ = check(hook, items)
    assert plan.deletable == {} and sorted(reason_kind(r) for _, _, r in plan.kept) == ["content differs"] * 2
    assert any("2 file(s) of alcf832_scratch:p3/rec_b differ" in r for _, _, r in plan.kept)


def test_i21_finding_3_a_page_that_cannot_be_read_means_could_not_check(hook, put, facility):
    """Fail closed: when the transferred files cannot be read, the pair is not verified (an error), not clean."""
    put("alcf832_raw", "p3/a.h5", b"a" * 10)
    put("data832_raw", "p3/a.h5", b"a" * 10)
    due = recorded(hook, "alcf832_raw", "p3/a.h5", "data832_raw")
    facility.inject("transfer", status=403, match=r"GET /v0.10/task/[^/]+/successful_transfers", times=5)
    plan, _ = check(hook, [due])
    assert plan.deletable == {} and plan.errors == 1
    assert reason_kind(plan.kept[0][2]) == "could not check" and "could not be read" in plan.kept[0][2]


def task_context(store: TaskStateStore, try_number: int, **params) -> dict:
    ti = SimpleNamespace(dag_id="prune", run_id="manual__i21", task_id="prune_manifests", map_index=-1,
                         try_number=try_number, max_tries=2, task=SimpleNamespace(retries=2))  # fmt: skip
    return {"ti": ti, "task_state_store": store, "params": {"dry_run": False, "as_of": None, **params},
            "dag_run": SimpleNamespace(conf={})}  # fmt: skip


def run_to_the_end(operator, context, event):
    """What the triggerer and the worker do: fire each deferred trigger and resume the task with its event."""
    while True:
        try:
            return operator.execute_complete(context, event)
        except TaskDeferred as deferred:
            event = first_event(deferred.trigger)


def test_i21_finding_4_the_comparison_defers_and_a_retry_submits_nothing_new(hook, put, facility, local_endpoints,
                                                                            monkeypatch):  # fmt: skip
    """Found 4: the content check waited in the worker (a sleep loop of up to 6 h per try) and a retry submitted
    new syncs while the earlier ones still ran. Now each wait is deferred and a retry re-attaches."""
    put("alcf832_raw", "p4/a.h5", b"a" * 10)
    put("data832_raw", "p4/a.h5", b"a" * 10)
    due = recorded(hook, "alcf832_raw", "p4/a.h5", "data832_raw")
    removed: list[str] = []
    monkeypatch.setattr(PruneManifestsOperator, "_items", lambda self, plan: [due])
    monkeypatch.setattr(manifests, "remove_entries", lambda keys, **_: removed.extend(keys) or len(keys))
    facility.inject("transfer", "slow", match=r"/p4/a\.h5$", params={"seconds": 3}, times=1)  # the copy runs 3 s
    store = TaskStateStore()
    started = time.monotonic()
    with pytest.raises(TaskDeferred) as first:
        PruneManifestsOperator(task_id="prune_manifests", poll_interval=0.1).execute(task_context(store, 1))
    assert time.monotonic() - started < 3  # deferred at once, not waited for in the worker
    assert isinstance(first.value.trigger, GlobusTaskTrigger)
    submitted = facility.stats()
    assert (submitted["transfer.submit"], submitted["transfer.task_created"]) == (1, 1)
    # a retry (the worker died) re-attaches to the task already submitted: no new submission
    retry = PruneManifestsOperator(task_id="prune_manifests", poll_interval=0.1)
    with pytest.raises(TaskDeferred) as again:
        retry.execute(task_context(store, 2))
    assert again.value.trigger.globus_task_id == first.value.trigger.globus_task_id
    assert facility.stats()["transfer.submit"] == 1
    report = run_to_the_end(retry, task_context(store, 2), first_event(again.value.trigger))
    assert report["deleted"] == 1 and removed == [due.key]
    assert not local_endpoints["alcf832_raw"].posix_path("p4/a.h5").exists()
    assert local_endpoints["data832_raw"].posix_path("p4/a.h5").read_bytes() == b"a" * 10
    stats = facility.stats()  # one copy, one sync, one side-folder clean-up, one delete: each submitted once
    assert (stats["transfer.task_created"], stats["delete.task_created"]) == (2, 2)
    assert stats.get("transfer.duplicate", 0) == 0 and no_side_folders(local_endpoints, "alcf832_raw")
