"""Trigger that waits for a Slurm job submitted through SFAPI to end."""

from __future__ import annotations

import asyncio
from typing import Any

from als_provider.hooks.sfapi import DEFAULT_MACHINE, SUCCESS_STATE, SFAPIHook, SFAPIJobNotFound
from als_provider.triggers.base import PollingTrigger


class SFAPIJobTrigger(PollingTrigger):
    """Poll a Slurm job (squeue, then sacct) until it reaches a terminal state.

    Yields one event: ``{"status": "success"|"error"|"timeout", "job_id", "job_name", "machine", "state",
    "exit_code", "message", "log_tail", "error_log"}``. ``status`` is ``success`` only for COMPLETED; for any
    other end (or when SFAPI keeps failing ``max_poll_errors`` polls in a row, or never finds the job, or
    ``deadline`` passes: the job then keeps running) the event carries the reason and, when ``error_log`` is
    known, the tail of the job's error log.

    :param job_id: Slurm job id.
    :param machine: SFAPI machine name.
    :param sfapi_conn_id: connection of the SFAPI client.
    :param poll_interval: seconds between polls.
    :param deadline: epoch seconds after which the wait ends (``None``: no end).
    :param error_log: path of the job's ``--error`` file on the machine, for the tail on failure.
    :param job_name: for messages.
    :param tail_lines: how many lines of the error log a failure carries.
    :param max_poll_errors: consecutive failed polls (SFAPI errors, job not found) before giving up.
    :param cancel_on_kill: cancel the job when a user kills the deferred task.
    """

    hook_class = SFAPIHook
    fields = ("job_id", "machine", "error_log", "job_name", "tail_lines", "max_poll_errors", "cancel_on_kill")
    renamed = {"max_poll_errors": "max_errors"}

    def __init__(
        self,
        job_id: str,
        machine: str = DEFAULT_MACHINE,
        *,
        error_log: str | None = None,
        job_name: str | None = None,
        tail_lines: int = 40,
        max_poll_errors: int = 10,
        cancel_on_kill: bool = True,
        poll_interval: float = 30.0,
        **settings: Any,
    ) -> None:
        super().__init__(
            job_id=str(job_id),
            machine=machine,
            error_log=error_log,
            job_name=job_name,
            tail_lines=tail_lines,
            max_poll_errors=max_poll_errors,
            cancel_on_kill=cancel_on_kill,
            poll_interval=poll_interval,
            **settings,
        )
        self._state, self._exit_code = "UNKNOWN", None

    @property
    def what(self) -> str:
        return f"job {self.job_id}" + (f" ({self.job_name})" if self.job_name else "")

    def poll(self) -> dict[str, Any] | None:
        job = self.hook.job_state(self.machine, self.job_id)
        self._state, self._exit_code = job.state, job.exit_code
        self.progress(f"{self.what} on {self.machine} is {job.state}")
        if not job.terminal:
            return None
        if job.state == SUCCESS_STATE:
            return self._event("success", f"{self.what} COMPLETED")
        tail = self.hook.tail(self.machine, self.error_log, self.tail_lines) if self.error_log else None
        return self._event("error", f"{self.what} ended {job.state}", tail)

    def is_transient(self, exc: BaseException) -> bool:
        return True  # the hook's errors name SFAPI's reason; a few in a row are tolerated (max_poll_errors)

    def describe_error(self, exc: BaseException) -> str:
        return f"{self.what} {'never found' if isinstance(exc, SFAPIJobNotFound) else 'could not be polled'}: {exc}"

    def failure(self, message: str, status: str = "error") -> dict[str, Any]:
        return self._event(status, message)

    def on_deadline(self) -> dict[str, Any]:
        return self.failure(f"{self.what} still {self._state} at its deadline; it keeps running at NERSC", "timeout")

    async def on_kill(self) -> None:
        """The user killed the deferred task: cancel the Slurm job too."""
        if self.cancel_on_kill:
            hook = SFAPIHook(self.sfapi_conn_id)
            try:
                await asyncio.to_thread(hook.cancel_job, self.machine, self.job_id)
            finally:
                await asyncio.to_thread(hook.close)

    def _event(self, status: str, message: str, tail: str | None = None) -> dict[str, Any]:
        return {
            "status": status,
            "job_id": self.job_id,
            "job_name": self.job_name,
            "machine": self.machine,
            "state": self._state,
            "exit_code": self._exit_code,
            "message": message,
            "log_tail": tail,
            "error_log": self.error_log,
        }
