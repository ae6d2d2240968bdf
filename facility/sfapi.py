"""NERSC Superfacility API stand-in: the REST subset sfapi_client 0.6 uses, with a tiny local "Slurm".

Routes (prefix ``/sfapi``), as the real service answers them:

- ``POST /oauth2/token``: client credentials with a ``private_key_jwt`` client assertion (RFC 7523), checked
  against the public key registered for the local client (``LOCAL_SFAPI_PUBLIC_KEY``).
- ``GET /api/v1.2/status/{machine}``, ``GET /api/v1.2/account/``.
- ``POST /api/v1.2/compute/jobs/{machine}`` (form ``job``, ``isPath``) → an async task; ``GET tasks/{id}``
  answers ``result`` as a JSON *string* ``{"status": "ok", "jobid": "..."}``.
- ``GET /api/v1.2/compute/jobs/{machine}?sacct=&kwargs=jobid=..&kwargs=user=..`` (squeue: queued and running
  jobs only; sacct: every job), ``DELETE /api/v1.2/compute/jobs/{machine}/{jobid}`` (scancel).
- ``GET /api/v1.2/utilities/ls/{machine}/{path}``, ``GET /api/v1.2/utilities/download/{machine}/{path}``.

A submitted script runs as ``bash script`` in its own process group, cwd a per-job folder, with the
``#SBATCH`` ``--job-name``, ``--output``/``--error`` (``%x``, ``%j``, ``%u``, ``%%``), ``--time`` and ``--comment``
honoured; states go PENDING → RUNNING → COMPLETED/FAILED/TIMEOUT/CANCELLED. The header is checked as sbatch on
Perlmutter checks it for the ``alsdev`` collaboration account: an option sbatch does not know is refused
(``unrecognized option``), and ``--account`` (``als``), ``--qos`` and ``--constraint`` (``cpu``/``gpu``) must
be ones the account may use, else ``Batch job submission failed: ...`` as Slurm words it. Differences from
Slurm: ``--time`` seconds are honoured exactly (tests use a few seconds), missing log folders are created,
and a job without ``--constraint`` is accepted (Perlmutter refuses it; our jobs always send one).

Counters: ``sfapi.submit`` (every submit request), ``sfapi.job_created``, ``sfapi.cancel``. Faults
(``state.take_fault("sfapi", kind, subject=<job name>)``): ``state`` ends the job in ``params["state"]``
(e.g. TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL, FAILED) after ``params.get("after", 0.5)`` s of running,
writing Slurm's message to the error log; ``slow`` keeps the job PENDING ``params.get("seconds", 3)`` s;
``task_fail`` makes task ``params.get("task", 0)`` of each srun step of the job exit 1 without running (a node
lost under one task: facility/srun.py), the other tasks run;
``query_error`` (subject ``squeue <jobids>`` or ``sacct <jobids>``) answers a job query
``{"status": "ERROR", "output": [], "error": message}``, as SFAPI does when it cannot reach Slurm; ``clock``
(not consumed; ``params.offset_seconds``) moves the stand-in's clock forward, e.g. past midnight.

sacct's time window is honoured as Slurm does: ``kwargs=starttime=``/``endtime=`` (``YYYY-MM-DD[THH:MM[:SS]]``,
local time) select jobs that were pending or running at some moment in the window; without ``starttime`` the
window starts at midnight today (by the clock above), unless a ``jobid`` is asked for.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import JSONResponse

from facility.state import FacilityState
from include.endpoints import REPO_ROOT

PREFIX = "/sfapi"
API = f"{PREFIX}/api/v1.2"
MACHINES = ("perlmutter",)
#: The collaboration account the beamline's jobs run as.
USER = "alsdev"
USER_UID = 93832
#: facility/bin: the stand-in's srun (facility/srun.py), first on every job's PATH.
SRUN_DIR = Path(__file__).resolve().parent / "bin"
TOKEN_LIFETIME = 600
#: Largest file utilities/download serves (the real API caps downloads too).
MAX_DOWNLOAD_BYTES = 5 * 1024 * 1024
FIRST_JOB_ID = 41_000_001

#: Public half of the LOCAL DEVELOPMENT key pair whose private half is the ``sfapi_default`` password in
#: airflow_settings.yaml. It only opens this stand-in; production keys come from NERSC Iris.
LOCAL_SFAPI_PUBLIC_KEY = """\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAum7Z0tkAojYksYRDiOGZ
w+i1NoqtTCoX5PHmg8ic2q4gn549xnVmjGgziKNo9qjzxt0MVHPf1q0V7mHB/A2X
t3hTCBm07VzpgaZt9wRnqGTcKDtEO6QobuWKGL3MyDxwHoW5lmgIdUyRBgTDfA8e
VWaXz36ReNO+CEfTidxV5phjWwAemCHCHQ4RNH4y/0d+aCqayqKJfw0BrH5r3iew
F9Q6MseItX/PJZ4Gmr9LUTSs8cfCeasXSPpAwPd2Q6QlrB9QtymztQYPR+VVRRHl
1v3Eu1ClNNCV1Ve8QrUipSawqvDrvl4x84jXHLF0Zcr1z0nS/VSXjriIUM0pe+z6
ZQIDAQAB
-----END PUBLIC KEY-----
"""
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

ACTIVE_STATES = ("PENDING", "RUNNING")
#: Slurm's own words in the error log when it ends a job.
_SLURM_MESSAGES = {
    "TIMEOUT": "slurmstepd: error: *** JOB {jobid} ON nid004242 CANCELLED AT {now} DUE TO TIME LIMIT ***",
    "PREEMPTED": "slurmstepd: error: *** JOB {jobid} ON nid004242 CANCELLED AT {now} DUE TO PREEMPTION ***",
    "NODE_FAIL": "slurmstepd: error: *** JOB {jobid} ON nid004242 CANCELLED AT {now} DUE TO NODE FAILURE ***",
    "OUT_OF_MEMORY": "slurmstepd: error: Detected 1 oom_kill event in StepId={jobid}.batch. "
    "Some of the step tasks have been OOM Killed.",
    "CANCELLED": "slurmstepd: error: *** JOB {jobid} ON nid004242 CANCELLED AT {now} ***",
    "FAILED": "slurmstepd: error: *** JOB {jobid} ON nid004242 FAILED AT {now} ***",
}
_SBATCH_LINE = re.compile(r"^#SBATCH\s+(.*)$")
#: sbatch's long options (Slurm 24.x ``sbatch --help``) that a header may use; any other is refused.
SBATCH_OPTIONS = frozenset(
    """account acctg-freq array batch bb bbf begin chdir cluster-constraint clusters comment constraint container
    contiguous core-spec cores-per-socket cpu-freq cpus-per-gpu cpus-per-task deadline delay-boot dependency
    distribution error exclude exclusive export export-file extra-node-info get-user-env gid gpu-bind gpu-freq
    gpus gpus-per-node gpus-per-socket gpus-per-task gres gres-flags hint hold ignore-pbs input job-name
    kill-on-invalid-dep licenses mail-type mail-user mcs-label mem mem-bind mem-per-cpu mem-per-gpu mincpus
    network nice no-kill no-requeue nodefile nodelist nodes ntasks ntasks-per-core ntasks-per-gpu
    ntasks-per-node ntasks-per-socket open-mode output overcommit oversubscribe parsable partition power prefer
    priority profile propagate qos quiet reboot requeue reservation signal sockets-per-node spread-job switches
    test-only thread-spec threads-per-core time time-min tmp uid use-min-nodes verbose wait wait-all-nodes
    wckey wrap""".split()  # noqa: SIM905
)
#: What the alsdev collaboration account may use on Perlmutter (its Slurm associations).
ACCOUNTS = frozenset({"als"})
#: NERSC's Perlmutter QOS list (docs.nersc.gov, jobs/policy); ``xfer`` is the data-transfer QOS HPSS jobs use.
QOS = frozenset({"regular", "debug", "shared", "preempt", "overrun", "premium", "realtime", "xfer"})
CONSTRAINTS = frozenset({"cpu", "gpu"})
_OPTION = re.compile(r"^--(?P<key>[a-z][a-z-]*)(?:=(?P<value>.*))?$")
_SHORT_OPTIONS = {
    "-q": "qos",
    "-A": "account",
    "-C": "constraint",
    "-N": "nodes",
    "-J": "job-name",
    "-o": "output",
    "-e": "error",
    "-t": "time",
    "-n": "ntasks",
    "-c": "cpus-per-task",
}


def _now() -> str:
    return dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")


def parse_slurm_time(value: str) -> float:
    """Slurm's ``YYYY-MM-DD[THH:MM[:SS]]`` (local time) as epoch seconds; ValueError otherwise."""
    for layout in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(value, layout).timestamp()
        except ValueError:
            continue
    raise ValueError(f"Invalid time specification: {value}")


def sacct_window(filters: dict[str, str], now: float) -> tuple[float, float]:
    """sacct's ``--starttime``/``--endtime`` window (defaults: midnight today, or the epoch for a jobid; now)."""
    if "starttime" in filters:
        start = parse_slurm_time(filters["starttime"])
    elif filters.get("jobid"):
        start = 0.0
    else:
        start = dt.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    end = parse_slurm_time(filters["endtime"]) if "endtime" in filters else now
    return start, end


def parse_time_limit(value: str) -> float:
    """Slurm ``--time`` in seconds: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``."""
    days = 0
    if "-" in value:
        day_part, value = value.split("-", 1)
        days = int(day_part)
        parts = [int(p) for p in value.split(":")]
        while len(parts) < 3:
            parts.append(0)
        hours, minutes, seconds = parts
    else:
        parts = [int(p) for p in value.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, (minutes, seconds) = 0, parts
        elif len(parts) == 3:
            hours, minutes, seconds = parts
        else:
            raise ValueError(value)
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def parse_sbatch(script: str) -> dict[str, str]:
    """The ``#SBATCH`` options of a script, up to its first command (as sbatch reads them)."""
    options: dict[str, str] = {}
    for line in script.splitlines()[1:]:
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not stripped.startswith("#SBATCH")):
            continue
        match = _SBATCH_LINE.match(stripped)
        if not match:
            break
        words = shlex.split(match.group(1), comments=True)
        i = 0
        while i < len(words):
            word = words[i]
            if word in _SHORT_OPTIONS:
                if i + 1 >= len(words):
                    raise ValueError(f"option {word} requires an argument")
                options[_SHORT_OPTIONS[word]] = words[i + 1]
                i += 2
                continue
            opt = _OPTION.match(word)
            if not opt or opt.group("key") not in SBATCH_OPTIONS:
                raise ValueError(f"unrecognized option '{word}'")
            options[opt.group("key")] = opt.group("value") if opt.group("value") is not None else ""
            i += 1
    return options


def parse_nodes(value: str) -> int:
    """``--nodes`` as sbatch reads it: ``N`` or ``MIN-MAX`` (the job gets MIN here), a whole number >= 1."""
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", value.strip())
    if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(2)) < int(match.group(1))):
        raise ValueError(f"Invalid node count specification {value!r}")
    return int(match.group(1))


def check_policy(options: dict[str, str]) -> None:
    """Refuse what Slurm on Perlmutter refuses for the account (its words, after ``sbatch: error:``)."""
    if "account" in options and options["account"] not in ACCOUNTS:
        raise ValueError("Batch job submission failed: Invalid account or account/partition combination specified")
    if "qos" in options and options["qos"] not in QOS:
        raise ValueError("Batch job submission failed: Invalid qos specification")
    if "constraint" in options and options["constraint"] not in CONSTRAINTS:
        raise ValueError("Batch job submission failed: Invalid feature specification")
    if options.get("qos") == "shared" and "exclusive" in options:
        raise ValueError("Batch job submission failed: Requested node configuration is not available")


@dataclass
class Job:
    """One batch job of the stand-in's Slurm."""

    jobid: str
    name: str
    script: Path
    workdir: Path
    output: Path
    error: Path
    time_limit: float
    time_limit_text: str
    comment: str
    nodes: int = 1
    submitted: float = field(default_factory=time.time)
    state: str = "PENDING"
    pending_until: float = 0.0
    started: float | None = None
    ended: float | None = None
    exit_code: str = "0:0"
    forced_state: str | None = None
    force_after: float = 0.0
    proc: subprocess.Popen | None = None
    cancelled_by: str | None = None

    def squeue_row(self) -> dict:
        return {
            "jobid": self.jobid,
            "name": self.name,
            "state": self.state,
            "user": USER,
            "account": "als",
            "partition": "realtime_ss11",
            "qos": "realtime",
            "time_limit": self.time_limit_text,
            "comment": self.comment,
            "submit_time": _iso(self.submitted),
            "start_time": _iso(self.started),
            "nodes": "1",
            "cpus": "64",
        }

    def sacct_row(self) -> dict:
        state = f"CANCELLED by {USER_UID}" if self.state == "CANCELLED" and self.cancelled_by else self.state
        end = self.ended or time.time()
        elapsed = int(end - self.started) if self.started else 0
        return {
            "jobid": self.jobid,
            "jobname": self.name,
            "state": state,
            "user": USER,
            "account": "als",
            "exitcode": self.exit_code,
            "comment": self.comment,
            "elapsedraw": str(elapsed),
            "submit": _iso(self.submitted),
            "start": _iso(self.started),
            "end": _iso(self.ended),
            "timelimit": self.time_limit_text,
            "qos": "realtime",
        }


def _iso(timestamp: float | None) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%dT%H:%M:%S") if timestamp else "Unknown"


class Slurm:
    """Jobs, submission tasks and issued tokens of the stand-in; a monitor thread drives job states."""

    def __init__(self, state: FacilityState) -> None:
        self.facility = state
        self.lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self.tasks: dict[str, dict] = {}
        self.tokens: dict[str, float] = {}
        self.used_assertions: set[str] = set()
        self.next_id = FIRST_JOB_ID
        self.spool = state.root / ".sfapi" / "jobs"
        self.wakeup = threading.Event()
        threading.Thread(target=self._monitor, name="sfapi-slurm", daemon=True).start()
        atexit.register(self.shutdown)

    # --- sbatch / scancel
    def sbatch(self, script: str) -> Job:
        if not script.startswith("#!"):
            raise ValueError(
                "This does not look like a batch script. The first line must start with #! "
                "followed by the path to an interpreter."
            )
        options = parse_sbatch(script)
        check_policy(options)
        with self.lock:
            jobid = str(self.next_id)
            self.next_id += 1
        name = options.get("job-name") or "sbatch"
        time_text = options.get("time", "0:30:00")
        try:
            time_limit = parse_time_limit(time_text)
        except ValueError:
            raise ValueError(f"Invalid --time specification {time_text!r}") from None
        workdir = self.spool / jobid
        workdir.mkdir(parents=True, exist_ok=True)
        script_path = workdir / "script.sh"
        script_path.write_text(script)

        def log_path(pattern: str) -> Path:
            text = (
                pattern.replace("%%", "\0")
                .replace("%x", name)
                .replace("%j", jobid)
                .replace("%u", USER)
                .replace("\0", "%")
            )
            path = Path(text)
            return path if path.is_absolute() else workdir / path

        output = log_path(options.get("output", "slurm-%j.out"))
        error = log_path(options.get("error", options.get("output", "slurm-%j.out")))
        job = Job(
            jobid=jobid,
            name=name,
            script=script_path,
            workdir=workdir,
            output=output,
            error=error,
            time_limit=time_limit,
            time_limit_text=time_text,
            comment=options.get("comment", ""),
            nodes=parse_nodes(options.get("nodes", "1")),
        )
        job.pending_until = time.time() + 0.2
        slow = self.facility.take_fault("sfapi", "slow", name)
        if slow is not None:
            job.pending_until = time.time() + float(slow.params.get("seconds", 3))
        forced = self.facility.take_fault("sfapi", "state", name)
        if forced is not None:
            job.forced_state = str(forced.params.get("state", "FAILED")).upper()
            job.force_after = float(forced.params.get("after", 0.5))
        with self.lock:
            self.jobs[jobid] = job
        self.facility.count("sfapi.job_created")
        self.wakeup.set()
        return job

    def scancel(self, jobid: str) -> bool:
        with self.lock:
            job = self.jobs.get(jobid)
            if job is None:
                return False
            if job.state in ACTIVE_STATES:
                job.cancelled_by = USER
                self._end(job, "CANCELLED", "0:15", message=True)
        return True

    # --- the scheduler loop
    def _start(self, job: Job) -> None:
        for path in (job.output, job.error):
            path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            # srun first (facility/srun.py: a step's tasks as parallel processes), then this Python
            "PATH": os.pathsep.join([str(SRUN_DIR), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p),
            "SLURM_JOB_ID": job.jobid,
            "SLURM_JOBID": job.jobid,
            "SLURM_JOB_NAME": job.name,
            "SLURM_SUBMIT_DIR": str(job.workdir),
            "SLURM_CPUS_PER_TASK": "64",
            "SLURM_NNODES": str(job.nodes),
            "SLURM_JOB_NUM_NODES": str(job.nodes),
            "SLURM_JOB_USER": USER,
        }
        fault = self.facility.take_fault("sfapi", "task_fail", job.name)
        if fault is not None:  # one srun task of the job dies (facility/srun.py), the others run
            env["FACILITY_SRUN_FAIL_TASK"] = str(int(fault.params.get("task", 0)))
        with open(job.output, "ab") as out:
            err = out if job.error == job.output else open(job.error, "ab")  # noqa: SIM115
            try:
                job.proc = subprocess.Popen(
                    ["bash", str(job.script)],
                    cwd=job.workdir,
                    env=env,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            finally:
                if err is not out:
                    err.close()
        job.state = "RUNNING"
        job.started = time.time()

    def _end(self, job: Job, state: str, exit_code: str, *, message: bool = False) -> None:
        if job.proc is not None and job.proc.poll() is None:
            _kill_group(job.proc)
        if message and state in _SLURM_MESSAGES:
            with contextlib.suppress(OSError):
                job.error.parent.mkdir(parents=True, exist_ok=True)
                with open(job.error, "a") as err:
                    err.write(_SLURM_MESSAGES[state].format(jobid=job.jobid, now=_now()) + "\n")
        job.state = state
        job.exit_code = exit_code
        job.ended = time.time()

    def _step(self) -> None:
        now = time.time()
        with self.lock:
            for job in self.jobs.values():
                if job.state == "PENDING" and now >= job.pending_until:
                    try:
                        self._start(job)
                    except OSError as exc:
                        job.state, job.exit_code, job.ended = "FAILED", "1:0", now
                        with contextlib.suppress(OSError):
                            job.workdir.joinpath("slurm-launch.err").write_text(f"{exc}\n")
                elif job.state == "RUNNING":
                    assert job.started is not None and job.proc is not None
                    code = job.proc.poll()
                    if job.forced_state and now - job.started >= job.force_after:
                        exit_code = "0:9" if job.forced_state in ("TIMEOUT", "PREEMPTED", "NODE_FAIL") else "0:125"
                        self._end(job, job.forced_state, exit_code, message=True)
                    elif code is not None:
                        self._end(job, "COMPLETED" if code == 0 else "FAILED", f"{max(code, 0)}:{max(-code, 0)}")
                    elif now - job.started > job.time_limit:
                        self._end(job, "TIMEOUT", "0:15", message=True)

    def _monitor(self) -> None:
        while True:
            self.wakeup.wait(0.1)
            self.wakeup.clear()
            try:
                self._step()
            except Exception as exc:  # keep the scheduler alive; the facility log shows why
                print(f"sfapi stand-in: scheduler error: {exc!r}", file=sys.stderr)

    def shutdown(self) -> None:
        with self.lock:
            for job in self.jobs.values():
                if job.proc is not None and job.proc.poll() is None:
                    _kill_group(job.proc)

    # --- tokens
    def issue_token(self) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = time.time() + TOKEN_LIFETIME
        return token

    def token_valid(self, token: str) -> bool:
        with self.lock:
            return self.tokens.get(token, 0) > time.time()

    def now(self) -> float:
        """The stand-in's clock: real time, moved forward by a live ``clock`` fault (tests cross midnight)."""
        with self.facility.lock:
            offsets = [
                float(f.params.get("offset_seconds", 0))
                for f in self.facility.faults
                if f.service in ("sfapi", "*") and f.kind == "clock" and f.hits < f.times
            ]
        return time.time() + sum(offsets)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def register(app: FastAPI, state: FacilityState) -> None:
    """Add the SFAPI routes to the facility app."""
    slurm = Slurm(state)
    app.state.sfapi = slurm

    @app.post(f"{PREFIX}/oauth2/token")
    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Only client_credentials is supported"},
                status_code=400,
            )
        problem = _check_assertion(slurm, state, form, str(request.url))
        if problem:
            state.count("sfapi.auth_refused")
            return JSONResponse({"error": "invalid_client", "error_description": problem}, status_code=401)
        return JSONResponse(
            {
                "access_token": slurm.issue_token(),
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "scope": "color:blue",
            }
        )

    def authorized(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token_value = header.partition(" ")
        if scheme.lower() != "bearer" or not slurm.token_valid(token_value.strip()):
            raise _Unauthorized()

    router = APIRouter(prefix=API, dependencies=[Depends(authorized)])

    @router.get("/status/{machine}")
    def status(machine: str):
        if machine not in MACHINES:
            return _error(404, f"Resource {machine} not found")
        return {
            "name": machine,
            "full_name": machine.capitalize(),
            "description": "System is active",
            "system_type": "compute",
            "notes": [],
            "status": "active",
            "updated_at": dt.datetime.now().isoformat(),
        }

    @router.get("/account/")
    def account():
        return {"uid": USER_UID, "name": USER, "firstname": "ALS", "lastname": "Beamline 8.3.2"}

    @router.post("/compute/jobs/{machine}")
    def submit(machine: str, job: str = Form(...), isPath: str = Form("false")):
        if machine not in MACHINES:
            return _error(404, f"Resource {machine} not found")
        state.count("sfapi.submit")
        task_id = str(uuid.uuid4())
        if isPath.lower() == "true":
            result = {"status": "error", "error": "isPath=true is not supported by the local facility"}
        else:
            try:
                created = slurm.sbatch(job)
                result = {"status": "ok", "jobid": created.jobid}
            except ValueError as exc:
                result = {"status": "error", "error": f"sbatch: error: {exc}"}
        with slurm.lock:
            slurm.tasks[task_id] = {"id": task_id, "status": "completed", "result": json.dumps(result)}
        return {"task_id": task_id, "status": "OK", "error": None}

    @router.get("/tasks/{task_id}")
    def task(task_id: str):
        with slurm.lock:
            found = slurm.tasks.get(task_id)
        if found is None:
            return _error(404, f"Task {task_id} not found")
        return found

    @router.get("/compute/jobs/{machine}")
    def jobs(machine: str, request: Request):
        if machine not in MACHINES:
            return _error(404, f"Resource {machine} not found")
        sacct = request.query_params.get("sacct", "false").lower() == "true"
        filters: dict[str, str] = {}
        for item in request.query_params.getlist("kwargs"):
            key, _, value = item.partition("=")
            filters[key] = value
        jobids = set(filters["jobid"].split(",")) if filters.get("jobid") else None
        subject = f"{'sacct' if sacct else 'squeue'} {filters.get('jobid', '')}"
        fault = state.take_fault("sfapi", "query_error", subject)
        if fault is not None:
            state.count("fault.sfapi.query_error")
            return {"status": "ERROR", "output": [], "error": fault.message}
        if filters.get("user") and filters["user"] != USER:
            return {"status": "OK", "output": [], "error": None}
        now = slurm.now()
        try:
            start, end = sacct_window(filters, now)
        except ValueError as exc:
            return {"status": "ERROR", "output": [], "error": f"sacct: error: {exc}"}
        with slurm.lock:
            selected = [j for j in slurm.jobs.values() if jobids is None or j.jobid in jobids]
            if sacct:  # pending or running at some moment of the window
                selected = [j for j in selected if (j.ended or now) >= start and j.submitted <= end]
            if filters.get("name"):
                selected = [j for j in selected if j.name == filters["name"]]
            rows = [j.sacct_row() if sacct else j.squeue_row() for j in selected if sacct or j.state in ACTIVE_STATES]
        return {"status": "OK", "output": rows, "error": None}

    @router.delete("/compute/jobs/{machine}/{jobid}")
    def cancel(machine: str, jobid: str):
        if machine not in MACHINES:
            return _error(404, f"Resource {machine} not found")
        state.count("sfapi.cancel")
        if not slurm.scancel(jobid):
            return {"status": "ERROR", "output": None, "error": f"scancel: error: Invalid job id {jobid}"}
        return {"status": "OK", "output": "", "error": None}

    @router.get("/utilities/ls/{machine}/{path:path}")
    def ls(machine: str, path: str):
        target, problem = _facility_path(state, path)
        if problem:
            return {"status": "ERROR", "entries": [], "error": problem}
        if target.is_dir():
            names = [".", "..", *sorted(p.name for p in target.iterdir())]
            entries = [_entry(target / n if n not in (".", "..") else target, n) for n in names]
        else:
            entries = [_entry(target, "/" + path.lstrip("/"))]
        return {"status": "OK", "entries": entries, "error": None}

    @router.get("/utilities/download/{machine}/{path:path}")
    def download(machine: str, path: str, binary: bool = False):
        target, problem = _facility_path(state, path)
        if problem:
            return {"status": "ERROR", "file": None, "is_binary": binary, "error": problem}
        if target.is_dir():
            return {"status": "ERROR", "file": None, "is_binary": binary, "error": f"{path} is a directory"}
        if target.stat().st_size > MAX_DOWNLOAD_BYTES:
            return {
                "status": "ERROR",
                "file": None,
                "is_binary": binary,
                "error": f"{path} is larger than {MAX_DOWNLOAD_BYTES} bytes",
            }
        data = target.read_bytes()
        if binary:
            import base64

            return {"status": "OK", "file": base64.b64encode(data).decode(), "is_binary": True, "error": None}
        return {"status": "OK", "file": data.decode(errors="replace"), "is_binary": False, "error": None}

    app.include_router(router)

    @app.exception_handler(_Unauthorized)
    async def unauthorized(request: Request, exc: _Unauthorized) -> JSONResponse:
        state.count("sfapi.unauthorized")
        return _error(401, "Not authenticated")


class _Unauthorized(Exception):
    """A request without a valid bearer token."""


def _check_assertion(slurm: Slurm, state: FacilityState, form, url: str) -> str | None:
    """Why a token request's client assertion is refused, or None if it is good."""
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import RSAKey

    if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
        return "Client authentication requires a private_key_jwt client assertion"
    try:
        token = jwt.decode(form["client_assertion"], RSAKey.import_key(LOCAL_SFAPI_PUBLIC_KEY), algorithms=["RS256"])
    except (JoseError, ValueError):
        return "Invalid client assertion: bad signature or unknown key"
    claims = token.claims
    if claims.get("iss") != state.client_id or claims.get("sub") != state.client_id:
        return f"Unknown client {claims.get('iss')!r}"
    if form.get("client_id") not in (None, state.client_id):
        return "client_id does not match the client assertion"
    if not str(claims.get("aud", "")).split("?")[0].endswith(f"{PREFIX}/oauth2/token"):
        return "Invalid client assertion audience"
    if float(claims.get("exp", 0)) < time.time():
        return "Client assertion expired"
    jti = str(claims.get("jti", ""))
    with slurm.lock:
        if not jti or jti in slurm.used_assertions:
            return "Client assertion replayed"
        slurm.used_assertions.add(jti)
    return None


def _facility_path(state: FacilityState, path: str) -> tuple[Path, str | None]:
    """Resolve an absolute path the way a job sees it, refusing anything outside the facility root."""
    target = Path("/" + path.lstrip("/")).resolve()
    if target != state.root and state.root not in target.parents:
        return target, f"ls: cannot access '{path}': Permission denied"
    if not target.exists():
        return target, f"ls: cannot access '{path}': No such file or directory"
    return target, None


def _entry(path: Path, name: str) -> dict:
    st = path.stat()
    perms = ("d" if path.is_dir() else "-") + "rw-r-----"
    return {
        "perms": perms,
        "hardlinks": st.st_nlink,
        "user": USER,
        "group": "als",
        "size": float(st.st_size),
        "date": dt.datetime.fromtimestamp(st.st_mtime).strftime("%Y-%m-%dT%H:%M:%S"),
        "name": name,
    }
