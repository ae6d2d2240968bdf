"""GlobusComputeOperator: run a function of compute_functions at a Globus Compute endpoint."""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from als_provider.hooks.globus_compute import FINAL_STATUSES, GlobusComputeHook, describe_compute_error, is_lost_answer
from als_provider.operators.base import GONE, LIVE, SUCCEEDED, RemoteWorkOperator, generation
from als_provider.triggers.globus_compute import GlobusComputeTaskTrigger

#: task_state_store key holding {"task_id", "function_id", "endpoint_id", "submitted_at"} across tries.
STATE_KEY = "globus_compute"
#: The keyword a function takes to know its run (compute_functions.results_manifest.run_once).
RUN_KEY_ARGUMENT = "run_key"


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

    The submit is sent once (the SDK's resends are off for it). Compute takes no client-chosen id and lists
    no tasks, so a submission whose answer was lost cannot be looked up: the try fails and the retry submits
    again, logged as a possible duplicate. A function that takes ``run_key`` is given one naming this task
    instance and its run (the same across retries, new after a Clear): ``compute_functions.results_manifest
    .run_once`` lets only one call per key write its output, and a duplicate returns the first call's result.

    Returns the function's result (a small JSON summary) as XCom; a failure at the endpoint fails the task
    with the remote traceback, and a data error (the function raised ``ScanError``) fails it at once, without
    retries, with the function's one-line message.
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
        self._kwargs = dict(self.function_kwargs)
        if RUN_KEY_ARGUMENT in inspect.signature(self._function).parameters:
            self._kwargs.setdefault(RUN_KEY_ARGUMENT, run_key(context))

    def _target(self) -> tuple[str, str | None]:
        """The endpoint id and the pinned function id (if any) to use."""
        from include.sites import load_sites

        sites = load_sites()
        if self.site is None:  # a placeholder id is refused by the production profile before anything is sent
            return sites.check_compute_endpoint(str(self.endpoint_id)), self.function_id
        site = sites[self.site]
        function_id = self.function_id or site.function_ids.get(self.function_name)
        return sites.check_compute_endpoint(str(site.compute_endpoint_id)), function_id

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
                "An earlier try began submitting at %s but recorded no Compute task id (its answer was lost or "
                "it died): submitting again; Compute cannot be asked whether the first reached it, so the "
                "function may be called twice (run_key %s lets only one call write)",
                state["submitting_at"],
                self._kwargs.get(RUN_KEY_ARGUMENT, "not taken by this function"),
            )
        endpoint_id, function_id = self._endpoint_id, self._function_id
        if function_id is None:
            function_id = self.hook.register_function(self._function)
            self.log.info("Registered %s as Compute function %s", self.function_name, function_id)
        # Compute takes no client-chosen id: mark the attempt, so a try that dies mid-submit is noticed
        self._save_state(context, {"submitting_at": time.time(), "function_id": function_id})
        try:
            submitted = self.hook.submit(function_id, endpoint_id, self._kwargs)
        except Exception as exc:
            if is_refusal(exc):  # an unknown or forbidden endpoint or function: no retry can help
                raise AirflowFailException(f"{self.function_name}: {describe_compute_error(exc)}") from None
            if is_lost_answer(exc):
                self.log.warning(
                    "The Compute submit failed without an answer (%s): the task may exist; the retry submits "
                    "again (Compute offers no look-up)",
                    describe_compute_error(exc),
                )
            raise
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
            endpoint_id=state.get("endpoint_id"),
            globus_compute_conn_id=self.conn_id,
            poll_interval=self.poll_interval,
            deadline=float(state["submitted_at"]) + self.wait_timeout.total_seconds(),
        )

    def failure(self, event: dict[str, Any]) -> Exception:
        """A data error fails without retries, with the function's one line; anything else may be retried."""
        if event.get("data_error"):
            line = event["data_error"]  # the function's own line, e.g. "reconstruct: no flat fields"
            return AirflowFailException(
                line if line.startswith(f"{self.function_name}:") else f"{self.function_name}: {line}"
            )
        return super().failure(event)

    def result(self, context: Context, event: dict[str, Any]) -> Any:
        self.log.info("Compute task %s (%s) succeeded: %s", event["task_id"], self.function_name, event["result"])
        return event["result"]


def run_key(context: Context) -> str:
    """A key naming this task instance (dag, run, task, map index) and its run since the last Clear."""
    ti = context["ti"]
    parts = [ti.dag_id, ti.run_id, ti.task_id, str(getattr(ti, "map_index", -1)), str(generation(context))]
    return "airflow-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def is_refusal(exc: BaseException) -> bool:
    """Compute refused the submit itself: 403 ``EndpointAccessForbidden``/``FunctionNotPermitted`` or 404
    ``EndpointNotFound``/``FunctionNotFound`` (not a lost answer, not a transient error)."""
    import globus_sdk

    return isinstance(exc, globus_sdk.GlobusAPIError) and exc.http_status in (403, 404)
