"""Airflow on the local profile: the environment, connections, variables and pools of airflow_settings.yaml.

One place that turns the repository's settings into a working local Airflow (SQLite by default), used
by ``make demo``/``make dags-test`` (tools/run_dag.py), the tests and ``make serve``. Connections go in
as ``AIRFLOW_CONN_*`` environment variables (read-only); variables and pools are written to the
metadata database, because the pipelines update some variables (deletion manifests) at run time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from include.config_files import load_config
from include.endpoints import REPO_ROOT

SETTINGS_FILE = REPO_ROOT / "airflow_settings.yaml"
#: The facility address written in airflow_settings.yaml; retargeted when the facility runs elsewhere.
SETTINGS_FACILITY_URL = "http://127.0.0.1:8765"


def _entries(key: str) -> dict:
    entry = {"type": "object", "required": [key], "properties": {key: {"type": "string", "minLength": 1}}}
    return {"type": ["array", "null"], "items": entry}


#: The part of the Astro CLI format this project reads (other keys are Astro's and left alone).
SETTINGS_SCHEMA: dict = {
    "type": "object",
    "required": ["airflow"],
    "properties": {
        "airflow": {
            "type": "object",
            "properties": {
                "connections": _entries("conn_id"),
                "variables": _entries("variable_name"),
                "pools": _entries("pool_name"),
            },
        }
    },
}


def load_settings(path: Path = SETTINGS_FILE) -> dict[str, list[dict[str, Any]]]:
    """Read airflow_settings.yaml (the Astro CLI format) and check its shape."""
    airflow = load_config(path, SETTINGS_SCHEMA).data["airflow"]
    return {section: airflow.get(section) or [] for section in ("connections", "variables", "pools")}


def _retarget(value: Any, facility_url: str) -> Any:
    if isinstance(value, str):
        return value.replace(SETTINGS_FACILITY_URL, facility_url.rstrip("/"))
    if isinstance(value, dict):
        return {k: _retarget(v, facility_url) for k, v in value.items()}
    return value


def connection_env(settings: dict, facility_url: str = SETTINGS_FACILITY_URL) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` variables (JSON form) for every connection, pointed at the facility."""
    env = {}
    for conn in settings["connections"]:
        fields = {
            "conn_type": conn.get("conn_type") or "generic",
            "description": conn.get("conn_description"),
            "host": conn.get("conn_host"),
            "schema": conn.get("conn_schema"),
            "login": conn.get("conn_login"),
            "password": conn.get("conn_password"),
            "port": conn.get("conn_port"),
            "extra": conn.get("conn_extra") or {},
        }
        fields = {k: _retarget(v, facility_url) for k, v in fields.items() if v not in (None, "")}
        env[f"AIRFLOW_CONN_{conn['conn_id'].upper()}"] = json.dumps(fields)
    return env


def secret_file(path: Path, make: Callable[[], str]) -> str:
    """A value kept in ``path`` (mode 0600), created by ``make()`` the first time."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
    return path.read_text().strip()


def signing_connection_env(key: str) -> dict[str, str]:
    """``AIRFLOW_CONN_ALS_SIGNING`` holding ``key`` (the manifest signing key, include/signing.py)."""
    from include.signing import CONN_ID

    fields = {"conn_type": "generic", "description": "HMAC key signing deletion manifests", "password": key}
    return {f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(fields)}


def configure_environment(
    home: Path,
    *,
    facility_url: str = SETTINGS_FACILITY_URL,
    facility_root: Path | None = None,
    database_url: str | None = None,
    signing_key: str | None = None,
) -> dict[str, str]:
    """Set (in ``os.environ``) and return what a local Airflow process needs. Call before importing airflow.

    The manifest signing key (Connection ``als_signing``) is ``signing_key`` or, by default, one generated
    once per ``home`` and kept in ``<home>/signing.key`` (0600): entries written by one run verify in the next.
    It replaces the placeholder of airflow_settings.yaml, which is only for ``astro dev`` and refused as a key.
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url or f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "ALS_ENDPOINT_PROFILE": "local",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), str(REPO_ROOT / "plugins"), os.environ.get("PYTHONPATH")) if p
        ),
    }
    if facility_root is not None:
        from include.transfer_seeds import write_local_seeds

        env["LOCAL_FACILITY_ROOT"] = str(Path(facility_root).resolve())
        write_local_seeds(Path(facility_root).resolve())  # the health checks' seeds (docs/operations.md)
    env.update(connection_env(load_settings(), facility_url))
    key = signing_key or secret_file(home / "signing.key", lambda: secrets.token_hex(32))
    env.update(signing_connection_env(key))
    os.environ.update(env)
    return env


def seed_database(settings: dict | None = None) -> None:
    """Migrate the metadata database and write the variables and pools of airflow_settings.yaml.

    A variable that already exists keeps its value (it may hold state such as a deletion manifest); a
    JSON-object setting gains the keys added to airflow_settings.yaml since it was written.
    """
    from airflow.models import Variable
    from airflow.models.pool import Pool
    from airflow.utils.db import initdb

    settings = settings or load_settings()
    initdb()
    for var in settings["variables"]:
        name, value = var["variable_name"], var.get("variable_value")
        text = value if isinstance(value, str) else json.dumps(value)
        current = Variable.get(name, default_var=None)
        if current is None:
            Variable.set(name, text)
        elif (merged := _merge_new_keys(current, text)) is not None:
            Variable.set(name, merged)

    for pool in settings["pools"]:
        Pool.create_or_update_pool(
            pool["pool_name"],
            slots=int(pool.get("pool_slot", 1)),
            description=pool.get("pool_description", ""),
            include_deferred=bool(pool.get("include_deferred", False)),
        )


def _merge_new_keys(current: str, default: str) -> str | None:
    """For JSON-object settings: ``current`` plus the keys only ``default`` has (None if nothing to add)."""
    try:
        have, want = json.loads(current), json.loads(default)
    except ValueError:
        return None
    if not isinstance(have, dict) or not isinstance(want, dict) or set(want) <= set(have):
        return None
    return json.dumps({**want, **have})


def tolerate_dag_test_callback_context() -> None:
    """Let ``dag.test()`` run DAG callbacks of a DAG with a required Param (``file_path``).

    ``dag.test()`` (and only it: the dag-processor runs callbacks for real) builds the callback's context
    from the serialized task, whose required Params have no value there, and raises ParamValidationError
    instead of calling the callback (Airflow 3.1, ``DagRun.execute_dag_callbacks``). Here such a context
    is replaced by the minimal one the dag-processor also uses when it has no task instance: the DAG, the
    run and the reason. Idempotent; used by the tests and ``make dags-test``/``make demo``.
    """
    from airflow.models.dagrun import DagRun
    from airflow.sdk.exceptions import ParamValidationError

    original = DagRun.execute_dag_callbacks
    if getattr(original, "_als_tolerant", False):
        return

    def execute_dag_callbacks(self, dag, success, relevant_ti=None, reason="success"):
        try:
            return original(self, dag, success, relevant_ti, reason)
        except ParamValidationError:
            return original(self, dag, success, None, reason)

    execute_dag_callbacks._als_tolerant = True
    DagRun.execute_dag_callbacks = execute_dag_callbacks


@contextlib.contextmanager
def sandbox(prefix: str) -> Iterator[tuple[Any, Path]]:
    """A throw-away local Airflow (SQLite, airflow_settings.yaml seeded) and a running facility under a new
    temporary folder: yields ``(facility, folder)``; the facility is stopped on exit (benchmarks use it)."""
    from facility.process import Facility, free_port

    work = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_port()
    configure_environment(work / "airflow", facility_url=f"http://127.0.0.1:{port}", facility_root=work / "facility")
    seed_database()
    with Facility(work / "facility", port=port, log_file=work / "facility.log") as facility:
        yield facility, work
