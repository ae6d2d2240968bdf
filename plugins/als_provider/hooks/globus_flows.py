"""Globus Flows hook: the ``globus_default`` connection, a FlowsClient and one SpecificFlowClient per flow.

The connection's confidential client (login = client id, password = secret) manages flows and reads runs
with a ``flows.globus.org`` token, and starts a run with the flow's own scope (``SpecificFlowClient``). The
``flows_base_url`` extra points both at another Flows service (the local facility's ``.../flows/``); the
SDK's SpecificFlowClient takes no base URL, so it is set on the client here, the one place that does.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    import globus_sdk

#: Run statuses after which a run changes no more; INACTIVE waits for a person (consent, a paused action).
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "ENDED"})
LIVE_STATUSES = frozenset({"ACTIVE", "INACTIVE"})
#: Run log codes that say why a run failed, most specific first.
FAILURE_CODES = ("ActionFailed", "FlowFailed", "FlowCanceled")


class GlobusFlowsCredentialsError(RuntimeError):
    """The Globus connection is incomplete."""


class GlobusFlowsHook(BaseHook):
    """Register flows and start and watch their runs as the confidential client of an Airflow connection."""

    conn_name_attr = "globus_conn_id"
    default_conn_name = "globus_default"
    conn_type = "generic"
    hook_name = "Globus Flows"

    def __init__(self, globus_conn_id: str = default_conn_name, *, max_retries: int | None = None) -> None:
        super().__init__()
        self.globus_conn_id = globus_conn_id
        self.max_retries = max_retries

    @cached_property
    def _settings(self) -> dict[str, Any]:
        conn = self.get_connection(self.globus_conn_id)
        if not conn.login or not conn.password:
            raise GlobusFlowsCredentialsError(
                f"connection {self.globus_conn_id!r} needs the Globus client id as login and its secret as password"
            )
        extras = conn.extra_dejson
        return {
            "client_id": conn.login,
            "secret": conn.password,
            "auth_base_url": extras.get("auth_base_url") or None,
            "flows_base_url": extras.get("flows_base_url") or None,
        }

    def _authorizer(self, scopes: list[Any]) -> globus_sdk.ClientCredentialsAuthorizer:
        import globus_sdk

        settings = self._settings
        auth_client = globus_sdk.ConfidentialAppAuthClient(
            client_id=settings["client_id"], client_secret=settings["secret"], base_url=settings["auth_base_url"]
        )
        return globus_sdk.ClientCredentialsAuthorizer(auth_client, scopes=scopes)

    def _retry_config(self):
        from globus_sdk.transport import RetryConfig

        return None if self.max_retries is None else RetryConfig(max_retries=self.max_retries)

    @cached_property
    def client(self) -> globus_sdk.FlowsClient:
        return self.get_conn()

    def get_conn(self) -> globus_sdk.FlowsClient:
        """A FlowsClient allowed to manage and view flows and to view and manage runs."""
        import globus_sdk
        from globus_sdk.scopes import FlowsScopes

        scopes = [FlowsScopes.manage_flows, FlowsScopes.view_flows, FlowsScopes.run_status, FlowsScopes.run_manage]
        return globus_sdk.FlowsClient(
            base_url=self._settings["flows_base_url"],
            authorizer=self._authorizer(scopes),
            app_name="als-airflow",
            retry_config=self._retry_config(),
        )

    def flow_client(self, flow_id: str) -> globus_sdk.SpecificFlowClient:
        """A SpecificFlowClient authorised by the flow's own scope (needed to start a run)."""
        import globus_sdk
        from globus_sdk.scopes import SpecificFlowScopes

        client = globus_sdk.SpecificFlowClient(
            flow_id,
            authorizer=self._authorizer([SpecificFlowScopes(flow_id).user]),
            app_name="als-airflow",
            retry_config=self._retry_config(),
        )
        if self._settings["flows_base_url"]:
            client.base_url = self._settings["flows_base_url"]
        return client

    # -- flows ------------------------------------------------------------------------------------
    def deploy_flow(
        self, title: str, definition: dict, input_schema: dict, *, subtitle: str = "", description: str = ""
    ) -> tuple[str, bool]:
        """Create the flow, or update the client's own flow of the same title; returns (flow id, created)."""
        owned = self.client.paginated.list_flows(filter_roles=["flow_owner"]).items()
        existing = [flow for flow in owned if flow["title"] == title]
        if len(existing) > 1:
            ids = ", ".join(flow["id"] for flow in existing)
            raise RuntimeError(f"{len(existing)} flows titled {title!r} ({ids}); delete the extras first")
        fields = {"subtitle": subtitle, "description": description}
        if existing:
            flow_id = existing[0]["id"]
            self.client.update_flow(flow_id, title=title, definition=definition, input_schema=input_schema, **fields)
            return flow_id, False
        created = self.client.create_flow(title=title, definition=definition, input_schema=input_schema, **fields)
        return created["id"], True

    # -- runs -------------------------------------------------------------------------------------
    def run_flow(self, flow_id: str, body: dict, *, label: str, tags: list[str] | None = None) -> dict[str, Any]:
        """Start a run of ``flow_id`` with input ``body``; returns the run document."""
        return dict(self.flow_client(flow_id).run_flow(body, label=label[:64], tags=tags or []).data)

    def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.client.get_run(run_id).data)

    def run_log(self, run_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The run's log entries, oldest first (the last ``limit``)."""
        entries = self.client.get_run_logs(run_id, limit=limit, reverse_order=True)["entries"]
        return list(reversed(entries))

    def cancel_run(self, run_id: str) -> None:
        self.client.cancel_run(run_id)

    def failure_message(self, run: dict[str, Any]) -> str:
        """Why a run ended without success: its failed step's own message from the run log."""
        head = f"Globus flow run {run.get('run_id')} {run.get('status')}"
        try:
            entries = self.run_log(run["run_id"])
        except Exception as exc:  # the run document still says something
            entries = []
            self.log.warning("could not read the log of run %s: %s", run.get("run_id"), describe_flows_error(exc))
        for code in FAILURE_CODES:
            for entry in reversed(entries):
                if entry.get("code") == code:
                    details = entry.get("details") or {}
                    state = details.get("state_name")
                    cause = details.get("cause") or entry.get("description")
                    if code == "FlowFailed" and details.get("error"):  # a Fail state: its Error and Cause
                        cause = f"{details['error']}: {cause}"
                    return f"{head}: step {state!r} failed: {cause}" if state else f"{head}: {cause}"
        details = run.get("details") or {}
        return f"{head}: {details.get('description') or details.get('code') or 'no reason given'}"


def describe_flows_error(exc: BaseException) -> str:
    """One line naming a Flows/Auth failure by its code and message (never a credential)."""
    import globus_sdk

    if isinstance(exc, globus_sdk.AuthAPIError):
        return f"Globus Auth refused the client credentials ({exc.http_status} {exc.code}): {exc.message}"
    if isinstance(exc, globus_sdk.GlobusAPIError):
        return f"Globus Flows {exc.http_status} {exc.code}: {exc.message}"
    if isinstance(exc, globus_sdk.NetworkError):
        return f"Globus Flows unreachable: {type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


def is_transient(exc: BaseException) -> bool:
    """Worth another poll: the network, a 5xx or a 429 (after the SDK's own retries)."""
    import globus_sdk

    if isinstance(exc, globus_sdk.NetworkError):
        return True
    return isinstance(exc, globus_sdk.GlobusAPIError) and (exc.http_status >= 500 or exc.http_status == 429)
