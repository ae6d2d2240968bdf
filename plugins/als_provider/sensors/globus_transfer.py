"""GlobusPathSensor: wait, deferred, until a path exists at a named Globus endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context

from als_provider.hooks.globus_transfer import GlobusTransferHook
from als_provider.triggers.globus_transfer import GlobusPathTrigger
from include.paths import EndpointPath, endpoint_relative


class GlobusPathSensor(BaseSensorOperator):
    """Succeed when ``endpoint:path`` exists; returns its listing entry (name, type, size, ...)."""

    template_fields: Sequence[str] = ("endpoint", "path")

    def __init__(
        self,
        *,
        endpoint: str,
        path: str,
        globus_conn_id: str = GlobusTransferHook.default_conn_name,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 30)
        kwargs.setdefault("timeout", timedelta(hours=6).total_seconds())
        super().__init__(**kwargs)
        self.endpoint, self.path = endpoint, path
        self.globus_conn_id, self.deferrable = globus_conn_id, deferrable

    def _where(self) -> EndpointPath:
        return EndpointPath(self.endpoint, endpoint_relative(self.path))

    def poke(self, context: Context) -> bool:
        found = GlobusTransferHook(self.globus_conn_id).stat(self._where())
        self.log.info("%s %s", self._where(), "exists" if found else "does not exist yet")
        return found is not None

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        where = self._where()
        GlobusTransferHook(self.globus_conn_id).locate(where)  # an unknown endpoint fails now
        self.defer(
            trigger=GlobusPathTrigger(
                self.endpoint, str(where.path), globus_conn_id=self.globus_conn_id, poll_interval=self.poke_interval
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "success":
            raise RuntimeError(event.get("message") or f"waiting for {self._where()} failed: {event}")
        return event["stat"]
