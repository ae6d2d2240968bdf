"""Contract tests: each stand-in answer our code uses, compared with what the real service's SDK records.

Sources: globus-sdk's recorded responses (``globus_sdk.testing``: Transfer, Auth, Compute), sfapi_client's
pydantic models (generated from the SFAPI OpenAPI schema), pyscicat's models and the SciCat backend's DTOs
(scicat-backend-next, read at commit 4055c96 — see docs/facility-fidelity.md). A key the service answers that
the stand-in leaves out, a JSON type that differs, a status code or an error shape that drifts fails here.
"""

from __future__ import annotations

import re
import sys
import types
import uuid
from typing import Any

import globus_sdk
import httpx
import pytest

# globus_sdk.testing imports ``responses`` (a test-only dependency) at module level; only the recorded data is
# read here, so an empty stand-in module is enough when it is not installed.
sys.modules.setdefault("responses", types.ModuleType("responses"))
from globus_sdk.testing import get_response_set  # noqa: E402

from facility.state import LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET  # noqa: E402
from include.sites import load_sites  # noqa: E402

COMPUTE_ENDPOINT = load_sites()["local"].compute_endpoint_id


def recorded(method: Any, case: str = "default") -> Any:
    """The JSON globus-sdk records for an SDK method (its ``globus_sdk.testing`` response set)."""
    return get_response_set(method).lookup(case).json


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def drift(ours: Any, theirs: Any, where: str = "", omitted: frozenset[str] = frozenset()) -> list[str]:
    """Where ``ours`` differs from ``theirs``: missing keys and JSON types (``None`` on either side is a null,
    accepted for any type); dicts are compared key by key, lists by their first element."""
    problems = []
    if theirs is None or ours is None:
        return problems
    if kind(ours) != kind(theirs):
        return [f"{where or '.'}: {kind(ours)} where the service answers {kind(theirs)}"]
    if isinstance(theirs, dict):
        for key, value in theirs.items():
            if f"{where}.{key}".lstrip(".") in omitted:
                continue
            if key not in ours:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += drift(ours[key], value, f"{where}.{key}", omitted)
    elif isinstance(theirs, list) and theirs and ours:
        problems += drift(ours[0], theirs[0], f"{where}[0]", omitted)
    return problems


def assert_no_drift(ours: Any, theirs: Any, omitted: frozenset[str] = frozenset()) -> None:
    problems = drift(ours, theirs, omitted=omitted)
    assert not problems, "stand-in drifted from the recorded service answer:\n" + "\n".join(problems)


@pytest.fixture
def tc(facility) -> globus_sdk.TransferClient:
    auth = globus_sdk.ConfidentialAppAuthClient(LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET, base_url=facility.url + "/")
    scope = "urn:globus:auth:scope:transfer.api.globus.org:all"
    authorizer = globus_sdk.ClientCredentialsAuthorizer(auth, scope)
    return globus_sdk.TransferClient(base_url=facility.url + "/", authorizer=authorizer)


@pytest.fixture
def scan(local_endpoints):
    name = f"contract_{uuid.uuid4().hex[:8]}"
    path = local_endpoints["spot832"].posix_path(f"raw/{name}/scan.h5")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 100)
    return name


def wait(tc, task_id: str) -> dict:
    assert tc.task_wait(task_id, timeout=30, polling_interval=1)
    return tc.get_task(task_id).data


# -- Globus Transfer ------------------------------------------------------------------------------------


def test_transfer_submissions(tc, local_endpoints, scan):
    spot, raw = local_endpoints["spot832"], local_endpoints["data832_raw"]
    submission = tc.get_submission_id()
    assert_no_drift(submission.data, recorded(globus_sdk.TransferClient.get_submission_id))
    data = globus_sdk.TransferData(spot.uuid, raw.uuid, submission_id=submission["value"])
    data.add_item(spot.globus_path(f"raw/{scan}/scan.h5"), raw.globus_path(f"{scan}/scan.h5"))
    accepted = tc.submit_transfer(data)
    assert (accepted.http_status, accepted["code"]) == (202, "Accepted")  # docs: 202 Accepted, 200 Duplicate
    assert_no_drift(accepted.data, recorded(globus_sdk.TransferClient.submit_transfer))
    duplicate = tc.submit_transfer(data)
    assert (duplicate.http_status, duplicate["code"], duplicate["task_id"]) == (200, "Duplicate", accepted["task_id"])
    wait(tc, accepted["task_id"])
    delete = globus_sdk.DeleteData(raw.uuid, recursive=True)
    delete.add_item(raw.globus_path(scan))
    deleted = tc.submit_delete(delete)
    assert deleted.http_status == 202
    assert_no_drift(deleted.data, recorded(globus_sdk.TransferClient.submit_delete))
    wait(tc, deleted["task_id"])


def test_transfer_task_documents(tc, local_endpoints, scan):
    spot, raw = local_endpoints["spot832"], local_endpoints["data832_raw"]
    data = globus_sdk.TransferData(spot.uuid, raw.uuid)
    data.add_item(spot.globus_path(f"raw/{scan}/scan.h5"), raw.globus_path(f"{scan}/scan.h5"))
    task = wait(tc, tc.submit_transfer(data)["task_id"])
    for key in ("request_time", "completion_time", "deadline"):  # ISO 8601 to the second, as recorded
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", task[key]), (key, task[key])
    listed = recorded(globus_sdk.TransferClient.task_list)
    assert_no_drift(task, listed["DATA"][0])  # the task documents of GET /task_list are GET /task/{id}'s
    assert_no_drift(tc.task_list(limit=1).data, listed)
    done = tc.task_successful_transfers(task["task_id"]).data
    assert_no_drift(done, recorded(globus_sdk.TransferClient.endpoint_manager_task_successful_transfers))
    # the event document of docs.globus.org/api/transfer/task_events (no recorded response in the SDK)
    event = {"DATA_TYPE": "event", "code": "STARTED", "is_error": False, "description": "", "details": "", "time": ""}
    events = tc.task_event_list(task["task_id"]).data
    assert set(events["DATA"][0]) == set(event)
    assert_no_drift(events["DATA"][0], event)
    assert_no_drift(events, {"DATA_TYPE": "event_list", "DATA": [], "length": 0, "limit": 0, "offset": 0, "total": 0})
    canceled = tc.cancel_task(task["task_id"]).data
    assert_no_drift(canceled, recorded(globus_sdk.TransferClient.cancel_task))


def test_transfer_file_operations_and_endpoint(tc, local_endpoints, scan):
    spot = local_endpoints["spot832"]
    stat = tc.operation_stat(spot.uuid, spot.globus_path(f"raw/{scan}/scan.h5")).data
    assert_no_drift(stat, recorded(globus_sdk.TransferClient.operation_stat))
    listing = tc.operation_ls(spot.uuid, path=spot.globus_path(f"raw/{scan}")).data
    assert_no_drift(listing["DATA"][0], recorded(globus_sdk.TransferClient.operation_stat))
    made = tc.operation_mkdir(spot.uuid, spot.globus_path(f"raw/{scan}/sub")).data
    assert_no_drift(made, recorded(globus_sdk.TransferClient.operation_mkdir))
    endpoint = tc.get_endpoint(spot.uuid).data
    # GCSv4-era keys a GCSv5 mapped collection's document no longer carries
    legacy = frozenset({"DATA", "myproxy_dn", "myproxy_server", "oauth_server", "s3_owner_activated", "s3_url"})
    assert_no_drift(endpoint, recorded(globus_sdk.TransferClient.get_endpoint), omitted=legacy)


def test_transfer_error_shape(tc, facility):
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.get_endpoint("00000000-0000-4000-8000-000000000000")
    error = raised.value
    assert (error.http_status, error.code) == (404, "EndpointNotFound")
    assert set(error.raw_json) == {"code", "message", "request_id", "resource"}
    # a document Transfer refuses is a 400 (not a 422), with its code and words, as globus-sdk records it
    failure = get_response_set(globus_sdk.TransferClient.submit_transfer).lookup("failure")
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        tc.submit_transfer({"DATA_TYPE": "transfer", "submission_id": str(uuid.uuid4()), "DATA": []})
    assert raised.value.http_status == failure.status == 400
    assert (raised.value.code, raised.value.message) == (failure.json["code"], failure.json["message"])
    assert set(raised.value.raw_json) == set(failure.json)


# -- Globus Auth ------------------------------------------------------------------------------------------


def test_auth_client_credentials_token(facility):
    auth = globus_sdk.ConfidentialAppAuthClient(LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET, base_url=facility.url + "/")
    tokens = auth.oauth2_client_credentials_tokens(requested_scopes="urn:globus:auth:scope:transfer.api.globus.org:all")
    assert tokens.http_status == 200
    assert_no_drift(tokens.data, recorded(globus_sdk.ConfidentialAppAuthClient.oauth2_client_credentials_tokens))


# -- Globus Compute -----------------------------------------------------------------------------------------


@pytest.fixture
def compute(facility):
    from als_provider.hooks.globus_compute import GlobusComputeHook

    return GlobusComputeHook(max_retries=0)


def test_compute_answers(compute):
    import time

    from compute_functions import remote

    web = compute.client._compute_web_client
    function_id = compute.register_function(remote.check_environment)
    assert_no_drift(web.v2.get_function(function_id).data, recorded(globus_sdk.ComputeClientV2.get_function))
    assert_no_drift(
        web.v2.get_endpoint_status(COMPUTE_ENDPOINT).data, recorded(globus_sdk.ComputeClientV2.get_endpoint_status)
    )
    assert_no_drift(web.v2.get_endpoint(COMPUTE_ENDPOINT).data, recorded(globus_sdk.ComputeClientV2.get_endpoint))
    submitted = compute.submit(function_id, COMPUTE_ENDPOINT, {})
    deadline = time.monotonic() + 60
    while (task := web.v2.get_task(submitted["task_id"]).data)["status"] != "success":
        assert time.monotonic() < deadline and task["status"] != "failed", task
        time.sleep(0.2)
    assert_no_drift(task, recorded(globus_sdk.ComputeClientV2.get_task))
    group = web.v2.get_task_group(submitted["task_group_id"]).data
    assert_no_drift(group, recorded(globus_sdk.ComputeClientV2.get_task_group))
    assert_no_drift({"function_uuid": function_id}, recorded(globus_sdk.ComputeClientV3.register_function))
    batch = compute.client.create_batch()
    batch.add(function_id, (), {})
    answer = dict(compute.client.batch_run(COMPUTE_ENDPOINT, batch))
    theirs = recorded(globus_sdk.ComputeClientV3.submit)
    assert_no_drift(answer, theirs, omitted=frozenset({"tasks"}))  # keyed by function id: compared below
    assert_no_drift(list(answer["tasks"].values()), list(theirs["tasks"].values()))
    assert answer["endpoint_id"] == COMPUTE_ENDPOINT


def test_compute_error_shape(compute):
    with pytest.raises(globus_sdk.GlobusAPIError) as raised:
        compute.endpoint_status("0c1f0c1f-0000-4000-8000-00000000dead")
    assert (raised.value.http_status, raised.value.code) == (404, "EndpointNotFound")
    assert {"code", "message"} <= set(raised.value.raw_json)


# -- NERSC SFAPI (sfapi_client's models, generated from the SFAPI OpenAPI schema) ------------------------------


def test_sfapi_answers_validate_against_sfapi_client_models(facility):
    from sfapi_client._models import AppRoutersComputeModelsCommandOutput, JobOutput, Task, UserInfo
    from sfapi_client._models.job_status_response_sacct import OutputItem as SacctItem
    from sfapi_client._models.job_status_response_squeue import OutputItem as SqueueItem

    from als_provider.hooks.sfapi import SFAPIHook

    hook = SFAPIHook()
    api = httpx.Client(
        base_url=f"{facility.url}/sfapi/api/v1.2", headers={"Authorization": f"Bearer {hook.get_conn().token}"}
    )
    try:
        answer = api.post("compute/jobs/perlmutter", data={"job": "#!/bin/bash\n#SBATCH -J contract\nsleep 1\n"})
        submitted = AppRoutersComputeModelsCommandOutput.model_validate(answer.json())
        task = Task.model_validate(api.get(f"tasks/{submitted.task_id}").json())
        jobid = __import__("json").loads(task.result)["jobid"]
        for sacct, item in (("false", SqueueItem), ("true", SacctItem)):
            rows = api.get("compute/jobs/perlmutter", params={"sacct": sacct, "kwargs": f"jobid={jobid}"}).json()
            output = JobOutput.model_validate(rows)  # output: list of str -> str
            assert output.output and set(output.output[0]) <= set(item.model_fields), set(output.output[0]) - set(
                item.model_fields
            )
        facility.inject("sfapi", "query_error", match=f"^squeue {jobid}$", message="slurm down")
        error = JobOutput.model_validate(api.get("compute/jobs/perlmutter", params={"kwargs": f"jobid={jobid}"}).json())
        assert (error.status.value, error.output, error.error) == ("ERROR", [], "slurm down")
        UserInfo.model_validate(api.get("account/").json())
    finally:
        api.close()
        hook.close()


# -- SciCat (pyscicat's models; the backend's DTOs) ------------------------------------------------------------------


def test_scicat_answers_and_whitelist(facility, tmp_path):
    from pyscicat.client import from_credentials
    from pyscicat.model import CreateDatasetOrigDatablockDto, DataFile, DerivedDataset, OrigDatablock, RawDataset

    from compute_functions.sample_scan import write_sample_scan
    from facility.scicat import DATASET_FIELDS, ORIGDATABLOCK_FIELDS
    from include import scicat_metadata

    client = from_credentials(f"{facility.url}/scicat/api/v3", "ingestor", LOCAL_CLIENT_SECRET)
    raw = RawDataset(
        owner="o", contactEmail="o@lbl.gov", creationTime="2024-01-01T00:00:00Z", sourceFolder=f"/c/{uuid.uuid4()}",
        ownerGroup="g", principalInvestigator="p", creationLocation="8.3.2", datasetName="contract",
    )  # fmt: skip
    pid = client.datasets_create(raw)
    stored = client.datasets_get_one(pid)
    RawDataset.model_validate(stored)
    block = CreateDatasetOrigDatablockDto(
        size=1, dataFileList=[DataFile(path="a", size=1, time="2024-01-01T00:00:00Z")]
    )
    OrigDatablock.model_validate(client.datasets_origdatablock_create(pid, block))
    # what our mapping sends is what the backend's v3 DTOs accept (forbidNonWhitelisted refuses anything else)
    scan = write_sample_scan(tmp_path / "20240101_120000_contract.h5", size="tiny")
    docs = scicat_metadata.build_raw(scan, "/data/raw/contract")
    assert set(docs.dataset) <= DATASET_FIELDS["raw"]
    derived = scicat_metadata.build_derived(
        stored, dataset_name="rec", source_folder="/s", tiff_location="/s/rec", zarr_location="/s/rec.zarr",
        parameters={"engine": "gridrec"}, site="local",
    )  # fmt: skip
    assert set(derived.dataset) <= DATASET_FIELDS["derived"]
    assert set(docs.datablock) <= ORIGDATABLOCK_FIELDS
    # pyscicat's models can send more: its bookkeeping fields, which the backend sets itself, and instrumentId
    # on a derived dataset, which the backend refuses (our mapping never sets it there)
    server_set = {"createdBy", "updatedBy", "createdAt", "updatedAt", "history"}
    assert set(RawDataset.model_fields) - server_set <= DATASET_FIELDS["raw"]
    assert set(DerivedDataset.model_fields) - server_set - DATASET_FIELDS["derived"] == {"instrumentId"}
    assert set(CreateDatasetOrigDatablockDto.model_fields) <= ORIGDATABLOCK_FIELDS
