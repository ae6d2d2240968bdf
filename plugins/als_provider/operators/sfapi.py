"""Operator that runs one Slurm batch job at NERSC through SFAPI and waits for it (deferred)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

if TYPE_CHECKING:
    from airflow.sdk import Context

    from als_provider.hooks.sfapi import SFAPIHook

#: task_state_store key holding the submitted job across tries (renaming it breaks in-flight retries).
STATE_KEY = "sfapi_job"


class SFAPIJobOperator(BaseOperator):
    """Render a Slurm script from a template in include/jobs/, submit it through SFAPI and wait for the job.

    The ``#SBATCH`` header is the profile's defaults from include/config/nersc.yaml (SPEC §3: realtime
    qos, account als, 1 exclusive CPU node, 15 min, logs ``<logs>/%x_%j.{out,err}``), then ``directives``
    of this task, then ``--job-name`` and a ``--comment`` that identifies this task instance. ``values``
    reach the script shell-quoted (include/slurm.py).

    The job id goes to XCom (key ``job_id``) and to the task state store as soon as the job exists; a new
    try re-attaches to that job while it is queued, running or COMPLETED, and submits afresh only if it
    ended in failure. If a try died between submitting and storing the id, the next try finds the job by
    its name and comment among the user's queued jobs. COMPLETED succeeds; any other end fails the task
    with the state and the tail of the job's error log. Killing the task cancels the job.

    :param template: job template: a file name in include/jobs/ or an absolute path to one.
    :param values: template values (templated); each is shell-quoted where the template prints it.
    :param job_name: Slurm job name (templated); unsafe characters become ``_`` (include.slurm.job_name).
    :param directives: ``#SBATCH`` overrides for this task (``True`` = flag, ``None``/``False`` = drop).
    :param machine: SFAPI machine (default from config: perlmutter).
    :param sfapi_conn_id: SFAPI connection.
    :param deferrable: wait in the triggerer (default) or poll in the worker.
    :param poll_interval: seconds between job state polls.
    :param wait_timeout: longest wait for the job to end (queue time included), then the task fails.
    :param tail_lines: lines of the error log quoted in a failure.
    :return: ``{"job_id", "job_name", "machine", "state", "output_log", "error_log"}``
    """

    template_fields: Sequence[str] = ("template", "values", "job_name", "directives")
    template_fields_renderers = {"values": "json", "directives": "json"}
    ui_color = "#d5e8f7"

    def __init__(
        self,
        *,
        template: str,
        values: Mapping[str, Any] | Any,
        job_name: str,
        directives: Mapping[str, Any] | None = None,
        machine: str | None = None,
        sfapi_conn_id: str = "sfapi_default",
        deferrable: bool = True,
        poll_interval: float = 30.0,
        wait_timeout: timedelta | None = timedelta(hours=6),
        tail_lines: int = 40,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.template = template
        self.values = values
        self.job_name = job_name
        self.directives = directives
        self.machine = machine
        self.sfapi_conn_id = sfapi_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.tail_lines = tail_lines
        self._job: dict[str, Any] | None = None

    # --- building the job
    def _hook(self) -> SFAPIHook:
        from als_provider.hooks.sfapi import SFAPIHook

        return SFAPIHook(sfapi_conn_id=self.sfapi_conn_id)

    @staticmethod
    def task_marker(context: Context) -> str:
        """A ``--comment`` naming this task instance (dag, run, task, map index), stable across tries."""
        ti = context["ti"]
        key = "\x1f".join([ti.dag_id, ti.run_id, ti.task_id, str(getattr(ti, "map_index", -1))])
        return "airflow-" + hashlib.sha256(key.encode()).hexdigest()[:24]

    def _plan(self, context: Context) -> dict[str, Any]:
        """Machine, job name, directives and log paths of this task's job (no network)."""
        from include.slurm import job_name, load_nersc_config

        config = load_nersc_config()
        name = job_name(str(self.job_name))
        directives: dict[str, Any] = {**config.directives, **config.log_patterns(), **dict(self.directives or {})}
        directives["job-name"] = name
        directives["comment"] = self.task_marker(context)
        return {"config": config, "machine": self.machine or config.machine, "name": name, "directives": directives}

    def render(self, context: Context) -> tuple[dict[str, Any], str]:
        """The plan and the script text this task submits."""
        from include.slurm import render_script

        if not isinstance(self.values, Mapping):
            raise AirflowException(f"values must be a mapping, got {type(self.values).__name__}")
        plan = self._plan(context)
        config = plan["config"]
        values = {"launcher": config.launcher(), "python": config.python, **dict(self.values)}
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

    # --- running
    def execute(self, context: Context) -> dict[str, Any]:
        plan, script = self.render(context)
        hook = self._hook()
        store = context.get("task_state_store")
        if store is None:
            self.log.warning("No task state store: a retry of this task cannot re-attach to its job")
        job, state = self._reattach(context, hook, plan, store)
        if job is None:
            self.log.info("Submitting job %s to %s:\n%s", plan["name"], plan["machine"], script)
            job_id = hook.submit_job(plan["machine"], script)
            job = self._record(plan, job_id)
            if store is not None:
                store.set(STATE_KEY, job)
        self._job = job
        context["ti"].xcom_push(key="job_id", value=job["job_id"])
        self.log.info(
            "Slurm job %s (%s) on %s; error log %s", job["job_id"], job["job_name"], job["machine"], job["error_log"]
        )
        if state == "COMPLETED":
            return self._result(job, state)
        if self.deferrable:
            from als_provider.triggers.sfapi import SFAPIJobTrigger

            self.defer(
                trigger=SFAPIJobTrigger(
                    job_id=job["job_id"],
                    machine=job["machine"],
                    sfapi_conn_id=self.sfapi_conn_id,
                    poll_interval=self.poll_interval,
                    error_log=job["error_log"],
                    job_name=job["job_name"],
                    tail_lines=self.tail_lines,
                ),
                method_name="execute_complete",
                timeout=self.wait_timeout,
            )
        return self._poll(context, hook, job)

    def _reattach(
        self, context: Context, hook: SFAPIHook, plan: dict[str, Any], store: Any
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The job an earlier try of this task instance submitted, if it is still worth waiting for."""
        from als_provider.hooks.sfapi import FAILURE_STATES, SFAPIJobNotFound

        prior = store.get(STATE_KEY) if store is not None else None
        if isinstance(prior, dict) and prior.get("job_id"):
            try:
                state = hook.job_state(prior["machine"], prior["job_id"]).state
            except SFAPIJobNotFound:
                state = "UNKNOWN"
            if state not in FAILURE_STATES and state != "UNKNOWN":
                self.log.info(
                    "Re-attaching to job %s (%s) from an earlier try: %s", prior["job_id"], prior["job_name"], state
                )
                return prior, state
            self.log.warning("The earlier try's job %s ended %s; submitting a new one", prior["job_id"], state)
            return None, None
        if context["ti"].try_number > 1:
            found = hook.find_active_job(plan["machine"], plan["name"], plan["directives"]["comment"])
            if found is not None:
                self.log.info("Found job %s (%s) submitted by an earlier try; re-attaching", found.jobid, found.name)
                job = self._record(plan, found.jobid)
                if store is not None:
                    store.set(STATE_KEY, job)
                return job, found.state
        return None, None

    def _poll(self, context: Context, hook: SFAPIHook, job: dict[str, Any]) -> dict[str, Any]:
        """Wait in the worker (non-deferrable mode)."""
        deadline = time.monotonic() + self.wait_timeout.total_seconds() if self.wait_timeout else None
        while True:
            state = hook.job_state(job["machine"], job["job_id"])
            if state.terminal:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise AirflowException(
                    f"job {job['job_id']} ({job['job_name']}) still {state.state} after "
                    f"{self.wait_timeout}; it keeps running at NERSC"
                )
            time.sleep(self.poll_interval)
        tail = None if state.state == "COMPLETED" else hook.tail(job["machine"], job["error_log"], self.tail_lines)
        return self.execute_complete(
            context,
            {
                "status": "success" if state.state == "COMPLETED" else "error",
                "state": state.state,
                "log_tail": tail,
                "message": f"job {job['job_id']} ({job['job_name']}) ended {state.state}",
            },
            job=job,
        )

    def execute_complete(self, context: Context, event: dict[str, Any], job: dict[str, Any] | None = None):
        """Succeed on COMPLETED; otherwise fail with the state and the error log's tail."""
        if job is None:  # resumed from the trigger: the job is the event's (the plan has no network calls)
            job = self._record(self._plan(context), event["job_id"]) if event.get("job_id") else {}
        self._job = None
        if event.get("status") != "success":
            message = event.get("message") or f"job {job.get('job_id')} ended {event.get('state')}"
            tail = event.get("log_tail")
            if tail:
                message += f"\n--- last lines of {job.get('error_log')} ---\n{tail}"
            raise AirflowException(f"Slurm {message} [state {event.get('state')}]")
        return self._result(job, event.get("state", "COMPLETED"))

    @staticmethod
    def _result(job: dict[str, Any], state: str) -> dict[str, Any]:
        return {**job, "state": state}

    def on_kill(self) -> None:
        """Cancel the job this worker is waiting for (a deferred task is cancelled by its trigger)."""
        if self._job:
            self._hook().cancel_job(self._job["machine"], self._job["job_id"])
