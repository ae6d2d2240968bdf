"""Issue 26 finding 5: the facility on a shared host: an admin API behind a token, a clean environment."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import httpx

from facility.__main__ import scrub_environment
from facility.process import facility_environment


def test_i26_finding_5_the_admin_api_answers_401_without_the_token(facility):
    """Found: /_facility/* had no auth: any local user could reset the facility or inject faults."""
    for method, route, body in (("GET", "stats", None), ("POST", "reset", None),
                                ("POST", "faults", {"service": "transfer", "kind": "http"})):  # fmt: skip
        url = f"{facility.url}/_facility/{route}"
        assert httpx.request(method, url, json=body).status_code == 401, route
        wrong = {"Authorization": "Bearer " + "x" * 43}
        assert httpx.request(method, url, json=body, headers=wrong).status_code == 401, route
    assert facility.stats()["admin.unauthorized"] == 6  # nothing of the above was acted on
    facility.inject("transfer", "http", status=503, times=1)  # the token opens it
    assert httpx.get(f"{facility.url}/_facility/health").status_code == 200  # liveness stays open
    mode = stat.S_IMODE(facility.token_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert facility.token not in facility.log_file.read_text(errors="replace")


def _environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def _secret_values() -> list[str]:
    """This process's Airflow secrets: every AIRFLOW_CONN_* password (the signing key among them)."""
    values = []
    for name, value in os.environ.items():
        if name.startswith("AIRFLOW_CONN_"):
            password = json.loads(value).get("password")
            if password and len(password) >= 8:
                values.append(password)
    return values


def test_i26_finding_5_the_facility_and_its_jobs_run_without_airflow_secrets(facility, sfapi, tmp_path):
    """Found: the facility and its jobs inherited the stack's AIRFLOW_CONN_*, Fernet key and JWT secret."""
    assert "AIRFLOW_CONN_ALS_SIGNING" in os.environ  # the test process has secrets to leak
    secrets = _secret_values()
    assert secrets
    own = _environment_of(facility._proc.pid)
    assert not [name for name in own if name.startswith("AIRFLOW")], sorted(own)
    out = tmp_path / "env.txt"
    script = f"#!/bin/bash\n#SBATCH -J envcheck -t 5\nenv > {out}\n"
    answer = sfapi.post("compute/jobs/perlmutter", data={"job": script, "isPath": "false"}).json()
    assert answer["status"] == "OK", answer
    deadline = time.monotonic() + 30
    while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.2)
    job_env = out.read_text()
    assert "SLURM_JOB_ID=" in job_env  # it is the job's environment
    assert "AIRFLOW" not in job_env
    assert not [secret for secret in secrets if secret in job_env]


def test_i26_finding_5_a_facility_started_by_hand_drops_secret_like_variables(tmp_path):
    environ = {"AIRFLOW_CONN_X": '{"password": "p"}', "AIRFLOW__CORE__FERNET_KEY": "k", "MY_API_SECRET": "s",
               "PATH": "/usr/bin", "ALS_KEEP_ME": "1"}  # fmt: skip
    assert scrub_environment(environ) == ["AIRFLOW_CONN_X", "AIRFLOW__CORE__FERNET_KEY", "MY_API_SECRET"]
    assert environ == {"PATH": "/usr/bin", "ALS_KEEP_ME": "1"}
    env = facility_environment(tmp_path)  # what Facility and the local stack start it with
    assert "AIRFLOW_CONN_ALS_SIGNING" in os.environ and not [name for name in env if "AIRFLOW" in name]
