"""GlobusComputeOperator: run a function of compute_functions at a Globus Compute endpoint."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context

from als_provider.hooks.globus_compute import FINAL_STATUSES, GlobusComputeHook
from als_provider.triggers.globus_compute import GlobusComputeTaskTrigger
from als_provider.triggers.inline import first_event

#: task_state_store key holding {"task_id", "function_id", "endpoint_id", "submitted_at"} across tries.
STATE_KEY = "globus_compute"


class GlobusComputeTaskError(RuntimeError):
    """A Compute task failed at the endpoint (message: the remote traceback), timed out or was refused."""


class GlobusComputeOperator(BaseOperator):
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

    def __init__(
        self,
        *,
        function_name: str,
        function_kwargs: dict[str, Any] | None = None,
        site: str | None = None,
        endpoint_id: str | None = None,
        function_id: str | None = None,
        globus_compute_conn_id: str = GlobusComputeHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        task_timeout: timedelta = timedelta(hours=2),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (site is None) == (endpoint_id is None):
            raise ValueError(f"{self.task_id}: give exactly one of site= or endpoint_id=")
        self.function_name = function_name
        self.function_kwargs = function_kwargs or {}
        self.site = site
        self.endpoint_id = endpoint_id
        self.function_id = function_id
        self.globus_compute_conn_id = globus_compute_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.task_timeout = task_timeout

    @property
    def hook(self) -> GlobusComputeHook:
        return GlobusComputeHook(self.globus_compute_conn_id)

    def _target(self) -> tuple[str, str | None]:
        """The endpoint id and the pinned function id (if any) to use."""
        if self.site is None:
            return str(self.endpoint_id), self.function_id
        from include.sites import load_sites

        site = load_sites()[self.site]
        return site.compute_endpoint_id, self.function_id or site.function_ids.get(self.function_name)

    def execute(self, context: Context) -> Any:
        from include.compute_registry import resolve

        function = resolve(self.function_name)  # unknown names fail here, before anything runs
        if not isinstance(self.function_kwargs, dict):
            raise TypeError(f"function_kwargs must be a dict, got {type(self.function_kwargs).__name__}")
        endpoint_id, function_id = self._target()
        hook = self.hook
        store = context.get("task_state_store")
        state = (store.get(STATE_KEY) if store is not None else None) or {}

        if state.get("task_id"):
            task = self._previous_task(hook, state)
            if task is not None and task["status"] == "success":
                self.log.info("Compute task %s of an earlier try already succeeded; taking its result", task["task_id"])
                return self.execute_complete(context, self._trigger(state)._final_event(task))
            if task is not None and task["pending"]:
                self.log.info(
                    "Re-attaching to Compute task %s (%s) from an earlier try", task["task_id"], task["status"]
                )
            else:
                state = {}
        elif state.get("submitting_at"):
            self.log.warning(
                "An earlier try began submitting at %s but recorded no Compute task id (it died in between); "
                "submitting again, so the function may run twice",
                state["submitting_at"],
            )
            state = {}

        if not state:
            if function_id is None:
                function_id = hook.register_function(function)
                self.log.info("Registered %s as Compute function %s", self.function_name, function_id)
            if store is not None:
                store.set(STATE_KEY, {"submitting_at": time.time(), "function_id": function_id})
            submitted = hook.submit(function_id, endpoint_id, self.function_kwargs)
            state = {
                "task_id": submitted["task_id"],
                "task_group_id": submitted["task_group_id"],
                "function_id": function_id,
                "endpoint_id": endpoint_id,
                "submitted_at": time.time(),
            }
            if store is not None:
                store.set(STATE_KEY, state)
            self.log.info(
                "Submitted %s to Compute endpoint %s: task %s", self.function_name, endpoint_id, state["task_id"]
            )

        trigger = self._trigger(state)
        if self.deferrable:
            remaining = max(0.0, trigger.deadline - time.time()) if trigger.deadline else None
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                timeout=None if remaining is None else timedelta(seconds=remaining) + timedelta(minutes=10),
            )
        return self.execute_complete(context, first_event(trigger))

    def _trigger(self, state: dict[str, Any]) -> GlobusComputeTaskTrigger:
        return GlobusComputeTaskTrigger(
            state["task_id"],
            globus_compute_conn_id=self.globus_compute_conn_id,
            poll_interval=self.poll_interval,
            deadline=float(state["submitted_at"]) + self.task_timeout.total_seconds(),
            function_name=self.function_name,
        )

    def _previous_task(self, hook: GlobusComputeHook, state: dict[str, Any]) -> dict[str, Any] | None:
        """The earlier try's task, or None if it failed or Compute no longer knows it."""
        import globus_sdk

        try:
            task = hook.get_task(state["task_id"])
        except globus_sdk.GlobusAPIError as exc:
            if exc.http_status != 404:
                raise
            self.log.warning("Compute no longer knows task %s of an earlier try; submitting again", state["task_id"])
            return None
        if task["status"] in FINAL_STATUSES and task["status"] != "success":
            self.log.warning(
                "Compute task %s of an earlier try failed; submitting again. Its error:\n%s",
                state["task_id"],
                task.get("exception"),
            )
            return None
        return task

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if event.get("status") != "success":
            raise GlobusComputeTaskError(event.get("message") or f"Globus Compute task failed: {event}")
        self.log.info("Compute task %s (%s) succeeded: %s", event["task_id"], self.function_name, event["result"])
        return event["result"]
