"""Issue 22, item 2: upstream's retention is the default (airflow_settings.yaml, Variable als_retention_days).

Upstream (als-computing/splash_flows at 1648452, scripts/create_832_variable_blocks.py:8-18) keeps a scan 35 days on
data832 and 1 day on spot832; ours used to prune data832 after 3 days and spot832 at once. The real prune DAG
(dag.test, metadata DB, real globus-sdk against the local facility) runs on entries recorded as the new-scan
pipeline records them, moved into the past (prune refuses a future ``as_of``), with the settings' retention.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from als_provider.hooks.globus_transfer import GlobusTransferHook
from include import manifests
from include.manifests import KEY_PREFIX, DeletionRequest
from include.pruning import record_copies
from tests.dags.dag_helpers import load_dag, states

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]


def new_scan(local_endpoints, *, check_bytes: bytes | None = None) -> tuple[str, dict]:
    """A scan on spot832, data832 and its long-term copy nersc832 (``check_bytes``: a long-term copy that differs)."""
    token = uuid.uuid4().hex[:8]
    rel = f"raw/BLS-00022_keep{token}/20261201_120000_keep{token}.h5"
    payload = os.urandom(2048)
    files = {}
    for endpoint, data in (("spot832", payload), ("data832", payload), ("nersc832", check_bytes or payload)):
        path = local_endpoints[endpoint].posix_path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[endpoint] = path
    return rel, files


def record(rel: str, *, hours_ago: float) -> dict[str, str]:
    """As new_832_file's finish records its copies (spot832 against data832, data832 against nersc832), ``hours_ago``
    hours ago with the settings' retention; returns {endpoint: manifest key}."""
    requests = [
        DeletionRequest("spot832", rel, "data832", "spot832"),
        DeletionRequest("data832", rel, "nersc832", "data832"),
    ]
    then = datetime.now(UTC) - timedelta(hours=hours_ago)
    recorded = manifests.schedule_deletions(
        record_copies(GlobusTransferHook(), requests), dag_id="new_832_file", run_id=f"scheduled__{rel}", now=then
    )
    return {entry["endpoint"]: entry["key"] for entry in recorded}


def prune() -> None:
    run = load_dag("prune").test(run_conf={"dry_run": False})
    assert run.state == "success", states(run)


def test_a_prune_at_30_days_keeps_data832_raw_and_at_36_days_it_goes(facility, store, local_endpoints):
    kept_rel, kept = new_scan(local_endpoints)
    gone_rel, gone = new_scan(local_endpoints)
    kept_keys = record(kept_rel, hours_ago=30 * 24)
    gone_keys = record(gone_rel, hours_ago=36 * 24)
    prune()
    assert kept["data832"].is_file() and kept_keys["data832"] in store.keys(KEY_PREFIX)  # due at day 35
    assert not gone["data832"].exists() and gone_keys["data832"] not in store.keys(KEY_PREFIX)
    assert not kept["spot832"].exists() and not gone["spot832"].exists()  # 1 day on spot832
    assert kept["nersc832"].is_file() and gone["nersc832"].is_file()  # the long-term copy stays


def test_at_36_days_data832_raw_goes_only_against_a_verified_nersc_copy(facility, store, local_endpoints):
    rel, files = new_scan(local_endpoints, check_bytes=b"damaged")
    keys = record(rel, hours_ago=36 * 24)
    prune()
    assert files["data832"].is_file() and keys["data832"] in store.keys(KEY_PREFIX)


def test_spot832_survives_a_prune_at_12_hours_and_goes_after_a_day(facility, store, local_endpoints):
    young_rel, young = new_scan(local_endpoints)
    old_rel, old = new_scan(local_endpoints)
    young_keys = record(young_rel, hours_ago=12)
    record(old_rel, hours_ago=25)
    prune()
    assert young["spot832"].is_file() and young_keys["spot832"] in store.keys(KEY_PREFIX)
    assert not old["spot832"].exists()
    assert young["data832"].is_file() and old["data832"].is_file()
