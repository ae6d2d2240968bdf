"""The Transfer stand-in's per-user cap on unfinished tasks, as the real globus-sdk TransferClient sees it."""

from __future__ import annotations

import uuid

import globus_sdk
import httpx
import pytest

from facility.transfer import ACTIVE_TASK_LIMIT, LIMIT_CODE, LIMIT_STATUS
from tests.facility.test_transfer_standin import make_client, transfer, wait, write


@pytest.fixture
def cap(facility):
    """A cap of 2 more than the tasks this client already has unfinished (none, unless a test left some);
    the service's cap again afterwards."""
    already = facility.transfer_limit(None)["active"].get("local-client", 0)
    facility.transfer_limit(already + 2)
    yield already + 2
    assert facility.transfer_limit(None)["active_tasks"] == ACTIVE_TASK_LIMIT


def test_a_submission_over_the_cap_is_refused_and_creates_nothing(facility, cap, local_endpoints):
    name = f"t{uuid.uuid4().hex[:10]}"
    tc = make_client(facility)
    spot, raw = local_endpoints["spot832"], local_endpoints["data832_raw"]
    for n in range(3):
        write(spot.posix_path(f"raw/{name}/scan{n}.h5"), b"data")
    facility.inject("transfer", "slow", match=f"/raw/{name}/scan[01]", times=2, params={"seconds": 30})
    held = [tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/scan{n}.h5", f"{name}/{n}.h5")) for n in (0, 1)]
    third = transfer(tc, spot, raw, f"raw/{name}/scan2.h5", f"{name}/2.h5")

    with pytest.raises(globus_sdk.TransferAPIError) as refused:
        tc.submit_transfer(third)
    assert (refused.value.http_status, refused.value.code) == (LIMIT_STATUS, LIMIT_CODE)
    assert f"at most {cap} per user" in refused.value.message
    delete = globus_sdk.DeleteData(endpoint=raw.uuid)
    delete.add_item(raw.globus_path(f"{name}/0.h5"))
    with pytest.raises(globus_sdk.TransferAPIError):  # deletes count, and are refused, too
        tc.submit_delete(delete)
    # A known submission id still answers its task, over the cap: a resubmission never fails on it.
    assert tc.submit_transfer(transfer(tc, spot, raw, "x", "y", submission_id=held[0]["submission_id"]))["code"] == (
        "Duplicate"
    )

    assert tc.cancel_task(held[0]["task_id"])["code"] == "Canceled"
    again = tc.submit_transfer(third)  # the refused submission id was not spent: it starts its one task now
    assert again["code"] == "Accepted" and wait(tc, again["task_id"])["status"] == "SUCCEEDED"
    assert raw.posix_path(f"{name}/2.h5").read_bytes() == b"data"
    tc.cancel_task(held[1]["task_id"])

    stats = facility.stats()
    assert stats["transfer.limit_refused"] == 1 and stats["delete.limit_refused"] == 1
    assert stats["transfer.task_created"] == 3 and stats.get("delete.task_created", 0) == 0
    assert stats["task.active_peak"] == cap


def test_the_cap_is_set_by_the_admin_only_and_defaults_to_the_services(facility):
    url = f"{facility.url}/_facility/transfer/limit"
    assert httpx.put(url, json={"active_tasks": 1}, timeout=5).status_code == 401
    assert httpx.put(url, json={"active_tasks": 0}, headers=facility.admin_headers(), timeout=5).status_code == 400
    assert facility.transfer_limit(None)["active_tasks"] == ACTIVE_TASK_LIMIT == 100
