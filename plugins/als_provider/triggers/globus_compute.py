"""Trigger for a Globus Compute task reaching a final state (polled over REST, not AMQP)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from als_provider.hooks.globus_compute import GlobusComputeHook, describe_compute_error, is_transient


class GlobusComputeTaskTrigger(BaseTrigger):
    """Wait for a Globus Compute task to end.

    Fires ``{"status": "success", "task_id", "result", "completion_t"}`` when the function returned (its
    result must be JSON-compatible), ``{"status": "error", "task_id", "message"}`` when it raised at the
    endpoint (the message holds the remote traceback) or the API refused us, and ``{"status": "timeout",
    ...}`` once ``deadline`` (epoch seconds) has passed. Compute has no cancel call: a timed-out task may
    still run at the endpoint. Transient API errors (network, 5xx, 429) are retried until the deadline.
    """

    def __init__(
        self,
        task_id: str,
        *,
        globus_compute_conn_id: str = GlobusComputeHook.default_conn_name,
        poll_interval: float = 10.0,
        deadline: float | None = None,
        function_name: str | None = None,
    ) -> None:
        super().__init__()
        self.compute_task_id = task_id
        self.globus_compute_conn_id = globus_compute_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.function_name = function_name

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "task_id": self.compute_task_id,
                "globus_compute_conn_id": self.globus_compute_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "function_name": self.function_name,
            },
        )

    @property
    def _what(self) -> str:
        return f"Globus Compute task {self.compute_task_id}" + (
            f" ({self.function_name})" if self.function_name else ""
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = GlobusComputeHook(self.globus_compute_conn_id)
        last_status = None
        while True:
            try:
                task = await asyncio.to_thread(hook.get_task, self.compute_task_id)
            except Exception as exc:
                if not is_transient(exc):
                    message = f"{self._what}: cannot be polled: {describe_compute_error(exc)}"
                    yield TriggerEvent({"status": "error", "task_id": self.compute_task_id, "message": message})
                    return
                self.log.warning("%s: Globus Compute did not answer: %s", self._what, describe_compute_error(exc))
            else:
                if task["status"] != last_status:
                    self.log.info("%s is %s", self._what, task["status"])
                    last_status = task["status"]
                if not task["pending"]:
                    yield TriggerEvent(self._final_event(task))
                    return
            if self.deadline is not None and time.time() >= self.deadline:
                message = f"{self._what} did not finish by its deadline (it may still run at the endpoint)"
                yield TriggerEvent({"status": "timeout", "task_id": self.compute_task_id, "message": message})
                return
            await asyncio.sleep(self.poll_interval)

    def _final_event(self, task: dict[str, Any]) -> dict[str, Any]:
        if task["status"] != "success":
            message = f"{self._what} failed at the endpoint:\n{task.get('exception') or 'no traceback given'}"
            return {"status": "error", "task_id": self.compute_task_id, "message": message}
        try:
            result = json.loads(json.dumps(task["result"]))
        except (TypeError, ValueError) as exc:
            message = f"{self._what} returned a {type(task['result']).__name__} that is not JSON-compatible: {exc}"
            return {"status": "error", "task_id": self.compute_task_id, "message": message}
        return {
            "status": "success",
            "task_id": self.compute_task_id,
            "result": result,
            "completion_t": task["completion_t"],
        }
