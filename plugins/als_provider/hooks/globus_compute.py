"""Globus Compute hook: the ``globus_compute_default`` connection and a globus-compute-sdk Client.

The connection holds a confidential client (login = client id, password = client secret); its extras
may set ``compute_base_url`` and ``auth_base_url`` so the same code talks to the local facility. The
SDK's Client takes no base URL, so :meth:`GlobusComputeHook.get_conn` replaces its web client: the only
place that knows about that. The SDK is imported inside methods (importing it starts a non-daemon
thread and costs ~1 s), and the Client is built on first use, never at DAG parse time.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

# Compute answers errors as every Globus service does: one classification of transient ones.
from als_provider.hooks.globus_transfer import is_transient as is_transient

if TYPE_CHECKING:
    from globus_compute_sdk import Client

#: Compute's task statuses that are final; anything else (waiting-for-ep, running, ...) is pending.
FINAL_STATUSES = frozenset({"success", "failed"})


class GlobusComputeCredentialsError(RuntimeError):
    """The Globus Compute connection is incomplete."""


class GlobusComputeHook(BaseHook):
    """Talk to Globus Compute as the confidential client of an Airflow connection.

    :param globus_compute_conn_id: connection with client id (login), secret (password) and optional
        ``compute_base_url`` / ``auth_base_url`` extras.
    :param max_retries: the SDK's own retries of failed requests (5xx, 429, network); ``None`` keeps the
        SDK default.
    """

    conn_name_attr = "globus_compute_conn_id"
    default_conn_name = "globus_compute_default"
    conn_type = "generic"
    hook_name = "Globus Compute"

    def __init__(self, globus_compute_conn_id: str = default_conn_name, *, max_retries: int | None = None) -> None:
        super().__init__()
        self.globus_compute_conn_id = globus_compute_conn_id
        self.max_retries = max_retries

    @cached_property
    def client(self) -> Client:
        return self.get_conn()

    def get_conn(self) -> Client:
        """A Compute Client authorised by client credentials; no network call until first use."""
        import globus_sdk
        from globus_compute_sdk import Client
        from globus_compute_sdk.sdk.client import _ComputeWebClient
        from globus_compute_sdk.serialize import AllCodeStrategies
        from globus_sdk.scopes import ComputeScopes
        from globus_sdk.transport import RetryConfig

        conn = self.get_connection(self.globus_compute_conn_id)
        if not conn.login or not conn.password:
            raise GlobusComputeCredentialsError(
                f"connection {self.globus_compute_conn_id!r} needs the Globus client id as login "
                "and its secret as password"
            )
        extras = conn.extra_dejson
        auth_client = globus_sdk.ConfidentialAppAuthClient(
            client_id=conn.login, client_secret=conn.password, base_url=extras.get("auth_base_url") or None
        )
        authorizer = globus_sdk.ClientCredentialsAuthorizer(auth_client, scopes=[ComputeScopes.all])
        client = Client(
            authorizer=authorizer,
            do_version_check=False,
            code_serialization_strategy=AllCodeStrategies(),
        )
        base_url = extras.get("compute_base_url") or None
        if base_url or self.max_retries is not None:
            # The one override: Client has no base_url argument and ignores GLOBUS_SDK_SERVICE_URL_COMPUTE.
            retry_config = None if self.max_retries is None else RetryConfig(max_retries=self.max_retries)
            client._compute_web_client = _ComputeWebClient(
                base_url=base_url or client.web_service_address, authorizer=authorizer, retry_config=retry_config
            )
        return client

    def test_connection(self) -> tuple[bool, str]:
        """Fetch a token and check the service's version requirements, for the UI's connection test."""
        try:
            self.client.version_check()
        except Exception as exc:
            return False, describe_compute_error(exc)
        return True, "Globus Compute answered"

    def register_function(self, function: Callable[..., Any], *, description: str | None = None) -> str:
        """Register ``function`` (its source and a dill fallback) and return the new function id."""
        return self.client.register_function(function, description=description)

    def run(self, function_id: str, endpoint_id: str, kwargs: dict[str, Any] | None = None) -> str:
        """Submit one call ``function(**kwargs)`` to an endpoint and return the Compute task id."""
        return self.submit(function_id, endpoint_id, kwargs)["task_id"]

    def submit(self, function_id: str, endpoint_id: str, kwargs: dict[str, Any] | None = None) -> dict[str, str]:
        """Like :meth:`run`, returning ``{"task_id", "task_group_id", "request_id"}``.

        The submit is sent once: globus-sdk's transport resends a request on a network error, 429 or 5xx
        (``RetryConfig``), and Compute has no de-duplication key, so a lost answer would run the function
        twice. Its resends are turned off for this one call (``retry_config.tune(max_retries=0)``); every
        other call keeps them.
        """
        batch = self.client.create_batch()
        batch.add(function_id, (), dict(kwargs or {}))
        with self.client._compute_web_client.v3.retry_config.tune(max_retries=0):
            answer = self.client.batch_run(endpoint_id, batch)
        task_ids = answer["tasks"][str(function_id)]
        if len(task_ids) != 1:
            raise RuntimeError(f"Globus Compute answered {len(task_ids)} task ids for one submission")
        return {
            "task_id": task_ids[0],
            "task_group_id": answer.get("task_group_id"),
            "request_id": answer.get("request_id"),
        }

    def get_task(self, task_id: str) -> dict[str, Any]:
        """``{"task_id", "status", "pending", "result", "exception", "completion_t"}`` of a task.

        ``exception`` is the remote traceback text of a failed task; ``result`` the deserialised return
        value of a successful one. API errors (unknown task, auth, network) raise.
        """
        from globus_compute_sdk.errors import TaskExecutionFailed

        doc: dict[str, Any] = {"task_id": str(task_id), "result": None, "exception": None, "completion_t": None}
        try:
            task = self.client.get_task(task_id)
        except TaskExecutionFailed as exc:
            doc.update(status="failed", pending=False, exception=exc.remote_data, completion_t=exc.completion_t)
            return doc
        doc.update(status=task.get("status"), pending=bool(task.get("pending", True)))
        if not doc["pending"]:
            doc["completion_t"] = task.get("completion_t")
            if "result" in task:
                doc["result"] = task["result"]
            else:  # final without a result or an exception: the service's reason
                doc.update(status="failed", exception=f"task ended without a result: {task.get('reason', 'unknown')}")
        return doc

    def endpoint_status(self, endpoint_id: str) -> dict[str, Any]:
        return dict(self.client.get_endpoint_status(endpoint_id))


def is_lost_answer(exc: BaseException) -> bool:
    """Whether a failed submit may have reached Compute anyway: no answer, or a gateway's 5xx in its place."""
    import globus_sdk

    if isinstance(exc, globus_sdk.NetworkError):
        return True
    return isinstance(exc, globus_sdk.GlobusAPIError) and exc.http_status >= 500


def describe_compute_error(exc: BaseException) -> str:
    """One line naming a Compute API failure by its code and message (never a credential)."""
    import globus_sdk

    if isinstance(exc, globus_sdk.AuthAPIError):
        return f"Globus Auth refused the client credentials ({exc.http_status} {exc.code}): {exc.message}"
    if isinstance(exc, globus_sdk.GlobusAPIError):
        return f"Globus Compute {exc.http_status} {exc.code}: {exc.message}"
    if isinstance(exc, globus_sdk.NetworkError):
        return f"Globus Compute unreachable: {type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"
