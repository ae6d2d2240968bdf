"""Test session setup: a private Airflow home (SQLite) and a local facility on a free port.

The environment is set at import time, before anything imports airflow, so every layer of the tests
(hooks, operators, DAGs) reads the local profile's connections pointed at this session's facility.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path

import pytest

from facility.process import Facility, free_port
from tools.local_airflow import configure_environment

SESSION_DIR = Path(tempfile.mkdtemp(prefix="als-tests-"))
FACILITY_ROOT = SESSION_DIR / "facility"
FACILITY_PORT = free_port()
# A manifest signing key (Connection als_signing) of this run only: nothing signed elsewhere verifies here.
configure_environment(
    SESSION_DIR / "airflow",
    facility_url=f"http://127.0.0.1:{FACILITY_PORT}",
    facility_root=FACILITY_ROOT,
    signing_key=secrets.token_hex(32),
)
# A second bundle holds DAGs that exist only for tests (dag.test() runs DAGs found in a bundle).
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
        {
            "name": "test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(Path(__file__).parent / "fixture_dags")},
        },
    ]
)


@pytest.fixture(scope="session")
def facility_session():
    with Facility(FACILITY_ROOT, port=FACILITY_PORT, log_file=SESSION_DIR / "facility.log") as facility:
        yield facility


@pytest.fixture
def facility(facility_session):
    """The running local facility, with counters and faults reset for this test."""
    facility_session.reset()
    yield facility_session
    facility_session.reset()


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated metadata database with the variables and pools of airflow_settings.yaml."""
    from tools.local_airflow import seed_database, tolerate_dag_test_callback_context

    seed_database()
    tolerate_dag_test_callback_context()


@pytest.fixture(scope="session")
def local_endpoints():
    from include.endpoints import load_endpoints

    return load_endpoints("local", facility_root=FACILITY_ROOT)


@pytest.fixture
def store(airflow_db):
    """The metadata database's Variables, with no deletion-manifest entry before or after the test."""
    from include.manifests import KEY_PREFIX, MetadataDbVariables

    store = MetadataDbVariables()
    for key in store.keys(KEY_PREFIX):
        store.delete(key)
    yield store
    for key in store.keys(KEY_PREFIX):
        store.delete(key)


@pytest.fixture
def statsd_received(monkeypatch):
    """Airflow's StatsD metrics (influx-style tags) pointed at a UDP socket on 127.0.0.1; returns a function
    ``received(wanted="", timeout=5.0)``: the StatsD lines received until one starts with ``wanted`` and the socket
    goes quiet (all it got by ``timeout`` otherwise)."""
    import socket
    import time

    import statsd  # noqa: F401  (StatsD metrics need it: apache-airflow[statsd] / statsd==4.0.1)
    from airflow.sdk._shared.observability.metrics import stats
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    for key, value in {
        "STATSD_ON": "True",
        "STATSD_HOST": "127.0.0.1",
        "STATSD_PORT": str(sock.getsockname()[1]),
        "STATSD_PREFIX": "airflow",
        "STATSD_INFLUXDB_ENABLED": "True",
    }.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)
    # as a fresh task process would start: not yet initialised, so the first metric reads [metrics]
    monkeypatch.setattr(stats, "_factory", None)
    monkeypatch.setattr(stats, "_backend", None)

    def received(wanted: str = "", timeout: float = 5.0) -> list[str]:
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                lines += sock.recv(65536).decode().splitlines()
            except TimeoutError:
                if any(line.startswith(wanted) for line in lines):
                    return lines
        return lines

    yield received
    stats.initialize(factory=NoStatsLogger, export_legacy_names=True)
    sock.close()


#: Tests that share one expensive stack per process: under pytest-xdist (``make test`` runs two workers) each
#: group runs on one worker, so a session starts each stack once; every other test is scheduled on its own.
XDIST_GROUPS = {"tests/e2e/": "e2e-stack", "tests/ui/": "ui-stack"}


def pytest_xdist_make_scheduler(config, log):
    """Load scheduling with the stack groups kept whole. (xdist's ``--dist loadgroup`` does not work with
    pytest 9: it renames ``item._nodeid``, which pytest 9 no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class StackGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return next((group for prefix, group in XDIST_GROUPS.items() if nodeid.startswith(prefix)), nodeid)

    return StackGroups(config, log)
