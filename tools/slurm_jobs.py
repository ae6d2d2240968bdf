"""List or cancel the beamline's Slurm jobs at NERSC through the Superfacility API.

The beamline's jobs are the jobs of the user the SFAPI client of the Airflow connection (default
``sfapi_default``) acts as (``GET account/``), never a user named here. ``list`` prints that user's queued
and running jobs; ``cancel JOBID`` cancels one of them and refuses (nothing is sent) a job id that is not
among them: another user's job, a finished job or an unknown id. Exit 0 on success, 1 with one line
otherwise.

  python -m tools.slurm_jobs list [--json]
  python -m tools.slurm_jobs cancel 41000007
"""

from __future__ import annotations

import json
import sys

from tools._cli import ToolError, parser, prepare, run, say

PROG = "slurm_jobs"


def list_jobs(conn_id: str, machine: str, as_json: bool) -> None:
    from als_provider.hooks.sfapi import SFAPIHook

    hook = SFAPIHook(conn_id)
    try:
        user = hook.user_name()
        jobs = hook.list_jobs(machine, user)
    finally:
        hook.close()
    if as_json:
        say(json.dumps({"user": user, "machine": machine, "jobs": [job.to_dict() for job in jobs]}, indent=2))
        return
    say(f"{len(jobs)} queued or running job(s) of {user} on {machine}")
    for job in jobs:
        say(f"{job.jobid}\t{job.state}\t{job.name or '-'}\t{job.comment or ''}".rstrip())


def cancel_job(conn_id: str, machine: str, jobid: str) -> None:
    from als_provider.hooks.sfapi import SFAPIHook

    if not jobid.isdigit():
        raise ToolError(f"job id {jobid!r} is not a Slurm job id (digits only)")
    hook = SFAPIHook(conn_id)
    try:
        user = hook.user_name()
        own = {job.jobid: job for job in hook.list_jobs(machine, user)}
        job = own.get(jobid)
        if job is None:
            raise ToolError(
                f"refusing to cancel job {jobid}: it is not a queued or running job of {user} on {machine} "
                f"(another user's, finished or unknown); nothing was cancelled"
            )
        hook.cancel_job(machine, jobid)
    finally:
        hook.close()
    say(f"cancel requested for job {jobid} ({job.name or 'unnamed'}, {job.state}) of {user} on {machine}")


def _describe(exc: BaseException) -> str:
    return str(exc)  # SFAPIHook raises AirflowException with the service's words, never the key


def main(argv: list[str] | None = None) -> int:
    args_parser = parser(PROG, __doc__)
    args_parser.add_argument("--conn-id", default="sfapi_default", help="Airflow connection (default: %(default)s)")
    args_parser.add_argument("--machine", default="perlmutter", help="SFAPI machine (default: %(default)s)")
    commands = args_parser.add_subparsers(dest="command", required=True, metavar="{list,cancel}")
    listing = commands.add_parser("list", help="the beamline user's queued and running jobs")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    cancel = commands.add_parser("cancel", help="cancel one of the beamline user's jobs")
    cancel.add_argument("jobid", metavar="JOBID")
    args = args_parser.parse_args(argv)
    prepare()
    if args.command == "list":
        return run(PROG, lambda: list_jobs(args.conn_id, args.machine, args.json), _describe)
    return run(PROG, lambda: cancel_job(args.conn_id, args.machine, args.jobid), _describe)


if __name__ == "__main__":
    sys.exit(main())
