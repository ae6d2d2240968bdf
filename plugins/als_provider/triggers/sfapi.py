"""Trigger that waits for a Slurm job submitted through SFAPI to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from als_provider.hooks.sfapi import DEFAULT_MACHINE, SUCCESS_STATE, SFAPIJobNotFound


class SFAPIJobTrigger(BaseTrigger):
    """Poll a Slurm job (squeue, then sacct) until it reaches a terminal state.

    Yields one event: ``{"status": "success"|"error", "job_id", "job_name", "state", "message", "log_tail"}``.
    ``status`` is ``success`` only for COMPLETED; for any other end (or when SFAPI keeps failing
    ``max_poll_errors`` polls in a row, or never finds the job) the event carries the reason and, when
    ``error_log`` is known, the tail of the job's error log.

    :param job_id: Slurm job id.
    :param machine: SFAPI machine name.
    :param sfapi_conn_id: connection of the SFAPI client.
    :param poll_interval: seconds between polls.
    :param error_log: path of the job's ``--error`` file on the machine, for the tail on failure.
    :param job_name: for messages.
    :param tail_lines: how many lines of the error log a failure carries.
    :param max_poll_errors: consecutive failed polls (SFAPI errors, job not found) before giving up.
    :param cancel_on_kill: cancel the job when a user kills the deferred task.
    """

    def __init__(
        self,
        job_id: str,
        machine: str = DEFAULT_MACHINE,
        sfapi_conn_id: str = "sfapi_default",
        poll_interval: float = 30.0,
        error_log: str | None = None,
        job_name: str | None = None,
        tail_lines: int = 40,
        max_poll_errors: int = 10,
        cancel_on_kill: bool = True,
    ) -> None:
        super().__init__()
        self.job_id = str(job_id)
        self.machine = machine
        self.sfapi_conn_id = sfapi_conn_id
        self.poll_interval = float(poll_interval)
        self.error_log = error_log
        self.job_name = job_name
        self.tail_lines = int(tail_lines)
        self.max_poll_errors = int(max_poll_errors)
        self.cancel_on_kill = bool(cancel_on_kill)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "machine": self.machine,
                "sfapi_conn_id": self.sfapi_conn_id,
                "poll_interval": self.poll_interval,
                "error_log": self.error_log,
                "job_name": self.job_name,
                "tail_lines": self.tail_lines,
                "max_poll_errors": self.max_poll_errors,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    def _hook(self):
        from als_provider.hooks.sfapi import SFAPIHook

        return SFAPIHook(sfapi_conn_id=self.sfapi_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        errors = 0
        last_state = None
        label = f"job {self.job_id}" + (f" ({self.job_name})" if self.job_name else "")
        try:
            while True:
                try:
                    job = await asyncio.to_thread(hook.job_state, self.machine, self.job_id)
                    errors = 0
                except Exception as exc:  # the hook's AirflowException; keep polling a few times
                    errors += 1
                    self.log.warning("Polling %s failed (%d/%d): %s", label, errors, self.max_poll_errors, exc)
                    if errors >= self.max_poll_errors:
                        why = "never found" if isinstance(exc, SFAPIJobNotFound) else "could not be polled"
                        yield TriggerEvent(self._event("error", "UNKNOWN", f"{label} {why}: {exc}", None))
                        return
                    await asyncio.sleep(self.poll_interval)
                    continue
                if job.state != last_state:
                    self.log.info("%s on %s is %s", label, self.machine, job.state)
                    last_state = job.state
                if job.terminal:
                    if job.state == SUCCESS_STATE:
                        yield TriggerEvent(self._event("success", job.state, f"{label} COMPLETED", None))
                    else:
                        tail = None
                        if self.error_log:
                            tail = await asyncio.to_thread(hook.tail, self.machine, self.error_log, self.tail_lines)
                        yield TriggerEvent(self._event("error", job.state, f"{label} ended {job.state}", tail))
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            await asyncio.to_thread(hook.close)

    async def on_kill(self) -> None:
        """The user killed the deferred task: cancel the Slurm job too."""
        if self.cancel_on_kill:
            hook = self._hook()
            try:
                await asyncio.to_thread(hook.cancel_job, self.machine, self.job_id)
            finally:
                await asyncio.to_thread(hook.close)

    def _event(self, status: str, state: str, message: str, tail: str | None) -> dict[str, Any]:
        return {
            "status": status,
            "job_id": self.job_id,
            "job_name": self.job_name,
            "machine": self.machine,
            "state": state,
            "message": message,
            "log_tail": tail,
        }
