"""The confidential client both Globus hooks (Transfer, Compute) act as: one connection reading, one authorizer."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook


class GlobusCredentialsError(RuntimeError):
    """A Globus connection is incomplete or its credentials were refused."""


class GlobusAppHook(BaseHook):
    """A Globus service as the confidential client of an Airflow connection (login = client id, password =
    client secret; the ``auth_base_url`` extra points Globus Auth elsewhere, e.g. at the local facility).

    A service's hook sets ``conn_name_attr`` and ``default_conn_name`` and builds its SDK client in ``get_conn``
    from :meth:`authorize`; ``client`` is built on first use.

    :param max_retries: the SDK's own retries of failed requests (5xx, 429, network); ``None`` keeps the
        SDK default.
    """

    conn_type = "generic"

    def __init__(self, conn_id: str, max_retries: int | None) -> None:
        super().__init__()
        setattr(self, self.conn_name_attr, conn_id)
        self.max_retries = max_retries

    @cached_property
    def client(self) -> Any:
        return self.get_conn()

    def authorize(self, scope: Any) -> tuple[Any, dict[str, Any]]:
        """A client-credentials authorizer for ``scope`` (the token is fetched on first use) and the
        connection's extras."""
        import globus_sdk

        conn_id = getattr(self, self.conn_name_attr)
        conn = self.get_connection(conn_id)
        if not conn.login or not conn.password:
            raise GlobusCredentialsError(
                f"connection {conn_id!r} needs the Globus client id as login and its secret as password"
            )
        extras = conn.extra_dejson
        auth_client = globus_sdk.ConfidentialAppAuthClient(
            client_id=conn.login, client_secret=conn.password, base_url=extras.get("auth_base_url") or None
        )
        return globus_sdk.ClientCredentialsAuthorizer(auth_client, scopes=[scope]), extras
