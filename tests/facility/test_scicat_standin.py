"""The SciCat stand-in, driven by the real pyscicat client over HTTP."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from pyscicat.client import ScicatClient, ScicatCommError, ScicatLoginError, from_credentials
from pyscicat.model import Attachment, CreateDatasetOrigDatablockDto, DataFile, DerivedDataset, RawDataset

from facility.state import LOCAL_CLIENT_SECRET


@pytest.fixture
def api(facility) -> str:
    return f"{facility.url}/scicat/api/v3"


@pytest.fixture
def client(api) -> ScicatClient:
    return from_credentials(api, "ingestor", LOCAL_CLIENT_SECRET)


def raw(**fields) -> RawDataset:
    base = dict(
        owner="Dula Parkinson",
        principalInvestigator="Dula Parkinson",
        contactEmail="dyparkinson@lbl.gov",
        creationLocation="8.3.2",
        creationTime="2023-02-24T13:25:53",
        sourceFolder=f"/data/raw/BLS-00564_{uuid.uuid4().hex[:8]}",
        ownerGroup="ALS-11234",
        accessGroups=["8.3.2"],
        datasetName="20230224_132553_sea_shell",
    )
    return RawDataset(**{**base, **fields})


TIME = "2023-02-24T13:25:53Z"


def post(api: str, client: ScicatClient, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{api}/{path}", json=body, headers={"Authorization": f"Bearer {client._token}"})


def test_login_issues_a_token_and_counts(facility, api):
    answer = httpx.post(f"{api}/auth/login", json={"username": "ingestor", "password": LOCAL_CLIENT_SECRET})
    assert answer.status_code == 201
    body = answer.json()
    assert body["access_token"] == body["id"] and len(body["id"]) > 20
    assert facility.stats()["scicat.login"] == 1


def test_bad_password_is_refused_with_401(facility, api):
    with pytest.raises(ScicatLoginError):
        from_credentials(api, "ingestor", "wrong")
    answer = httpx.post(f"{api}/auth/login", json={"username": "ingestor", "password": "wrong"})
    assert answer.status_code == 401 and "wrong" not in answer.text
    assert "scicat.login" not in facility.stats()


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_every_route_needs_a_token(api, token):
    params = {"access_token": token} if token else {}
    assert httpx.get(f"{api}/Datasets", params=params).status_code == 401
    assert httpx.post(f"{api}/Datasets", params=params, json=raw().model_dump()).status_code == 401


def test_create_get_find_with_an_encoded_pid(facility, client):
    dataset = raw(datasetName="a+b&c#d 100%")
    pid = client.datasets_create(dataset)
    assert pid.startswith("20.500.") and "/" in pid  # arrives %2F-encoded on the wire
    stored = client.datasets_get_one(pid)
    assert stored["datasetName"] == "a+b&c#d 100%" and stored["createdBy"] == "ingestor"
    assert facility.stats()["scicat.dataset_created"] == 1
    # pyscicat's simple filter, as it puts it on the wire
    found = client.datasets_get_many({"sourceFolder": dataset.sourceFolder})
    assert [d["pid"] for d in found] == [pid]
    assert client.datasets_get_many({"sourceFolder": "/nowhere"}) == []


def test_fully_encoded_filter_matches_names_with_reserved_characters(api, client):
    dataset = raw(datasetName="x&y+z#1")
    pid = client.datasets_create(dataset)
    flt = json.dumps({"where": {"sourceFolder": dataset.sourceFolder, "datasetName": "x&y+z#1"}})
    answer = httpx.get(f"{api}/Datasets", params={"filter": flt}, headers={"Authorization": f"Bearer {client._token}"})
    assert [d["pid"] for d in answer.json()] == [pid]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"contactEmail": "None"}, "contactEmail must be an email"),
        ({"principalInvestigator": ""}, "principalInvestigator should not be empty"),
        ({"creationTime": "yesterday"}, "creationTime must be a valid ISO 8601"),
    ],
)
def test_invalid_datasets_are_refused_with_400(facility, client, change, message):
    with pytest.raises(ScicatCommError, match=message):
        client.datasets_create(raw(**change))
    assert "scicat.dataset_created" not in facility.stats()


def test_derived_needs_its_inputs(client, api):
    body = raw().model_dump(exclude_none=True) | {"type": "derived", "investigator": "x", "usedSoftware": ["y"]}
    answer = httpx.post(f"{api}/Datasets", json=body, headers={"Authorization": f"Bearer {client._token}"})
    assert answer.status_code == 400 and "inputDatasets" in answer.json()["message"]
    derived = DerivedDataset(**{k: v for k, v in body.items() if k != "type"}, inputDatasets=["20.500.1/abc"])
    assert client.datasets_get_one(client.datasets_create(derived))["inputDatasets"] == ["20.500.1/abc"]


def test_client_chosen_pid_and_duplicate_conflict(client):
    pid = f"20.500.12269/{uuid.uuid4()}"
    assert client.datasets_create(raw(pid=pid)) == pid
    with pytest.raises(ScicatCommError, match="already exists"):
        client.datasets_create(raw(pid=pid))


def test_origdatablocks_and_attachments(facility, client):
    pid = client.datasets_create(raw())
    block = CreateDatasetOrigDatablockDto(size=10, dataFileList=[DataFile(path="scan.h5", size=10, time=TIME)])
    created = client.datasets_origdatablock_create(pid, block)
    assert created["datasetId"] == pid and created["ownerGroup"] == "ALS-11234"
    assert [b["dataFileList"][0]["path"] for b in client.datasets_origdatablocks_get_one(pid)] == ["scan.h5"]
    attachment = Attachment(datasetId=pid, thumbnail="data:image/png;base64,AAAA", caption="raw", ownerGroup="g")
    assert client.datasets_attachment_create(attachment)["caption"] == "raw"
    with pytest.raises(ScicatCommError, match="thumbnail"):
        client.datasets_attachment_create(Attachment(datasetId=pid, thumbnail="AAAA", ownerGroup="g"))
    with pytest.raises(ScicatCommError, match="not found"):
        client.datasets_origdatablock_create("20.500.1/missing", block)
    stats = facility.stats()
    assert stats["scicat.origdatablock_created"] == 1 and stats["scicat.attachment_created"] == 1


def test_data_is_kept_in_sqlite_under_the_root(facility, client):
    pid = client.datasets_create(raw())
    import sqlite3

    with sqlite3.connect(facility.root / "scicat.sqlite") as db:
        assert db.execute("SELECT count(*) FROM datasets WHERE pid = ?", (pid,)).fetchone() == (1,)


def test_http_fault_and_error_after_create(facility, client):
    facility.inject("scicat", status=503, match=r"^POST .*/Datasets$", times=1)
    with pytest.raises(ScicatCommError, match="injected"):
        client.datasets_create(raw())
    assert "scicat.dataset_created" not in facility.stats()
    facility.inject("scicat", kind="error_after_create", status=500, match="^POST Datasets lost$")
    dataset = raw(datasetName="lost")
    with pytest.raises(ScicatCommError):
        client.datasets_create(dataset)
    assert len(client.datasets_get_many({"sourceFolder": dataset.sourceFolder})) == 1  # created all the same


def test_origdatablock_adds_its_size_and_files_to_the_dataset(client):
    """Finding 1: the backend's createOrigDatablock adds the block's size and file count to its dataset."""
    pid = client.datasets_create(raw())
    assert (client.datasets_get_one(pid)["size"], client.datasets_get_one(pid)["numberOfFiles"]) == (0, 0)
    files = [DataFile(path=f"f{i}", size=100, time=TIME) for i in range(3)]
    client.datasets_origdatablock_create(pid, CreateDatasetOrigDatablockDto(size=300, dataFileList=files))
    client.datasets_origdatablock_create(pid, CreateDatasetOrigDatablockDto(size=7, dataFileList=files[:1]))
    stored = client.datasets_get_one(pid)
    assert (stored["size"], stored["numberOfFiles"]) == (307, 4)
    # a dataset created with its own size gets the blocks added on top, as in production
    doubled = client.datasets_create(raw(size=300, numberOfFiles=3))
    client.datasets_origdatablock_create(doubled, CreateDatasetOrigDatablockDto(size=300, dataFileList=files))
    assert client.datasets_get_one(doubled)["size"] == 600


def test_unknown_dataset_fields_are_refused_as_the_backend_does(facility, api, client):
    """Finding 1: forbidNonWhitelisted; the v3 dataset route answers class-validator's errors as JSON text."""
    body = raw().model_dump(exclude_none=True) | {"sizeInBytes": 5, "beamline": "8.3.2"}
    answer = post(api, client, "Datasets", body)
    assert answer.status_code == 400
    doc = answer.json()
    assert set(doc) == {"status", "message"} and doc["status"] == 400
    errors = json.loads(doc["message"])
    assert {e["property"] for e in errors} == {"sizeInBytes", "beamline"}
    assert errors[0]["constraints"] == {"whitelistValidation": "property beamline should not exist"}
    assert "scicat.dataset_created" not in facility.stats()


def test_data_files_need_a_time_and_errors_are_a_list(facility, api, client):
    """Finding 1: DataFileDto.time is required; ValidationPipe answers a list of messages."""
    pid = client.datasets_create(raw())
    body = {"size": 10, "dataFileList": [{"path": "scan.h5", "size": 10}], "ownerGroup": "g"}
    answer = post(api, client, f"Datasets/{pid.replace('/', '%2F')}/origdatablocks", body)
    assert answer.status_code == 400
    assert answer.json() == {
        "statusCode": 400,
        "message": ["property ownerGroup should not exist", "dataFileList.0.time must be a valid ISO 8601 date string"],
        "error": "Bad Request",
    }
    assert client.datasets_get_one(pid)["numberOfFiles"] == 0
    assert "scicat.origdatablock_created" not in facility.stats()


def test_upstream_shaped_raw_dataset_is_accepted(client):
    """sampleId and scientificMetadata keyed by full HDF5 paths ('/' in keys), as upstream's ingester sends."""
    sci = {"/measurement/instrument/detector/pixel_size": 0.00325, "data_sample": {"/x/y": [1.0, 2.0]}}
    pid = client.datasets_create(raw(sampleId="20230224 132553 sea shell", scientificMetadata=sci))
    stored = client.datasets_get_one(pid)
    assert stored["sampleId"] == "20230224 132553 sea shell" and stored["scientificMetadata"] == sci


@pytest.mark.parametrize("key", ["detector.model", "$where", "ok/but/nested.dot"])
def test_metadata_keys_mongodb_cannot_store_are_refused(api, client, key):
    body = {**raw().model_dump(exclude_none=True), "type": "raw", "scientificMetadata": {"a": {key: 1}}}
    answer = post(api, client, "Datasets", body)
    assert answer.status_code == 400 and "must not contain '.' or start with '$'" in answer.text


def send(method: str, api: str, client: ScicatClient, path: str, body: dict) -> httpx.Response:
    return httpx.request(method, f"{api}/{path}", json=body, headers={"Authorization": f"Bearer {client._token}"})


def test_a_second_create_of_a_pid_answers_the_backends_conflict(facility, api, client):
    """scicat-backend-next answers MongoDB's duplicate key on POST Datasets with ConflictException: 409."""
    pid = f"20.500.12269/{uuid.uuid4()}"
    body = raw(pid=pid).model_dump(exclude_none=True)
    assert post(api, client, "Datasets", body).status_code == 201
    again = post(api, client, "Datasets", {**body, "datasetName": "another"})
    assert again.status_code == 409
    assert again.json() == {
        "statusCode": 409,
        "message": "A dataset with this this unique key already exists!",
        "error": "Conflict",
    }
    assert client.datasets_get_one(pid)["datasetName"] == body["datasetName"]  # the first one stays
    assert facility.stats()["scicat.dataset_created"] == 1


def test_i21_finding_7_patch_updates_a_dataset_as_the_v3_update_dto_allows(facility, api, client):
    pid = client.datasets_create(raw())
    encoded = pid.replace("/", "%2F")
    answer = send("PATCH", api, client, f"Datasets/{encoded}", {"description": "new", "keywords": ["a"]})
    assert answer.status_code == 200 and answer.json()["description"] == "new"
    assert client.datasets_get_one(pid)["keywords"] == ["a"]
    for field in ("type", "pid", "version", "unknownField"):  # not in PartialUpdateRawDatasetObsoleteDto
        refused = send("PATCH", api, client, f"Datasets/{encoded}", {field: "x"})
        assert refused.status_code == 400 and f"property {field} should not exist" in refused.text
    bad = send("PATCH", api, client, f"Datasets/{encoded}", {"contactEmail": "nobody"})
    assert bad.status_code == 400 and "contactEmail must be an email" in bad.text
    assert send("PATCH", api, client, "Datasets/20.500.1%2Fmissing", {"description": "x"}).status_code == 404
    assert facility.stats()["scicat.dataset_updated"] == 1


def test_i21_finding_7_an_origdatablock_update_moves_the_dataset_totals(facility, api, client):
    """findOneOrigDatablockAndUpdate: size and numberOfFiles move by the difference; unknown oid: null."""
    pid = client.datasets_create(raw())
    block = CreateDatasetOrigDatablockDto(size=10, dataFileList=[DataFile(path="a", size=10, time=TIME)])
    oid = client.datasets_origdatablock_create(pid, block)["id"]
    encoded = pid.replace("/", "%2F")
    files = [{"path": "b", "size": 30, "time": TIME}, {"path": "c", "size": 40, "time": TIME}]
    answer = send("PATCH", api, client, f"Datasets/{encoded}/origdatablocks/{oid}", {"size": 70, "dataFileList": files})
    assert answer.status_code == 200 and [f["path"] for f in answer.json()["dataFileList"]] == ["b", "c"]
    stored = client.datasets_get_one(pid)
    assert (stored["size"], stored["numberOfFiles"]) == (70, 2)
    assert [b["size"] for b in client.datasets_origdatablocks_get_one(pid)] == [70]
    refused = send("PATCH", api, client, f"Datasets/{encoded}/origdatablocks/{oid}", {"datasetId": "x"})
    assert refused.status_code == 400 and "property datasetId should not exist" in refused.text
    missing = send("PATCH", api, client, f"Datasets/{encoded}/origdatablocks/nope", {"size": 1})
    assert missing.status_code == 200 and missing.content == b""
    assert facility.stats()["scicat.origdatablock_updated"] == 1


def test_answers_parse_as_pyscicats_models(api, client):
    """Every answer, updates included, is what pyscicat's models describe (the fields it requires, typed)."""
    from pyscicat.model import OrigDatablock

    pid = client.datasets_create(raw())
    encoded = pid.replace("/", "%2F")
    RawDataset.model_validate(client.datasets_get_one(pid))
    RawDataset.model_validate(send("PATCH", api, client, f"Datasets/{encoded}", {"description": "d"}).json())
    block = CreateDatasetOrigDatablockDto(size=1, dataFileList=[DataFile(path="a", size=1, time=TIME)])
    created = OrigDatablock.model_validate(client.datasets_origdatablock_create(pid, block))
    files = {"size": 2, "dataFileList": [{"path": "b", "size": 2, "time": TIME}]}
    patched = send("PATCH", api, client, f"Datasets/{encoded}/origdatablocks/{created.id}", files).json()
    assert OrigDatablock.model_validate(patched).dataFileList[0].path == "b"
    assert [OrigDatablock.model_validate(b).size for b in client.datasets_origdatablocks_get_one(pid)] == [2]
    attachment = Attachment(datasetId=pid, thumbnail="data:image/png;base64,AAAA", caption="c", ownerGroup="g")
    made = Attachment.model_validate(client.datasets_attachment_create(attachment))
    thumb = {"thumbnail": "data:image/png;base64,BBBB"}
    put = send("PUT", api, client, f"Datasets/{encoded}/attachments/{made.id}", thumb).json()
    assert Attachment.model_validate(put).thumbnail.endswith("BBBB")
    assert send("PUT", api, client, f"Datasets/{encoded}/attachments/{made.id}", {"x": 1}).status_code == 400
