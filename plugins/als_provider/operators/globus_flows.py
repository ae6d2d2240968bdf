"""GlobusFlowOperator: start a registered Globus flow with input and wait for its run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context

from als_provider.hooks.globus_flows import LIVE_STATUSES, GlobusFlowsHook
from als_provider.triggers.globus_flows import GlobusFlowRunTrigger
from als_provider.triggers.inline import first_event

#: task_state_store key holding {"flow_id", "run_id"} across tries.
STATE_KEY = "globus_flow_run"


class GlobusFlowError(RuntimeError):
    """A flow run failed, was cancelled, timed out or could not be started."""


class GlobusFlowOperator(BaseOperator):
    """Start a run of the registered flow ``flow_id`` with ``flow_input`` and wait for it to end.

    ``flow_id`` is the id ``python -m include.flows_registry`` printed (templated, e.g.
    ``{{ var.value.flow_reconstruction }}``). Flows has no client-chosen run id, so the run id is kept in
    the task state store right after the run starts: a retry or a restarted worker re-attaches to a run
    still ACTIVE/INACTIVE or already SUCCEEDED, and only a run that FAILED or ENDED is started afresh.
    Deferrable by default. Fails with the failed step's own message (from the run log). Returns
    ``{"run_id", "flow_id", "status", "output"}`` (``output``: the run's final state document).
    """

    template_fields: Sequence[str] = ("flow_id", "flow_input", "run_label", "run_tags")
    template_fields_renderers = {"flow_input": "json"}
    ui_color = "#6b8fd9"

    def __init__(
        self,
        *,
        flow_id: str,
        flow_input: dict[str, Any],
        run_label: str | None = None,
        run_tags: list[str] | None = None,
        globus_conn_id: str = GlobusFlowsHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 15.0,
        run_timeout: timedelta = timedelta(hours=12),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.flow_id = flow_id
        self.flow_input = flow_input
        self.run_label = run_label
        self.run_tags = run_tags
        self.globus_conn_id = globus_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.run_timeout = run_timeout

    @property
    def hook(self) -> GlobusFlowsHook:
        return GlobusFlowsHook(self.globus_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        if not isinstance(self.flow_input, dict):
            raise GlobusFlowError(f"flow_input must be a JSON object, got {type(self.flow_input).__name__}")
        hook = self.hook
        store = context.get("task_state_store")
        state = (store.get(STATE_KEY) if store is not None else None) or {}

        run_id = state.get("run_id") if state.get("flow_id") == self.flow_id else None
        if run_id:
            status = hook.get_run(run_id).get("status")
            if status in LIVE_STATUSES or status == "SUCCEEDED":
                self.log.info("Re-attaching to flow run %s (%s) from an earlier try", run_id, status)
            else:
                self.log.warning("Flow run %s of an earlier try ended %s; starting a new run", run_id, status)
                run_id = None
        if not run_id:
            ti = context["ti"]
            label = self.run_label or f"{ti.dag_id} {ti.task_id} {ti.run_id}"
            run = hook.run_flow(self.flow_id, self.flow_input, label=label, tags=list(self.run_tags or []))
            run_id = run["run_id"]
            if store is not None:
                store.set(STATE_KEY, {"flow_id": self.flow_id, "run_id": run_id})
            self.log.info("Started run %s of flow %s (%s)", run_id, self.flow_id, label)

        trigger = GlobusFlowRunTrigger(
            run_id,
            globus_conn_id=self.globus_conn_id,
            poll_interval=self.poll_interval,
            deadline=time.time() + self.run_timeout.total_seconds(),
        )
        if self.deferrable:
            self.defer(
                trigger=trigger, method_name="execute_complete", timeout=self.run_timeout + timedelta(minutes=10)
            )
        return self.execute_complete(context, first_event(trigger))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "success":
            raise GlobusFlowError(event.get("message") or f"Globus flow run failed: {event}")
        run = dict(event["run"])
        self.log.info("Flow run %s of flow %s SUCCEEDED", run.get("run_id"), run.get("flow_id"))
        return run
