"""DAGs the SFAPI operator/sensor tests run with dag.test() (tests/plugins/test_sfapi_operator.py)."""

from __future__ import annotations

import time
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from als_provider.operators.sfapi import EXIT_DATA_ERROR, SFAPIJobOperator
from als_provider.sensors.sfapi import SFAPIJobSensor
from tests.dags.dag_helpers import SimulatedWorkerCrash, crash_after

FORCED_STATES = ("OUT_OF_MEMORY", "PREEMPTED", "NODE_FAIL", "CANCELLED", "FAILED")
SLEEP = ["sleep", "30"]


class CrashAfterSubmit(SFAPIJobOperator):
    """First try dies after the job id is stored, before the wait starts."""

    def defer(self, *args, **kwargs):
        if self._first_try:
            raise SimulatedWorkerCrash("worker died after submitting and storing the job id")
        return super().defer(*args, **kwargs)

    def execute(self, context):
        self._first_try = context["ti"].try_number == 1
        return super().execute(context)


class CrashAfterTheJob(CrashAfterSubmit):
    """First try dies once its job COMPLETED, before it could report: the retry takes the result."""

    def defer(self, *args, **kwargs):
        if self._first_try:
            trigger, deadline = kwargs["trigger"], time.monotonic() + 30
            while self.hook.job_state(trigger.machine, trigger.job_id).state != "COMPLETED":
                assert time.monotonic() < deadline, "the job did not complete"
                time.sleep(0.2)
        return super().defer(*args, **kwargs)


class LoseSubmitResponse(SFAPIJobOperator):
    """First try's submission reaches SFAPI but the worker dies before it can store the job id."""

    def get_hook(self):
        return crash_after(super().get_hook(), "submit_job", "worker died before storing the job id")


class FinishThenDie(SFAPIJobOperator):
    """First try's job is submitted and runs to COMPLETED, but the worker died before storing its id."""

    def get_hook(self):
        hook = super().get_hook()

        def once_it_completed(job_id, machine, script):
            deadline = time.monotonic() + 30
            while hook.job_state(machine, job_id).state != "COMPLETED":
                assert time.monotonic() < deadline, "the job did not complete"
                time.sleep(0.2)
            return "worker died before storing the job id; the job has finished since"

        return crash_after(hook, "submit_job", once_it_completed)


def job_dag(name: str, command: list[str], operator_cls=SFAPIJobOperator, retries: int = 0, **kwargs) -> DAG:
    with DAG(
        dag_id=f"test_sfapi_{name.lower()}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        default_args={"retries": retries, "retry_delay": timedelta(seconds=0)},
        tags=["test"],
    ) as dag:
        operator_cls(
            task_id="job",
            template="command.sh.j2",
            values={"command": command},
            job_name=f"test_{name}",
            poll_interval=0.3,
            **kwargs,
        )
    return dag


@task
def submit_outside(command: list[str]) -> str:
    """Submit a job the way another system would (the sensor only watches it)."""
    from als_provider.hooks.sfapi import SFAPIHook

    script = "#!/bin/bash\n#SBATCH --job-name=test_sensor\n" + " ".join(command) + "\n"
    return SFAPIHook().submit_job("perlmutter", script)


def sensor_dag(name: str, command: list[str]) -> DAG:
    with DAG(
        dag_id=f"test_sfapi_sensor_{name}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        default_args={"retries": 0},
        tags=["test"],
    ) as dag:
        job_id = submit_outside(command)
        job_id >> SFAPIJobSensor(task_id="wait", job_id=job_id, poke_interval=0.3)
    return dag


DAGS = {
    "ok": job_dag("ok", ["bash", "-c", "echo hello; echo to-stderr >&2"]),
    "exit3": job_dag("exit3", ["bash", "-c", "echo 'reconstruction blew up' >&2; exit 3"]),
    "timeout": job_dag("timeout", SLEEP, directives={"time": "0:00:02"}),
    **{f"state_{s}": job_dag(f"state_{s}", SLEEP) for s in FORCED_STATES},
    "crash": job_dag("crash", ["sleep", "2"], CrashAfterSubmit, retries=1),
    "lost": job_dag("lost", ["sleep", "2"], LoseSubmitResponse, retries=1),
    "crash_done": job_dag("crash_done", ["true"], CrashAfterTheJob, retries=1),
    "retry_failed": job_dag("retry_failed", ["bash", "-c", "exit 1"], retries=1),
    "lost_answer": job_dag("lost_answer", ["true"]),
    "crash_query_error": job_dag("crash_query_error", ["sleep", "2"], CrashAfterSubmit, retries=3),
    "lost_done": job_dag("lost_done", ["true"], FinishThenDie, retries=1),
    "data_error": job_dag(
        "data_error",
        ["bash", "-c", "echo 'reconstruct: rows: 5 is not A:B' >&2; exit 2"],
        retries=2,
        data_error_exit_status=EXIT_DATA_ERROR,
    ),
    "exit1_retried": job_dag("crash_exit1", ["bash", "-c", "echo 'Traceback: boom' >&2; exit 1"], retries=1),
    "sync_ok": job_dag("sync_ok", ["true"], deferrable=False),
    "sensor_ok": sensor_dag("ok", ["sleep", "1"]),
    "sensor_fail": sensor_dag("fail", ["exit", "4"]),
}
globals().update({f"dag_{name}": dag for name, dag in DAGS.items()})
