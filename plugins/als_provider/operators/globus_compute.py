"""GlobusComputeOperator: run a function of compute_functions at a Globus Compute endpoint."""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from als_provider.export_control import refuse_export_controlled
from als_provider.hooks.globus_compute import FINAL_STATUSES, GlobusComputeHook, describe_compute_error, is_lost_answer
from als_provider.operators.base import GONE, LIVE, SUCCEEDED, RemoteWorkOperator, task_key
from als_provider.triggers.globus_compute import GlobusComputeTaskTrigger

#: task_state_store key holding {"task_group_id", "known_tasks", "task_id", "function_id", "endpoint_id",
#: "submitted_at"} across tries.
STATE_KEY = "globus_compute"
#: The keyword a function takes to know its run (compute_functions.results_manifest.run_once).
RUN_KEY_ARGUMENT = "run_key"
#: The keyword a function takes for its run-once lease, in seconds (the task's own timeout).
LEASE_ARGUMENT = "run_lease_seconds"
#: The function whose call opens a task group: it does nothing (compute_functions.remote.open_task_group).
GROUP_OPENER = "open_task_group"


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

    Exactly once with task groups: Compute takes no client-chosen task id, but a submit may name an existing
    task group and a group lists its tasks. So each run of the task instance first opens a group of its own
    (a call of ``open_task_group``, which does nothing; its id is stored), then submits into it, once (the SDK's
    resends are off). When an answer is lost, the group is read before anything is sent again: a task in it
    that this run did not know is the lost one, and it is attached to. A function that takes ``run_key`` is
    given one naming this task instance and its run (the same across retries, new after a Clear), and
    ``run_lease_seconds`` (``task_timeout``): ``compute_functions.results_manifest.run_once`` lets only one call
    per key write, under a lease its writer renews.

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
        where = {"site": self.site} if self.site is not None else {"compute_endpoint": self._endpoint_id}
        refuse_export_controlled(context, self.task_id, self.function_kwargs, **where)  # stays on site (issue 26)
        self._kwargs = dict(self.function_kwargs)
        parameters = inspect.signature(self._function).parameters
        if RUN_KEY_ARGUMENT in parameters:
            self._kwargs.setdefault(RUN_KEY_ARGUMENT, task_key(context))
        if LEASE_ARGUMENT in parameters:
            self._kwargs.setdefault(LEASE_ARGUMENT, self.wait_timeout.total_seconds())

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

    def _function_id_of(self, name: str) -> str:
        """The id of a function of include/compute_registry.py: pinned for the site, else registered once per
        code version (GlobusComputeHook.ensure_function)."""
        from include.compute_registry import resolve
        from include.sites import load_sites

        if name == self.function_name and self._function_id is not None:
            return self._function_id
        if name != self.function_name and self.site is not None:
            pinned = load_sites()[self.site].function_ids.get(name)
            if pinned:
                return pinned
        return self.hook.ensure_function(self._function if name == self.function_name else resolve(name))

    def _open_group(self, context: Context, state: dict[str, Any]) -> dict[str, Any]:
        """Open this run's task group (a call of :data:`GROUP_OPENER`) and store its id.

        A lost answer here leaves an orphan group holding one harmless call; the retry opens another.
        """
        self._save_state(context, {**state, "opening_group_at": time.time()})
        opener = self._function_id_of(GROUP_OPENER)
        try:
            opened = self.hook.submit(opener, self._endpoint_id, {})
        except Exception as exc:
            if is_refusal(exc):
                raise AirflowFailException(f"{self.function_name}: {describe_compute_error(exc)}") from None
            if is_lost_answer(exc):
                self.log.warning(
                    "The Compute submit that opens this run's task group failed without an answer (%s): the retry "
                    "opens another (the orphan holds one call of %s, which does nothing)",
                    describe_compute_error(exc),
                    GROUP_OPENER,
                )
            raise
        group = {"task_group_id": opened["task_group_id"], "known_tasks": [opened["task_id"]]}
        self.log.info("Opened Compute task group %s for this run", group["task_group_id"])
        state = {**group, "opened_group_at": time.time()}
        self._save_state(context, state)
        return state

    def _find_in_group(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """The task this run submitted into its group without learning its id (its answer was lost)."""
        if not state.get("task_group_id"):
            return None
        known = set(state.get("known_tasks") or [])
        unknown = [task_id for task_id in self.hook.task_group(state["task_group_id"]) if task_id not in known]
        if not unknown:
            return None
        if len(unknown) > 1:
            self.log.warning(
                "Task group %s holds %d tasks this run did not record (%s): attaching to the oldest; Compute "
                "cannot cancel the others",
                state["task_group_id"],
                len(unknown),
                ", ".join(unknown),
            )
        return {
            **state,
            "task_id": unknown[0],
            "known_tasks": [*(state.get("known_tasks") or []), unknown[0]],
            "endpoint_id": self._endpoint_id,
            "submitted_at": float(state.get("submitting_at") or time.time()),
        }

    def find_lost(self, context: Context) -> dict[str, Any] | None:
        """A task of an earlier try that reached Compute unrecorded, found in this run's task group."""
        return self._find_in_group(self._load_state(context))

    def forget(self, state: dict[str, Any]) -> dict[str, Any]:
        """A failed task's group is kept: the next submission goes into it (its tasks are known)."""
        return {key: state[key] for key in ("task_group_id", "known_tasks") if key in state}

    def submit(self, context: Context, state: dict[str, Any]) -> dict[str, Any]:
        function_id = self._function_id_of(self.function_name)
        if not state.get("task_group_id"):
            state = self._open_group(context, state)
        state = {**state, "submitting_at": time.time(), "function_id": function_id}
        self._save_state(context, state)  # a try that dies now is found by find_lost in the group
        try:
            submitted = self.hook.submit(
                function_id, self._endpoint_id, self._kwargs, task_group_id=state["task_group_id"]
            )
        except Exception as exc:
            if is_group_unknown(exc):  # the service forgot the group: open another, send once more
                self.log.warning("Compute no longer knows task group %s: opening another", state["task_group_id"])
                return self.submit(context, {})
            if is_refusal(exc):  # an unknown or forbidden endpoint or function: no retry can help
                raise AirflowFailException(f"{self.function_name}: {describe_compute_error(exc)}") from None
            if is_lost_answer(exc) and (found := self._lookup_after_lost_answer(state)) is not None:
                self.log.warning(
                    "The Compute submit failed without an answer (%s), but its task group holds it: %s",
                    describe_compute_error(exc),
                    self.describe(found),
                )
                return found
            raise
        return {
            "task_group_id": state["task_group_id"],
            "known_tasks": [*(state.get("known_tasks") or []), submitted["task_id"]],
            "task_id": submitted["task_id"],
            "function_id": function_id,
            "endpoint_id": self._endpoint_id,
            "submitted_at": time.time(),
        }

    def _lookup_after_lost_answer(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """The task a failed submit may have created anyway; ``None`` if the group does not show one (the
        retry looks again before it sends anything)."""
        import globus_sdk

        try:
            return self._find_in_group(state)
        except (globus_sdk.GlobusAPIError, globus_sdk.NetworkError) as exc:
            self.log.warning("Cannot read task group %s now (%s); the retry looks again", state["task_group_id"], exc)
            return None

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
        """A data error or a refused (non-JSON) result fails without retries; anything else may be retried."""
        if event.get("unsafe_result"):
            return AirflowFailException(event["message"])
        if event.get("data_error"):
            line = event["data_error"]  # the function's own line, e.g. "reconstruct: no flat fields"
            return AirflowFailException(
                line if line.startswith(f"{self.function_name}:") else f"{self.function_name}: {line}"
            )
        return super().failure(event)

    def result(self, context: Context, event: dict[str, Any]) -> Any:
        self.log.info("Compute task %s (%s) succeeded: %s", event["task_id"], self.function_name, event["result"])
        return event["result"]


def is_refusal(exc: BaseException) -> bool:
    """Compute refused the submit itself: 403 ``EndpointAccessForbidden``/``FunctionNotPermitted`` or 404
    ``EndpointNotFound``/``FunctionNotFound`` (not a lost answer, not a transient error)."""
    import globus_sdk

    return isinstance(exc, globus_sdk.GlobusAPIError) and exc.http_status in (403, 404)


def is_group_unknown(exc: BaseException) -> bool:
    """Compute refused a submit into a task group it does not know (404 naming the group)."""
    import globus_sdk

    if not isinstance(exc, globus_sdk.GlobusAPIError) or exc.http_status != 404:
        return False
    return "GROUP" in str(exc.code).upper() or "group" in str(exc.message).lower()
