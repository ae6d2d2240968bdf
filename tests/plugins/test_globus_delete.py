"""include.pruning's checks through the real GlobusTransferHook against the facility's Transfer stand-in."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from als_provider.hooks.globus_transfer import GlobusTransferHook, describe_globus_error
from als_provider.operators.globus_delete import GlobusChecksumSync
from include.manifests import DeletionRequest, ManifestEntry
from include.pruning import check_entries, reason_kind, record_copies

NOW = datetime(2026, 11, 2, tzinfo=UTC)
LOG = logging.getLogger("test_globus_delete")
UNKNOWN_UUID = "00000000-0000-4000-8000-00000000dead"


def recorded(hook, endpoint: str, path: str, check: str, location: str = "alcf") -> ManifestEntry:
    """The entry a pipeline's finish records right after the copy (a listing of what is there now)."""
    [(_, record)] = record_copies(hook, [DeletionRequest(endpoint, path, check, location)])
    assert record is not None
    return ManifestEntry(
        key=f"als_prune/20261102/{endpoint}/{path}",
        endpoint=endpoint,
        path=path,
        check_endpoint=check,
        location=location,
        not_before=NOW,
        dag_id="d",
        run_id="r",
        size=record.size,
        checksum=record.checksum,
        files=record.files,
        mtime=record.mtime,
        digest=record.digest,
    )


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
    sync = GlobusChecksumSync(hook, label="test", timeout=timedelta(seconds=60), poll_seconds=0.1) if content else None
    plan = check_entries(hook, items, hook.endpoints, content=sync, log=LOG, describe_error=describe_globus_error)
    return plan, sync


def test_a_verified_copy_may_go_in_one_sync_that_transferred_nothing(hook, put, facility):
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
    assert len(sync.tasks) == 1  # both pairs share (alcf_eagle -> data832): one checksum sync task
    task = hook.get_task(sync.tasks[0])
    assert (task["sync_level"], task["verify_checksum"], task["files_transferred"]) == (3, True, 0)


def test_finding_1_a_scan_edited_in_place_is_kept(hook, put, local_endpoints):
    """Found 1: spot832 scan edited in place (same size, newer time) was deleted against data832's old copy."""
    then = time.time() - 3600
    put("spot832", "raw/e1/s.h5", b"old-content", mtime=then)
    put("data832", "raw/e1/s.h5", b"old-content", mtime=then)
    due = recorded(hook, "spot832", "raw/e1/s.h5", "data832", location="spot832")
    put("spot832", "raw/e1/s.h5", b"new-content")  # same size, newer time
    plan, sync = check(hook, [due])
    assert plan.deletable == {} and [reason_kind(r) for _, _, r in plan.kept] == ["target changed"]
    assert sync.tasks == []  # nothing synced over the check copy
    assert local_endpoints["data832"].posix_path("raw/e1/s.h5").read_bytes() == b"old-content"


def test_finding_1_a_zero_filled_copy_of_the_same_size_is_kept_then_repaired(hook, put, local_endpoints):
    """Found 1: a zero-filled check copy of the same size counted as verified; the checksum sync finds it."""
    payload = os.urandom(4096)
    put("spot832", "raw/e2/s.h5", payload)
    put("data832", "raw/e2/s.h5", bytes(4096))  # zero-filled, same size
    due = recorded(hook, "spot832", "raw/e2/s.h5", "data832", location="spot832")
    plan, sync = check(hook, [due])
    assert plan.deletable == {} and [reason_kind(r) for _, _, r in plan.kept] == ["content differs"]
    assert hook.get_task(sync.tasks[0])["files_transferred"] == 1
    # the sync repaired the check copy from the (unchanged) target: the next run verifies and may delete
    assert local_endpoints["data832"].posix_path("raw/e2/s.h5").read_bytes() == payload
    plan, _ = check(hook, [due])
    assert list(plan.deletable) == [("spot832", "raw/e2/s.h5")]


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
