"""Check that a site's Globus Compute endpoint (include/config/sites.yaml) is online and runs a function.

As the client of the Airflow connection (default ``globus_compute_default``): read the endpoint's status,
which must be ``online``; run ``check_environment`` (compute_functions/remote.py; the site's pinned id,
else registered now) with no paths to check; wait for its result and print the endpoint's host and
Python, warning when its Python major.minor differs from this one (Compute's default serialisation needs
them equal). Exit 0 when the function ran; 1 with one line naming the failed step otherwise.
"""

from __future__ import annotations

import platform
import sys
import time

from tools._cli import ToolError, parser, prepare, run, say

PROG = "check_compute"
FUNCTION = "check_environment"


def check(site_name: str, conn_id: str, timeout: float) -> None:
    from als_provider.hooks.globus_compute import GlobusComputeHook
    from include.compute_registry import resolve
    from include.sites import load_sites

    site = load_sites()[site_name]
    if not site.enabled:
        raise ToolError(f"site {site_name!r} is disabled in include/config/sites.yaml (a placeholder)")
    endpoint_id = site.compute_endpoint_id
    hook = GlobusComputeHook(conn_id, max_retries=2)

    status = hook.endpoint_status(endpoint_id).get("status")
    if status != "online":
        raise ToolError(f"Compute endpoint {endpoint_id} of site {site_name!r} is {status or 'unknown'}, not online")
    say(f"site {site_name}: Compute endpoint {endpoint_id} is online")

    function_id = site.function_ids.get(FUNCTION)
    if function_id:
        say(f"function {FUNCTION}: pinned id {function_id}")
    else:
        function_id = hook.register_function(resolve(FUNCTION), description="als-airflow endpoint check")
        say(f"function {FUNCTION}: registered as {function_id}")

    task_id = hook.run(function_id, endpoint_id, {"paths": [], "require": False})
    deadline = time.monotonic() + timeout
    while True:
        task = hook.get_task(task_id)
        if not task["pending"]:
            break
        if time.monotonic() >= deadline:
            raise ToolError(f"task {task_id} still {task['status']} after {timeout:.0f}s (is the endpoint up?)")
        time.sleep(1.0)
    if task["status"] != "success":
        last = (task.get("exception") or "no reason given").strip().splitlines()[-1]
        raise ToolError(f"task {task_id} failed at the endpoint: {last}")
    result = task["result"] or {}
    say(f"ran     ok: task {task_id} on {result.get('host')} (Python {result.get('python')})")
    remote, local = str(result.get("python", "")).split(".")[:2], platform.python_version().split(".")[:2]
    if remote != local:
        print(
            f"warning: the endpoint runs Python {'.'.join(remote)}, this host {'.'.join(local)}: "
            "Compute's default serialisation needs the same major.minor",
            file=sys.stderr,
        )
    say(f"site {site_name}: Compute endpoint online and running functions")


def _describe(exc: BaseException) -> str:
    from als_provider.hooks.globus_compute import describe_compute_error

    return describe_compute_error(exc)


def main(argv: list[str] | None = None) -> int:
    args_parser = parser(PROG, __doc__)
    args_parser.add_argument("site", metavar="SITE", help="site name from include/config/sites.yaml")
    args_parser.add_argument(
        "--conn-id", default="globus_compute_default", help="Airflow connection (default: %(default)s)"
    )
    args_parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the run (default: 300)")
    args = args_parser.parse_args(argv)
    prepare()
    return run(PROG, lambda: check(args.site, args.conn_id, args.timeout), _describe)


if __name__ == "__main__":
    sys.exit(main())
