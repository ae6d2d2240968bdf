"""Trigger for a Globus Compute task reaching a final state (polled over REST, not AMQP)."""

from __future__ import annotations

import json
from typing import Any

from als_provider.hooks.globus_compute import GlobusComputeHook, describe_compute_error, is_transient
from als_provider.triggers.base import PollingTrigger


def describe_task(task_id: str, function_name: str | None = None) -> str:
    """``Globus Compute task <id> (<function>)``, for messages."""
    return f"Globus Compute task {task_id}" + (f" ({function_name})" if function_name else "")


#: The remote exception type of a data error (compute_functions.errors.ScanError): retrying cannot help.
DATA_ERROR_TYPE = "ScanError"


def data_error(exception: str | None) -> str | None:
    """The one-line message of a remote :data:`DATA_ERROR_TYPE` from a traceback's text, else ``None``."""
    for line in reversed((exception or "").strip().splitlines()):
        kind, sep, message = line.partition(": ")
        if sep and kind.rsplit(".", 1)[-1] == DATA_ERROR_TYPE:
            return message.strip()
    return None


def task_event(task: dict[str, Any], function_name: str | None = None) -> dict[str, Any]:
    """The final event of a finished task (a :meth:`GlobusComputeHook.get_task` document).

    ``{"status": "success", "task_id", "result", "completion_t"}`` when the function returned a JSON-compatible
    result, else ``{"status": "error", "task_id", "message", "data_error"}`` with the remote traceback or the
    reason (``data_error``: the one-line message when the function raised a data error, else ``None``), or with
    ``unsafe_result`` when the result was not JSON data and was refused unread.
    """
    task_id, what = task["task_id"], describe_task(task["task_id"], function_name)
    if task.get("unsafe_result"):  # a compromised or outdated endpoint: never retried, never read
        return {"status": "error", "task_id": task_id, "message": f"{what}: {task['exception']}", "unsafe_result": True}
    if task["status"] != "success":
        message = f"{what} failed at the endpoint:\n{task.get('exception') or 'no traceback given'}"
        return {
            "status": "error",
            "task_id": task_id,
            "message": message,
            "data_error": data_error(task.get("exception")),
        }
    try:
        result = json.loads(json.dumps(task["result"]))
    except (TypeError, ValueError) as exc:
        message = f"{what} returned a {type(task['result']).__name__} that is not JSON-compatible: {exc}"
        return {"status": "error", "task_id": task_id, "message": message}
    return {"status": "success", "task_id": task_id, "result": result, "completion_t": task["completion_t"]}


class GlobusComputeTaskTrigger(PollingTrigger):
    """Wait for a Globus Compute task to end.

    Fires ``{"status": "success", "task_id", "result", "completion_t"}`` when the function returned (its
    result must be JSON-compatible), ``{"status": "error", "task_id", "message"}`` when it raised at the
    endpoint (the message holds the remote traceback) or the API refused us, and ``{"status": "timeout",
    ...}`` once ``deadline`` (epoch seconds) has passed. Compute has no cancel call: a timed-out task may
    still run at the endpoint. Transient API errors (network, 5xx, 429) are retried until the deadline.

    The Compute task id is kept as ``compute_task_id``: the triggerer sets ``task_id`` to the Airflow task's id.
    """

    hook_class = GlobusComputeHook
    fields = ("task_id", "function_name", "endpoint_id")
    renamed = {"task_id": "compute_task_id"}

    def __init__(
        self, task_id: str, *, function_name: str | None = None, endpoint_id: str | None = None, **settings: Any
    ) -> None:
        super().__init__(task_id=task_id, function_name=function_name, endpoint_id=endpoint_id, **settings)

    @property
    def what(self) -> str:
        return describe_task(self.compute_task_id, self.function_name)

    def poll(self) -> dict[str, Any] | None:
        task = self.hook.get_task(self.compute_task_id)
        status = task["status"]
        if status == "waiting-for-ep" and self.endpoint_id:  # say why it waits: the endpoint may be offline
            endpoint = self.hook.endpoint_status(self.endpoint_id)
            if endpoint.get("status") != "online":
                status += f": endpoint {self.endpoint_id} is {endpoint.get('status') or 'not reporting'}"
        self.progress(f"{self.what} is {status}")
        return None if task["pending"] else task_event(task, self.function_name)

    def is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc)

    def describe_error(self, exc: BaseException) -> str:
        return f"{self.what}: cannot be polled: {describe_compute_error(exc)}"

    def failure(self, message: str, status: str = "error") -> dict[str, Any]:
        return {"status": status, "task_id": self.compute_task_id, "message": message}

    def on_deadline(self) -> dict[str, Any]:
        return self.failure(f"{self.what} did not finish by its deadline (it may still run at the endpoint)", "timeout")
