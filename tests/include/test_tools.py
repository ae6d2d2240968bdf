"""The operator commands (``python -m tools.<name>``) as processes against the local facility."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from include.endpoints import REPO_ROOT
from include.paths import EndpointPath

TOOLS = (
    "check_endpoint",
    "check_compute",
    "register_functions",
    "slurm_jobs",
    "manifests",
    "export_control",
    "adopt_copies",
)
#: The development commands next to them (make demo, make dags-test, make serve/stop).
DEV_COMMANDS = ("demo", "run_dag", "local_stack")


def tool(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", f"tools.{name}", *args],
        cwd=REPO_ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def with_connection(conn_var: str, **changes) -> dict[str, str]:
    """The environment with one connection changed (e.g. a wrong secret)."""
    conn = json.loads(os.environ[conn_var])
    conn.update(changes)
    return {**os.environ, conn_var: json.dumps(conn)}


def one_error_line(done) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.mark.parametrize("name", [*TOOLS, *DEV_COMMANDS])
def test_every_tool_has_help(name):
    done = tool(name, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


# -- check_endpoint ---------------------------------------------------------------------------------
def test_check_endpoint_lists_writes_and_deletes_then_cleans_up(facility, local_endpoints):
    root = local_endpoints.posix(EndpointPath("spot832", "keep.txt")).parent
    root.mkdir(parents=True, exist_ok=True)
    before = sorted(p.name for p in root.iterdir())
    done = tool("check_endpoint", "spot832")
    assert done.returncode == 0, done.stderr
    assert "list, write and delete OK" in done.stdout
    assert sorted(p.name for p in root.iterdir()) == before  # the probe folder is gone
    stats = facility.stats()
    assert stats["transfer.succeeded"] == 1 and stats["delete.succeeded"] == 1


def test_check_endpoint_refused_credentials_fail_in_one_line_without_the_secret(facility):
    done = tool(
        "check_endpoint", "spot832", env=with_connection("AIRFLOW_CONN_GLOBUS_DEFAULT", password="wrong-s3cret")
    )
    assert done.returncode == 1
    assert "Globus Auth refused the client credentials" in one_error_line(done)
    assert "wrong-s3cret" not in done.stdout + done.stderr
    assert "local-secret" not in done.stdout + done.stderr


def test_check_endpoint_names_the_failed_write_and_removes_its_probe(facility, local_endpoints):
    facility.inject("transfer", kind="permission_denied", match="als_endpoint_check_", times=1)
    done = tool("check_endpoint", "spot832", "--timeout", "30")
    assert done.returncode == 1
    line = one_error_line(done)
    assert "write failed" in line and "PERMISSION_DENIED" in line
    root = local_endpoints.posix(EndpointPath("spot832", "x")).parent
    assert not list(root.glob("als_endpoint_check_*"))
    assert facility.stats()["delete.succeeded"] == 1


def test_check_endpoint_unknown_name(facility):
    done = tool("check_endpoint", "nowhere")
    assert done.returncode == 1
    assert "unknown endpoint 'nowhere'" in one_error_line(done)


# -- check_compute ----------------------------------------------------------------------------------
def test_check_compute_runs_a_function_at_the_site(facility):
    done = tool("check_compute", "local")
    assert done.returncode == 0, done.stderr
    assert "is online" in done.stdout and "ran     ok" in done.stdout
    stats = facility.stats()
    assert stats["compute.register"] == 1 and stats["compute.executed.check_environment"] == 1


def test_check_compute_refused_credentials(facility):
    env = with_connection("AIRFLOW_CONN_GLOBUS_COMPUTE_DEFAULT", password="wrong-s3cret")
    done = tool("check_compute", "local", env=env)
    assert done.returncode == 1
    assert "refused the client credentials" in one_error_line(done)
    assert "wrong-s3cret" not in done.stdout + done.stderr


def test_check_compute_reports_a_failing_endpoint(facility):
    facility.inject("compute", kind="raise", match="check_environment", message="conda env missing")
    done = tool("check_compute", "local")
    assert done.returncode == 1
    assert "failed at the endpoint: RuntimeError: conda env missing" in one_error_line(done)


def test_check_compute_unknown_site(facility):
    done = tool("check_compute", "nowhere")
    assert done.returncode == 1
    assert "unknown site 'nowhere'" in one_error_line(done)
    assert facility.stats().get("compute.submit", 0) == 0


# -- register_functions -----------------------------------------------------------------------------
def test_register_functions_delegates_to_the_registry(facility):
    done = tool("register_functions", "--only", "check_environment")
    assert done.returncode == 0, done.stderr
    name, function_id = done.stdout.split()
    assert name == "check_environment" and uuid.UUID(function_id)
    assert facility.stats()["compute.register"] == 1


# -- slurm_jobs -------------------------------------------------------------------------------------
@pytest.fixture
def running_job(facility):
    from als_provider.hooks.sfapi import SFAPIHook

    hook = SFAPIHook()
    jobid = hook.submit_job("perlmutter", "#!/bin/bash\n#SBATCH --job-name=tools_test\nsleep 60\n")
    yield jobid
    if hook.job_state("perlmutter", jobid).state in ("PENDING", "RUNNING"):
        hook.cancel_job("perlmutter", jobid)
    hook.close()


def test_slurm_jobs_lists_the_client_users_jobs(running_job):
    done = tool("slurm_jobs", "list", "--json")
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert listing["user"] == "alsdev"  # whoever the SFAPI client is (GET account/), not a name in the tool
    assert running_job in [job["jobid"] for job in listing["jobs"]]


def test_slurm_jobs_cancels_an_own_job(running_job, facility):
    from als_provider.hooks.sfapi import SFAPIHook

    done = tool("slurm_jobs", "cancel", running_job)
    assert done.returncode == 0, done.stderr
    assert f"cancel requested for job {running_job}" in done.stdout
    hook = SFAPIHook()
    deadline = time.monotonic() + 15
    while hook.job_state("perlmutter", running_job).state != "CANCELLED":
        assert time.monotonic() < deadline, "the job was not cancelled"
        time.sleep(0.2)
    assert facility.stats()["sfapi.cancel"] == 1


@pytest.mark.parametrize("jobid", ["99999999", "not-a-job"])
def test_slurm_jobs_refuses_a_job_that_is_not_the_beamlines(facility, jobid):
    done = tool("slurm_jobs", "cancel", jobid)
    assert done.returncode == 1
    assert "nothing was cancelled" in one_error_line(done) or "not a Slurm job id" in one_error_line(done)
    assert facility.stats().get("sfapi.cancel", 0) == 0


def test_slurm_jobs_refused_credentials(facility):
    done = tool("slurm_jobs", "list", env=with_connection("AIRFLOW_CONN_SFAPI_DEFAULT", login="someone-else"))
    assert done.returncode == 1
    line = one_error_line(done)
    assert "refused client 'someone-else'" in line
    assert "PRIVATE KEY" not in done.stdout + done.stderr


# -- manifests (the whole review and re-sign flow: tests/dags/test_prune_trust.py) -----------------------
def test_manifests_resign_names_each_key_it_cannot_sign_in_one_line(airflow_db):
    done = tool("manifests", "resign", "als_prune/20260101/nope", "not-a-manifest-key")
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    assert line.startswith("error: manifests: not re-signed")
    assert "als_prune/20260101/nope: no such manifest entry" in line and "not-a-manifest-key: no such" in line
    assert tool("manifests", "resign").returncode == 2  # the keys are required


@pytest.mark.slow
def test_i23_finding_6_the_demo_prints_its_table_and_keeps_airflows_log_in_the_file(tmp_path):
    """``make demo``'s terminal shows its own lines and the table only; Airflow's (database set-up, DAG parsing,
    tasks) are in ``demo.log``."""
    done = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--dag", "bl832_new_file", "--home", str(tmp_path / "airflow"),
         "--facility-root", str(tmp_path / "facility")],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'plugins'}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    printed = (done.stdout + done.stderr).splitlines()
    airflow_lines = [line for line in printed if re.search(r"\[(info|warning|debug)\s*\]", line)]
    assert not airflow_lines, airflow_lines[:5]
    assert any(line.startswith("bl832_new_file ") and "success" in line for line in printed), printed
    log = (tmp_path / "airflow" / "demo.log").read_text()
    assert "Airflow database tables created" in log or "Filling up the DagBag" in log
