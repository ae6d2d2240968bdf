"""The HPSS archive job (include/jobs/hpss_archive.sh.j2) run by bash with the hsi stand-in
(facility/hsi.py): a tape copy is verified by checksum before it may become the only copy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from include.endpoints import REPO_ROOT
from include.slurm import render_script


@pytest.fixture
def archive(tmp_path):
    """Run the rendered job on one file in ``mode``; returns (completed process, source, tape copy)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    hsi = bin_dir / "hsi"
    hsi.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m facility.hsi "$@"\n')
    hsi.chmod(0o755)
    source = tmp_path / "cfs" / "ALS-07330_x" / "20260402_090000_film.h5"
    source.parent.mkdir(parents=True)
    source.write_bytes(os.urandom(4096))
    tape = tmp_path / "hpss" / "ALS-07330_x" / "20260402_090000_film.h5"

    def run(mode: str, fault: str | None = None) -> subprocess.CompletedProcess:
        values = {"sources": [str(source)], "destinations": [str(tape)], "mode": mode}
        script = tmp_path / "job.sh"
        script.write_text(render_script("hpss_archive.sh.j2", directives={}, values=values))
        env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PYTHONPATH": str(REPO_ROOT),
            "HSI_HASHES": str(tmp_path / "hashes.json"),
            **({"HSI_FAULT": fault} if fault else {}),
        }
        return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)

    return run, source, tape


@pytest.mark.parametrize("mode", ["hsi", "copy"])
def test_a_verified_tape_copy_archives(archive, mode):
    run, source, tape = archive
    done = run(mode)
    assert done.returncode == 0, done.stderr
    assert tape.read_bytes() == source.read_bytes()
    assert "verified sha256" in done.stdout


def test_i21_finding_15_a_tape_copy_whose_checksum_differs_fails_the_job_and_keeps_the_disk_copy(archive):
    """hsi put wrote a bad copy (same size): hashcreate reads it back, the checksums differ, the job fails (exit
    3), so verify_archive never runs and the CFS copy is never recorded for deletion."""
    run, source, tape = archive
    original = source.read_bytes()
    done = run("hsi", fault="corrupt_put")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "the disk copy is kept" in done.stderr
    assert source.read_bytes() == original
    assert tape.stat().st_size == source.stat().st_size and tape.read_bytes() != original  # size alone passes
