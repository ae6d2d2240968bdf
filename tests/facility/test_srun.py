"""The stand-in's srun (facility/srun.py): a step's tasks as parallel processes, with Slurm's ranks, refusals and
exit status; a job of ``--nodes=n`` holds n nodes for its steps (issue 25 item 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from facility.sfapi import SRUN_DIR, parse_nodes
from tests.facility.test_sfapi_standin import jobs, submit

SRUN = str(SRUN_DIR / "srun")


def srun(*args: str, nodes: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "SLURM_NNODES": str(nodes), "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    return subprocess.run([SRUN, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_each_task_gets_its_rank_and_they_run_at_once():
    start = time.monotonic()
    done = srun(
        "--nodes=3",
        "--ntasks=3",
        "--ntasks-per-node=1",
        "sh",
        "-c",
        'sleep 1; echo "$SLURM_PROCID/$SLURM_NTASKS $SLURM_NODEID"',
        nodes=3,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split("\n")[:-1]) == ["0/3 0", "1/3 1", "2/3 2"]
    assert time.monotonic() - start < 2.5  # in parallel, not one after another


def test_a_failed_task_fails_the_step_with_its_status_and_sruns_line():
    done = srun("-N", "2", "-n", "2", "sh", "-c", "exit $((SLURM_PROCID * 3))", nodes=2)
    assert done.returncode == 3
    assert "srun: error: nid000001: task 1: Exited with exit code 3" in done.stderr
    assert "task 0" not in done.stderr


def test_what_slurm_refuses_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    more = srun("--nodes=2", "--ntasks=2", "touch", str(marker), nodes=1)
    assert more.returncode == 1 and more.stderr.strip() == "srun: error: Only allocated 1 nodes asked for 2"
    unknown = srun("--bogus=1", "touch", str(marker))
    assert unknown.returncode == 1 and "unrecognized option '--bogus=1'" in unknown.stderr
    crowded = srun("--nodes=1", "--ntasks=2", "--ntasks-per-node=1", "touch", str(marker))
    assert crowded.returncode == 1 and "More processors requested than permitted" in crowded.stderr
    assert srun("--nodes=1").stderr.strip() == "srun: fatal: No command given to execute."
    assert not marker.exists()


def test_the_task_fail_fault_fails_one_task_and_runs_the_others():
    env_fault = {"FACILITY_SRUN_FAIL_TASK": "1"}
    env = {**os.environ, "SLURM_NNODES": "3", **env_fault}
    done = subprocess.run(
        [SRUN, "-N", "3", "-n", "3", "sh", "-c", "echo ran $SLURM_PROCID"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert sorted(done.stdout.split()) == ["0", "2", "ran", "ran"]
    assert "task 1 lost its node" in done.stderr and "task 1: Exited with exit code 1" in done.stderr


@pytest.mark.parametrize(("text", "nodes"), [("1", 1), ("3", 3), ("2-4", 2)])
def test_sbatch_node_counts(text, nodes):
    assert parse_nodes(text) == nodes


def test_bad_node_counts_are_refused():
    for bad in ("0", "x", "4-2", ""):
        with pytest.raises(ValueError, match="Invalid node count specification"):
            parse_nodes(bad)


def test_a_job_of_n_nodes_runs_a_step_of_n_tasks(sfapi, facility, tmp_path):
    out = tmp_path / "job.out"
    script = (
        f"#!/bin/bash\n#SBATCH -J nodes --nodes=2 --ntasks-per-node=1 -t 5 --output={out}\n"
        'echo "nodes $SLURM_NNODES"\nsrun --nodes=2 --ntasks=2 sh -c \'echo "task $SLURM_PROCID"\'\n'
    )
    jobid = submit(sfapi, script)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = jobs(sfapi, "true", [f"jobid={jobid}"])["output"]
        if rows and rows[0]["state"] not in ("PENDING", "RUNNING"):
            break
        time.sleep(0.3)
    assert rows[0]["state"] == "COMPLETED", out.read_text() if out.exists() else rows
    lines = out.read_text().splitlines()
    assert lines[0] == "nodes 2" and sorted(lines[1:]) == ["task 0", "task 1"]
