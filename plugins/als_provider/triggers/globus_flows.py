"""Trigger for a Globus Flows run reaching a final state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from als_provider.hooks.globus_flows import GlobusFlowsHook, describe_flows_error, is_transient


class GlobusFlowRunTrigger(BaseTrigger):
    """Wait for a flow run to end.

    Fires ``{"status": "success", "run": {run_id, flow_id, status, output}}`` when it SUCCEEDED and
    ``{"status": "error", "message": ...}`` (the failed step's message from the run log) when it FAILED or
    ENDED (cancelled), when it stays INACTIVE (waiting for a person) past ``inactive_grace`` seconds, or
    when it outlives ``deadline`` (epoch seconds; the run is then cancelled). Transient API errors are
    retried until the deadline.
    """

    def __init__(
        self,
        run_id: str,
        *,
        globus_conn_id: str = GlobusFlowsHook.default_conn_name,
        poll_interval: float = 15.0,
        deadline: float | None = None,
        inactive_grace: float = 600.0,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.globus_conn_id = globus_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.inactive_grace = inactive_grace

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "run_id": self.run_id,
                "globus_conn_id": self.globus_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "inactive_grace": self.inactive_grace,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = GlobusFlowsHook(self.globus_conn_id)
        inactive_since: float | None = None
        last_status = None
        while True:
            try:
                run = await asyncio.to_thread(hook.get_run, self.run_id)
                status = run.get("status")
                if status != last_status:
                    self.log.info("Globus flow run %s is %s", self.run_id, run.get("display_status") or status)
                    last_status = status
                if status == "SUCCEEDED":
                    output = (run.get("details") or {}).get("output")
                    summary = {"run_id": self.run_id, "flow_id": run.get("flow_id"), "status": status}
                    yield TriggerEvent({"status": "success", "run": {**summary, "output": output}})
                    return
                if status in ("FAILED", "ENDED"):
                    message = await asyncio.to_thread(hook.failure_message, run)
                    yield TriggerEvent({"status": "error", "message": message})
                    return
                inactive_since = (inactive_since or time.time()) if status == "INACTIVE" else None
                if inactive_since is not None and time.time() - inactive_since >= self.inactive_grace:
                    details = run.get("details") or {}
                    reason = details.get("description") or details.get("code") or "waiting for a person"
                    message = f"Globus flow run {self.run_id} INACTIVE for {self.inactive_grace:.0f}s: {reason}"
                    yield TriggerEvent({"status": "error", "message": message})
                    return
            except Exception as exc:
                if not is_transient(exc):
                    yield TriggerEvent({"status": "error", "message": describe_flows_error(exc)})
                    return
                self.log.warning("Globus Flows did not answer for run %s: %s", self.run_id, describe_flows_error(exc))
            if self.deadline is not None and time.time() >= self.deadline:
                try:
                    await asyncio.to_thread(hook.cancel_run, self.run_id)
                except Exception as exc:
                    self.log.warning("could not cancel run %s: %s", self.run_id, describe_flows_error(exc))
                message = f"Globus flow run {self.run_id} did not finish by its deadline (cancelled)"
                yield TriggerEvent({"status": "error", "message": message})
                return
            await asyncio.sleep(self.poll_interval)
