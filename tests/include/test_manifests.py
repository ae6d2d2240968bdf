"""Deletion manifests: validation, due computation, retention from the Variable, concurrent appends."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from include import manifests
from include.endpoints import REPO_ROOT
from include.errors import ConfigError, InvalidPathError
from include.manifests import (
    KEY_PREFIX,
    RETENTION_VARIABLE,
    BadEntry,
    ManifestEntry,
    ManifestError,
    due_entries,
    due_keys,
    remove_entries,
    retention_days,
    schedule_deletion,
)
from include.records import Record

NOW = datetime(2026, 11, 2, 15, 30, tzinfo=UTC)
RUN = {"dag_id": "new_832_file", "run_id": "manual__2026-11-02T15:30:00+00:00"}
RECORD = Record(size=1234, files=1, mtime="2026-11-02 15:29:00+00:00", digest="d" * 32, checksum="sha256:ABC")


@pytest.fixture
def store(store):
    """The metadata-DB Variables with an empty manifest (tests/conftest.py) and the default retention table."""
    saved = store.get(RETENTION_VARIABLE)
    yield store
    store.set(RETENTION_VARIABLE, saved)


def retention(store, **days) -> None:
    """The settings' retention table with ``days`` laid over it (tests of the rules, not of the defaults)."""
    store.set(RETENTION_VARIABLE, json.dumps({**json.loads(store.get(RETENTION_VARIABLE)), **days}))


def schedule(store, **overrides):
    args = {
        "endpoint": "alcf832_raw",
        "path": "BLS-00564_dyparkinson/20230224_132553_sea_shell.h5",
        "check_endpoint": "nersc832_alsdev_raw",
        "location": "alcf",
        "now": NOW,
        "store": store,
        "record": RECORD,
        **RUN,
    }
    args.update(overrides)
    return schedule_deletion(**args)


def test_schedule_records_an_entry_due_after_the_locations_retention(store):
    entry = schedule(store)
    assert entry.not_before == NOW + timedelta(days=1)
    assert entry.key.startswith(f"{KEY_PREFIX}20261103/")
    stored = ManifestEntry.from_json(entry.key, store.get(entry.key))
    assert stored == entry
    assert (stored.size, stored.checksum, stored.dag_id, stored.run_id) == (1234, "sha256:ABC", *RUN.values())
    assert stored.record == RECORD


def test_retention_days_come_from_the_variable_with_the_settings_defaults(store):
    """Upstream's production numbers (issue 22: splash_flows scripts/create_832_variable_blocks.py, bl733/move.py)."""
    locations = ("spot832", "data832", "alcf", "data832_scratch", "nersc_pscratch", "data733")
    assert {loc: retention_days(loc, store=store) for loc in locations} == {
        "spot832": 1,
        "data832": 35,
        "alcf": 1,
        "data832_scratch": 14,
        "nersc_pscratch": 7,
        "data733": 180,
    }
    store.set(RETENTION_VARIABLE, json.dumps({"alcf": 10}))
    assert schedule(store).not_before == NOW + timedelta(days=10)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"alcf": -1}', "integer >= 0"),
        ('{"alcf": "2"}', "integer >= 0"),
        ("[2]", "JSON object"),
        ("two", "not JSON"),
    ],
)
def test_a_bad_retention_variable_is_a_clear_error(store, value, message):
    store.set(RETENTION_VARIABLE, value)
    with pytest.raises(ConfigError, match=message):
        schedule(store)


def test_unknown_location_is_refused(store):
    with pytest.raises(ConfigError, match=r"unknown retention location .mars.*alcf"):
        schedule(store, location="mars")
    assert store.keys(KEY_PREFIX) == []


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"endpoint": "nowhere"}, ConfigError, "unknown endpoint"),
        ({"check_endpoint": "nowhere"}, ConfigError, "unknown endpoint"),
        ({"path": "/data/raw/f/s.h5"}, InvalidPathError, "absolute"),
        ({"path": "f/../../s.h5"}, InvalidPathError, r"'\.\.'"),
        ({"path": ""}, InvalidPathError, "empty"),
        ({"path": "."}, InvalidPathError, r"'\.'"),
        ({"check_endpoint": None}, ManifestError, "no check endpoint"),
        ({"endpoint": "nersc832", "path": "raw/f/s.h5", "check_endpoint": "data832_raw"}, ManifestError, "never"),
        ({"endpoint": "nersc832", "path": "raw", "check_endpoint": "data832"}, ManifestError, "never"),
        # the parent of raw/ would take raw/ with it
        ({"endpoint": "nersc832", "path": "x/..", "check_endpoint": "data832"}, InvalidPathError, r"'\.\.'"),
        # the same directory through another collection mounting the same file system
        (
            {"endpoint": "nersc832_alsdev_raw", "path": "f/s.h5", "check_endpoint": "data832_raw"},
            ManifestError,
            "never",
        ),
        # data832:raw/x is data832_raw:x -- the same file, not a copy
        ({"endpoint": "data832", "path": "raw/f/s.h5", "check_endpoint": "data832"}, ManifestError, "same data"),
        ({"record": None}, ManifestError, "no record of what was copied"),
        ({"endpoint": "nersc832", "path": "scratch/rec1", "check_endpoint": "data832_scratch"}, ManifestError, "long"),
        ({"location": "data832"}, ManifestError, "retention location 'alcf', not 'data832'"),
        ({"run_id": ""}, ManifestError, "run_id"),
        ({"now": datetime(2026, 11, 2)}, ManifestError, "time zone"),
    ],
)
def test_unsafe_or_malformed_entries_are_refused(store, overrides, error, message):
    with pytest.raises(error, match=message):
        schedule(store, **overrides)
    assert store.keys(KEY_PREFIX) == []


def test_finding_3_an_entry_whose_check_copy_falls_due_first_is_refused(store):
    """Found 3: pscratch results (7 days) checked against data832_scratch (3 days) were kept forever."""
    rec = "BLS-00564_dyparkinson/nersc/rec20230224_132553_sea_shell"
    pscratch = {"endpoint": "nersc832_alsdev_pscratch_scratch", "path": rec, "location": "nersc_pscratch"}
    retention(store, data832_scratch=3)  # the numbers of the finding (the defaults are 14 since issue 22)
    with pytest.raises(ManifestError, match=r"data832_scratch \(data832_scratch, 3 days\), which falls due first"):
        schedule(store, **pscratch, check_endpoint="data832_scratch")
    assert store.keys(KEY_PREFIX) == []
    schedule(store, **pscratch, check_endpoint="nersc832_alsdev_scratch")  # the long-term NERSC copy
    schedule(store, endpoint="alcf832_scratch", path=rec, location="alcf", check_endpoint="data832_scratch")
    store.set(RETENTION_VARIABLE, json.dumps({"alcf": 5, "data832_scratch": 3}))  # the order is read at schedule
    with pytest.raises(ManifestError, match="falls due first"):
        schedule(store, endpoint="alcf832_scratch", path=rec, location="alcf", check_endpoint="data832_scratch")


def test_same_run_and_path_is_idempotent_and_distinct_runs_are_distinct_entries(store):
    first = schedule(store)
    again = schedule(store)
    other = schedule(store, run_id="manual__other")
    assert first.key == again.key != other.key
    assert len(store.keys(KEY_PREFIX)) == 2


def test_due_entries_respect_as_of_to_the_second(store):
    retention(store, alcf=2, spot832=0)  # (not the defaults: one entry due at once, one later)
    alcf = schedule(store)  # due NOW + 2 days
    pscratch = schedule(store, endpoint="nersc832_alsdev_pscratch_raw", location="nersc_pscratch")  # + 7 days
    spot = schedule(store, endpoint="spot832", path="raw/f/s.h5", check_endpoint="data832_raw", location="spot832")
    assert [e.key for e in due_entries(NOW, store=store)] == [spot.key]
    just_before = alcf.not_before - timedelta(seconds=1)
    # the day's key is listed, but the entry is not yet due
    assert alcf.key in due_keys(just_before, store=store)
    assert {e.key for e in due_entries(just_before, store=store)} == {spot.key}
    assert {e.key for e in due_entries(alcf.not_before, store=store)} == {spot.key, alcf.key}
    assert {e.key for e in due_entries(NOW + timedelta(days=30), store=store)} == {spot.key, alcf.key, pscratch.key}
    # only the days up to as_of are read
    assert pscratch.key not in due_keys(NOW + timedelta(days=6), store=store)


def test_malformed_stored_entries_are_reported_not_acted_on(store):
    store.set(f"{KEY_PREFIX}20260101/deadbeef", "{not json")
    store.set(f"{KEY_PREFIX}20260101/cafe", json.dumps({"v": 99}))
    store.set(f"{KEY_PREFIX}notaday/x", "{}")  # not a manifest key: ignored
    found = list(due_entries(NOW, store=store))
    assert all(isinstance(item, BadEntry) for item in found)
    assert sorted(item.key for item in found) == [f"{KEY_PREFIX}20260101/cafe", f"{KEY_PREFIX}20260101/deadbeef"]


def test_remove_entries_deletes_only_manifest_keys(store):
    entry = schedule(store)
    with pytest.raises(ManifestError):
        remove_entries([RETENTION_VARIABLE], store=store)
    assert remove_entries([entry.key], store=store) == 1
    assert store.keys(KEY_PREFIX) == []
    assert store.get(RETENTION_VARIABLE) is not None


def test_a_variable_has_no_compare_and_set(store):
    """Why writers never share a key: two read-modify-writes of one Variable silently lose an entry."""
    shared = f"{KEY_PREFIX}shared-list"
    store.set(shared, "[]")
    barrier = threading.Barrier(2)

    def append(item):
        current = json.loads(store.get(shared))
        barrier.wait()  # both have read before either writes
        store.set(shared, json.dumps([*current, item]))

    threads = [threading.Thread(target=append, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(json.loads(store.get(shared))) == 1  # one append lost, no error raised


WRITER = """
import sys, time
from datetime import UTC, datetime
from include.manifests import schedule_deletion
from include.records import Record
writer, count, start = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
for i in range(count):
    for _attempt in range(20):
        try:
            schedule_deletion(
                endpoint="alcf832_raw", path=f"w{writer}/scan_{i}.h5", check_endpoint="data832_raw",
                location="alcf", dag_id="alcf_recon", run_id=f"run_{writer}", now=datetime(2026, 11, 2, tzinfo=UTC),
                record=Record(size=1, files=1, mtime="t", digest="0" * 32),
            )
            break
        except Exception as exc:  # a locked SQLite file is an error, never a silent loss
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    else:
        raise SystemExit(f"writer {writer}: entry {i} not written")
"""


@pytest.mark.slow
def test_concurrent_pipelines_lose_no_entry(store):
    """Many processes append at the same moment through the real Variable API on one database."""
    writers, per_writer = 6, 40
    start = time.time() + 8  # every process has imported Airflow by then
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(w), str(per_writer), str(start)],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for w in range(writers)
    ]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * writers, outputs
    entries = list(manifests.load_entries(store.keys(KEY_PREFIX), store=store))
    assert len(entries) == writers * per_writer
    assert {(e.run_id, e.path) for e in entries} == {
        (f"run_{w}", f"w{w}/scan_{i}.h5") for w in range(writers) for i in range(per_writer)
    }


# -- issue 21 finding 15, issue 26 finding 2: keys that retries reuse, entries that cannot be forged ---------
def test_i21_finding_15_a_finish_retried_across_utc_midnight_rewrites_the_same_key(store):
    """Found 15: the key's day came from the time of the write, so a try after UTC midnight wrote a second entry."""
    run_after = datetime(2026, 11, 2, 23, 40, tzinfo=UTC)
    first = schedule(store, since=run_after, now=datetime(2026, 11, 2, 23, 59, tzinfo=UTC))
    retry = schedule(store, since=run_after, now=datetime(2026, 11, 3, 0, 4, tzinfo=UTC))
    assert first.key == retry.key and store.keys(KEY_PREFIX) == [first.key]
    assert retry.not_before == datetime(2026, 11, 4, 0, 4, tzinfo=UTC)  # retention still counts from the record
    [entry] = due_entries(retry.not_before, store=store)
    assert entry == retry
    with pytest.raises(ManifestError, match=r"since .* is after now"):
        schedule(store, since=NOW + timedelta(hours=1))


def forge(store, **fields) -> str:
    """An entry as a UI user could write it, signed with the real key (so only the rules can refuse it)."""
    entry = ManifestEntry(
        key=f"{KEY_PREFIX}20261101/forged",
        **{
            "endpoint": "alcf832_raw",
            "path": "BLS-00564_dyparkinson/20230224_132553_sea_shell.h5",
            "check_endpoint": "data832_raw",
            "location": "alcf",
            "not_before": NOW - timedelta(days=1),
            "created_at": NOW - timedelta(days=3),
            "dag_id": "someone",
            "run_id": "by-hand",
            **RECORD.to_dict(),
            **fields,
        },
    )
    store.set(entry.key, entry.to_json())
    return entry.key


REC = "BLS-00564_dyparkinson/nersc/rec20230224_132553_sea_shell"
SCAN_RAW = "raw/BLS-00564_dyparkinson/20230224_132553_sea_shell.h5"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # endpoint and check copy swapped: the long-term NERSC results archive as the target
        (
            {"endpoint": "nersc832_alsdev_scratch", "path": REC, "check_endpoint": "nersc832_alsdev_pscratch_scratch",
             "location": "nersc_pscratch"},
            "long-term copies of nersc832_alsdev_scratch",
        ),
        (
            {"endpoint": "nersc832_alsdev_scratch", "path": "BLS-00564_dyparkinson", "check_endpoint": "data832_raw",
             "location": "data832", "check_path": "BLS-00564_dyparkinson/20230224_132553_sea_shell.h5"},
            "long-term copies of nersc832_alsdev_scratch",
        ),
        ({"endpoint": "nersc7012_raw", "check_endpoint": "data7012", "location": "data7012"}, "nersc7012_raw"),
        ({"endpoint": "nersc733_hpss", "check_endpoint": "nersc733_raw", "location": "bl733_cfs"}, "nersc733_hpss"),
        # a check_path where regeneration is not allowed, or not the scan's raw copy
        ({"check_path": "BLS-00564_dyparkinson/other.h5"}, "check_path is only the scan's long-term raw copy"),
        (
            {"endpoint": "data832", "path": SCAN_RAW, "check_endpoint": "nersc832", "location": "data832",
             "check_path": "raw/BLS-00564_dyparkinson/20230101_000000_other.h5"},
            "nor a marker or log",
        ),
        (
            {"endpoint": "data832_scratch", "path": REC, "check_endpoint": "nersc832", "location": "data832_scratch",
             "check_path": SCAN_RAW},
            "not the results on data832_scratch",  # the nersc site is not opted in to regenerate_from_raw
        ),
        ({"location": "spot832"}, "retention location 'alcf', not 'spot832'"),
        (
            {"endpoint": "data832", "path": SCAN_RAW, "check_endpoint": "data832", "location": "data832"},
            "same data",
        ),
        (
            {"endpoint": "nersc832_alsdev_pscratch_raw", "check_endpoint": "alcf832_raw", "location": "nersc_pscratch"},
            "falls due first",
        ),
        ({"size": None, "digest": None}, "no record"),
    ],
    ids=["swapped", "whole-archive-folder", "nersc7012_raw", "nersc733_hpss", "check_path-not-raw",
         "check_path-other-scan", "check_path-not-opted-in", "location", "check-is-target", "check-due-first",
         "no-record"],
)  # fmt: skip
def test_i26_finding_2_a_stored_entry_is_held_to_the_write_rules_when_read(store, fields, message):
    """Found: only check_deletable ran when an entry was read; now every write-time rule runs again."""
    key = forge(store, **fields)
    [item] = due_entries(NOW, store=store)
    assert isinstance(item, BadEntry) and item.kind == "refused", item
    assert key in item.reason
    assert re.search(message, item.reason), item.reason


def test_i26_finding_2_the_entries_pipelines_write_are_accepted_when_read(store):
    """The regenerable results of an opted-in site and the usual copies pass the read-time rules."""
    schedule(store)
    schedule(store, endpoint="data832_scratch", path="BLS-00564_dyparkinson/alcf/rec20230224_132553_sea_shell",
             check_endpoint="nersc832", location="data832_scratch", check_path=SCAN_RAW)  # fmt: skip
    schedule(store, endpoint="nersc733_raw", path="f/s.h5", check_endpoint="nersc733_hpss", location="bl733_cfs")
    items = list(due_entries(NOW + timedelta(days=3650), store=store))
    assert len(items) == 3 and not [item for item in items if isinstance(item, BadEntry)]


def test_i26_finding_2_an_edited_or_unsigned_entry_is_refused(store):
    entry = schedule(store, now=NOW - timedelta(days=3))
    data = json.loads(store.get(entry.key))
    store.set(entry.key, json.dumps({**data, "check_endpoint": "data832_raw"}))  # an edit the rules allow
    [item] = due_entries(NOW, store=store)
    assert item.kind == "refused" and "edited or forged" in item.reason and entry.key in item.reason
    del data["sig"]
    store.set(entry.key, json.dumps({**data, "v": 2}))  # written before entries were signed
    [item] = due_entries(NOW, store=store)
    assert item.kind == "refused" and "unsigned version 2" in item.reason and "resign" in item.reason
    store.set(entry.key, json.dumps({**data, "sig": entry.to_json()[-20:]}))  # a signature that is not one
    [item] = due_entries(NOW, store=store)
    assert item.kind == "refused" and "edited or forged" in item.reason
    [resigned] = manifests.resign([entry.key], store=store)  # after a person reviewed it
    assert resigned == entry and list(due_entries(NOW, store=store)) == [entry]


def test_i26_finding_2_a_missing_or_placeholder_signing_key_is_a_one_line_error(store, monkeypatch):
    from include import signing
    from tools.local_airflow import signing_connection_env

    try:
        monkeypatch.delenv("AIRFLOW_CONN_ALS_SIGNING")
        signing.reset_key_cache()
        with pytest.raises(ConfigError, match=r"Connection 'als_signing'.*missing.*airflow connections add") as err:
            schedule(store)
        assert "\n" not in str(err.value)
        monkeypatch.setenv("AIRFLOW_CONN_ALS_SIGNING", signing_connection_env("replace-me-with-a-random-secret")[
            "AIRFLOW_CONN_ALS_SIGNING"])  # fmt: skip
        signing.reset_key_cache()
        with pytest.raises(ConfigError, match="placeholder"):
            schedule(store)
    finally:
        monkeypatch.undo()
        signing.reset_key_cache()
    assert store.keys(KEY_PREFIX) == []
