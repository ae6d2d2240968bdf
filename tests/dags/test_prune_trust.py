"""Issue 26 finding 2: prune trusts nothing in the manifest Variables that it has not checked.

Entries are written here as a UI user could (``Variable.set``), for copies that exist on the local facility,
then the real prune DAG runs (dag.test, real globus-sdk): a refused entry deletes nothing, stays, and fails
the run naming its key. The rule cases are signed with the real key, so they show the read-time rules (the
same as the write-time ones), not only the signature.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from als_provider.hooks.globus_transfer import GlobusTransferHook
from include import manifests, pruning
from include.endpoints import REPO_ROOT
from include.manifests import KEY_PREFIX, DeletionRequest, ManifestEntry
from tests.dags.dag_helpers import entry_of_copy
from tools import manifests as manifests_cli

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC).replace(microsecond=0)
DUE = NOW - timedelta(days=1)


@pytest.fixture(scope="module")
def prune_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "prune.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("prune")
    dag.get_task("prune_manifests").retries = 0  # a refused entry fails at once; no retry to wait for
    return dag


@pytest.fixture
def names():
    """A scan of this test only (the facility's folders are shared by the session)."""
    folder = f"BLS-{uuid.uuid4().int % 100000:05d}_trust"
    return folder, f"{folder}/20230224_132553_trust.h5", f"{folder}/alcf/rec20230224_132553_trust"


def put(local_endpoints, endpoint: str, rel: str, payload: bytes) -> Path:
    path = local_endpoints[endpoint].posix_path(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def forge(store, endpoint: str, path: str, check: str, location: str, check_path: str | None = None) -> ManifestEntry:
    """An entry for what ``endpoint:path`` holds now (its record is easy to compute), signed, due yesterday."""
    key = manifests.entry_key(DUE.date(), "someone", "by-hand", endpoint, path)
    fields = {"dag_id": "someone", "run_id": "by-hand", "not_before": DUE, "created_at": DUE - timedelta(days=1)}
    hook = GlobusTransferHook()
    entry = entry_of_copy(hook, endpoint, path, check, location, key=key, check_path=check_path, **fields)
    store.set(entry.key, entry.to_json())
    return entry


def run_prune(dag, capfd) -> tuple[str, str]:
    """Run the prune DAG now; return (the task's state, its log: dag.test writes it to the console)."""
    from airflow.utils.session import create_session

    capfd.readouterr()
    dag_run = dag.test(run_conf={"dry_run": False})
    with create_session() as session:
        [ti] = dag_run.get_task_instances(session=session)
        state = ti.state
    out, err = capfd.readouterr()
    return state, out + err


def assert_refused(dag, store, entry: ManifestEntry, kept: list[Path], facility, capfd) -> None:
    """The run fails naming the entry; nothing is deleted; the entry stays for a person to look at."""
    state, log = run_prune(dag, capfd)
    assert state == "failed"
    assert all(path.exists() for path in kept), [str(p) for p in kept if not p.exists()]
    assert facility.stats().get("delete.submit", 0) == 0
    assert entry.key in store.keys(KEY_PREFIX)
    assert entry.key in log, log[-3000:]
    # the plan itself names the entry and counts it as an error (what fails the run)
    plan = pruning.check_entries(GlobusTransferHook(), list(manifests.due_entries(NOW)), GlobusTransferHook().endpoints)
    assert plan.errors >= 1 and not plan.deletable
    assert any(entry.key in f"{key} {what} {reason}" for key, what, reason in plan.kept)


def archive_scene(local_endpoints, rec: str) -> list[Path]:
    """Results on pscratch and their identical archive copy (nersc832_alsdev_scratch, long-term)."""
    files = []
    for row in range(2):
        payload = os.urandom(300 + row)
        files.append(put(local_endpoints, "nersc832_alsdev_pscratch_scratch", f"{rec}/s_{row:05d}.tiff", payload))
        files.append(put(local_endpoints, "nersc832_alsdev_scratch", f"{rec}/s_{row:05d}.tiff", payload))
    return files


def test_i26_finding_2_swapped_endpoints_delete_nothing_and_fail_the_prune(
    prune_dag, store, facility, local_endpoints, names, capfd
):
    """Found: an entry with endpoint/check_endpoint swapped deleted the NERSC long-term results archive."""
    _, _, rec = names
    files = archive_scene(local_endpoints, rec)
    entry = forge(store, "nersc832_alsdev_scratch", rec, "nersc832_alsdev_pscratch_scratch", "nersc_pscratch")
    assert_refused(prune_dag, store, entry, files, facility, capfd)


def test_i26_finding_2_a_whole_archive_folder_checked_against_data832_raw_is_refused(
    prune_dag, store, facility, local_endpoints, names, capfd
):
    """Found: a whole folder of nersc832_alsdev_scratch 'checked' against a data832_raw file was deleted."""
    folder, scan, rec = names
    files = archive_scene(local_endpoints, rec)
    files.append(put(local_endpoints, "data832_raw", scan, b"raw" * 100))
    entry = forge(store, "nersc832_alsdev_scratch", folder, "data832_raw", "data832", check_path=scan)
    assert_refused(prune_dag, store, entry, files, facility, capfd)


@pytest.mark.parametrize(
    ("endpoint", "check", "location"),
    [("nersc7012_raw", "data7012", "data7012"), ("nersc733_hpss", "nersc733_raw", "bl733_cfs")],
    ids=["nersc7012_raw", "nersc733_hpss"],
)
def test_i26_finding_2_an_entry_on_a_long_term_copy_is_refused(
    prune_dag, store, facility, local_endpoints, names, endpoint, check, location, capfd
):
    """Found: check_deletable accepted the only long-term copies of 7.0.1.2 and 7.3.3 raw data."""
    _, scan, _ = names
    payload = os.urandom(2048)
    files = [put(local_endpoints, endpoint, scan, payload), put(local_endpoints, check, scan, payload)]
    entry = forge(store, endpoint, scan, check, location)
    assert_refused(prune_dag, store, entry, files, facility, capfd)


def test_i26_finding_2_an_added_check_path_is_refused(prune_dag, store, facility, local_endpoints, names, capfd):
    """Found: a check_path turns verification into 'a non-empty file exists'. Here data832's raw scan, whose
    NERSC copy does not exist, is 'checked' against another scan's raw copy on nersc832."""
    folder, scan, _ = names
    files = [put(local_endpoints, "data832", f"raw/{scan}", os.urandom(1024))]
    files.append(put(local_endpoints, "nersc832", f"raw/{folder}/other.h5", b"x" * 10))
    entry = forge(store, "data832", f"raw/{scan}", "nersc832", "data832", check_path=f"raw/{folder}/other.h5")
    assert not local_endpoints["nersc832"].posix_path(f"raw/{scan}").exists()  # its only copy
    assert_refused(prune_dag, store, entry, files, facility, capfd)


def test_i26_finding_2_an_edited_entry_is_refused_as_edited_or_forged(
    prune_dag, store, facility, local_endpoints, names, capfd
):
    """An entry written by a pipeline, then edited in the Variables UI: its signature no longer matches."""
    _, scan, _ = names
    payload = os.urandom(1024)
    files = [put(local_endpoints, "alcf832_raw", scan, payload), put(local_endpoints, "data832_raw", scan, payload)]
    [(_, record)] = pruning.record_copies(
        GlobusTransferHook(), [DeletionRequest("alcf832_raw", scan, "data832_raw", "alcf")]
    )
    entry = manifests.schedule_deletion(
        endpoint="alcf832_raw", path=scan, check_endpoint="data832_raw", location="alcf", dag_id="bl832_alcf_recon",
        run_id="r1", record=record, now=NOW - timedelta(days=3), store=store,
    )  # fmt: skip
    data = json.loads(store.get(entry.key))
    data["check_endpoint"] = "data832"  # the same files through another name: harmless, but not what was signed
    data["path"] = scan.rpartition("/")[0]  # and the whole folder
    store.set(entry.key, json.dumps(data))
    state, log = run_prune(prune_dag, capfd)
    assert state == "failed" and all(path.exists() for path in files)
    [bad] = list(manifests.due_entries(NOW, store=store))
    assert isinstance(bad, manifests.BadEntry) and bad.kind == "refused"
    assert "edited or forged" in bad.reason and entry.key in bad.reason
    assert json.loads(os.environ["AIRFLOW_CONN_ALS_SIGNING"])["password"] not in log  # the key never reaches a log


def test_i26_finding_2_an_unsigned_entry_is_refused_until_reviewed_and_resigned(
    prune_dag, store, facility, local_endpoints, names, capfd
):
    """Entries written before signing (version 2) are refused; an operator re-signs them after review."""
    _, scan, _ = names
    payload = os.urandom(1024)
    files = [put(local_endpoints, "alcf832_raw", scan, payload), put(local_endpoints, "data832_raw", scan, payload)]
    entry = forge(store, "alcf832_raw", scan, "data832_raw", "alcf")
    data = json.loads(store.get(entry.key))
    del data["sig"]
    data["v"] = 2
    store.set(entry.key, json.dumps(data))
    assert_refused(prune_dag, store, entry, files, facility, capfd)
    assert manifests_cli.main(["review"]) == 0
    assert entry.key in capfd.readouterr().out
    assert manifests_cli.main(["resign", entry.key]) == 0
    assert manifests.review(store=store) == []
    state, _ = run_prune(prune_dag, capfd)
    assert state == "success" and not files[0].exists() and files[1].exists()
