"""Issue 17, finding 2: an SFAPI ``{"status": "ERROR"}`` answer to a job query is an error, never "no such job"."""

from __future__ import annotations

import pytest

from tests.dags.dag_helpers import run_in_db
from tests.fixture_dags.sfapi_operator_dags import CrashAfterSubmit, job_dag

MACHINE = "perlmutter"


def test_sfapi_client_reads_an_error_answer_as_no_jobs(facility):
    """The upstream bug the hook works around (sfapi_client 0.6.0 ``_fetch_raw_state``), shown on the wire."""
    from sfapi_client.jobs import JobCommand

    from als_provider.hooks.sfapi import SFAPIHook

    hook = SFAPIHook()
    jobid = hook.submit_job(MACHINE, "#!/bin/bash\n#SBATCH --job-name=err_answer\nsleep 2\n")
    facility.inject("sfapi", "query_error", match=f"^squeue {jobid}$", message="slurm_load_jobs error: timeout")
    assert hook.compute(MACHINE).jobs(jobids=[jobid], command=JobCommand.squeue) == []
    assert facility.stats()["fault.sfapi.query_error"] == 1
    hook.close()


def test_the_hook_raises_on_an_error_answer(facility):
    from als_provider.hooks.sfapi import SFAPIHook

    hook = SFAPIHook()
    jobid = hook.submit_job(MACHINE, "#!/bin/bash\n#SBATCH --job-name=err_answer2\nsleep 2\n")
    facility.inject("sfapi", "query_error", match=f"^squeue {jobid}$", message="slurm_load_jobs error: timeout")
    with pytest.raises(Exception, match="slurm_load_jobs error: timeout"):
        hook.job_state(MACHINE, jobid)
    assert hook.job_state(MACHINE, jobid).state in ("PENDING", "RUNNING", "COMPLETED")
    hook.close()


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_an_error_answer_is_retried_without_a_second_submission(facility):
    """A retry that re-attaches reads ERROR: the try fails, the next one re-attaches; one Slurm job in all."""
    facility.inject("sfapi", "query_error", match="^squeue ", times=1, message="slurm_load_jobs error: timeout")
    dag = job_dag("error_answer", ["sleep", "2"], CrashAfterSubmit, retries=2)
    dag_run, tis = run_in_db(dag)
    assert dag_run.state == "success" and tis["job"].try_number == 3
    stats = facility.stats()
    assert stats["fault.sfapi.query_error"] == 1
    assert stats["sfapi.submit"] == stats["sfapi.job_created"] == 1
