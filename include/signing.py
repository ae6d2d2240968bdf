"""HMAC signatures for records kept where others can edit them (Airflow Variables: any UI user).

:func:`sign` and :func:`verify` use HMAC-SHA256 over a canonical JSON of ``(kind, payload)``, so a
signature made for one kind of record (``"manifest"``, ...) never verifies another. The key is the
password of the Airflow Connection ``als_signing`` (a Connection, not a Variable: UI users who may edit
Variables cannot read or forge it). It is read lazily, once per process, through the Task SDK inside a task
and from ``AIRFLOW_CONN_ALS_SIGNING`` / the metadata database elsewhere; it never reaches a log or an error.

Every local context sets one: the tests (tests/conftest.py, random per run), the local stack and
``make demo``/``run_dag`` (tools/local_airflow.py ``signing_key_env``), ``astro dev`` (a placeholder
in airflow_settings.yaml: replace it). A deployment creates the Connection with a random password, e.g.
``airflow connections add als_signing --conn-type generic --conn-password "$(openssl rand -hex 32)"``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import sys
from collections.abc import Mapping
from typing import Any

from include.errors import ConfigError

#: The Connection whose password is the signing key.
CONN_ID = "als_signing"
#: Prefix of every signature (algorithm and format version), so a future change is recognisable.
SCHEME = "hmac-sha256:"
#: The shortest key accepted (bytes of the password).
MIN_KEY_LENGTH = 16
#: airflow_settings.yaml's placeholder (public): refused as a key.
PLACEHOLDER_PREFIX = "replace-me"
FIX = (
    f"create the Airflow Connection {CONN_ID!r} with a random password, e.g. "
    f'airflow connections add {CONN_ID} --conn-type generic --conn-password "$(openssl rand -hex 32)"'
)


class SignatureError(ValueError):
    """A signature is missing, malformed or does not match its record (edited or forged)."""


def _canonical(kind: str, payload: Mapping[str, Any]) -> bytes:
    if not isinstance(kind, str) or not kind:
        raise ValueError("signing: kind must be a non-empty string")
    if not isinstance(payload, Mapping):
        raise ValueError(f"signing {kind}: payload must be a mapping, got {type(payload).__name__}")
    try:
        text = json.dumps([kind, dict(payload)], sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"signing {kind}: payload is not plain JSON ({exc})") from None
    return text.encode()


def _read_password() -> str | None:
    """The Connection's password: Task SDK inside a task, env var / metadata DB elsewhere."""
    if hasattr(sys.modules.get("airflow.sdk.execution_time.task_runner"), "SUPERVISOR_COMMS"):
        from airflow.sdk import Connection

        try:
            conn = Connection.get(CONN_ID)
        except Exception:  # AirflowNotFoundException and friends: reported below as a ConfigError
            return None
    else:
        from airflow.exceptions import AirflowNotFoundException
        from airflow.models.connection import Connection

        try:
            conn = Connection.get_connection_from_secrets(CONN_ID)
        except AirflowNotFoundException:
            return None
    return getattr(conn, "password", None)


@functools.cache
def _key() -> bytes:
    password = _read_password()
    if not password:
        raise ConfigError(f"Connection {CONN_ID!r} (the manifest signing key) is missing or has no password: {FIX}")
    if password.startswith(PLACEHOLDER_PREFIX):
        raise ConfigError(f"Connection {CONN_ID!r} still has the placeholder password of airflow_settings.yaml: {FIX}")
    if len(password.encode()) < MIN_KEY_LENGTH:
        raise ConfigError(f"Connection {CONN_ID!r}: password shorter than {MIN_KEY_LENGTH} bytes: {FIX}")
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(password)
    except ImportError:  # pragma: no cover - the SDK is always installed with Airflow 3
        pass
    return password.encode()


def reset_key_cache() -> None:
    """Forget the key read so far (tests that change the Connection; a rotated key in a long-lived process)."""
    _key.cache_clear()


def sign(kind: str, payload: Mapping[str, Any]) -> str:
    """The signature of ``payload`` (plain JSON values) as a record of ``kind``."""
    data = _canonical(kind, payload)
    return SCHEME + hmac.new(_key(), data, hashlib.sha256).hexdigest()


def verify(kind: str, payload: Mapping[str, Any], signature: str) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is :func:`sign`'s for this ``kind`` and ``payload``."""
    if not isinstance(signature, str) or not signature:
        raise SignatureError(f"{kind}: no signature (edited or forged, or written before records were signed)")
    if not signature.startswith(SCHEME):
        raise SignatureError(f"{kind}: signature is not {SCHEME.rstrip(':')} (edited or forged)")
    expected = sign(kind, payload)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureError(f"{kind}: signature does not match the record (edited or forged)")
