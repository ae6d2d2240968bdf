"""Operator that runs one Slurm batch job at NERSC through SFAPI and waits for it (deferred)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from als_provider.export_control import refuse_export_controlled
from als_provider.hooks.sfapi import FAILURE_STATES, SUCCESS_STATE, SFAPIHook, SFAPIJobNotFound, exit_status
from als_provider.operators.base import GONE, LIVE, SUCCEEDED, RemoteWorkOperator, task_key
from als_provider.triggers.sfapi import SFAPIJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

#: task_state_store key holding the submitted job across tries (renaming it breaks in-flight retries).
STATE_KEY = "sfapi_job"
#: The exit status of ``python -m compute_functions.reconstruct`` on a data error (compute_functions.errors).
EXIT_DATA_ERROR = 2


class SFAPIJobOperator(RemoteWorkOperator):
    """Render a Slurm script from a template in include/jobs/, submit it through SFAPI and wait for the job.

    The ``#SBATCH`` header is the profile's defaults from include/config/nersc.yaml (SPEC §3: realtime
    qos, account als, 1 exclusive CPU node, 15 min, logs ``<logs>/%x_%j.{out,err}``), then ``directives``
    of this task, then ``--job-name`` and a ``--comment`` that identifies this task instance. ``values``
    reach the script shell-quoted (include/slurm.py).

    The job id goes to XCom (key ``job_id``) and to the task state store as soon as the job exists; a new
    try re-attaches to that job while it is queued, running or COMPLETED, and submits afresh only if it
    ended in failure. The job is submitted with one POST (SFAPI has no de-duplication key, so the SDK's resends
    are off): if its answer is lost, or a try died between submitting and storing the id, the job is found by
    its name and comment among the user's queued, running and finished (sacct) jobs before anything is
    submitted again; extra copies are cancelled and logged. The comment names the task instance and its run
    (a Clear starts a new one). COMPLETED succeeds; a job that FAILED with ``data_error_exit_status`` (a data
    error: bad scan or option) fails the task at once, without retries, with the program's one-line reason;
    any other end fails the task with the state and the tail of the job's error log. Killing the task cancels
    the job.

    :param template: job template: a file name in include/jobs/ or an absolute path to one.
    :param values: template values (templated); each is shell-quoted where the template prints it. Every
        template also gets ``launcher`` (``srun`` and the container call, or nothing locally), ``container``
        (the container call alone, after a job's own ``srun`` options), ``python`` and ``run_key`` (the
        comment: one key per task instance and run, for ``compute_functions.results_manifest.run_once``).
    :param job_name: Slurm job name (templated); unsafe characters become ``_`` (include.slurm.job_name).
    :param directives: ``#SBATCH`` overrides for this task (``True`` = flag, ``None``/``False`` = drop).
    :param machine: SFAPI machine (default from config: perlmutter).
    :param sfapi_conn_id: SFAPI connection.
    :param deferrable: wait in the triggerer (default) or poll in the worker.
    :param poll_interval: seconds between job state polls.
    :param wait_timeout: longest wait for the job to end (queue time included), then the task fails.
    :param tail_lines: lines of the error log quoted in a failure.
    :param data_error_exit_status: the script's exit status that means a data error (retrying cannot help),
        e.g. :data:`EXIT_DATA_ERROR` for a script ending in ``python -m compute_functions.reconstruct``;
        ``None`` (default): every failure may be retried.
    :return: ``{"job_id", "job_name", "machine", "state", "output_log", "error_log"}``
    """

    template_fields: Sequence[str] = ("template", "values", "job_name", "directives")
    template_fields_renderers = {"values": "json", "directives": "json"}
    ui_color = "#d5e8f7"
    hook_class = SFAPIHook
    state_key = STATE_KEY
    id_key = "job_id"

    def __init__(
        self,
        *,
        template: str,
        values: Mapping[str, Any] | Any,
        job_name: str,
        directives: Mapping[str, Any] | None = None,
        machine: str | None = None,
        sfapi_conn_id: str = SFAPIHook.default_conn_name,
        poll_interval: float = 30.0,
        wait_timeout: timedelta | None = timedelta(hours=6),
        tail_lines: int = 40,
        data_error_exit_status: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=sfapi_conn_id, poll_interval=poll_interval, wait_timeout=wait_timeout, **kwargs)
        self.template, self.values, self.job_name = template, values, job_name
        self.directives, self.machine, self.tail_lines = directives, machine, tail_lines
        self.data_error_exit_status = data_error_exit_status

    # --- building the job

    def _plan(self, context: Context) -> dict[str, Any]:
        """Machine, job name, directives and log paths of this task's job (no network)."""
        from include.slurm import job_name, load_nersc_config

        config = load_nersc_config()
        name = job_name(str(self.job_name))
        directives: dict[str, Any] = {**config.directives, **config.log_patterns(), **dict(self.directives or {})}
        directives["job-name"] = name
        directives["comment"] = task_key(context)
        return {"config": config, "machine": self.machine or config.machine, "name": name, "directives": directives}

    def render(self, context: Context) -> tuple[dict[str, Any], str]:
        """The plan and the script text this task submits."""
        from include.slurm import render_script

        if not isinstance(self.values, Mapping):
            raise AirflowException(f"values must be a mapping, got {type(self.values).__name__}")
        plan = self._plan(context)
        config = plan["config"]
        values = {
            "launcher": config.launcher(),
            "container": config.container(),
            "python": config.python,
            "run_key": plan["directives"]["comment"],  # the same across retries, new after a Clear
            **dict(self.values),
        }
        try:
            script = render_script(self.template, directives=plan["directives"], values=values)
        except ValueError as exc:
            raise AirflowException(f"cannot render job template {self.template!r}: {exc}") from None
        return plan, script

    def _record(self, plan: dict[str, Any], job_id: str) -> dict[str, Any]:
        from include.slurm import expand_log_pattern

        d = plan["directives"]
        return {
            "job_id": str(job_id),
            "job_name": plan["name"],
            "machine": plan["machine"],
            "output_log": expand_log_pattern(str(d["output"]), plan["name"], job_id) if d.get("output") else None,
            "error_log": expand_log_pattern(str(d["error"]), plan["name"], job_id) if d.get("error") else None,
        }

    # --- the core's service calls
    def prepare(self, context: Context) -> None:
        refuse_export_controlled(context, self.task_id, self.values)  # NERSC is off-site (issue 26)
        self._job_plan, self._script = self.render(context)

    def describe(self, state: dict[str, Any]) -> str:
        return f"job {state.get('job_id')} ({state.get('job_name')})"

    def status_of(self, state: dict[str, Any]) -> str:
        try:
            slurm_state = self.hook.job_state(state["machine"], state["job_id"]).state
        except SFAPIJobNotFound:
            slurm_state = "UNKNOWN"
        self.log.info("Job %s of an earlier try is %s", state["job_id"], slurm_state)
        if slurm_state in FAILURE_STATES or slurm_state == "UNKNOWN":
            return GONE
        return SUCCEEDED if slurm_state == SUCCESS_STATE else LIVE

    def find_lost(self, context: Context) -> dict[str, Any] | None:
        """The job with this task's name and comment, queued, running or finished (its id was never stored).

        A job that ended in failure does not count. Of several others the oldest is kept and the rest,
        duplicates of one submission, are cancelled and logged.
        """
        plan = self._job_plan
        since = self._load_state(context).get("submitting_at")  # sacct's window covers the task's submissions
        jobs = self.hook.find_jobs(plan["machine"], plan["name"], plan["directives"]["comment"], since=since)
        usable = [job for job in jobs if job.state not in FAILURE_STATES]
        if not usable:
            return None
        kept, *extra = usable
        for job in extra:
            self.log.warning(
                "Duplicate Slurm job %s (%s) of this task's submission next to job %s: cancelling it",
                job.jobid,
                job.state,
                kept.jobid,
            )
            if not job.terminal:
                self.hook.cancel_job(plan["machine"], job.jobid)
        return self._record(plan, kept.jobid)

    def submit(self, context: Context, state: dict[str, Any]) -> dict[str, Any]:
        plan = self._job_plan
        self.log.info("Submitting job %s to %s:\n%s", plan["name"], plan["machine"], self._script)
        # a retry then looks for the job first, in a window from the first submission on (sacct's default
        # window starts at midnight)
        self._save_state(context, {"submitting_at": state.get("submitting_at") or time.time()})
        try:
            return self._record(plan, self.hook.submit_job(plan["machine"], self._script))
        except AirflowException as exc:
            found = self._find_after_lost_answer(context)
            if found is None:
                raise
            self.log.warning("The submission failed (%s), but SFAPI has its job: %s", exc, self.describe(found))
            return found

    def _find_after_lost_answer(self, context: Context) -> dict[str, Any] | None:
        """The job a failed submission may have created anyway (its answer lost); ``None`` if none shows."""
        try:
            return self.find_lost(context)
        except AirflowException as exc:
            self.log.warning("Cannot look for the job of the failed submission (%s); a retry looks again", exc)
            return None

    def attached(self, context: Context, state: dict[str, Any]) -> None:
        context["ti"].xcom_push(key="job_id", value=state["job_id"])
        self.log.info(
            "Slurm job %s (%s) on %s; error log %s",
            state["job_id"],
            state["job_name"],
            state["machine"],
            state["error_log"],
        )

    def make_trigger(self, state: dict[str, Any]) -> SFAPIJobTrigger:
        return SFAPIJobTrigger(
            state["job_id"],
            state["machine"],
            error_log=state["error_log"],
            job_name=state["job_name"],
            tail_lines=self.tail_lines,
            sfapi_conn_id=self.conn_id,
            poll_interval=self.poll_interval,
            deadline=None if self.wait_timeout is None else time.time() + self.wait_timeout.total_seconds(),
        )

    def result(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """The job's record (rebuilt from the plan: no network) and its final state."""
        job = self._record(self._plan(context), event["job_id"]) if event.get("job_id") else {}
        return {**job, "state": event.get("state", SUCCESS_STATE)}

    def failure(self, event: dict[str, Any]) -> Exception:
        """The state and the tail of the job's error log; a data error fails without retries."""
        data_error = self.data_error_exit_status is not None and event.get("state") == "FAILED"
        if data_error and exit_status(event.get("exit_code")) == self.data_error_exit_status:
            return AirflowFailException(f"Slurm job {event.get('job_id')}: {data_error_line(event.get('log_tail'))}")
        message = event.get("message") or f"job {event.get('job_id')} ended {event.get('state')}"
        if event.get("log_tail"):
            message += f"\n--- last lines of {event.get('error_log')} ---\n{event['log_tail']}"
        return AirflowException(f"Slurm {message} [state {event.get('state')}]")

    def cancel(self, state: dict[str, Any]) -> None:
        self.hook.cancel_job(state["machine"], state["job_id"])


def data_error_line(log_tail: str | None) -> str:
    """The program's one-line reason from a job's error log: its last ``<program>: <reason>`` line."""
    lines = [line.strip() for line in (log_tail or "").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("reconstruct:", "multiscale:", "param_line:")):
            return line
    return lines[-1] if lines else "data error (exit status 2; the error log is empty)"
