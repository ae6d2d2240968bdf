"""The SFAPI stand-in on the wire: auth, the async submit task, squeue/sacct shapes, faults, sbatch parsing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from facility.sfapi import check_policy, parse_sbatch, parse_time_limit


def submit(sfapi, script: str) -> str:
    answer = sfapi.post("compute/jobs/perlmutter", data={"job": script, "isPath": "false"}).json()
    assert answer["status"] == "OK"
    task = sfapi.get(f"tasks/{answer['task_id']}").json()
    assert task["status"] == "completed"
    result = json.loads(task["result"])  # a JSON string, as the real API answers
    assert result["status"] == "ok", result
    return result["jobid"]


def jobs(sfapi, sacct: str, kwargs) -> dict:
    """SFAPI's answer to a job query: squeue (``sacct`` "false") or sacct ("true"), ``kwargs`` its filters."""
    return sfapi.get("compute/jobs/perlmutter", params={"sacct": sacct, "kwargs": kwargs}).json()


def test_requests_without_a_token_are_refused(facility):
    answer = httpx.get(f"{facility.url}/sfapi/api/v1.2/status/perlmutter")
    assert answer.status_code == 401
    answer = httpx.get(f"{facility.url}/sfapi/api/v1.2/status/perlmutter", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401


def test_token_endpoint_needs_a_client_assertion(facility):
    answer = httpx.post(
        f"{facility.url}/sfapi/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "local-client", "client_secret": "local-secret"},
    )
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


def test_squeue_then_sacct(sfapi, facility):
    jobid = submit(sfapi, "#!/bin/bash\n#SBATCH -J wire --comment=c1 -t 5\nsleep 1\n")
    rows = jobs(sfapi, "false", [f"jobid={jobid}"])["output"]
    assert rows[0]["name"] == "wire" and rows[0]["state"] in ("PENDING", "RUNNING") and rows[0]["comment"] == "c1"
    assert rows[0]["time_limit"] == "5"
    time.sleep(2)
    assert jobs(sfapi, "false", [f"jobid={jobid}"])["output"] == []
    done = jobs(sfapi, "true", [f"jobid={jobid}"])
    assert done["output"][0]["state"] == "COMPLETED" and done["output"][0]["exitcode"] == "0:0"
    other = jobs(sfapi, "true", ["user=someone"])
    assert other["output"] == []


def test_slow_fault_keeps_the_job_pending(sfapi, facility):
    facility.inject("sfapi", "slow", match="^slowjob$", params={"seconds": 2})
    jobid = submit(sfapi, "#!/bin/bash\n#SBATCH --job-name=slowjob\ntrue\n")
    time.sleep(0.6)
    rows = jobs(sfapi, "false", [f"jobid={jobid}"])["output"]
    assert rows[0]["state"] == "PENDING"


def test_cancel_of_a_pending_job_and_of_an_unknown_one(sfapi, facility):
    facility.inject("sfapi", "slow", match="^p$", params={"seconds": 5})
    jobid = submit(sfapi, "#!/bin/bash\n#SBATCH --job-name=p\ntrue\n")
    assert sfapi.delete(f"compute/jobs/perlmutter/{jobid}").json()["status"] == "OK"
    row = jobs(sfapi, "true", [f"jobid={jobid}"])["output"][0]
    assert row["state"].startswith("CANCELLED by")
    assert sfapi.delete("compute/jobs/perlmutter/1").json()["status"] == "ERROR"
    assert facility.stats()["sfapi.cancel"] == 2


def test_not_a_script_is_an_sbatch_error(sfapi, facility):
    answer = sfapi.post("compute/jobs/perlmutter", data={"job": "rm -rf /", "isPath": "false"}).json()
    result = json.loads(sfapi.get(f"tasks/{answer['task_id']}").json()["result"])
    assert result["status"] == "error" and "sbatch: error" in result["error"]
    assert facility.stats()["sfapi.submit"] == 1 and "sfapi.job_created" not in facility.stats()


def test_unknown_machine(sfapi):
    assert sfapi.get("status/frontier").status_code == 404


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15", 900), ("0:15:00", 900), ("1:30", 90), ("0:00:02", 2), ("1-00", 86400), ("1-2:03:04", 93784)],
)
def test_parse_time_limit(text, seconds):
    assert parse_time_limit(text) == seconds


def test_parse_sbatch_stops_at_the_first_command():
    script = (
        "#!/bin/bash\n#SBATCH -q realtime -A als\n# a comment\n#SBATCH --exclusive --time=0:15:00\n"
        "echo\n#SBATCH -J late\n"
    )
    assert parse_sbatch(script) == {"qos": "realtime", "account": "als", "exclusive": "", "time": "0:15:00"}


def refusal(sfapi, script: str) -> str:
    answer = sfapi.post("compute/jobs/perlmutter", data={"job": script, "isPath": "false"}).json()
    result = json.loads(sfapi.get(f"tasks/{answer['task_id']}").json()["result"])
    assert result["status"] == "error", result
    return result["error"]


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("#SBATCH --bogus-opt", "sbatch: error: unrecognized option '--bogus-opt'"),
        ("#SBATCH -A m9999", "Invalid account or account/partition combination specified"),
        ("#SBATCH --qos=urgent", "Invalid qos specification"),
        ("#SBATCH --constraint=haswell", "Invalid feature specification"),
        ("#SBATCH -q shared --exclusive", "Requested node configuration is not available"),
    ],
)
def test_sbatch_refuses_what_perlmutter_refuses(sfapi, facility, header, error):
    """Finding 5: unknown options and account/qos/constraint the alsdev account may not use are refused."""
    assert error in refusal(sfapi, f"#!/bin/bash\n{header}\ntrue\n")
    assert facility.stats().get("sfapi.job_created", 0) == 0


def test_the_production_header_passes_perlmutters_checks():
    """The #SBATCH header of every production job (nersc.yaml) is one Perlmutter accepts for the account."""
    import yaml

    from include.slurm import sbatch_header

    config = yaml.safe_load((Path(__file__).parents[2] / "include" / "config" / "nersc.yaml").read_text())
    header = sbatch_header(config["production"]["directives"])
    options = parse_sbatch(f"#!/bin/bash\n{header}\ntrue\n")
    assert (options["qos"], options["account"], options["constraint"]) == ("realtime", "als", "cpu")
    assert "exclusive" in options
    check_policy(options)


def test_a_job_query_can_answer_error(sfapi, facility):
    """Finding 2: the stand-in answers ``{"status": "ERROR"}`` to a job query when told to, as SFAPI does."""
    jobid = submit(sfapi, "#!/bin/bash\n#SBATCH --job-name=q\ntrue\n")
    facility.inject("sfapi", "query_error", match=f"^sacct {jobid}$", message="sacct: error: slurmdbd down")
    answer = jobs(sfapi, "true", f"jobid={jobid}")
    assert answer == {"status": "ERROR", "output": [], "error": "sacct: error: slurmdbd down"}
    assert jobs(sfapi, "true", f"jobid={jobid}")["output"]


def test_i21_finding_13_sacct_honours_its_window_like_slurm(sfapi, facility):
    """sacct without ``starttime`` shows jobs since midnight; a jobid is found whenever it ran; ``starttime``
    reaches back."""
    import datetime as dt

    jobid = submit(sfapi, "#!/bin/bash\n#SBATCH -J window --comment=w -t 5\ntrue\n")
    time.sleep(1.5)

    def sacct(*kwargs):
        answer = jobs(sfapi, "true", list(kwargs))
        return [row["jobid"] for row in answer["output"]]

    assert jobid in sacct("name=window")
    tomorrow = (dt.datetime.now() + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    facility.inject("sfapi", "clock", times=10**9, params={"offset_seconds": tomorrow.timestamp() - time.time() + 60})
    assert jobid not in sacct("name=window")  # the stand-in's clock is past midnight: not in today's window
    assert jobid in sacct(f"jobid={jobid}")
    yesterday = (dt.datetime.now() - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert jobid in sacct("name=window", f"starttime={yesterday}")
    assert jobid not in sacct("name=window", f"starttime={yesterday}", f"endtime={yesterday}")
    bad = jobs(sfapi, "true", ["starttime=soon"])
    assert bad["status"] == "ERROR" and "Invalid time specification" in bad["error"]
