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


class SFAPIJobNotFound(AirflowException):
    """Neither squeue nor sacct knows the job."""


@dataclass(frozen=True)
class SlurmJob:
    """What the hook reports about one job."""

    jobid: str
    state: str
    name: str | None = None
    comment: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return {"jobid": self.jobid, "state": self.state, "name": self.name, "comment": self.comment}


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
        """Submit a batch script (its text, starting ``#!``); return the Slurm job id."""
        if not script.startswith("#!") or "\n" not in script:
            raise AirflowException("a batch script must start with '#!' and have more than one line")
        compute = self.compute(machine)
        with self._errors(f"submitting a job to {machine}"):
            job = compute.submit_job(script)
        self.log.info("Submitted Slurm job %s to %s", job.jobid, machine)
        return str(job.jobid)

    def job_state(self, machine: str, jobid: str) -> SlurmJob:
        """The job's state from squeue while it is queued or running, else from sacct."""
        from sfapi_client.jobs import JobCommand

        compute = self.compute(machine)
        with self._errors(f"reading the state of job {jobid} on {machine}"):
            queued = compute.jobs(jobids=[jobid], command=JobCommand.squeue)
            if queued:
                job = queued[0]
                return SlurmJob(str(job.jobid), normalize_state(job.state), job.name, job.comment)
            finished = compute.jobs(jobids=[jobid], command=JobCommand.sacct)
        if not finished:
            raise SFAPIJobNotFound(f"job {jobid} is unknown to squeue and sacct on {machine}")
        job = finished[0]
        return SlurmJob(str(job.jobid), normalize_state(job.state), job.jobname, getattr(job, "comment", None))

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
        from sfapi_client.jobs import JobCommand

        user = user or self.user_name()
        compute = self.compute(machine)
        with self._errors(f"listing {user}'s jobs on {machine}"):
            jobs = compute.jobs(user=user, command=JobCommand.squeue)
        return [SlurmJob(str(j.jobid), normalize_state(j.state), j.name, j.comment) for j in jobs]

    def find_active_job(self, machine: str, name: str, comment: str | None = None) -> SlurmJob | None:
        """The queued or running job of the client's user with this name (and comment, when given)."""
        matches = [j for j in self.list_jobs(machine) if j.name == name and (comment is None or j.comment == comment)]
        if len(matches) > 1:
            ids = ", ".join(j.jobid for j in matches)
            raise AirflowException(f"{len(matches)} active jobs named {name!r} on {machine} ({ids}); cancel extras")
        return matches[0] if matches else None

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
