"""compute_functions.results_manifest: the manifest written last, its check, and one writer per run key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from compute_functions import results_manifest as rm


def results(tmp_path, n: int = 3):
    folder = tmp_path / "rec20230224_132553_sample"
    folder.mkdir()
    for i in range(n):
        (folder / f"slice_{i:04d}.tiff").write_bytes(b"x" * (10 + i))
    return folder


def test_write_names_the_totals_and_lists_every_file(tmp_path):
    folder = results(tmp_path)
    (folder / "sub").mkdir()
    (folder / "sub" / "chunk").write_bytes(b"yy")
    (folder / ".zattrs").write_bytes(b"{}")  # hidden Zarr metadata counts too
    written = rm.write(folder)
    assert written == {"manifest": "results-manifest-5-files-37-bytes.json", "count": 5, "bytes": 37}
    document = json.loads((folder / written["manifest"]).read_text())
    assert document["files"]["sub/chunk"] == 2
    assert rm.check(folder)["count"] == 5
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_rewrite_replaces_the_old_manifest_and_check_finds_extras(tmp_path):
    folder = results(tmp_path)
    rm.write(folder)
    (folder / "slice_9999.tiff").write_bytes(b"stale")
    with pytest.raises(rm.ManifestError, match="extra"):
        rm.check(folder)
    rm.write(folder)
    assert len([p for p in folder.iterdir() if rm.NAME.match(p.name)]) == 1


def test_the_name_is_the_contract_include_results_reads():
    from include.results import MANIFEST_NAME

    assert MANIFEST_NAME.pattern == rm.NAME.pattern
    assert MANIFEST_NAME.match(rm.manifest_name(12, 3456)).groups() == ("12", "3456")


def test_cli_writes_manifests(tmp_path):
    folder = results(tmp_path, 2)
    done = subprocess.run(
        [sys.executable, "-m", "compute_functions.results_manifest", str(folder)], capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert rm.check(folder)["count"] == 2


def test_run_once_a_second_call_of_the_same_key_does_not_run(tmp_path):
    calls = []

    def produce():
        calls.append(1)
        return {"n": len(calls)}

    output = tmp_path / "out"
    assert rm.run_once(output, "key-1", produce) == {"n": 1}
    assert rm.run_once(output, "key-1", produce) == {"n": 1, "duplicate_of_earlier_call": True}
    assert rm.run_once(output, "key-2", produce) == {"n": 2}  # a re-run (Clear) runs
    assert len(calls) == 2


def test_run_once_a_concurrent_duplicate_waits_for_the_writer(tmp_path):
    """Two Compute tasks of one submission (the first answer lost): only one writes."""
    output, writing, calls = tmp_path / "out", threading.Event(), []

    def produce():
        calls.append(threading.current_thread().name)
        writing.set()
        time.sleep(1.5)
        return {"by": threading.current_thread().name}

    answers = {}
    first = threading.Thread(target=lambda: answers.setdefault("a", rm.run_once(output, "k", produce)), name="a")
    first.start()
    writing.wait(5)
    answers["b"] = rm.run_once(output, "k", produce)
    first.join()
    assert calls == ["a"]
    assert answers["b"] == {"by": "a", "duplicate_of_earlier_call": True}


def test_run_once_takes_over_the_lock_of_a_dead_writer(tmp_path):
    output = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ".out.run-lock"
    lock.write_text(json.dumps({"key": "k", "host": os.uname().nodename, "pid": dead.pid}))
    assert rm.run_once(output, "k", lambda: {"ran": True}) == {"ran": True}
    assert not lock.exists()


def test_produce_once_writes_the_manifest_of_the_produced_folder(tmp_path):
    folder = tmp_path / "rec1"

    def produce():
        folder.mkdir()
        (folder / "a.tiff").write_bytes(b"abc")
        return {"tiff_dir": str(folder)}

    summary = rm.produce_once("k", folder, "tiff_dir", produce)
    assert summary["manifest"]["manifest"] == "results-manifest-1-files-3-bytes.json"
    assert rm.check(folder)["bytes"] == 3


def test_i21_finding_8_a_dead_writers_lease_expires_with_the_tasks_timeout(tmp_path):
    """Issue 21 finding 8: the lock of a writer that died on another host (OOM, walltime) blocked for 6 h,
    longer than the 2 h Compute timeout. It is a lease of the task's own timeout now."""
    output, lock = tmp_path / "out", tmp_path / ".out.run-lock"
    lock.write_text(json.dumps({"key": "k", "host": "another-node", "pid": 1, "lease": 1.0}))
    old = time.time() - 2
    os.utime(lock, (old, old))  # not renewed for longer than its lease: the writer is gone
    started = time.monotonic()
    assert rm.run_once(output, "k", lambda: {"ran": True}, lease_seconds=1.0) == {"ran": True}
    assert time.monotonic() - started < 5


def test_i21_finding_8_a_live_writer_renews_its_lease(tmp_path):
    """A writer running longer than its lease keeps the lock: a second call waits and takes its result."""
    output, writing, calls = tmp_path / "out", threading.Event(), []

    def produce():
        calls.append(threading.current_thread().name)
        writing.set()
        time.sleep(3)  # three leases long
        return {"by": threading.current_thread().name}

    answers = {}

    def first_call():
        answers["a"] = rm.run_once(output, "k", produce, lease_seconds=1.0)

    first = threading.Thread(target=first_call, name="a")
    first.start()
    writing.wait(5)
    lock = tmp_path / ".out.run-lock"
    real_host = json.loads(lock.read_text())
    lock.write_text(json.dumps({**real_host, "host": "another-node"}))  # as seen from another host: lease only
    answers["b"] = rm.run_once(output, "k", produce, lease_seconds=1.0)
    first.join()
    assert calls == ["a"]
    assert answers["b"] == {"by": "a", "duplicate_of_earlier_call": True}
