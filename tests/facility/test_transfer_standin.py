"""The Globus Transfer stand-in, driven by the real globus-sdk over HTTP against the facility process."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import globus_sdk
import pytest
from globus_sdk.scopes import TransferScopes
from globus_sdk.transport import RetryConfig

from facility.state import LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET

UNKNOWN_COLLECTION = "00000000-0000-4000-8000-000000000000"


def make_client(facility, retries: int = 0) -> globus_sdk.TransferClient:
    """A TransferClient exactly as a hook builds it: client credentials against the facility's Auth."""
    auth = globus_sdk.ConfidentialAppAuthClient(LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET, base_url=facility.url + "/")
    return globus_sdk.TransferClient(
        base_url=facility.url + "/",
        authorizer=globus_sdk.ClientCredentialsAuthorizer(auth, TransferScopes.all),
        retry_config=RetryConfig(max_retries=retries, backoff=lambda _ctx: 0.0),
    )


@pytest.fixture
def tc(facility):
    return make_client(facility)


@pytest.fixture
def spot(local_endpoints):
    return local_endpoints["spot832"]


@pytest.fixture
def raw(local_endpoints):
    return local_endpoints["data832_raw"]


@pytest.fixture
def name():
    """A unique folder name, so tests sharing the session's facility never collide."""
    return f"t{uuid.uuid4().hex[:10]}"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def wait(tc: globus_sdk.TransferClient, task_id: str, timeout: float = 30) -> dict:
    """Poll the task until it is no longer ACTIVE (faster than task_wait's 1 s minimum)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = tc.get_task(task_id).data
        if task["status"] != "ACTIVE":
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} still ACTIVE after {timeout}s")


def transfer(tc, source, destination, src: str, dst: str, **options) -> globus_sdk.TransferData:
    recursive = options.pop("recursive", globus_sdk.MISSING)
    data = globus_sdk.TransferData(source.uuid, destination.uuid, **options)
    data.add_item(source.globus_path(src), destination.globus_path(dst), recursive=recursive)
    return data


def errors(tc, task_id: str) -> list[dict]:
    return [event for event in tc.task_event_list(task_id, limit=100) if event["is_error"]]


def test_submission_id(tc):
    first, second = tc.get_submission_id()["value"], tc.get_submission_id()["value"]
    assert uuid.UUID(first) and first != second


def test_transfer_file(tc, facility, spot, raw, name):
    source = write(spot.posix_path(f"raw/{name}/scan.h5"), os.urandom(300_000))
    data = transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5", verify_checksum=True, label="one file")

    result = tc.submit_transfer(data)
    assert result.http_status == 202
    assert result["DATA_TYPE"] == "transfer_result" and result["code"] == "Accepted"
    assert result["submission_id"] == data["submission_id"]

    assert tc.task_wait(result["task_id"], timeout=30, polling_interval=1)
    task = tc.get_task(result["task_id"])
    assert task["status"] == "SUCCEEDED" and task["type"] == "TRANSFER" and task["label"] == "one file"
    assert task["source_endpoint_id"] == spot.uuid and task["destination_endpoint_id"] == raw.uuid
    assert (task["files"], task["files_transferred"], task["files_skipped"]) == (1, 1, 0)
    assert task["bytes_transferred"] == task["bytes_checksummed"] == 300_000
    assert task["fatal_error"] is None and task["completion_time"]

    destination = raw.posix_path(f"{name}/scan.h5")
    assert md5(destination) == md5(source)
    assert [p.name for p in destination.parent.iterdir()] == ["scan.h5"]  # no partial file left behind
    done = list(tc.task_successful_transfers(result["task_id"]))
    assert [(d["source_path"], d["destination_path"]) for d in done] == [
        (f"/raw/{name}/scan.h5", f"/data/raw/{name}/scan.h5")
    ]
    stats = facility.stats()
    assert stats["transfer.submit"] == stats["transfer.task_created"] == 1
    assert stats["transfer.bytes"] == 300_000
    codes = [event["code"] for event in tc.task_event_list(result["task_id"])]
    assert codes == ["SUCCEEDED", "STARTED"]  # newest first


def test_transfer_directory(tc, spot, raw, name):
    files = {"a.h5": b"a" * 1000, "sub/b.txt": b"b" * 10, "sub/deeper/c.bin": os.urandom(5000)}
    for relative, content in files.items():
        write(spot.posix_path(f"raw/{name}/{relative}"), content)
    spot.posix_path(f"raw/{name}/empty").mkdir()
    os.symlink("/etc", spot.posix_path(f"raw/{name}/outside"))  # symlinks are ignored, as Globus does

    task = wait(tc, tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}", name, recursive=True))["task_id"])

    assert task["status"] == "SUCCEEDED"
    assert (task["files"], task["files_transferred"]) == (3, 3)
    assert task["bytes_transferred"] == sum(map(len, files.values()))
    for relative in files:
        assert md5(raw.posix_path(f"{name}/{relative}")) == md5(spot.posix_path(f"raw/{name}/{relative}"))
    assert raw.posix_path(f"{name}/empty").is_dir()
    assert not raw.posix_path(f"{name}/outside").exists()


def test_duplicate_submission_id_creates_one_task(tc, facility, spot, raw, name):
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"x" * 100)
    data = transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5")
    first = tc.submit_transfer(data)
    again = make_client(facility).submit_transfer(data)  # a retry, from a new client, same submission id

    assert again["code"] == "Duplicate"
    assert again["task_id"] == first["task_id"]
    assert again["submission_id"] == first["submission_id"]
    wait(tc, first["task_id"])
    stats = facility.stats()
    assert (stats["transfer.submit"], stats["transfer.task_created"], stats["transfer.duplicate"]) == (2, 1, 1)
    assert stats["transfer.bytes"] == 100


@pytest.mark.parametrize("sync_level", ["checksum", "size", "exists", "mtime"])
def test_sync_level_skips_files_already_at_destination(tc, spot, raw, name, sync_level):
    for index in range(3):
        write(spot.posix_path(f"raw/{name}/f{index}.h5"), f"content {index}".encode())
    first = wait(tc, tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}", name, sync_level=sync_level))["task_id"])
    assert first["files_transferred"] == 3

    again = wait(tc, tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}", name, sync_level=sync_level))["task_id"])
    assert again["status"] == "SUCCEEDED"
    assert (again["files_transferred"], again["files_skipped"], again["bytes_transferred"]) == (0, 3, 0)


def test_sync_checksum_transfers_changed_content_of_same_size(tc, spot, raw, name):
    source = write(spot.posix_path(f"raw/{name}/f.h5"), b"old!")
    wait(tc, tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}", name, sync_level="checksum"))["task_id"])
    source.write_bytes(b"new!")

    task = wait(tc, tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}", name, sync_level="checksum"))["task_id"])

    assert (task["files_transferred"], task["files_skipped"]) == (1, 0)
    assert raw.posix_path(f"{name}/f.h5").read_bytes() == b"new!"


def test_missing_source_fails_with_file_not_found(tc, facility, spot, raw, name):
    result = tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/missing.h5", f"{name}/missing.h5"))

    # task_wait is True for any terminal state, FAILED included: the status must be read
    assert tc.task_wait(result["task_id"], timeout=30, polling_interval=1)
    task = tc.get_task(result["task_id"])
    assert task["status"] == "FAILED"
    assert task["fatal_error"]["code"] == "FILE_NOT_FOUND"
    [event] = errors(tc, result["task_id"])
    assert event["code"] == "FILE_NOT_FOUND" and event["description"] == "file not found"
    assert f"/raw/{name}/missing.h5" in event["details"]
    assert facility.stats()["transfer.failed"] == 1


def test_permission_denied_fault(tc, facility, spot, raw, name):
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"data")
    facility.inject("transfer", "permission_denied", match=f"/raw/{name}/", message="denied by the test")

    task = wait(tc, tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5"))["task_id"])

    assert task["status"] == "FAILED"
    assert task["fatal_error"]["code"] == "PERMISSION_DENIED"
    [event] = errors(tc, task["task_id"])
    assert event["code"] == "PERMISSION_DENIED" and event["details"] == "denied by the test"
    assert not raw.posix_path(f"{name}/scan.h5").exists()


def test_task_failed_fault_matches_destination(tc, facility, spot, raw, name):
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"data")
    facility.inject(
        "transfer",
        "task_failed",
        match=f"^/data/raw/{name}/",
        message="endpoint exploded",
        params={"code": "ENDPOINT_ERROR"},
    )

    task = wait(tc, tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5"))["task_id"])

    assert task["status"] == "FAILED"
    assert task["fatal_error"] == {"code": "ENDPOINT_ERROR", "description": "endpoint exploded"}
    assert errors(tc, task["task_id"])[0]["description"] == "endpoint exploded"
    # the fault was used up: the next task succeeds
    retry = wait(tc, tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5"))["task_id"])
    assert retry["status"] == "SUCCEEDED"


def test_checksum_mismatch_is_retried_as_globus_does(tc, facility, spot, raw, name):
    """Finding 3: a failed verification is a VERIFY_CHECKSUM error event and another attempt, not a FAILED task."""
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"data" * 100)
    facility.inject("transfer", "checksum_mismatch", match=f"/raw/{name}/scan.h5$")

    data = transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5", verify_checksum=True)
    task = wait(tc, tc.submit_transfer(data)["task_id"])

    assert task["status"] == "SUCCEEDED" and task["faults"] == 1
    assert [e["code"] for e in errors(tc, task["task_id"])] == ["VERIFY_CHECKSUM"]
    assert raw.posix_path(f"{name}/scan.h5").read_bytes() == b"data" * 100


def stalled(tc, task_id: str, timeout: float = 10) -> dict:
    """Poll until the task reports a fault in nice_status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = tc.get_task(task_id).data
        if task["status"] != "ACTIVE" or task["is_ok"] is False:
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} never stalled")


def test_a_full_destination_stalls_the_task_active_with_nice_status(tc, facility, spot, raw, name):
    """Finding 3: Globus retries a quota error, ACTIVE, nice_status naming it, until the fault clears."""
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"data")
    facility.inject("transfer", "stall", match=f"/raw/{name}/", message="disk full on data832", params={"seconds": 1.5})

    task_id = tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5"))["task_id"]
    task = stalled(tc, task_id)
    assert (task["status"], task["nice_status"], task["is_ok"]) == ("ACTIVE", "NO_SPACE_LEFT", False)
    assert task["nice_status_details"] == "disk full on data832" and task["subtasks_retrying"] == 1
    assert errors(tc, task_id)[0]["code"] == "NO_SPACE_LEFT"

    done = wait(tc, task_id)
    assert done["status"] == "SUCCEEDED" and done["faults"] >= 1 and done["nice_status"] is None


def test_fail_on_quota_errors_fails_at_once(tc, facility, spot, raw, name):
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"data")
    facility.inject("transfer", "stall", match=f"/raw/{name}/", params={"code": "QUOTA_EXCEEDED"})
    data = transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5", fail_on_quota_errors=True)
    task = wait(tc, tc.submit_transfer(data)["task_id"], timeout=5)
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "QUOTA_EXCEEDED"
    assert task["fail_on_quota_errors"] is True


def test_skip_source_errors_skips_a_denied_source(tc, facility, spot, raw, name):
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"data")
    facility.inject("transfer", "stall", match=f"/raw/{name}/", params={"code": "PERMISSION_DENIED"})
    data = transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5", skip_source_errors=True)
    task = wait(tc, tc.submit_transfer(data)["task_id"], timeout=5)
    assert task["status"] == "SUCCEEDED" and task["files_transferred"] == 0
    codes = [e["code"] for e in tc.task_event_list(task["task_id"], limit=100)]
    assert "SKIPPED_ERRORS" in codes and "PERMISSION_DENIED" in codes


def test_a_stalled_task_runs_until_cancelled(tc, facility, spot, raw, name):
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"data")
    facility.inject("transfer", "stall", match=f"/raw/{name}/", params={"code": "PERMISSION_DENIED"})
    task_id = tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5"))["task_id"]
    assert stalled(tc, task_id)["nice_status"] == "PERMISSION_DENIED"
    assert tc.cancel_task(task_id)["code"] == "Canceled"
    assert tc.get_task(task_id)["fatal_error"]["code"] == "CANCELED"
    assert not raw.posix_path(f"{name}/scan.h5").exists()


def test_event_list_filter_and_globus_event_format(tc, facility, spot, raw, name):
    """Finding 3: ``filter=is_error:1`` keeps error events only; times are ``YYYY-MM-DD HH:MM:SS+00:00``."""
    result = tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/missing.h5", f"{name}/missing.h5"))
    wait(tc, result["task_id"])
    only_errors = tc.task_event_list(result["task_id"], query_params={"filter": "is_error:1"})
    assert [e["code"] for e in only_errors] == ["FILE_NOT_FOUND"] and only_errors["total"] == 1
    everything = tc.task_event_list(result["task_id"])
    assert [e["code"] for e in everything] == ["FILE_NOT_FOUND", "STARTED"]
    for event in everything:
        assert datetime.strptime(event["time"], "%Y-%m-%d %H:%M:%S%z").tzinfo is not None
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.task_event_list(result["task_id"], query_params={"filter": "code:STARTED"})
    assert raised.value.http_status == 400


def test_external_checksum_is_verified(tc, spot, raw, name):
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"payload")
    good = globus_sdk.TransferData(spot.uuid, raw.uuid)
    good.add_item(
        f"/raw/{name}/scan.h5", f"/data/raw/{name}/good.h5", external_checksum=hashlib.md5(b"payload").hexdigest()
    )
    bad = globus_sdk.TransferData(spot.uuid, raw.uuid)
    bad.add_item(f"/raw/{name}/scan.h5", f"/data/raw/{name}/bad.h5", external_checksum="0" * 32)

    assert wait(tc, tc.submit_transfer(good)["task_id"])["status"] == "SUCCEEDED"
    failed = wait(tc, tc.submit_transfer(bad)["task_id"])
    assert failed["fatal_error"]["code"] == "EXTERNAL_CHECKSUM_MISMATCH"
    assert not raw.posix_path(f"{name}/bad.h5").exists()


def test_slow_fault_keeps_task_active(tc, facility, spot, raw, name):
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"data")
    facility.inject("transfer", "slow", match=f"/raw/{name}/", params={"seconds": 1.5})

    result = tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5"))
    task = tc.get_task(result["task_id"])
    assert task["status"] == "ACTIVE" and task["is_ok"] is True
    assert not raw.posix_path(f"{name}/scan.h5").exists()

    assert wait(tc, result["task_id"])["status"] == "SUCCEEDED"
    assert raw.posix_path(f"{name}/scan.h5").read_bytes() == b"data"


def test_cancel_active_task(tc, facility, spot, raw, name):
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"data")
    facility.inject("transfer", "slow", match=f"/raw/{name}/", params={"seconds": 30})
    result = tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5"))

    started = time.monotonic()
    assert tc.cancel_task(result["task_id"])["code"] == "Canceled"
    assert time.monotonic() - started < 5

    task = tc.get_task(result["task_id"])
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "CANCELED"
    assert not raw.posix_path(f"{name}/scan.h5").exists()
    assert tc.cancel_task(result["task_id"])["code"] == "TaskComplete"


def test_deadline_expires_task(tc, facility, spot, raw, name):
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"data")
    facility.inject("transfer", "slow", match=f"/raw/{name}/", params={"seconds": 30})
    deadline = datetime.now(UTC) + timedelta(seconds=1)

    data = transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5", deadline=deadline)
    task = wait(tc, tc.submit_transfer(data)["task_id"], timeout=10)

    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "EXPIRED"


def test_task_not_found(tc):
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.get_task(str(uuid.uuid4()))
    assert (raised.value.http_status, raised.value.code) == (404, "TaskNotFound")


def test_event_list_pages(tc, spot, raw, name):
    result = tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/missing", f"{name}/missing"))
    wait(tc, result["task_id"])

    page = tc.task_event_list(result["task_id"], limit=1, offset=1)
    assert page["DATA_TYPE"] == "event_list"
    assert (page["total"], page["limit"], page["offset"], len(page["DATA"])) == (2, 1, 1, 1)
    assert page["DATA"][0]["code"] == "STARTED"
    assert [e["code"] for e in tc.paginated.task_event_list(result["task_id"]).items()] == ["FILE_NOT_FOUND", "STARTED"]


def test_unknown_endpoint(tc, spot):
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.get_endpoint(UNKNOWN_COLLECTION)
    assert (raised.value.http_status, raised.value.code) == (404, "EndpointNotFound")

    data = globus_sdk.TransferData(spot.uuid, UNKNOWN_COLLECTION)
    data.add_item("/raw/a", "/b")
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.submit_transfer(data)
    assert (raised.value.http_status, raised.value.code) == (404, "EndpointNotFound")
    assert tc.get_endpoint(spot.uuid)["display_name"] == "spot832"


def test_ls_stat_mkdir(tc, raw, name):
    tc.operation_mkdir(raw.uuid, f"/data/raw/{name}")
    tc.operation_mkdir(raw.uuid, f"/data/raw/{name}/sub")
    write(raw.posix_path(f"{name}/scan.h5"), b"12345")
    write(raw.posix_path(f"{name}/notes.txt"), b"1")

    listing = tc.operation_ls(raw.uuid, path=f"/data/raw/{name}/")
    assert listing["DATA_TYPE"] == "file_list" and listing["endpoint"] == raw.uuid
    entries = {entry["name"]: entry for entry in listing}
    assert {name: entry["type"] for name, entry in entries.items()} == {
        "notes.txt": "file",
        "scan.h5": "file",
        "sub": "dir",
    }
    assert entries["scan.h5"]["size"] == 5 and entries["scan.h5"]["last_modified"].endswith("+00:00")
    filtered = tc.operation_ls(raw.uuid, path=f"/data/raw/{name}", filter={"name": "~*.h5", "type": "file"})
    assert [entry["name"] for entry in filtered] == ["scan.h5"]

    stat = tc.operation_stat(raw.uuid, f"/data/raw/{name}/scan.h5")
    assert (stat["DATA_TYPE"], stat["name"], stat["type"], stat["size"]) == ("file", "scan.h5", "file", 5)

    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.operation_stat(raw.uuid, f"/data/raw/{name}/nope.h5")
    assert (raised.value.http_status, raised.value.code) == (404, "NotFound")
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.operation_ls(raw.uuid, path=f"/data/raw/{name}/nope")
    assert (raised.value.http_status, raised.value.code) == (404, "ClientError.NotFound")
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.operation_mkdir(raw.uuid, f"/data/raw/{name}/sub")
    assert raised.value.code == "ExternalError.MkdirFailed.Exists"
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.operation_mkdir(raw.uuid, f"/data/raw/{name}/no/parent")
    assert raised.value.http_status == 404


def test_paths_escaping_the_collection_are_refused(tc, spot, raw, name):
    os.makedirs(spot.posix_path(f"raw/{name}"))
    os.symlink("/etc", spot.posix_path(f"raw/{name}/out"))

    for path in ("/raw/../../etc", f"/raw/{name}/out", f"/raw/{name}/out/passwd", "relative/path"):
        with pytest.raises(globus_sdk.TransferAPIError) as raised:
            tc.operation_ls(spot.uuid, path=path)
        assert (raised.value.http_status, raised.value.code) == (403, "EndpointPermissionDenied"), path

        data = globus_sdk.TransferData(spot.uuid, raw.uuid)
        data.add_item(path, f"/data/raw/{name}/x")
        with pytest.raises(globus_sdk.TransferAPIError) as raised:
            tc.submit_transfer(data)
        assert (raised.value.http_status, raised.value.code) == (400, "ClientError.BadRequest.InvalidPath"), path

    delete = globus_sdk.DeleteData(spot.uuid)
    delete.add_item("/raw/../..")
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.submit_delete(delete)
    assert raised.value.http_status == 400
    assert Path("/etc/passwd").exists()


def test_delete_file_and_directory(tc, facility, raw, name):
    write(raw.posix_path(f"{name}/a.h5"), b"a")
    write(raw.posix_path(f"{name}/dir/b.h5"), b"b")
    write(raw.posix_path(f"{name}/dir/sub/c.h5"), b"c")

    one = globus_sdk.DeleteData(raw.uuid, label="prune file")
    one.add_item(f"/data/raw/{name}/a.h5")
    result = tc.submit_delete(one)
    assert result["DATA_TYPE"] == "delete_result" and result["code"] == "Accepted"
    task = wait(tc, result["task_id"])
    assert task["status"] == "SUCCEEDED" and task["type"] == "DELETE" and task["source_endpoint_id"] == raw.uuid
    assert not raw.posix_path(f"{name}/a.h5").exists()

    not_recursive = globus_sdk.DeleteData(raw.uuid)
    not_recursive.add_item(f"/data/raw/{name}/dir")
    task = wait(tc, tc.submit_delete(not_recursive)["task_id"])
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "IS_A_DIRECTORY"
    assert raw.posix_path(f"{name}/dir/sub/c.h5").exists()

    recursive = globus_sdk.DeleteData(raw.uuid, recursive=True)
    recursive.add_item(f"/data/raw/{name}/dir")
    task = wait(tc, tc.submit_delete(recursive)["task_id"])
    assert task["status"] == "SUCCEEDED" and (task["files"], task["directories"]) == (2, 2)
    assert not raw.posix_path(f"{name}/dir").exists()

    again = tc.submit_delete(recursive)
    assert again["code"] == "Duplicate"
    stats = facility.stats()
    assert (stats["delete.submit"], stats["delete.task_created"], stats["delete.duplicate"]) == (4, 3, 1)


def test_delete_missing_path(tc, raw, name):
    missing = globus_sdk.DeleteData(raw.uuid)
    missing.add_item(f"/data/raw/{name}/gone.h5")
    task = wait(tc, tc.submit_delete(missing)["task_id"])
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "FILE_NOT_FOUND"
    assert errors(tc, task["task_id"])[0]["code"] == "FILE_NOT_FOUND"

    ignored = globus_sdk.DeleteData(raw.uuid, ignore_missing=True)
    ignored.add_item(f"/data/raw/{name}/gone.h5")
    assert wait(tc, tc.submit_delete(ignored)["task_id"])["status"] == "SUCCEEDED"


def test_injected_503_twice_then_success_through_sdk_retries(facility, spot, raw, name):
    write(spot.posix_path(f"raw/{name}/scan.h5"), b"data")
    facility.inject("transfer", "http", status=503, times=2, match="^POST /v0.10/transfer$")
    tc = make_client(facility, retries=3)

    result = tc.submit_transfer(transfer(tc, spot, raw, f"raw/{name}/scan.h5", f"{name}/scan.h5"))

    assert result["code"] == "Accepted"
    wait(tc, result["task_id"])
    stats = facility.stats()
    assert stats["fault.http.503"] == 2
    assert stats["transfer.submit"] == stats["transfer.task_created"] == 1


def test_injected_503_without_retries_raises(tc, facility):
    facility.inject("transfer", "http", status=503, match="^GET /v0.10/submission_id$")
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.get_submission_id()
    assert (raised.value.http_status, raised.value.code) == (503, "InjectedFault")


def test_injected_429_is_retried(facility, spot):
    facility.inject("transfer", "http", status=429, match="^GET /v0.10/operation/endpoint/.*/ls$")
    tc = make_client(facility, retries=1)

    assert tc.operation_ls(spot.uuid, path="/")["DATA_TYPE"] == "file_list"
    assert facility.stats()["fault.http.429"] == 1
