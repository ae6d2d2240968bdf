"""Sensor that waits for an existing Slurm job (by id) to end, through SFAPI."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException

if TYPE_CHECKING:
    from airflow.sdk import Context


class SFAPIJobSensor(BaseSensorOperator):
    """Wait for Slurm job ``job_id`` to end: COMPLETED succeeds, any other end fails with the state named.

    Deferrable by default (the wait runs in the triggerer through ``SFAPIJobTrigger``); the job is watched,
    never cancelled by this task.

    :param job_id: the Slurm job id (templated).
    :param machine: SFAPI machine.
    :param error_log: path of the job's error log on the machine, quoted on failure (templated).
    :param sfapi_conn_id: SFAPI connection.
    :param deferrable: wait in the triggerer.
    """

    template_fields: Sequence[str] = ("job_id", "error_log")

    def __init__(
        self,
        *,
        job_id: str,
        machine: str = "perlmutter",
        error_log: str | None = None,
        sfapi_conn_id: str = "sfapi_default",
        deferrable: bool = True,
        tail_lines: int = 40,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 30.0)
        kwargs.setdefault("timeout", timedelta(hours=6))
        super().__init__(**kwargs)
        self.job_id, self.machine, self.error_log, self.tail_lines = job_id, machine, error_log, tail_lines
        self.sfapi_conn_id, self.deferrable = sfapi_conn_id, deferrable

    def _hook(self):
        from als_provider.hooks.sfapi import SFAPIHook

        return SFAPIHook(sfapi_conn_id=self.sfapi_conn_id)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from als_provider.triggers.sfapi import SFAPIJobTrigger

        self.defer(
            trigger=SFAPIJobTrigger(
                job_id=str(self.job_id),
                machine=self.machine,
                sfapi_conn_id=self.sfapi_conn_id,
                poll_interval=self.poke_interval,
                error_log=self.error_log,
                tail_lines=self.tail_lines,
                cancel_on_kill=False,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def poke(self, context: Context) -> bool:
        from als_provider.hooks.sfapi import SUCCESS_STATE

        job = self._hook().job_state(self.machine, str(self.job_id))
        if not job.terminal:
            return False
        if job.state != SUCCESS_STATE:
            self._fail(job.state, None)
        return True

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "success":
            self._fail(event.get("state", "UNKNOWN"), event.get("log_tail"), event.get("message"))
        return {"job_id": str(self.job_id), "machine": self.machine, "state": event["state"]}

    def _fail(self, state: str, tail: str | None, message: str | None = None) -> None:
        if tail is None and self.error_log:
            tail = self._hook().tail(self.machine, self.error_log, self.tail_lines)
        text = message or f"job {self.job_id} ended {state}"
        if tail:
            text += f"\n--- last lines of {self.error_log} ---\n{tail}"
        raise AirflowException(f"Slurm {text} [state {state}]")
