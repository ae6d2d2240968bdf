"""GlobusComputeOperator: run a function of compute_functions at a Globus Compute endpoint."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import Context

from als_provider.hooks.globus_compute import FINAL_STATUSES, GlobusComputeHook
from als_provider.operators.base import GONE, LIVE, SUCCEEDED, RemoteWorkOperator
from als_provider.triggers.globus_compute import GlobusComputeTaskTrigger

#: task_state_store key holding {"task_id", "function_id", "endpoint_id", "submitted_at"} across tries.
STATE_KEY = "globus_compute"


class GlobusComputeTaskError(RuntimeError):
    """A Compute task failed at the endpoint (message: the remote traceback), timed out or was refused."""


class GlobusComputeOperator(RemoteWorkOperator):
    """Run ``compute_functions.remote.<function_name>(**function_kwargs)`` at a Globus Compute endpoint.

    The endpoint is ``endpoint_id`` or the one of ``site`` (include/config/sites.yaml); the function id is
    ``function_id``, else the site's pinned id for ``function_name``, else the function is registered
    now. The Compute task id is kept in the task state store as soon as Compute answers, so a retry or a
    restarted worker re-attaches to the running task, or takes the result of a finished one, instead of
    running the function again; only a task that failed is submitted afresh. ``task_timeout`` bounds the
    wait from the first submission across tries. Deferrable by default (the wait holds no worker slot).

    Returns the function's result (a small JSON summary) as XCom; a failure at the endpoint fails the task
    with the remote traceback.
    """

    template_fields: Sequence[str] = ("function_kwargs", "site", "endpoint_id", "function_id")
    template_fields_renderers = {"function_kwargs": "json"}
    ui_color = "#8e6bbf"
    hook_class = GlobusComputeHook
    state_key = STATE_KEY
    error_class = GlobusComputeTaskError

    def __init__(
        self,
        *,
        function_name: str,
        function_kwargs: dict[str, Any] | None = None,
        site: str | None = None,
        endpoint_id: str | None = None,
        function_id: str | None = None,
        globus_compute_conn_id: str = GlobusComputeHook.default_conn_name,
        task_timeout: timedelta = timedelta(hours=2),
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=globus_compute_conn_id, wait_timeout=task_timeout, **kwargs)
        if (site is None) == (endpoint_id is None):
            raise ValueError(f"{self.task_id}: give exactly one of site= or endpoint_id=")
        self.function_name, self.function_kwargs = function_name, function_kwargs or {}
        self.site, self.endpoint_id, self.function_id = site, endpoint_id, function_id

    def prepare(self, context: Context) -> None:
        from include.compute_registry import resolve

        self._function = resolve(self.function_name)  # unknown names fail here, before anything runs
        if not isinstance(self.function_kwargs, dict):
            raise TypeError(f"function_kwargs must be a dict, got {type(self.function_kwargs).__name__}")
        self._endpoint_id, self._function_id = self._target()

    def _target(self) -> tuple[str, str | None]:
        """The endpoint id and the pinned function id (if any) to use."""
        if self.site is None:
            return str(self.endpoint_id), self.function_id
        from include.sites import load_sites

        site = load_sites()[self.site]
        return site.compute_endpoint_id, self.function_id or site.function_ids.get(self.function_name)

    def describe(self, state: dict[str, Any]) -> str:
        return f"Compute task {state.get('task_id')} ({self.function_name})"

    def status_of(self, state: dict[str, Any]) -> str:
        import globus_sdk

        try:
            task = self.hook.get_task(state["task_id"])
        except globus_sdk.GlobusAPIError as exc:
            if exc.http_status != 404:
                raise
            self.log.warning("Compute no longer knows task %s of an earlier try", state["task_id"])
            return GONE
        if task["status"] in FINAL_STATUSES and task["status"] != "success":
            self.log.warning(
                "Compute task %s of an earlier try failed. Its error:\n%s", task["task_id"], task["exception"]
            )
            return GONE
        return SUCCEEDED if task["status"] == "success" else LIVE

    def submit(self, context: Context, state: dict[str, Any]) -> dict[str, Any]:
        if state.get("submitting_at"):
            self.log.warning(
                "An earlier try began submitting at %s but recorded no Compute task id (it died in between); "
                "submitting again, so the function may run twice",
                state["submitting_at"],
            )
        endpoint_id, function_id = self._endpoint_id, self._function_id
        if function_id is None:
            function_id = self.hook.register_function(self._function)
            self.log.info("Registered %s as Compute function %s", self.function_name, function_id)
        # Compute takes no client-chosen id: mark the attempt, so a try that dies mid-submit is noticed
        self._save_state(context, {"submitting_at": time.time(), "function_id": function_id})
        submitted = self.hook.submit(function_id, endpoint_id, self.function_kwargs)
        return {
            "task_id": submitted["task_id"],
            "task_group_id": submitted["task_group_id"],
            "function_id": function_id,
            "endpoint_id": endpoint_id,
            "submitted_at": time.time(),
        }

    def make_trigger(self, state: dict[str, Any]) -> GlobusComputeTaskTrigger:
        return GlobusComputeTaskTrigger(
            state["task_id"],
            function_name=self.function_name,
            globus_compute_conn_id=self.conn_id,
            poll_interval=self.poll_interval,
            deadline=float(state["submitted_at"]) + self.wait_timeout.total_seconds(),
        )

    def result(self, context: Context, event: dict[str, Any]) -> Any:
        self.log.info("Compute task %s (%s) succeeded: %s", event["task_id"], self.function_name, event["result"])
        return event["result"]
