"""End-to-end fixtures: one real stack (tools/local_stack.py) on PostgreSQL for the whole session.

The stack runs Airflow's own processes (api-server, scheduler, dag-processor, triggerer, LocalExecutor)
on a database and role of its own (``als_e2e_<random>``, new each session and dropped at its end: two sessions
on one PostgreSQL never touch each other's database), with the local
facility on a free port and every file under a temporary home. Tests talk to it over HTTP and the CLI only.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from facility.process import free_port
from include.endpoints import load_endpoints
from tools.demo import DEMO_FOLDER
from tools.local_airflow import load_settings
from tools.local_stack import LocalStack

DISPATCHER = "bl832_dispatcher"


def unique_database(prefix: str) -> str:
    """A database name of this session only: never an earlier or a concurrent session's (nothing to drop)."""
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


#: The stack's own database, unique to this session (``ALS_E2E_DATABASE`` names one; still dropped at the end).
E2E_DATABASE = os.environ.get("ALS_E2E_DATABASE") or unique_database("als_e2e")


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end test on the real local stack (PostgreSQL, Airflow processes)")


@pytest.fixture(scope="session")
def stack():
    """The running stack (LocalExecutor); stopped, every process of it, at the end of the session."""
    home = Path(tempfile.mkdtemp(prefix="als-e2e-"))
    local = LocalStack(home, port=free_port(), database=E2E_DATABASE)
    local.drop_database()  # a name given through ALS_E2E_DATABASE may hold an earlier session's
    with local.running(timeout=300):
        yield local


@pytest.fixture
def write_scan(stack) -> Callable[[str], str]:
    """Write a tiny sample scan on the stack's spot832; return its ``file_path`` conf (beamline form)."""
    from compute_functions.sample_scan import write_sample_scan

    def write(tag: str) -> str:
        name = f"{datetime.now(UTC):%Y%m%d_%H%M%S}_e2e{tag}.h5"
        target = load_endpoints("local", facility_root=stack.facility_root)["spot832"].posix_path(
            f"raw/{DEMO_FOLDER}/{name}"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        write_sample_scan(target, size="tiny")
        return f"/global/raw/{DEMO_FOLDER}/{name}"

    return write


def cli_trigger(stack: LocalStack, dag_id: str, conf: dict) -> str:
    """``airflow dags trigger --conf`` against the stack; return the new run's id."""
    stack.unpause(dag_id)
    result = stack.cli("dags", "trigger", dag_id, "--conf", json.dumps(conf), "--output", "json")
    assert result.returncode == 0, f"airflow dags trigger failed:\n{result.stderr[-2000:]}"
    rows = json.loads(next(line for line in reversed(result.stdout.splitlines()) if line.startswith("[")))
    return rows[0]["dag_run_id"]


def connection_secrets() -> list[str]:
    """Every connection password of airflow_settings.yaml, and each long line of a multi-line one (a key)."""
    found: set[str] = set()
    for conn in load_settings()["connections"]:
        password = (conn.get("conn_password") or "").strip()
        if password:
            found.add(password)
            found.update(line.strip() for line in password.splitlines() if len(line.strip()) >= 32)
    return sorted(found)


def find_secrets(texts: Iterable[tuple[str, str]], secrets: list[str]) -> list[str]:
    """``where: secret prefix`` for every (where, text) that holds one of ``secrets``."""
    return [f"{where}: {secret[:6]}..." for where, text in texts for secret in secrets if secret in text]


def wait_for_task_state(
    stack: LocalStack, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 180
) -> str:
    """Poll one task instance until it is in ``states``; return the state."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}").json()["state"]
        if state in states:
            return state
        assert stack.run_state(dag_id, run_id) not in ("success", "failed"), f"run ended while {task_id} was {state}"
        time.sleep(1.0)
    raise TimeoutError(f"{task_id} still {state} after {timeout:.0f}s (wanted {sorted(states)})")
