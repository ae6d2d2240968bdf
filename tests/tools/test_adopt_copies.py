"""Issue 22, item 3: ``python -m tools.adopt_copies`` adopts copies made before the switch into the deletion
manifests: as a process, against the local facility (real globus-sdk over HTTP), writing the metadata DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from include.endpoints import REPO_ROOT
from include.manifests import KEY_PREFIX, ManifestEntry, load_entries

pytestmark = pytest.mark.slow


def adopt(*args: str):
    return subprocess.run(
        [sys.executable, "-m", "tools.adopt_copies", *args],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
    )


def entries(store) -> dict[str, ManifestEntry]:
    """Every stored entry, read as prune reads it (signature and rules checked), by ``endpoint:path``."""
    found = list(load_entries(store.keys(KEY_PREFIX), store=store))
    assert all(isinstance(e, ManifestEntry) for e in found), found
    return {f"{e.endpoint}:{e.path}": e for e in found}


@pytest.fixture
def scans(facility, local_endpoints):
    """Three scans the Prefect flows left on data832 (raw/<folder>/), each copied to nersc832, and a writer."""
    folder = f"raw/BLS-00022_adopt{uuid.uuid4().hex[:8]}"

    def put(endpoint: str, rel: str, data: bytes):
        path = local_endpoints[endpoint].posix_path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    files = {}
    for name in ("a.h5", "b.h5", "sub/c.h5"):
        data = os.urandom(1000)
        files[name] = put("data832", f"{folder}/{name}", data)
        put("nersc832", f"{folder}/{name}", data)
    return folder, files, put


def test_a_dry_run_prints_each_copy_and_changes_nothing(scans, store):
    folder, _, _ = scans
    done = adopt("--endpoint", "data832", "--check", "nersc832", "--folder", folder, "--dry-run")
    assert done.returncode == 0, done.stderr + done.stdout
    lines = [line for line in done.stdout.splitlines() if line.startswith("would add ")]
    assert sorted(line.split()[2] for line in lines) == [f"data832:{folder}/{n}" for n in ("a.h5", "b.h5", "sub/c.h5")]
    assert all("(check nersc832, data832; 1 file(s), 1000 bytes)" in line for line in lines)
    assert store.keys(KEY_PREFIX) == []


def test_a_folder_becomes_signed_entries_due_by_age_and_a_rerun_skips_them(scans, store):
    folder, files, _ = scans
    old = datetime.now(UTC) - timedelta(days=20)
    os.utime(files["a.h5"], (old.timestamp(), old.timestamp()))  # copied 20 days ago: 15 days left of 35
    done = adopt("--endpoint", "data832", "--check", "nersc832", "--folder", folder)
    assert done.returncode == 0, done.stderr + done.stdout
    found = entries(store)
    assert set(found) == {f"data832:{folder}/{n}" for n in ("a.h5", "b.h5", "sub/c.h5")}
    a = found[f"data832:{folder}/a.h5"]
    assert (a.check_endpoint, a.location, a.dag_id, a.size, a.files) == ("nersc832", "data832", "adopt_copies", 1000, 1)
    assert abs(a.not_before - (old + timedelta(days=35))) < timedelta(minutes=2)
    assert a.key.startswith(f"{KEY_PREFIX}{a.not_before:%Y%m%d}/")
    assert found[f"data832:{folder}/b.h5"].not_before > datetime.now(UTC) + timedelta(days=34)

    again = adopt("--endpoint", "data832", "--check", "nersc832", "--folder", folder)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already in the manifests") == 3 and len(store.keys(KEY_PREFIX)) == 3


def test_a_copy_without_its_check_copy_or_on_a_long_term_endpoint_is_refused(scans, store, local_endpoints):
    folder, _, put = scans
    local_endpoints["nersc832"].posix_path(f"{folder}/a.h5").unlink()  # never reached NERSC
    put("nersc832", f"{folder}/b.h5", b"short")  # a truncated copy
    done = adopt("--endpoint", "data832", "--check", "nersc832", "--folder", folder)
    assert done.returncode == 1
    assert f"refused data832:{folder}/a.h5: check copy missing: nersc832:{folder}/a.h5" in done.stdout
    assert f"refused data832:{folder}/b.h5: size differs" in done.stdout
    assert "error: adopt_copies: 2 refused (listed above); 1 added" in done.stderr
    assert set(entries(store)) == {f"data832:{folder}/sub/c.h5"}  # the verified one is added

    long_term = adopt("--endpoint", "nersc832", "--check", "data832", "--folder", folder)
    assert long_term.returncode == 1
    assert f"refused nersc832:{folder}/sub/c.h5:" in long_term.stdout and "never pruned" in long_term.stdout
    assert set(entries(store)) == {f"data832:{folder}/sub/c.h5"}


def test_a_list_with_due_dates_csv_and_json_lines(scans, store, tmp_path):
    folder, _, put = scans
    spot = f"{folder}/spot.h5"
    put("spot832", spot, b"s" * 64)
    put("data832", spot, b"s" * 64)
    due = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    listed = tmp_path / "pending.csv"
    listed.write_text(f"path,due\n{folder}/a.h5,{due.isoformat()}\n{folder}/b.h5,2020-01-01\n")
    lines = tmp_path / "pending.jsonl"
    lines.write_text(json.dumps({"path": spot, "endpoint": "spot832", "check_endpoint": "data832"}) + "\n")

    done = adopt("--endpoint", "data832", "--check", "nersc832", "--from", str(listed))
    assert done.returncode == 0, done.stderr + done.stdout
    done = adopt("--from", str(lines))
    assert done.returncode == 0, done.stderr + done.stdout
    found = entries(store)
    assert found[f"data832:{folder}/a.h5"].not_before == due
    past = found[f"data832:{folder}/b.h5"]  # due before the switch: due now, never before
    assert past.not_before == past.created_at and past.not_before > datetime.now(UTC) - timedelta(minutes=5)
    assert (found[f"spot832:{spot}"].check_endpoint, found[f"spot832:{spot}"].location) == ("data832", "spot832")

    bad = tmp_path / "bad.csv"
    bad.write_text("path,when\nx.h5,2027-01-01\n")
    refused = adopt("--endpoint", "data832", "--check", "nersc832", "--from", str(bad))
    assert refused.returncode == 1 and "bad.csv:2: unknown column(s) when" in refused.stderr


def test_an_adopted_copy_that_is_due_is_pruned_by_the_prune_dag(scans, store, tmp_path):
    from tests.dags.dag_helpers import load_dag, states

    folder, files, _ = scans
    listed = tmp_path / "due.csv"
    listed.write_text(f"path,due\n{folder}/a.h5,2020-01-01\n")
    done = adopt("--endpoint", "data832", "--check", "nersc832", "--from", str(listed))
    assert done.returncode == 0, done.stderr + done.stdout
    run = load_dag("prune").test(run_conf={"dry_run": False})
    assert run.state == "success", states(run)
    assert not files["a.h5"].exists() and files["b.h5"].is_file()
    assert store.keys(KEY_PREFIX) == []


def test_results_folders_are_one_copy_each_with_depth_and_markers_are_left_out(facility, local_endpoints, store):
    folder = f"BLS-00022_results{uuid.uuid4().hex[:8]}"
    for rel in ("rec1/r_00000.tiff", "rec1/r_00001.tiff", "rec1.zarr/0/0", ".rec1.run-result"):
        data = os.urandom(100)
        for endpoint in ("data832_scratch", "nersc832_alsdev_scratch"):
            path = local_endpoints[endpoint].posix_path(f"{folder}/{rel}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    done = adopt("--endpoint", "data832_scratch", "--check", "nersc832_alsdev_scratch", "--folder", folder,
                 "--depth", "1", "--dry-run")  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"would add data832_scratch:{folder}/rec1 due " in done.stdout and "2 file(s), 200 bytes" in done.stdout
    assert f"would add data832_scratch:{folder}/rec1.zarr due " in done.stdout
    assert "run-result" not in done.stdout and "2 to add (dry run), 0 skipped, 0 refused" in done.stdout
    assert store.keys(KEY_PREFIX) == []
