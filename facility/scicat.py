"""SciCat stand-in: the REST subset of the SciCat backend (API v3) that pyscicat 0.4.8 uses.

Routes (prefix ``/scicat/api/v3``): ``POST auth/login``; ``POST Datasets``; ``GET Datasets?filter=``;
``GET|PATCH Datasets/{pid}``; ``POST|GET Datasets/{pid}/origdatablocks``; ``PATCH Datasets/{pid}/origdatablocks/{oid}``;
``POST|GET Datasets/{pid}/attachments``; ``PUT Datasets/{pid}/attachments/{aid}``.
Every route but login needs the token (``Authorization: Bearer`` or ``?access_token=``), else 401. Documents
are validated as the backend (scicat-backend-next) does: a dataset against the v3 create DTO of its type
(``whitelist`` + ``forbidNonWhitelisted``: an unknown field is refused), answering 400
``{"status": 400, "message": "<JSON text of class-validator's ValidationError array>"}`` as
``DatasetsController.validateDatasetObsolete`` does (a scientificMetadata or jobParameters key with a '.' or a
leading '$', which MongoDB cannot store or query, is refused too; '/' is fine); an origdatablock against
``CreateDatasetOrigDatablockDto``
(each data file needs ``path``, ``size`` and an ISO 8601 ``time``), answering NestJS's ``ValidationPipe`` shape
``{"statusCode": 400, "message": [...], "error": "Bad Request"}``. Creating an origdatablock adds its ``size``
and file count to its dataset's ``size`` and ``numberOfFiles`` (``createOrigDatablock``), so an ingest must not
set them itself. A client-chosen ``pid`` is accepted (the ingestor is in the backend's default ``ADMIN_GROUPS``)
and a duplicate answers 409 ``A dataset with this this unique key already exists!`` (``ConflictException`` on
MongoDB's duplicate key, the backend's wording). ``PATCH Datasets/{pid}`` validates against the partial update DTO of
the dataset's type (``pid``, ``type`` and ``version`` are not in it: refused) and answers the updated dataset;
``PATCH .../origdatablocks/{oid}`` replaces that datablock's fields and moves the dataset's ``size`` and
``numberOfFiles`` by the difference (``findOneOrigDatablockAndUpdate``); an unknown ``oid`` answers 200 with no
body, as the backend's ``return null``. Data lives in SQLite at ``<root>/scicat.sqlite``.

Counters: ``scicat.login``, ``scicat.dataset_created``, ``scicat.dataset_updated``,
``scicat.origdatablock_created``, ``scicat.origdatablock_updated``, ``scicat.attachment_created``,
``scicat.attachment_updated``. Service fault ``error_after_create`` (subject ``POST Datasets <datasetName>``,
``POST origdatablocks <pid>`` or ``POST attachments <pid>``): the object is stored, then the answer is
``status`` (default 500), as when a proxy drops the response of a request that did succeed.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import uuid
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from facility.state import FacilityState

PREFIX = "/scicat/api/v3"
#: The ingestor account of the local profile (airflow_settings.yaml, connection ``scicat_default``).
INGESTOR_USERNAME = "ingestor"
PID_PREFIX = "20.500.12269"
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COMMON_REQUIRED = ("owner", "contactEmail", "creationTime", "sourceFolder", "ownerGroup", "type")
_TYPE_REQUIRED = {
    "raw": ("creationLocation", "principalInvestigator"),
    "derived": ("investigator", "inputDatasets", "usedSoftware"),
}
_LIST_OF_STR = ("accessGroups", "keywords", "sharedWith", "inputDatasets", "usedSoftware")
#: Fields of the backend's v3 create DTOs (src/datasets/dto/*-obsolete.dto.ts, OwnableDto); anything else is
#: refused (``forbidNonWhitelisted``).
_COMMON_FIELDS = frozenset(
    {
        "pid", "type", "version", "owner", "ownerEmail", "orcidOfOwner", "contactEmail", "sourceFolder",
        "sourceFolderHost", "size", "packedSize", "numberOfFiles", "numberOfFilesArchived", "creationTime",
        "validationStatus", "keywords", "description", "datasetName", "classification", "license", "isPublished",
        "techniques", "sharedWith", "relationships", "datasetlifecycle", "scientificMetadata",
        "scientificMetadataSchema", "scientificMetadataValid", "comment", "dataQualityMetrics", "proposalId",
        "runNumber", "ownerGroup", "accessGroups", "instrumentGroup",
    }
)  # fmt: skip
_DERIVED_ONLY = frozenset({"investigator", "inputDatasets", "usedSoftware", "jobParameters", "jobLogData"})
DATASET_FIELDS = {
    "raw": _COMMON_FIELDS
    | _DERIVED_ONLY
    | {"principalInvestigator", "startTime", "endTime", "creationLocation", "dataFormat", "sampleId", "instrumentId"},
    "derived": _COMMON_FIELDS | _DERIVED_ONLY,
}
#: Fields of ``CreateDatasetOrigDatablockDto`` and of its ``DataFileDto`` entries.
ORIGDATABLOCK_FIELDS = frozenset({"size", "chkAlg", "dataFileList", "isPublished"})
DATAFILE_FIELDS = frozenset({"path", "size", "time", "chk", "uid", "gid", "perm", "type"})
#: What ``UpdateAttachmentDto`` may change.
ATTACHMENT_UPDATE_FIELDS = frozenset({"thumbnail", "caption", "ownerGroup", "accessGroups", "instrumentGroup"})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, username TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (pid TEXT PRIMARY KEY, doc TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS origdatablocks (id TEXT PRIMARY KEY, dataset_pid TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attachments (id TEXT PRIMARY KEY, dataset_pid TEXT NOT NULL, doc TEXT NOT NULL);
"""


class SciCatError(Exception):
    """An error answer in SciCat's (NestJS) shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ValidationFailed(Exception):
    """class-validator errors: ``(property path, constraint, message)`` triples.

    ``style`` picks the backend's answer: ``pipe`` (the global ``ValidationPipe``: a list of messages) or
    ``dataset`` (``validateDatasetObsolete``: the ValidationError array as JSON text).
    """

    def __init__(self, errors: list[tuple[str, str, str]], style: str) -> None:
        super().__init__("; ".join(m for _, _, m in errors))
        self.errors = errors
        self.style = style

    def body(self) -> dict:
        if self.style == "pipe":
            return {"statusCode": 400, "message": [m for _, _, m in self.errors], "error": "Bad Request"}
        grouped: dict[str, dict[str, str]] = {}
        for prop, constraint, message in self.errors:
            grouped.setdefault(prop, {})[constraint] = message
        errors = [{"property": p, "children": [], "constraints": c} for p, c in grouped.items()]
        return {"status": 400, "message": json.dumps(errors, separators=(",", ":"))}


_REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error"}


def _answer(status: int, message: str) -> JSONResponse:
    body = {"statusCode": status, "message": message, "error": _REASONS.get(status, "Error")}
    return JSONResponse(body, status_code=status)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Store:
    """SQLite storage; one short-lived connection per call, writes serialised by the facility lock."""

    def __init__(self, state: FacilityState) -> None:
        self.path = state.root / "scicat.sqlite"
        self.lock = state.lock
        with closing(self._connect()) as db, db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def execute(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.lock, closing(self._connect()) as db, db:
            return db.execute(sql, args).fetchall()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _unstorable_keys(value: Any, prefix: str = "") -> list[str]:
    """Keys (at any depth) MongoDB cannot store or query as field names: with a '.', or starting with '$'.

    Keys with '/' (the full HDF5 paths of the upstream ingester's scientificMetadata) are fine."""
    bad: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if "." in key or key.startswith("$"):
                bad.append(prefix + key)
            bad += _unstorable_keys(item, f"{prefix}{key}/")
    elif isinstance(value, list):
        for item in value:
            bad += _unstorable_keys(item, prefix)
    return bad


def _check_dataset(body: Any) -> dict:
    """Validate a dataset like the backend's v3 create DTO of its type (class-validator, whitelist)."""
    if not isinstance(body, dict):
        raise ValidationFailed([("", "isObject", "an instance of an object must be an object")], "dataset")
    kind = body.get("type")
    if kind not in _TYPE_REQUIRED:
        raise SciCatError(400, "Invalid dataset type!")
    errors = _dataset_errors(body, kind, allowed=DATASET_FIELDS[kind])
    if errors:
        raise ValidationFailed(errors, "dataset")
    return body


def _dataset_errors(body: dict, kind: str, *, allowed: frozenset[str], partial: bool = False) -> list:
    """class-validator's findings on a dataset document (``partial``: required fields may be absent)."""
    errors: list[tuple[str, str, str]] = []
    for key in sorted(set(body) - allowed):
        errors.append((key, "whitelistValidation", f"property {key} should not exist"))
    for key in (*_COMMON_REQUIRED, *_TYPE_REQUIRED[kind]):
        if key == "type" or (partial and key not in body):
            continue
        if body.get(key) in (None, "", []):
            errors.append((key, "isNotEmpty", f"{key} should not be empty"))
    for key in ("owner", "sourceFolder", "ownerGroup", "datasetName", "description", "pid", "creationLocation"):
        if body.get(key) is not None and not isinstance(body[key], str):
            errors.append((key, "isString", f"{key} must be a string"))
    for key in _LIST_OF_STR:
        if key in body and not (isinstance(body[key], list) and all(isinstance(v, str) for v in body[key])):
            errors.append((key, "isString", f"each value in {key} must be a string"))
    for key in ("contactEmail", "ownerEmail"):
        if body.get(key) not in (None, "") and not (isinstance(body[key], str) and _EMAIL_RE.match(body[key])):
            errors.append((key, "isEmail", f"{key} must be an email"))
    for key in ("size", "numberOfFiles", "packedSize", "numberOfFilesArchived"):
        if key in body and (not _is_int(body[key]) or body[key] < 0):
            errors.append((key, "isNumber", f"{key} must be a number conforming to the specified constraints"))
    for key in ("scientificMetadata", "jobParameters"):
        if key in body and not isinstance(body[key], dict):
            errors.append((key, "isObject", f"{key} must be an object"))
        elif key in body and (bad := _unstorable_keys(body[key])):
            errors.append((key, "isStorable", f"{key} keys must not contain '.' or start with '$': {bad[:5]}"))
    for key in ("creationTime", "endTime", "startTime"):
        if body.get(key) not in (None, "") and not _is_date(body[key]):
            errors.append((key, "isDateString", f"{key} must be a valid ISO 8601 date string"))
    if "isPublished" in body and not isinstance(body["isPublished"], bool):
        errors.append(("isPublished", "isBoolean", "isPublished must be a boolean value"))
    return errors


#: Fields a v3 PATCH may not carry (not in ``PartialUpdate*DatasetObsoleteDto``): the identity of the dataset.
_NOT_UPDATABLE = frozenset({"pid", "type", "version"})


def _check_dataset_update(body: Any, kind: str) -> dict:
    """Validate a PATCH like ``validateDatasetObsolete`` with ``PartialUpdate<Kind>DatasetObsoleteDto``."""
    if not isinstance(body, dict):
        raise ValidationFailed([("", "isObject", "an instance of an object must be an object")], "dataset")
    errors = _dataset_errors(body, kind, allowed=DATASET_FIELDS[kind] - _NOT_UPDATABLE, partial=True)
    if errors:
        raise ValidationFailed(errors, "dataset")
    return body


def _check_origdatablock(body: Any, *, partial: bool = False) -> dict:
    """Validate ``CreateDatasetOrigDatablockDto`` as the global ValidationPipe does (``partial``: the update
    DTO, every field optional)."""
    if not isinstance(body, dict):
        raise ValidationFailed([("", "isObject", "an instance of an object must be an object")], "pipe")
    errors: list[tuple[str, str, str]] = []
    for key in sorted(set(body) - ORIGDATABLOCK_FIELDS):
        errors.append((key, "whitelistValidation", f"property {key} should not exist"))
    if partial and not body:
        errors.append(("", "isNotEmpty", "the update must name a field"))
    if not (partial and "size" not in body) and not _is_int(body.get("size")):
        errors.append(("size", "isInt", "size must be an integer number"))
    if body.get("chkAlg") is not None and not isinstance(body["chkAlg"], str):
        errors.append(("chkAlg", "isString", "chkAlg must be a string"))
    files = body.get("dataFileList")
    if partial and "dataFileList" not in body:
        files = [{"path": "", "size": 0, "time": "1970-01-01T00:00:00Z"}]  # not updated: nothing to check
    if not isinstance(files, list):
        errors.append(("dataFileList", "isArray", "dataFileList must be an array"))
    elif not files:
        errors.append(("dataFileList", "arrayNotEmpty", "dataFileList should not be empty"))
    for i, item in enumerate(files if isinstance(files, list) else []):
        where = f"dataFileList.{i}"
        if not isinstance(item, dict):
            errors.append((where, "nestedValidation", f"{where} must be an object"))
            continue
        for key in sorted(set(item) - DATAFILE_FIELDS):
            errors.append((where, "whitelistValidation", f"{where}.property {key} should not exist"))
        if not isinstance(item.get("path"), str):
            errors.append((where, "isString", f"{where}.path must be a string"))
        if isinstance(item.get("size"), bool) or not isinstance(item.get("size"), int | float):
            errors.append((where, "isNumber", f"{where}.size must be a number conforming to the specified constraints"))
        if not _is_date(item.get("time")):
            errors.append((where, "isDateString", f"{where}.time must be a valid ISO 8601 date string"))
    if errors:
        raise ValidationFailed(errors, "pipe")
    return body


def _lookup(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _matches(doc: dict, where: dict) -> bool:
    """Loopback ``where`` semantics: equality (an array field matches an element), ``and``, ``inq``."""
    for key, cond in where.items():
        if key == "and":
            if not all(_matches(doc, sub) for sub in cond):
                return False
            continue
        value = _lookup(doc, key)
        if isinstance(cond, dict):
            unknown = set(cond) - {"inq"}
            if unknown:
                raise SciCatError(400, f"filter operator(s) {sorted(unknown)} not supported by the stand-in")
            options = cond["inq"]
            if not (value in options or (isinstance(value, list) and any(v in options for v in value))):
                return False
        elif not (value == cond or (isinstance(value, list) and cond in value)):
            return False
    return True


def register(app: FastAPI, state: FacilityState) -> None:
    """Serve the SciCat stand-in under /scicat/api/v3."""
    store = _Store(state)
    router = APIRouter(prefix=PREFIX)

    def user(request: Request) -> str:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("access_token")
        rows = store.execute("SELECT username FROM tokens WHERE token = ?", (token,)) if token else []
        if not rows:
            raise SciCatError(401, "Unauthorized")
        return rows[0][0]

    def dataset(pid: str) -> dict:
        rows = store.execute("SELECT doc FROM datasets WHERE pid = ?", (pid,))
        if not rows:
            raise SciCatError(404, f"Dataset {pid} not found")
        return json.loads(rows[0][0])

    async def body_of(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise SciCatError(400, "body is not valid JSON") from None

    def after_create(subject: str, created: dict, status: int = 201) -> JSONResponse:
        fault = state.take_fault("scicat", "error_after_create", subject)
        if fault is not None:
            state.count(f"fault.scicat.error_after_create.{fault.status}")
            return _answer(fault.status, fault.message)
        return JSONResponse(created, status_code=status)

    @router.post("/auth/login")
    async def login(request: Request):
        body = await body_of(request)
        ok = isinstance(body, dict) and body.get("username") == INGESTOR_USERNAME
        if not (ok and secrets.compare_digest(str(body.get("password", "")), state.client_secret)):
            return _answer(401, "Unauthorized")
        token = secrets.token_urlsafe(32)
        created = _now()
        store.execute("INSERT INTO tokens VALUES (?, ?, ?)", (token, INGESTOR_USERNAME, created))
        state.count("scicat.login")
        user_info = {"id": INGESTOR_USERNAME, "username": INGESTOR_USERNAME}
        payload = {"access_token": token, "id": token, "ttl": 3600, "created": created, "userId": INGESTOR_USERNAME}
        return JSONResponse({**payload, "user": user_info}, status_code=201)

    @router.post("/Datasets")
    async def create_dataset(request: Request, username: str = Depends(user)):
        doc = _check_dataset(await body_of(request))
        pid = doc.get("pid") or f"{PID_PREFIX}/{uuid.uuid4()}"
        now = _now()
        doc = {**doc, "pid": pid, "createdBy": username, "updatedBy": username, "createdAt": now, "updatedAt": now}
        for key, default in (("isPublished", False), ("size", 0), ("numberOfFiles", 0), ("packedSize", 0)):
            doc.setdefault(key, default)
        try:
            store.execute("INSERT INTO datasets VALUES (?, ?, ?)", (pid, json.dumps(doc), now))
        except sqlite3.IntegrityError:
            return _answer(409, "A dataset with this this unique key already exists!")
        state.count("scicat.dataset_created")
        return after_create(f"POST Datasets {doc.get('datasetName', '')}", doc)

    @router.get("/Datasets")
    def find_datasets(request: Request, username: str = Depends(user)):
        raw = request.query_params.get("filter") or "{}"
        try:
            flt = json.loads(raw)
        except ValueError:
            raise SciCatError(400, f"filter is not valid JSON: {raw[:200]!r}") from None
        where = flt.get("where", {}) if isinstance(flt, dict) else None
        if not isinstance(where, dict):
            raise SciCatError(400, "filter.where must be an object")
        rows = store.execute("SELECT doc FROM datasets ORDER BY created, pid")
        docs = [d for d in (json.loads(r[0]) for r in rows) if _matches(d, where)]
        limit = (flt.get("limits") or {}).get("limit") or flt.get("limit")
        return docs[: int(limit)] if limit else docs

    def create_child(table: str, pid: str, body: Any, username: str) -> dict:
        parent = dataset(pid)
        if not isinstance(body, dict):
            raise SciCatError(400, "body must be a JSON object")
        now = _now()
        doc = {
            "ownerGroup": parent["ownerGroup"],
            "accessGroups": parent.get("accessGroups", []),
            **body,
            "id": str(uuid.uuid4()),
            "datasetId": pid,
            "createdBy": username,
            "createdAt": now,
            "updatedAt": now,
        }
        store.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", (doc["id"], pid, json.dumps(doc)))
        return doc

    def children(table: str, pid: str) -> list[dict]:
        dataset(pid)
        rows = store.execute(f"SELECT doc FROM {table} WHERE dataset_pid = ? ORDER BY rowid", (pid,))
        return [json.loads(r[0]) for r in rows]

    @router.post("/Datasets/{pid:path}/origdatablocks")
    async def create_origdatablock(pid: str, request: Request, username: str = Depends(user)):
        body = _check_origdatablock(await body_of(request))
        doc = create_child("origdatablocks", pid, body, username)
        add_to_dataset(pid, doc["size"], len(doc["dataFileList"]))
        state.count("scicat.origdatablock_created")
        return after_create(f"POST origdatablocks {pid}", doc)

    def add_to_dataset(pid: str, size: int, files: int) -> None:
        """What the backend's createOrigDatablock does next: the dataset's size and file count grow."""
        with state.lock:
            doc = dataset(pid)
            doc["size"] = (doc.get("size") or 0) + size
            doc["numberOfFiles"] = (doc.get("numberOfFiles") or 0) + files
            doc["updatedAt"] = _now()
            store.execute("UPDATE datasets SET doc = ? WHERE pid = ?", (json.dumps(doc), pid))

    @router.get("/Datasets/{pid:path}/origdatablocks")
    def list_origdatablocks(pid: str, username: str = Depends(user)):
        return children("origdatablocks", pid)

    @router.patch("/Datasets/{pid:path}/origdatablocks/{oid}")
    async def update_origdatablock(pid: str, oid: str, request: Request, username: str = Depends(user)):
        """``findOneOrigDatablockAndUpdate``: the datablock's fields replaced, the dataset's size and file count
        moved by the difference; an unknown datablock answers 200 with no body (the backend returns null)."""
        body = _check_origdatablock(await body_of(request), partial=True)
        with state.lock:
            dataset(pid)
            rows = store.execute("SELECT doc FROM origdatablocks WHERE id = ? AND dataset_pid = ?", (oid, pid))
            if not rows:
                return Response(status_code=200)
            before = json.loads(rows[0][0])
            after = {**before, **body, "updatedBy": username, "updatedAt": _now()}
            store.execute("UPDATE origdatablocks SET doc = ? WHERE id = ?", (json.dumps(after), oid))
            add_to_dataset(
                pid, after["size"] - before["size"], len(after["dataFileList"]) - len(before["dataFileList"])
            )
        state.count("scicat.origdatablock_updated")
        return after

    @router.post("/Datasets/{pid:path}/attachments")
    async def create_attachment(pid: str, request: Request, username: str = Depends(user)):
        body = await body_of(request)
        thumbnail = body.get("thumbnail") if isinstance(body, dict) else None
        if not isinstance(thumbnail, str) or not thumbnail.startswith("data:image/"):
            raise SciCatError(400, "thumbnail must be a data:image/... URL")
        if body.get("datasetId") not in (None, pid):
            raise SciCatError(400, f"datasetId {body['datasetId']!r} does not match the path's {pid!r}")
        doc = create_child("attachments", pid, body, username)
        state.count("scicat.attachment_created")
        return after_create(f"POST attachments {pid}", doc)

    @router.get("/Datasets/{pid:path}/attachments")
    def list_attachments(pid: str, username: str = Depends(user)):
        return children("attachments", pid)

    @router.put("/Datasets/{pid:path}/attachments/{aid}")
    async def update_attachment(pid: str, aid: str, request: Request, username: str = Depends(user)):
        """``findOneAttachmentAndUpdate``: the attachment's fields replaced; unknown: 200, no body."""
        body = await body_of(request)
        if not isinstance(body, dict) or set(body) - ATTACHMENT_UPDATE_FIELDS:
            raise SciCatError(400, f"only {sorted(ATTACHMENT_UPDATE_FIELDS)} may be updated")
        if "thumbnail" in body and not str(body["thumbnail"]).startswith("data:image/"):
            raise SciCatError(400, "thumbnail must be a data:image/... URL")
        with state.lock:
            dataset(pid)
            rows = store.execute("SELECT doc FROM attachments WHERE id = ? AND dataset_pid = ?", (aid, pid))
            if not rows:
                return Response(status_code=200)
            after = {**json.loads(rows[0][0]), **body, "updatedBy": username, "updatedAt": _now()}
            store.execute("UPDATE attachments SET doc = ? WHERE id = ?", (json.dumps(after), aid))
        state.count("scicat.attachment_updated")
        return after

    @router.get("/Datasets/{pid:path}")
    def get_dataset(pid: str, username: str = Depends(user)):
        return dataset(pid)

    @router.patch("/Datasets/{pid:path}")
    async def update_dataset(pid: str, request: Request, username: str = Depends(user)):
        """``findByIdAndUpdate``: 404 for an unknown pid, the partial update DTO of the dataset's type, the
        updated dataset back (200)."""
        body = await body_of(request)
        with state.lock:
            doc = dataset(pid)
            _check_dataset_update(body, doc["type"])
            doc = {**doc, **body, "updatedBy": username, "updatedAt": _now()}
            store.execute("UPDATE datasets SET doc = ? WHERE pid = ?", (json.dumps(doc), pid))
        state.count("scicat.dataset_updated")
        return doc

    app.include_router(router)

    @app.exception_handler(SciCatError)
    async def scicat_error(request: Request, exc: SciCatError) -> JSONResponse:
        return _answer(exc.status, exc.message)

    @app.exception_handler(ValidationFailed)
    async def validation_failed(request: Request, exc: ValidationFailed) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=400)
