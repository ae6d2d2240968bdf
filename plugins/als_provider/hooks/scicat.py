"""SciCat hook: idempotent ingestion of raw scans and their reconstructions through pyscicat.

Connection (``scicat_default``): host = the API base URL (``https://.../api/v3``), login/password = the
ingestor account. Optional extras: ``timeout`` (s per request, default 30), ``max_attempts`` (default 4),
``retry_delay`` (s, first back-off, doubled each attempt, default 2), ``fallback_contact_email``, ``pid_prefix``
(the backend's ``PID_PREFIX``, default ``20.500.12269``: the first part of every pid this hook computes),
``completion_grace`` (s, default 10; see :meth:`SciCatHook._let_creator_finish`).

Idempotency: every dataset gets a pid computed from its key (``type``, ``sourceFolder``, ``datasetName``; a
derived one also its input dataset), so SciCat itself refuses a second create of it (409, MongoDB's duplicate
key): two registrations racing make one dataset. Before creating, the dataset is looked up by that pid (and by
its key, for datasets made before pids were computed); a create whose answer was lost is followed by a lookup,
never by a blind second create. The OrigDatablock and the thumbnail are added only when missing, so a re-run
completes a partial ingest; a derived dataset found again is updated to describe the results as they are now
(a re-reconstruction). See docs/scicat.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

import requests
from airflow.sdk import BaseHook
from pydantic import RootModel
from pyscicat.client import ScicatClient
from pyscicat.model import Attachment, CreateDatasetOrigDatablockDto, DataFile, DerivedDataset, RawDataset

from include import scicat_metadata
from include.scicat_ingesters import ingester_name

T = TypeVar("T")
#: stdlib logger (not ``self.log``): reaches task logs through Airflow's logging and any stdlib handler.
log = logging.getLogger(__name__)
_TOKEN_RE = re.compile(r"(access_token=)[^&\s'\"]+")
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_RETRY_DELAY = 2.0
MAX_RETRY_DELAY = 30.0
#: A dataset found this soon after its creation is still being completed by the registration that made it.
DEFAULT_COMPLETION_GRACE = 10.0
RAW_THUMBNAIL_CAPTION = "raw image"
PREVIEW_CAPTION = "reconstruction preview"
#: The backend's ``PID_PREFIX`` of the local stand-in; set the ``pid_prefix`` extra to the deployment's.
DEFAULT_PID_PREFIX = "20.500.12269"
#: uuid5 namespace of the pids this project computes (never change it: the pids of existing datasets follow).
PID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://als.lbl.gov/airflow/scicat/dataset")
#: Fields a dataset PATCH may not carry (identity) or must leave to SciCat (its datablocks' totals).
_NOT_PATCHED = frozenset({"pid", "type", "version", "size", "numberOfFiles", "packedSize", "numberOfFilesArchived"})


def dataset_pid(
    kind: str, source_folder: str, dataset_name: str, input_dataset: str | None = None, *, prefix: str
) -> str:
    """The pid of a dataset, from its key: ``<prefix>/<uuid5>`` of (type, sourceFolder, datasetName[, input]).

    ``sourceFolder`` names the beamline's long-term copy (and for results, the site's folder), so the key is
    unique per scan, per exposure (7.3.3) and per reconstruction; the same registration always asks for the
    same pid, and SciCat refuses a second create of it."""
    key = json.dumps([kind, source_folder.rstrip("/") or "/", dataset_name, input_dataset], separators=(",", ":"))
    return f"{prefix.rstrip('/')}/{uuid.uuid5(PID_NAMESPACE, key)}"


def redact(text: str) -> str:
    """Hide the ``access_token`` query parameter pyscicat adds to every URL."""
    return _TOKEN_RE.sub(r"\1***", text)


class _RedactTokenFilter(logging.Filter):
    """Redact tokens in URLs that urllib3/requests log (DEBUG) before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "access_token=" in message:
            record.msg, record.args = redact(message), None
        return True


for _name in ("urllib3.connectionpool", "urllib3.util.retry", "requests", "pyscicat"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _RedactTokenFilter) for f in _logger.filters):
        _logger.addFilter(_RedactTokenFilter())


class SciCatError(RuntimeError):
    """A SciCat request failed: ``status`` is the HTTP status, None for a connection error or timeout."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def transient(self) -> bool:
        return self.status is None or self.status >= 500 or self.status in (408, 429)


class SciCatAuthError(SciCatError):
    """SciCat refused the connection's credentials."""


def _reason(response: requests.Response) -> str:
    """SciCat's own words: ``message`` as a string, as ValidationPipe's list of messages, or as the JSON text
    of class-validator's ValidationError array that the v3 dataset routes answer."""
    try:
        body = response.json()
        message = body.get("message", body) if isinstance(body, dict) else body
    except ValueError:
        message = response.text[:300]
    if isinstance(message, str) and message.startswith("[{"):
        with contextlib.suppress(ValueError, AttributeError):
            message = [m for e in json.loads(message) for m in (e.get("constraints") or {}).values()] or message
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    return redact(str(message))


class _Client(ScicatClient):
    """pyscicat's client; a non-2xx answer or a transport error raises :class:`SciCatError` with the status.

    pyscicat itself raises ScicatCommError without the status, and fails to parse non-JSON error pages;
    the status decides what is retried. Exception texts never carry the URL's token.
    """

    def _send_to_scicat(self, cmd: str, endpoint: str, data: Any = None) -> requests.Response:
        where = f"{cmd.upper()} {endpoint.split('?', 1)[0]}"
        try:
            response = super()._send_to_scicat(cmd, endpoint, data)
        except requests.RequestException as exc:
            raise SciCatError(f"SciCat {where}: {type(exc).__name__}: {redact(str(exc))}") from None
        if not response.ok:
            raise SciCatError(f"SciCat {where}: HTTP {response.status_code}: {_reason(response)}", response.status_code)
        return response

    def get_json(self, endpoint: str, operation: str) -> Any:
        """GET a path (already URL-encoded) and return its JSON."""
        return self._call_endpoint(cmd="get", endpoint=endpoint, operation=operation)

    def get_json_send(self, cmd: str, endpoint: str, body: dict[str, Any], operation: str) -> Any:
        """Send a JSON object as is (``null`` values kept; pyscicat's models would add ``type``, which a v3
        update refuses) and return the answer's JSON (None for an empty answer)."""
        return self._call_endpoint(
            cmd=cmd, endpoint=endpoint, data=RootModel[dict[str, Any]](body), operation=operation
        )


class SciCatHook(BaseHook):
    """Ingest scans (raw; 8.3.2 and 7.3.3 mappings) and reconstructions (derived) into SciCat, idempotently.

    :param scicat_conn_id: the connection (host = API base URL, login/password = ingestor account).
    :param timeout: seconds per request (overrides the ``timeout`` extra).
    :param max_attempts: tries per request on transient errors: 5xx, 408, 429, connection errors, timeouts.
    :param retry_delay: first back-off in seconds, doubled per attempt (capped at 30 s).
    :param completion_grace: seconds after its creation during which a dataset found again is left to the
        registration that created it to complete (datablock, thumbnail) before this one checks them.
    """

    conn_name_attr = "scicat_conn_id"
    default_conn_name = "scicat_default"
    conn_type = "generic"
    hook_name = "SciCat"

    def __init__(
        self,
        scicat_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_attempts: int | None = None,
        retry_delay: float | None = None,
        completion_grace: float | None = None,
    ) -> None:
        super().__init__()
        self.scicat_conn_id = scicat_conn_id
        self._overrides = {
            "timeout": timeout,
            "max_attempts": max_attempts,
            "retry_delay": retry_delay,
            "completion_grace": completion_grace,
        }
        self._settings: dict[str, Any] | None = None
        self._client: _Client | None = None
        self._retrying = False  # inside a call's retry loop: nested calls make one attempt
        #: The datasetName of the last :meth:`ingest_raw` (what the mapping made of the scan).
        self.last_dataset_name: str | None = None

    # -- connection -----------------------------------------------------------------------------------

    @property
    def settings(self) -> dict[str, Any]:
        """Base URL, account and tuning from the connection (read once)."""
        if self._settings is None:
            conn = self.get_connection(self.scicat_conn_id)
            extra = conn.extra_dejson
            base_url = (conn.host or "").rstrip("/")
            if not base_url.startswith(("http://", "https://")):
                raise ValueError(f"connection {self.scicat_conn_id!r}: host must be the API URL (https://.../api/v3)")
            if not conn.login or not conn.password:
                raise ValueError(f"connection {self.scicat_conn_id!r}: login and password (ingestor account) needed")

            def pick(key: str, default: float) -> float:
                value = self._overrides.get(key)
                return float(value if value is not None else extra.get(key, default))

            self._settings = {
                "base_url": base_url,
                "login": conn.login,
                "password": conn.password,
                "timeout": pick("timeout", DEFAULT_TIMEOUT),
                "max_attempts": max(1, int(pick("max_attempts", DEFAULT_MAX_ATTEMPTS))),
                "retry_delay": pick("retry_delay", DEFAULT_RETRY_DELAY),
                "completion_grace": pick("completion_grace", DEFAULT_COMPLETION_GRACE),
                "fallback_contact_email": extra.get("fallback_contact_email") or scicat_metadata.DEFAULT_CONTACT_EMAIL,
                "pid_prefix": str(extra.get("pid_prefix") or DEFAULT_PID_PREFIX),
            }
        return self._settings

    def get_conn(self) -> ScicatClient:
        """The logged-in pyscicat client (logs in on first use)."""
        if self._client is None:
            self._client = self._retry("login", lambda _: self._login(), client_needed=False)
        return self._client

    def _logged_in(self) -> _Client:
        if self._client is None:
            self._client = self._login()
        return self._client

    def _login(self) -> _Client:
        s = self.settings
        url = f"{s['base_url']}/auth/login"
        try:  # pyscicat's own login has no timeout; same request, with one
            response = requests.post(
                url, json={"username": s["login"], "password": s["password"]}, timeout=s["timeout"]
            )
        except requests.RequestException as exc:
            raise SciCatError(f"SciCat login at {url}: {type(exc).__name__}: {redact(str(exc))}") from None
        if response.status_code in (401, 403):
            raise SciCatAuthError(
                f"SciCat refused the login of {s['login']!r} at {url} (HTTP {response.status_code}: "
                f"{_reason(response)}); check the login/password of connection {self.scicat_conn_id!r}",
                response.status_code,
            )
        if not response.ok:
            raise SciCatError(
                f"SciCat login at {url}: HTTP {response.status_code}: {_reason(response)}", response.status_code
            )
        body = response.json()
        token = body.get("access_token") or body.get("id")
        if not isinstance(token, str) or not token:
            raise SciCatError(f"SciCat login at {url}: no access_token in the answer")
        _mask(token)
        log.info("Logged in to SciCat at %s as %s", s["base_url"], s["login"])
        return _Client(s["base_url"], token=token, timeout_seconds=s["timeout"])

    def _retry(
        self, what: str, fn: Callable[[_Client], T], *, attempts: int | None = None, client_needed: bool = True
    ) -> T:
        """Run ``fn(client)``, retrying transient errors with back-off and logging in again once on 401.

        The hook's one back-off: a call made inside another's ``fn`` (the lookups of :meth:`_find_or_create`)
        makes one attempt, so the outer call's attempts are all there are."""
        attempts = 1 if self._retrying else attempts or self.settings["max_attempts"]
        outer, self._retrying = self._retrying, True
        try:
            return self._attempts(what, fn, attempts, client_needed)
        finally:
            self._retrying = outer

    def _attempts(self, what: str, fn: Callable[[_Client], T], attempts: int, client_needed: bool) -> T:
        relogged = False
        attempt = 0
        while True:
            attempt += 1
            try:
                # one login per attempt of this call (not a retried login inside each attempt)
                return fn(self._logged_in() if client_needed else None)  # type: ignore[arg-type]
            except SciCatAuthError:
                raise
            except SciCatError as exc:
                if exc.status == 401 and client_needed and not relogged:
                    log.warning("SciCat %s: token refused; logging in again", what)
                    self._client, relogged = None, True
                    attempt -= 1
                    continue
                if not exc.transient or attempt >= attempts:
                    raise
                delay = min(self.settings["retry_delay"] * 2 ** (attempt - 1), MAX_RETRY_DELAY)
                log.warning(
                    "SciCat %s failed (attempt %d/%d): %s; retrying in %.1f s", what, attempt, attempts, exc, delay
                )
                time.sleep(delay)

    def test_connection(self) -> tuple[bool, str]:
        """Log in and list one dataset (Airflow UI's connection test)."""
        try:
            self._client = None
            self._retry("test", lambda c: c.get_json(_filter_path({}, limit=1), "test"), attempts=1)
        except Exception as exc:
            return False, str(exc)
        return True, "Logged in and listed datasets"

    # -- reads ----------------------------------------------------------------------------------------

    def get_dataset(self, pid: str) -> dict[str, Any]:
        """The dataset with this pid (SciCatError 404 when there is none)."""
        return self._retry(f"get dataset {pid}", lambda c: c.datasets_get_one(pid))

    def dataset_or_none(self, pid: str) -> dict[str, Any] | None:
        """The dataset with this pid, or None. Asked as ``GET Datasets?filter={"where": {"pid": ...}}``: an empty
        list on every backend version, where ``GET Datasets/{pid}`` of an unknown pid answers 404, 500 (the v3
        controller converts a null) or an empty 200 depending on the version."""
        found = self._retry(f"find dataset {pid}", lambda c: c.get_json(_filter_path({"pid": pid}), "datasets_by_pid"))
        matches = [d for d in found or [] if d.get("pid") == pid]
        return matches[0] if matches else None

    def pid_for(self, kind: str, source_folder: str, dataset_name: str, input_dataset: str | None = None) -> str:
        """The pid this hook gives a dataset with this key (:func:`dataset_pid` with the connection's prefix)."""
        return dataset_pid(kind, source_folder, dataset_name, input_dataset, prefix=self.settings["pid_prefix"])

    def find_dataset(
        self, *, dataset_type: str, source_folder: str, dataset_name: str, input_dataset: str | None = None
    ) -> dict[str, Any] | None:
        """The dataset with this idempotency key, or None. The oldest wins if a past bug made several."""
        where = {"type": dataset_type, "sourceFolder": source_folder, "datasetName": dataset_name}
        found = self._retry("find dataset", lambda c: c.get_json(_filter_path(where), "datasets_find_by_key"))
        matches = [d for d in found or [] if all(d.get(k) == v for k, v in where.items())]
        if input_dataset is not None:
            matches = [d for d in matches if input_dataset in (d.get("inputDatasets") or [])]
        matches.sort(key=lambda d: (d.get("createdAt") or "", d["pid"]))
        if len(matches) > 1:
            log.warning(
                "SciCat has %d %s datasets for %s/%s: %s; using the oldest",
                len(matches),
                dataset_type,
                source_folder,
                dataset_name,
                [d["pid"] for d in matches],
            )
        return matches[0] if matches else None

    def find_raw(self, source_folder: str, dataset_name: str | list[str]) -> str | None:
        """The pid of the raw dataset of a scan, or None. ``dataset_name`` may list candidates (the scan's
        ``file_name``, its stem...): the first that matches wins."""
        for name in [dataset_name] if isinstance(dataset_name, str) else list(dict.fromkeys(dataset_name)):
            found = self._find_keyed(self.pid_for("raw", source_folder, name), "raw", source_folder, name)
            if found:
                return found["pid"]
        return None

    def _find_keyed(
        self, pid: str, kind: str, source_folder: str, dataset_name: str, input_dataset: str | None = None
    ) -> dict[str, Any] | None:
        """The dataset of this key: by its computed pid, else by its key (datasets made before pids were
        computed). A dataset at that pid with another key is a collision: refused, never overwritten."""
        found = self.dataset_or_none(pid)
        if found is not None:
            key = (found.get("type"), found.get("sourceFolder"), found.get("datasetName"))
            linked = input_dataset is None or input_dataset in (found.get("inputDatasets") or [])
            if key != (kind, source_folder, dataset_name) or not linked:
                raise SciCatError(
                    f"SciCat dataset {pid} is {key}, not the {kind} dataset {dataset_name!r} of {source_folder}: "
                    "pid collision, nothing registered (check the pid_prefix extra)",
                    409,
                )
            return found
        return self.find_dataset(
            dataset_type=kind, source_folder=source_folder, dataset_name=dataset_name, input_dataset=input_dataset
        )

    # -- ingestion ------------------------------------------------------------------------------------

    def ingest_raw(
        self,
        scan_path: str | Path,
        source_folder: str,
        *,
        fallback_email: str | None = None,
        ingester: str = "als_832_dx_4",
    ) -> str:
        """Catalogue a scan as a raw dataset with its OrigDatablock and thumbnail; return its pid.

        ``scan_path`` is the file as readable here, ``source_folder`` the scan's folder as the beamline names it
        (8.3.2: upstream's ``/global/raw/<folder>``; sourceFolder, with datasetName the idempotency key).
        ``ingester`` picks the mapping: ``als_832_dx_4`` (include/scicat_metadata.py) or ``als_733_saxs``
        (include/scicat_733.py; the path is one exposure's ``.txt`` or ``.edf``). A re-run returns the same
        pid and adds only what is missing. Raises before the dataset exists (unknown ingester, unreadable scan,
        SciCat down after retries, refused document) and when the datablock cannot be added (a re-run completes
        it); missing metadata, a bad email and a failed thumbnail are warnings.
        """
        build = _builder(ingester)
        docs = build(
            scan_path,
            source_folder,
            fallback_email=fallback_email or self.settings["fallback_contact_email"],
        )
        for warning in docs.warnings:
            log.warning("%s", warning)
        name = self.last_dataset_name = docs.dataset["datasetName"]
        wanted = self.pid_for("raw", source_folder, name)
        model = RawDataset(**{**docs.dataset, "pid": wanted})
        found: dict[str, Any] = {}

        def find() -> dict | None:
            found["doc"] = self._find_keyed(wanted, "raw", source_folder, name)
            return found["doc"]

        pid, outcome = self._ensure_dataset(model, find)
        if outcome == "raced":
            return pid  # the registration that created it adds its datablock and thumbnail (or its retry does)
        if outcome == "found":
            self._let_creator_finish(found["doc"])
        self._ensure_datablock(pid, docs.datablock)
        if docs.thumbnail:
            self._attach_optional(pid, docs.thumbnail, RAW_THUMBNAIL_CAPTION, docs.dataset)
        return pid

    def ingest_derived(self, raw_pid: str, *, dataset_name: str, source_folder: str, **results: Any) -> str:
        """Catalogue a reconstruction as a derived dataset of ``raw_pid``; return its pid.

        ``results``: the other keyword arguments of :func:`include.scicat_metadata.build_derived`
        (``tiff_location``, ``zarr_location``, ``parameters`` and ``site``; optional ``preview_path``,
        ``local_folder``, ``used_software``). ``source_folder`` holds the results (``tiff_location`` and
        ``zarr_location`` are folders in it); ``local_folder`` is the same folder as readable here (lists the
        files in an OrigDatablock); ``preview_path`` a PNG attached as the thumbnail. Idempotent like
        :meth:`ingest_raw`.
        """
        raw = self.get_dataset(raw_pid)
        docs = scicat_metadata.build_derived(raw, dataset_name=dataset_name, source_folder=source_folder, **results)
        for warning in docs.warnings:
            log.warning("%s", warning)
        wanted = self.pid_for("derived", source_folder, dataset_name, raw_pid)
        model = DerivedDataset(**{**docs.dataset, "pid": wanted})
        found: dict[str, Any] = {}

        def find() -> dict | None:
            hit = self._find_keyed(wanted, "derived", source_folder, dataset_name, raw_pid)
            found["doc"] = hit
            return hit

        pid, outcome = self._ensure_dataset(model, find)
        if outcome == "raced":
            return pid  # the registration that created it adds its datablock and preview (or its retry does)
        if outcome == "found":  # a re-run, or a re-reconstruction: describe the results as they are now
            self._let_creator_finish(found["doc"])
            self._update_derived(pid, found["doc"], docs)
        elif docs.datablock:
            self._ensure_datablock(pid, docs.datablock)
        if docs.thumbnail:
            self._attach_optional(pid, docs.thumbnail, PREVIEW_CAPTION, docs.dataset, replace=outcome == "found")
        return pid

    def _ensure_dataset(self, model: RawDataset | DerivedDataset, find: Callable[[], dict | None]) -> tuple[str, str]:
        """The dataset's pid and how it was had: ``created`` (by this call, also when the answer to its create
        was lost), ``found`` (it existed), or ``raced`` (SciCat refused the create as its pid exists: another
        registration made it meanwhile)."""
        what = f"{model.type.value} dataset {model.datasetName}"
        raced, sent = {"yes": False}, {"yes": False}

        def lookup() -> str | None:
            found = find()
            return found["pid"] if found else None

        def create(client: _Client) -> str:
            sent["yes"] = True
            try:
                return client.datasets_create(model)
            except SciCatError as exc:
                if exc.status == 409 and model.pid:  # SciCat's duplicate key: the pid exists; read it back
                    raced["yes"] = True
                    pid = lookup()
                    if pid is None:
                        raise SciCatError(f"{exc} (and no {what} can be read at {model.pid})", 409) from None
                    log.info("SciCat %s: another registration created it meanwhile (%s)", what, pid)
                    return pid
                raise

        pid, created = self._find_or_create(what, lookup, create)
        if created and not raced["yes"] and model.pid and pid != model.pid:
            log.warning(
                "SciCat gave %s the pid %s, not the one asked for (%s): the ingestor account may not choose pids "
                "(put its group in ADMIN_GROUPS or CREATE_DATASET_WITH_PID_GROUPS); concurrent registrations are "
                "then not refused by SciCat",
                what,
                pid,
                model.pid,
            )
        if raced["yes"]:
            return pid, "raced"
        # found after our own create's answer was lost: ours, to complete as a creator does
        return pid, "created" if created or sent["yes"] else "found"

    def _let_creator_finish(self, dataset: dict[str, Any]) -> None:
        """Wait until ``completion_grace`` seconds after the dataset's creation: a registration that found it
        that soon runs beside the one that made it, which is adding its datablock and thumbnail (SciCat gives
        those no key that could refuse a second one)."""
        created = _instant(dataset.get("createdAt"))
        if not isinstance(created, float):
            return
        wait = created + self.settings["completion_grace"] - time.time()
        if wait > 0:
            log.info(
                "SciCat dataset %s was created %.1f s ago: letting its registration complete it first",
                dataset.get("pid"),
                self.settings["completion_grace"] - wait,
            )
            time.sleep(wait)

    def _update_derived(self, pid: str, existing: dict[str, Any], docs: scicat_metadata.DerivedDocuments) -> None:
        """Make a derived dataset found again describe the results now: its fields (PATCH Datasets/{pid}) and
        its file list (the OrigDatablock replaced through PATCH .../origdatablocks/{oid}; SciCat moves the
        dataset's size and file count by the difference). Nothing is sent when nothing changed."""
        blocks = self._retry("list origdatablocks", lambda c: c.datasets_origdatablocks_get_one(pid)) or []
        files_changed = docs.datablock is not None and not any(_same_files(b, docs.datablock) for b in blocks)
        body = {k: v for k, v in docs.dataset.items() if k not in _NOT_PATCHED}
        fields_changed = any(existing.get(k) != v for k, v in body.items() if k != "creationTime")
        if fields_changed or files_changed:
            self._retry(
                f"update dataset {pid}",
                lambda c: c.get_json_send("patch", f"Datasets/{quote_plus(pid)}", body, "datasets_update"),
            )
            log.info("SciCat derived dataset %s updated to the current results", pid)
        if not files_changed:
            return
        if not blocks:
            self._ensure_datablock(pid, docs.datablock)
            return
        if len(blocks) > 1:
            log.warning(
                "SciCat dataset %s has %d OrigDatablocks; the first now lists the results, the others stay (an "
                "ingestor may not delete them: a SciCat admin in DELETE_GROUPS can)",
                pid,
                len(blocks),
            )
        block = blocks[0]
        update = {"size": docs.datablock["size"], "dataFileList": docs.datablock["dataFileList"]}
        self._retry(
            f"replace origdatablock of {pid}",
            lambda c: c.get_json_send(
                "patch", f"Datasets/{quote_plus(pid)}/origdatablocks/{quote_plus(block['id'])}", update, "odb_update"
            ),
        )
        after = self._retry("list origdatablocks", lambda c: c.datasets_origdatablocks_get_one(pid)) or []
        if not any(_same_files(b, docs.datablock) for b in after):
            raise SciCatError(
                f"SciCat did not replace the OrigDatablock {block['id']} of {pid}: it still lists the "
                "previous results (a re-run tries again)"
            )
        log.info("SciCat dataset %s: OrigDatablock %s lists the current results", pid, block["id"])

    def _find_or_create(
        self, what: str, find: Callable[[], T | None], create: Callable[[_Client], T]
    ) -> tuple[T, bool]:
        """``find()``, else ``create``; after a transient create failure, look again before creating again.

        A create whose answer was lost (timeout, 5xx from a proxy) may have succeeded: retrying it blindly
        would make a second object, so every new attempt starts with a lookup.
        """

        def attempt(client: _Client) -> tuple[T, bool]:
            existing = find()
            if existing is not None:
                log.info("SciCat %s already exists (%s)", what, existing)
                return existing, False
            created = create(client)
            log.info("SciCat %s created (%s)", what, created)
            return created, True

        return self._retry(f"find or create {what}", attempt)

    def _ensure_datablock(self, pid: str, datablock: dict[str, Any]) -> None:
        paths = {f["path"] for f in datablock["dataFileList"]}

        def present() -> bool | None:
            blocks = self._retry("list origdatablocks", lambda c: c.datasets_origdatablocks_get_one(pid)) or []
            return any({f.get("path") for f in b.get("dataFileList", [])} >= paths for b in blocks) or None

        dto = CreateDatasetOrigDatablockDto(
            size=datablock["size"], dataFileList=[DataFile(**f) for f in datablock["dataFileList"]]
        )
        self._find_or_create(f"origdatablock of {pid}", present, lambda c: c.datasets_origdatablock_create(pid, dto))

    def _attach_optional(
        self, pid: str, thumbnail: str, caption: str, dataset: dict[str, Any], *, replace: bool = False
    ) -> None:
        """Attach a thumbnail unless one with this caption exists (``replace``: an existing one showing another
        image gets this one, PUT .../attachments/{aid}); a failure is only a warning."""

        def present() -> bool | None:
            found = self._retry(
                "list attachments",
                lambda c: c.get_json(f"Datasets/{quote_plus(pid)}/attachments", "datasets_attachments_get"),
            )
            mine = [a for a in found or [] if a.get("caption") == caption]
            stale = [a for a in mine if a.get("thumbnail") != thumbnail and a.get("id")]
            if replace and stale:
                for old in stale:
                    path = f"Datasets/{quote_plus(pid)}/attachments/{quote_plus(old['id'])}"
                    self._retry(
                        f"replace {caption} of {pid}",
                        lambda c, path=path: c.get_json_send("put", path, {"thumbnail": thumbnail}, "att_update"),
                    )
            return bool(mine) or None

        attachment = Attachment(
            datasetId=pid,
            thumbnail=thumbnail,
            caption=caption,
            ownerGroup=dataset["ownerGroup"],
            accessGroups=dataset.get("accessGroups"),
        )
        try:
            self._find_or_create(f"{caption} of {pid}", present, lambda c: c.datasets_attachment_create(attachment))
        except SciCatError as exc:
            log.warning(
                "SciCat dataset %s: %s not attached (the dataset is fine; a re-run adds it): %s", pid, caption, exc
            )


def _same_files(block: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether an OrigDatablock lists exactly the wanted files, with their sizes and times."""

    def files(items: list[dict[str, Any]]) -> set[tuple[Any, Any, Any]]:
        return {(f.get("path"), f.get("size"), _instant(f.get("time"))) for f in items}

    return block.get("size") == wanted["size"] and files(block.get("dataFileList") or []) == files(
        wanted["dataFileList"]
    )


def _instant(value: Any) -> Any:
    """An ISO time as an instant (SciCat answers UTC with ``Z``; we send an offset)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return value


def _builder(ingester: str) -> Callable[..., scicat_metadata.RawDocuments]:
    """The raw-document builder of an ingester (ValueError for an unknown one)."""
    name = ingester_name(ingester)
    if name == "als_733_saxs":
        from include import scicat_733

        return scicat_733.build_raw
    return scicat_metadata.build_raw


def _filter_path(where: dict[str, Any], limit: int | None = None) -> str:
    """``Datasets?filter=...`` fully URL-encoded (pyscicat's own find puts raw JSON in the URL, which
    breaks on ``&``, ``#``, ``+`` or ``%`` in a name)."""
    flt: dict[str, Any] = {"where": where}
    if limit:
        flt["limits"] = {"limit": limit}
    return "Datasets?filter=" + quote(json.dumps(flt, separators=(",", ":")), safe="")


def _mask(secret: str) -> None:
    """Register a secret with Airflow's log masker (task logs redact it)."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older SDKs
        return
    mask_secret(secret, name="scicat_token")
