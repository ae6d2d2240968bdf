"""Globus Transfer hook: the ``globus_default`` connection and a globus-sdk TransferClient.

The connection holds a confidential client (login = client id, password = client secret); its
extras may set ``transfer_base_url`` and ``auth_base_url`` so the same code talks to the local
facility. Endpoint names (include/config/endpoints.yaml) are resolved here to a collection UUID and
an absolute collection path, so callers only ever handle :class:`~include.paths.EndpointPath`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from als_provider.hooks.globus_app import GlobusAppHook
from als_provider.hooks.globus_app import GlobusCredentialsError as GlobusCredentialsError
from include.endpoints import Endpoints, load_endpoints
from include.paths import EndpointPath

if TYPE_CHECKING:
    import globus_sdk

#: Globus labels allow letters, digits, spaces and ``-_,.`` up to 128 characters.
_LABEL_FORBIDDEN = re.compile(r"[^A-Za-z0-9 _,.\-]")


def globus_label(text: str) -> str:
    """A task label Globus accepts, derived from free text."""
    return _LABEL_FORBIDDEN.sub("_", text)[:128]


class GlobusTransferHook(GlobusAppHook):
    """Talk to Globus Transfer as the confidential client of an Airflow connection.

    :param globus_conn_id: connection with client id (login), secret (password) and optional
        ``transfer_base_url`` / ``auth_base_url`` extras.
    :param max_retries: the SDK's own retries of failed requests (5xx, 429, network); ``None`` keeps
        the SDK default.
    """

    conn_name_attr = "globus_conn_id"
    default_conn_name = "globus_default"
    hook_name = "Globus Transfer"

    def __init__(self, globus_conn_id: str = default_conn_name, *, max_retries: int | None = None) -> None:
        super().__init__(globus_conn_id, max_retries)

    @cached_property
    def endpoints(self) -> Endpoints:
        return load_endpoints()

    def get_conn(self) -> globus_sdk.TransferClient:
        """A TransferClient authorised by client credentials (the token is fetched on first use)."""
        import globus_sdk
        from globus_sdk.scopes import TransferScopes
        from globus_sdk.transport import RetryConfig

        authorizer, extras = self.authorize(TransferScopes.all)
        retry_config = None if self.max_retries is None else RetryConfig(max_retries=self.max_retries)
        return globus_sdk.TransferClient(
            base_url=extras.get("transfer_base_url") or None,
            authorizer=authorizer,
            app_name="als-airflow",
            retry_config=retry_config,
        )

    def test_connection(self) -> tuple[bool, str]:
        """Fetch a token and answer a cheap call, for the UI's connection test."""
        try:
            self.new_submission_id()
        except Exception as exc:  # surfaced as text in the UI, never with the secret
            return False, describe_globus_error(exc)
        return True, "Globus Transfer answered"

    # -- paths --------------------------------------------------------------------------------
    def locate(self, where: EndpointPath) -> tuple[str, str]:
        """The collection UUID and absolute collection path of an endpoint-relative path (the production
        profile refuses a placeholder collection here, before anything is sent)."""
        endpoint = self.endpoints.sendable(where.endpoint)
        return endpoint.uuid, endpoint.globus_path(where.path)

    # -- submissions --------------------------------------------------------------------------
    def new_submission_id(self) -> str:
        return self.client.get_submission_id()["value"]

    def submit_transfer(
        self,
        source: EndpointPath,
        destination: EndpointPath,
        *,
        submission_id: str,
        recursive: bool,
        label: str,
        sync_level: str | None = "checksum",
        verify_checksum: bool = True,
        more: Sequence[tuple[EndpointPath, EndpointPath]] = (),
    ) -> dict[str, Any]:
        """Submit one transfer task: ``source`` → ``destination`` and the pairs in ``more`` (same two
        endpoints); the same ``submission_id`` never starts a second task. ``sync_level=None``: copy every file."""
        import globus_sdk

        src_uuid, src_path = self.locate(source)
        dst_uuid, dst_path = self.locate(destination)
        pairs = [(src_path, dst_path)]
        for extra_source, extra_destination in more:
            if (extra_source.endpoint, extra_destination.endpoint) != (source.endpoint, destination.endpoint):
                raise ValueError(f"one transfer task joins two endpoints: {extra_source} -> {extra_destination}")
            pairs.append((self.locate(extra_source)[1], self.locate(extra_destination)[1]))
        data = globus_sdk.TransferData(
            source_endpoint=src_uuid,
            destination_endpoint=dst_uuid,
            label=globus_label(label),
            submission_id=submission_id,
            sync_level=sync_level,
            verify_checksum=verify_checksum,
            preserve_timestamp=True,
        )
        for item_source, item_destination in pairs:
            data.add_item(item_source, item_destination, recursive=recursive)
        return dict(self.client.submit_transfer(data).data)

    def submit_delete(
        self,
        endpoint: str,
        paths: Sequence[str],
        *,
        submission_id: str,
        label: str,
        recursive: bool = True,
        ignore_missing: bool = False,
    ) -> dict[str, Any]:
        """Submit one delete task for several endpoint-relative paths on one endpoint."""
        import globus_sdk

        collection = self.endpoints.sendable(endpoint)
        data = globus_sdk.DeleteData(
            endpoint=collection.uuid,
            label=globus_label(label),
            submission_id=submission_id,
            recursive=recursive,
            ignore_missing=ignore_missing,
        )
        for path in paths:
            data.add_item(collection.globus_path(path))
        return dict(self.client.submit_delete(data).data)

    # -- tasks --------------------------------------------------------------------------------
    def get_task(self, task_id: str) -> dict[str, Any]:
        return dict(self.client.get_task(task_id).data)

    def error_events(self, task_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The task's most recent error events (newest first)."""
        events = self.client.task_event_list(task_id, limit=limit, query_params={"filter": "is_error:1"})
        return [dict(event) for event in events if event.get("is_error")]

    def cancel(self, task_id: str) -> None:
        self.client.cancel_task(task_id)

    def transferred(self, task_id: str, endpoint: str) -> list[str]:
        """Every file a task transferred, as paths relative to its destination ``endpoint``: all pages of
        ``task_successful_transfers`` (the SDK's marker paginator); a page that cannot be read raises."""
        found = self.endpoints[endpoint]
        pages = self.client.paginated.task_successful_transfers(task_id)
        return [str(found.relative_of(item["destination_path"])) for item in pages.items()]

    # -- listings -----------------------------------------------------------------------------
    def stat(self, where: EndpointPath) -> dict[str, Any] | None:
        """``{name, type, size, last_modified, ...}`` of a path, or ``None`` if it does not exist
        (:func:`is_missing`; any other error propagates)."""
        import globus_sdk

        uuid, path = self.locate(where)
        try:
            return dict(self.client.operation_stat(uuid, path).data)
        except globus_sdk.TransferAPIError as exc:
            if is_missing(exc):
                return None
            raise

    def ls(self, where: EndpointPath) -> list[dict[str, Any]]:
        uuid, path = self.locate(where)
        return [dict(entry) for entry in self.client.operation_ls(uuid, path=path)]

    def listdir(self, where: EndpointPath) -> list[dict[str, Any]]:
        """:meth:`ls`, raising ``FileNotFoundError`` only for a folder missing on a reachable, known collection
        (any other error, such as an unknown collection, propagates with the service's message)."""
        import globus_sdk

        try:
            return self.ls(where)
        except globus_sdk.TransferAPIError as exc:
            if is_missing(exc):
                raise FileNotFoundError(f"{where}: {exc.message}") from None
            raise

    def rename(self, old: EndpointPath, new: EndpointPath) -> None:
        """Rename ``old`` to ``new`` on one endpoint (Globus refuses an existing ``new``: nothing is replaced)."""
        if old.endpoint != new.endpoint:
            raise ValueError(f"a rename stays on one endpoint: {old} -> {new}")
        uuid, old_path = self.locate(old)
        self.client.operation_rename(uuid, old_path, self.locate(new)[1])


def is_missing(exc: BaseException) -> bool:
    """Whether a Globus error says the path does not exist (and nothing else: an unknown collection's
    ``EndpointNotFound``, a 403 or an offline endpoint is an error, never "absent")."""
    import globus_sdk

    return (
        isinstance(exc, globus_sdk.TransferAPIError)
        and exc.http_status == 404
        and exc.code in ("ClientError.NotFound", "NotFound")
    )


def is_task_limit(exc: BaseException) -> bool:
    """Whether Transfer refused a submission because the user has too many unfinished tasks (409
    ``Conflict.LimitExceeded``; docs.globus.org/faq/transfer-sharing: 100 per user): nothing was created, and
    the same submission, sent again once tasks have finished, is accepted."""
    import globus_sdk

    return (
        isinstance(exc, globus_sdk.TransferAPIError)
        and exc.http_status == 409
        and str(exc.code).endswith("LimitExceeded")
    )


def describe_globus_error(exc: BaseException, service: str = "Globus") -> str:
    """One line naming a failure of a Globus ``service`` by its code and message (never a credential)."""
    import globus_sdk

    if isinstance(exc, globus_sdk.AuthAPIError):
        return f"Globus Auth refused the client credentials ({exc.http_status} {exc.code}): {exc.message}"
    if isinstance(exc, globus_sdk.GlobusAPIError):
        return f"{service} {exc.http_status} {exc.code}: {exc.message}"
    if isinstance(exc, globus_sdk.NetworkError):
        return f"{service} unreachable: {type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


def is_transient(exc: BaseException) -> bool:
    """Worth another try: the network, a 5xx or a 429 (after the SDK's own retries), for any Globus service."""
    import globus_sdk

    if isinstance(exc, globus_sdk.NetworkError):
        return True
    return isinstance(exc, globus_sdk.GlobusAPIError) and (exc.http_status >= 500 or exc.http_status == 429)
