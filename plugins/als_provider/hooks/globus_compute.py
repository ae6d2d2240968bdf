"""Globus Compute hook: the ``globus_compute_default`` connection and a globus-compute-sdk Client.

The connection holds a confidential client (login = client id, password = client secret); its extras
may set ``compute_base_url`` and ``auth_base_url`` so the same code talks to the local facility. The
SDK's Client takes no base URL, so :meth:`GlobusComputeHook.get_conn` replaces its web client: the only
place that knows about that. The SDK is imported inside methods (importing it starts a non-daemon
thread and costs ~1 s), and the Client is built on first use, never at DAG parse time.

Results are data, never code: the endpoint is asked to serialise them as JSON (``result_serializers``) and
:meth:`GlobusComputeHook.get_task` reads the task document itself and accepts only a ``JSONData`` payload,
so a result pickled by a compromised endpoint is refused unread instead of being unpickled here, in a
process that holds every connection's secret (issue 26 finding 4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from als_provider.hooks.globus_app import GlobusAppHook, GlobusCredentialsError

# Compute answers errors as every Globus service does: one description, one classification of transient ones.
from als_provider.hooks.globus_transfer import describe_globus_error
from als_provider.hooks.globus_transfer import is_transient as is_transient

if TYPE_CHECKING:
    from globus_compute_sdk import Client

#: Compute's task statuses that are final; anything else (waiting-for-ep, running, ...) is pending.
FINAL_STATUSES = frozenset({"success", "failed"})
#: The one result serialisation the endpoint is asked for and the hook reads: JSON data, no code.
JSON_RESULTS = "globus_compute_sdk.serialize.JSONData"
#: Prefix of the Airflow Variables that pin a registered function per code version (see ensure_function).
FUNCTION_VARIABLE_PREFIX = "als_compute_function"


class UnsafeResultError(RuntimeError):
    """A task's result was serialised with something other than JSON data (it could run code): refused unread."""


#: The error an incomplete Compute connection raises: the one every Globus hook raises (see GlobusAppHook).
GlobusComputeCredentialsError = GlobusCredentialsError


class GlobusComputeHook(GlobusAppHook):
    """Talk to Globus Compute as the confidential client of an Airflow connection.

    :param globus_compute_conn_id: connection with client id (login), secret (password) and optional
        ``compute_base_url`` / ``auth_base_url`` extras.
    :param max_retries: the SDK's own retries of failed requests (5xx, 429, network); ``None`` keeps the
        SDK default.
    """

    conn_name_attr = "globus_compute_conn_id"
    default_conn_name = "globus_compute_default"
    hook_name = "Globus Compute"

    def __init__(self, globus_compute_conn_id: str = default_conn_name, *, max_retries: int | None = None) -> None:
        super().__init__(globus_compute_conn_id, max_retries)

    def get_conn(self) -> Client:
        """A Compute Client authorised by client credentials; no network call until first use."""
        from globus_compute_sdk import Client
        from globus_compute_sdk.sdk.client import _ComputeWebClient
        from globus_compute_sdk.serialize import AllCodeStrategies
        from globus_sdk.scopes import ComputeScopes
        from globus_sdk.transport import RetryConfig

        authorizer, extras = self.authorize(ComputeScopes.all)
        client = Client(
            authorizer=authorizer,
            do_version_check=False,
            code_serialization_strategy=AllCodeStrategies(),
        )
        client.fx_serializer = safe_serializer()
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

    def function_code(self, function: Callable[..., Any]) -> str:
        """The ``function_code`` a registration of ``function`` sends (what the endpoint will run)."""
        from globus_compute_sdk.sdk.client import FunctionRegistrationData

        return FunctionRegistrationData(function=function, serializer=self.client.fx_serializer).function_code

    def ensure_function(self, function: Callable[..., Any]) -> str:
        """The id of ``function`` registered once per code version (issue 21 finding 15).

        The id is kept in the Airflow Variable ``als_compute_function__<conn>__<name>__<code hash>``; before it
        is used, Compute is asked for that function's code (``GET /v2/functions/{id}``) and it must be exactly
        this code, so an edited Variable can only name our own code. Otherwise the function is registered and
        the Variable written.
        """
        from airflow.sdk import Variable

        from include.compute_registry import code_version

        version = code_version(self.function_code(function))
        key = "__".join((FUNCTION_VARIABLE_PREFIX, self.globus_compute_conn_id, function.__name__, version[:16]))
        pinned = Variable.get(key, default=None)
        if pinned:
            if self._registered_code_version(pinned) == version:
                return pinned
            self.log.warning("Variable %s names function %s whose code is not this one: registering", key, pinned)
        function_id = self.register_function(function)
        Variable.set(key, function_id, description=f"Globus Compute function {function.__name__}, code {version}")
        self.log.info("Registered %s as Compute function %s (code %s)", function.__name__, function_id, version[:16])
        return function_id

    def _registered_code_version(self, function_id: str) -> str | None:
        """The code version of a registered function, ``None`` if Compute does not show it to us."""
        import globus_sdk

        from include.compute_registry import code_version

        try:
            code = self.client._compute_web_client.v2.get_function(function_id).data.get("function_code")
        except globus_sdk.GlobusAPIError as exc:
            self.log.warning("Compute function %s cannot be read: %s", function_id, describe_compute_error(exc))
            return None
        return code_version(code) if isinstance(code, str) else None

    def run(self, function_id: str, endpoint_id: str, kwargs: dict[str, Any] | None = None) -> str:
        """Submit one call ``function(**kwargs)`` to an endpoint and return the Compute task id."""
        return self.submit(function_id, endpoint_id, kwargs)["task_id"]

    def submit(
        self,
        function_id: str,
        endpoint_id: str,
        kwargs: dict[str, Any] | None = None,
        *,
        task_group_id: str | None = None,
    ) -> dict[str, str]:
        """Like :meth:`run`, returning ``{"task_id", "task_group_id", "request_id"}``.

        ``task_group_id`` submits into an existing task group (Compute refuses an unknown one); without it the
        service opens a new group. The endpoint is asked for JSON results (``result_serializers``).

        The submit is sent once: globus-sdk's transport resends a request on a network error, 429 or 5xx
        (``RetryConfig``), and Compute has no de-duplication key, so a lost answer would run the function
        twice. Its resends are turned off for this one call (``retry_config.tune(max_retries=0)``); every
        other call keeps them.
        """
        batch = self.client.create_batch(task_group_id=task_group_id, result_serializers=[JSON_RESULTS])
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

    def task_group(self, task_group_id: str) -> list[str]:
        """The ids of the tasks of a task group, oldest first (``GET /v2/taskgroup/{id}``)."""
        answer = self.client._compute_web_client.v2.get_task_group(task_group_id).data
        if str(answer.get("taskgroup_id")) != str(task_group_id):
            raise RuntimeError(f"Globus Compute answered task group {answer.get('taskgroup_id')} for {task_group_id}")
        tasks = sorted(answer.get("tasks") or [], key=lambda task: str(task.get("created_at") or ""))
        return [str(task["id"]) for task in tasks]

    def get_task(self, task_id: str) -> dict[str, Any]:
        """``{"task_id", "status", "pending", "result", "exception", "completion_t", "unsafe_result"}`` of a task.

        ``exception`` is the remote traceback text of a failed task; ``result`` the return value of a successful
        one, read from the task document here (``GET /v2/tasks/{id}``), never through the SDK's deserialiser:
        only a JSON payload is decoded; any other (dill, pickle, code) fails the task unread, with
        ``unsafe_result`` set. API errors (unknown task, auth, network) raise.
        """
        task = self.client._compute_web_client.v2.get_task(task_id).data
        status = str(task.get("status") or "unknown").lower()
        doc: dict[str, Any] = {
            "task_id": str(task_id),
            "status": status,
            "pending": status not in FINAL_STATUSES,
            "result": None,
            "exception": None,
            "completion_t": None,
            "unsafe_result": False,
        }
        if doc["pending"]:
            return doc
        doc["completion_t"] = task.get("completion_t")
        if "result" in task and status == "success":
            try:
                doc["result"] = decode_result(task["result"])
            except UnsafeResultError as exc:
                doc.update(status="failed", exception=str(exc), unsafe_result=True)
        elif task.get("exception") is not None:
            doc.update(status="failed", exception=str(task["exception"]))
        else:  # final without a result or an exception: the service's reason
            doc.update(status="failed", exception=f"task ended without a result: {task.get('reason', 'unknown')}")
        return doc

    def endpoint_status(self, endpoint_id: str) -> dict[str, Any]:
        return dict(self.client.get_endpoint_status(endpoint_id))


def safe_serializer():
    """The Client's serialiser: arguments go as JSON, and its deserialiser allow-list is as narrow as the SDK
    permits (it insists on one code strategy besides ``JSONData``; results never reach it: see get_task)."""
    from globus_compute_sdk.serialize import AllCodeStrategies, ComputeSerializer, JSONData, PureSourceTextInspect

    return ComputeSerializer(
        strategy_code=AllCodeStrategies(),
        strategy_data=JSONData(),
        allowed_deserializer_types=[JSONData, PureSourceTextInspect],
    )


def decode_result(payload: Any) -> Any:
    """A task result serialised as JSON data (``JSONData``); :class:`UnsafeResultError` for anything else.

    Only the payload's header is looked at before refusing: nothing of it is deserialised.
    """
    from globus_compute_sdk.serialize import JSONData
    from globus_compute_sdk.serialize.base import IDENTIFIER_LENGTH, SerializationStrategy

    if not isinstance(payload, str):
        raise UnsafeResultError(f"refused a task result that is not a serialised string ({type(payload).__name__})")
    header = payload[:IDENTIFIER_LENGTH]
    if header != JSONData.identifier:
        strategy = SerializationStrategy.get_cached_by_id(header)
        kind = type(strategy).__name__ if strategy is not None else f"unknown header {header.strip()!r}"
        raise UnsafeResultError(
            f"refused a task result serialised with {kind}: only JSON data ({JSON_RESULTS}) is accepted, since "
            "any other serialisation can run code in Airflow (a compromised or outdated endpoint?)"
        )
    try:
        return JSONData().deserialize(payload)
    except ValueError as exc:
        raise UnsafeResultError(f"refused a task result that is not valid JSON: {exc}") from None


def is_lost_answer(exc: BaseException) -> bool:
    """Whether a failed submit may have reached Compute anyway: no answer, or a gateway's 5xx in its place."""
    import globus_sdk

    if isinstance(exc, globus_sdk.NetworkError):
        return True
    return isinstance(exc, globus_sdk.GlobusAPIError) and exc.http_status >= 500


def describe_compute_error(exc: BaseException) -> str:
    """One line naming a Compute API failure by its code and message (never a credential)."""
    return describe_globus_error(exc, "Globus Compute")
