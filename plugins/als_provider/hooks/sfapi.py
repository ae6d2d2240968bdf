"""Hook for the NERSC Superfacility API (SFAPI): submit, watch and cancel Slurm jobs, read their logs.

The connection (``sfapi_default``) holds the SFAPI client id as ``login`` and its private key (PEM, or the
JWK/JSON form NERSC Iris hands out) as ``password``; extras ``api_base_url`` and ``token_url`` choose the
service (production defaults when absent). The sfapi_client ``Client`` is built on first use, never when
a DAG file is parsed, and every SDK failure is re-raised as an ``AirflowException`` that names what was
being done and the service's own message, never the key.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException

#: Slurm states in which a job is finished. COMPLETED is the only success.
SUCCESS_STATE = "COMPLETED"
FAILURE_STATES = frozenset(
    {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}
)
TERMINAL_STATES = FAILURE_STATES | {SUCCESS_STATE}
DEFAULT_MACHINE = "perlmutter"
#: sacct reads ``--starttime`` in the cluster's own time zone: a look-up starts this much earlier than asked.
SACCT_MARGIN_SECONDS = 24 * 3600
#: How far back a look-up without a known submission time reaches (before the margin).
SACCT_LOOKBACK_SECONDS = 2 * 24 * 3600


class SFAPIJobNotFound(AirflowException):
    """Neither squeue nor sacct knows the job."""


@dataclass(frozen=True)
class SlurmJob:
    """What the hook reports about one job."""

    jobid: str
    state: str
    name: str | None = None
    comment: str | None = None
    exit_code: str | None = None  # sacct's ``exitcode`` (``"2:0"``: status 2, no signal) once the job ended

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def exit_status(self) -> int | None:
        """The batch script's exit status from ``exit_code`` (``None`` if unknown)."""
        return exit_status(self.exit_code)

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobid": self.jobid,
            "state": self.state,
            "name": self.name,
            "comment": self.comment,
            "exit_code": self.exit_code,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SlurmJob:
        """A job from a squeue row (``name``) or a sacct row (``jobname``, ``exitcode``)."""
        return cls(
            jobid=str(row.get("jobid")),
            state=normalize_state(row.get("state")),
            name=row.get("name") or row.get("jobname"),
            comment=row.get("comment"),
            exit_code=row.get("exitcode"),
        )


def exit_status(exit_code: str | None) -> int | None:
    """The exit status in sacct's ``exitcode`` (``"2:0"``: status 2, signal 0); ``None`` if unknown."""
    head = (exit_code or "").split(":", 1)[0]
    return int(head) if head.isdigit() else None


def normalize_state(raw: Any) -> str:
    """``JobState.CANCELLED``/``"CANCELLED by 123"``/``"CANCELLED+"`` → ``"CANCELLED"``."""
    text = str(getattr(raw, "value", raw) or "").strip().upper()
    return text.split(" ", 1)[0].rstrip("+")


class SFAPIHook(BaseHook):
    """Talk to SFAPI through sfapi_client on the connection ``sfapi_conn_id``."""

    conn_name_attr = "sfapi_conn_id"
    default_conn_name = "sfapi_default"
    conn_type = "generic"
    hook_name = "NERSC Superfacility API"

    def __init__(self, sfapi_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.sfapi_conn_id = sfapi_conn_id
        self._computes: dict[str, Any] = {}

    # --- client
    @cached_property
    def _settings(self) -> dict[str, Any]:
        conn = self.get_connection(self.sfapi_conn_id)
        extra = conn.extra_dejson
        client_id, key = _credentials(conn.login, conn.password, self.sfapi_conn_id)
        from sfapi_client._sync.client import SFAPI_BASE_URL, SFAPI_TOKEN_URL

        return {
            "client_id": client_id,
            "key": key,
            "api_base_url": str(extra.get("api_base_url") or SFAPI_BASE_URL).rstrip("/"),
            "token_url": str(extra.get("token_url") or SFAPI_TOKEN_URL),
        }

    def get_conn(self):
        """The sfapi_client ``Client`` (created once per hook)."""
        return self._client

    @cached_property
    def _client(self):
        from sfapi_client import Client

        settings = self._settings
        return Client(
            client_id=settings["client_id"],
            secret=settings["key"],
            api_base_url=settings["api_base_url"],
            token_url=settings["token_url"],
        )

    def close(self) -> None:
        if "_client" in self.__dict__:
            self._client.close()
            del self.__dict__["_client"]
        self._computes.clear()

    def compute(self, machine: str = DEFAULT_MACHINE):
        """The ``Compute`` of a machine (``GET status/{machine}``), cached."""
        if machine not in self._computes:
            with self._errors(f"reading the status of {machine}"):
                self._computes[machine] = self.get_conn().compute(machine)
        return self._computes[machine]

    # --- jobs
    def submit_job(self, machine: str, script: str) -> str:
        """Submit a batch script (its text, starting ``#!``) once; return the Slurm job id.

        The POST is sent exactly once: sfapi_client's ``Api.post`` resends it (tenacity) on a timeout or a
        429/502/503/504, and SFAPI has no de-duplication key, so a lost answer would start a second job. A
        failed POST raises; whether a job was created is for the caller to find out (:meth:`find_job`).
        """
        if not script.startswith("#!") or "\n" not in script:
            raise AirflowException("a batch script must start with '#!' and have more than one line")
        from sfapi_client.exceptions import SfApiError

        compute = self.compute(machine)
        api = compute.client
        post_once = type(api).post.__wrapped__  # Api.post without its tenacity resends
        with self._errors(f"submitting a job to {machine}"):
            answer = post_once(api, f"compute/jobs/{compute.name}", {"job": script, "isPath": False}).json()
            if str(answer.get("status", "")).upper() == "ERROR":
                raise SfApiError(answer.get("error") or "SFAPI refused the job")
            task = compute._wait_for_task(answer["task_id"])  # GET tasks/{id}: safe to resend
            if task.status == "error":
                raise SfApiError(task.error)
            jobid = (task.__pydantic_extra__ or {}).get("jobid")
            if jobid is None:
                raise SfApiError(f"SFAPI task {answer['task_id']} gave no job id")
        self.log.info("Submitted Slurm job %s to %s", jobid, machine)
        return str(jobid)

    def query_jobs(self, machine: str, *, sacct: bool = False, **filters: str) -> list[SlurmJob]:
        """Jobs from squeue (queued and running) or sacct (every state), filtered by ``jobid=``, ``user=``, ...

        Reads ``GET compute/jobs/{machine}`` itself rather than through ``Compute.jobs``: sfapi_client 0.6.0's
        ``_fetch_raw_state`` compares the parsed model with the ``ERROR`` enum (never equal), so an
        ``{"status": "ERROR"}`` answer comes back as an empty job list, i.e. "no such job", and a retry would
        submit a second job. Here an ERROR answer raises (upstream: NERSC/sfapi_client, sfapi_client/_sync/jobs.py).
        """
        compute = self.compute(machine)
        params: dict[str, Any] = {"sacct": sacct, "cached": False}
        if filters:
            params["kwargs"] = [f"{key}={value}" for key, value in filters.items()]
        what = "sacct" if sacct else "squeue"
        with self._errors(f"querying {what} on {machine} ({', '.join(params.get('kwargs', []))})"):
            answer = compute.client.get(f"compute/jobs/{compute.name}", params).json()
            if str(answer.get("status", "")).upper() == "ERROR":
                raise AirflowException(
                    f"SFAPI ({self.sfapi_conn_id}): {what} on {machine} answered ERROR: {answer.get('error')}"
                )
        return [SlurmJob.from_row(row) for row in answer.get("output") or []]

    def job_state(self, machine: str, jobid: str) -> SlurmJob:
        """The job's state from squeue while it is queued or running, else from sacct."""
        queued = self.query_jobs(machine, jobid=str(jobid))
        if queued:
            return queued[0]
        finished = self.query_jobs(machine, sacct=True, jobid=str(jobid))
        if not finished:
            raise SFAPIJobNotFound(f"job {jobid} is unknown to squeue and sacct on {machine}")
        return finished[0]

    def cancel_job(self, machine: str, jobid: str) -> None:
        """``scancel`` the job (a finished job is left as it is)."""
        compute = self.compute(machine)
        with self._errors(f"cancelling job {jobid} on {machine}"):
            compute.client.delete(f"compute/jobs/{compute.name}/{jobid}")
        self.log.info("Asked %s to cancel Slurm job %s", machine, jobid)

    def user_name(self) -> str:
        """The NERSC user the client acts as (``GET account/``)."""
        with self._errors("reading the client's account"):
            return self.get_conn().user().name

    def list_jobs(self, machine: str, user: str | None = None) -> list[SlurmJob]:
        """Queued and running jobs of ``user`` (default: the client's own user)."""
        return self.query_jobs(machine, user=user or self.user_name())

    def find_jobs(self, machine: str, name: str, comment: str, *, since: float | None = None) -> list[SlurmJob]:
        """Every job of the client's user with this name and comment: queued, running or finished (sacct).

        sacct lists jobs in every state, but by default only since midnight (Slurm's default window): a job
        submitted before midnight and looked up after would be missed and submitted again. So sacct is asked
        from ``since`` (epoch seconds: when the task first began submitting; default two days ago) less a day
        of margin, since ``--starttime`` is read in the cluster's time zone. squeue is asked too, for a job sacct
        does not show yet. Oldest first; one entry per job id.
        """
        user = self.user_name()
        since = time.time() - SACCT_LOOKBACK_SECONDS if since is None else min(float(since), time.time())
        window = {"starttime": sacct_time(since - SACCT_MARGIN_SECONDS)}
        found: dict[str, SlurmJob] = {}
        for sacct in (True, False):
            for job in self.query_jobs(machine, sacct=sacct, user=user, name=name, **(window if sacct else {})):
                if job.name == name and job.comment == comment:
                    found.setdefault(job.jobid, job)
        return sorted(found.values(), key=lambda j: int(j.jobid) if j.jobid.isdigit() else 0)

    # --- files
    def read_file(self, machine: str, path: str) -> str:
        """A text file on the machine (``utilities/download``)."""
        from sfapi_client.paths import RemotePath

        compute = self.compute(machine)
        with self._errors(f"reading {path} on {machine}"):
            return RemotePath(path=path, compute=compute).download().read()

    def tail(self, machine: str, path: str, lines: int = 40) -> str:
        """The last ``lines`` lines of a text file, or a note saying why there are none."""
        try:
            text = self.read_file(machine, path)
        except AirflowException as exc:
            return f"(no log: {exc})"
        kept = text.splitlines()[-lines:]
        return "\n".join(kept) if kept else "(the log is empty)"

    # --- errors
    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn sfapi_client/httpx/authlib/tenacity failures into one clear AirflowException."""
        try:
            yield
        except AirflowException:
            raise
        except Exception as exc:
            raise AirflowException(f"SFAPI ({self.sfapi_conn_id}): {action} failed: {self._describe(exc)}") from None

    def _describe(self, exc: BaseException) -> str:
        import httpx
        import tenacity
        from authlib.common.errors import AuthlibBaseError
        from sfapi_client.exceptions import ClientKeyError, SfApiError

        if isinstance(exc, tenacity.RetryError):
            last = exc.last_attempt
            inner = last.exception() if last is not None and last.failed else None
            attempts = last.attempt_number if last is not None else "?"
            return f"gave up after {attempts} attempts: {self._describe(inner) if inner else exc}"
        if isinstance(exc, AuthlibBaseError):
            token_url = self._settings["token_url"]
            return (
                f"the token endpoint {token_url} refused client {self._settings['client_id']!r}: "
                f"{exc.error}: {exc.description or 'no description'} (check the connection's client id and key)"
            )
        if isinstance(exc, httpx.HTTPStatusError):
            response = exc.response
            url = str(response.request.url.copy_with(query=None))
            try:
                body = response.json()
                detail = body.get("detail") or body.get("error") or body if isinstance(body, dict) else body
            except ValueError:
                detail = response.text[:300]
            hint = (
                " (credentials refused: check the connection's client id and key)"
                if response.status_code in (401, 403)
                else ""
            )
            return f"HTTP {response.status_code} from {url}: {detail}{hint}"
        if isinstance(exc, httpx.TransportError):
            return f"cannot reach SFAPI ({type(exc).__name__}: {exc})"
        if isinstance(exc, SfApiError | ClientKeyError):
            return str(exc.message)
        return f"{type(exc).__name__}: {exc}"


def sacct_time(epoch: float) -> str:
    """``--starttime``/``--endtime`` text (``YYYY-MM-DDTHH:MM:SS``, UTC wall clock) for an epoch time."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


def _credentials(login: str | None, password: str | None, conn_id: str) -> tuple[str, Any]:
    """Client id and private key from the connection; the key is checked, never echoed."""
    from joserfc.jwk import RSAKey

    if not password or not password.strip():
        raise AirflowException(f"connection {conn_id!r}: password (the SFAPI client's private key) is empty")
    key: Any = password.strip()
    client_id = (login or "").strip()
    if key.startswith("{"):
        try:
            document = json.loads(key)
        except ValueError:
            raise AirflowException(f"connection {conn_id!r}: password looks like JSON but does not parse") from None
        if "secret" in document:  # sfapi_client's key-file form {"client_id": ..., "secret": <JWK or PEM>}
            client_id = client_id or str(document.get("client_id", "")).strip()
            key = document["secret"]
        else:
            key = document
    if not client_id:
        raise AirflowException(f"connection {conn_id!r}: login (the SFAPI client id) is empty")
    try:
        private = RSAKey.import_key(key).is_private
    except Exception:
        private = False
    if not private:
        raise AirflowException(
            f"connection {conn_id!r}: password is not an RSA private key (PEM or JWK) usable for private_key_jwt"
        )
    return client_id, key
