"""Check that a Globus endpoint (include/config/endpoints.yaml) allows list, write and delete with our credentials.

Steps, as the client of the Airflow connection (default ``globus_default``):
  list    ls the endpoint's root;
  write   mkdir a uniquely named probe folder under the root, then copy a folder inside it with a
          Globus transfer task (the data path the pipelines use) and see the copy appear;
  delete  delete the probe folder with a Globus delete task and see it gone.
The probe folder is removed even when a step fails (a leftover is named in the error). Exit 0 when all
three work; 1 with one line naming the failed step otherwise.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

from tools._cli import ToolError, one_line, parser, prepare, run, say

PROG = "check_endpoint"


def wait_for_task(hook: Any, task_id: str, timeout: float, what: str) -> dict[str, Any]:
    """Poll a Globus task until it ends; ToolError with Globus's reason unless it SUCCEEDED."""
    from als_provider.triggers.globus_transfer import failure_message

    deadline = time.monotonic() + timeout
    while True:
        task = hook.get_task(task_id)
        status = task.get("status")
        if status == "SUCCEEDED":
            return task
        if status == "FAILED":
            raise ToolError(f"{what}: {failure_message(task, hook.error_events(task_id))}")
        errors = hook.error_events(task_id) if task.get("faults") else []
        if errors or time.monotonic() >= deadline:
            hook.cancel(task_id)
            reason = failure_message(task, errors) if errors else f"not finished after {timeout:.0f}s"
            raise ToolError(f"{what} (task cancelled): {reason}")
        time.sleep(1.0)


def check(endpoint_name: str, conn_id: str, timeout: float) -> None:
    from als_provider.hooks.globus_transfer import GlobusTransferHook

    hook = GlobusTransferHook(conn_id, max_retries=2)
    endpoint = hook.endpoints[endpoint_name]
    root = endpoint.globus_path(".")
    say(f"endpoint {endpoint_name}: collection {endpoint.uuid}, root {root}")

    try:
        entries = hook.client.operation_ls(endpoint.uuid, path=root)
    except Exception as exc:
        raise ToolError(f"list failed: {_describe(exc)}") from None
    say(f"list    ok: {len(list(entries))} entries")

    probe = f"als_endpoint_check_{uuid.uuid4().hex[:12]}"
    created = False
    try:
        hook.client.operation_mkdir(endpoint.uuid, endpoint.globus_path(probe))
        created = True
        hook.client.operation_mkdir(endpoint.uuid, endpoint.globus_path(f"{probe}/source"))
        result = hook.submit_transfer(
            endpoint.at(f"{probe}/source"),
            endpoint.at(f"{probe}/copy"),
            submission_id=hook.new_submission_id(),
            recursive=True,
            label=f"endpoint check {endpoint_name}",
        )
        wait_for_task(hook, result["task_id"], timeout, "write failed: transfer into the probe folder")
        if hook.stat(endpoint.at(f"{probe}/copy")) is None:
            raise ToolError(f"write failed: the transfer succeeded but {probe}/copy is not there")
    except Exception as exc:
        message = str(exc) if isinstance(exc, ToolError) else f"write failed: {_describe(exc)}"
        if created:
            message += _cleanup(hook, endpoint_name, probe, timeout)
        raise ToolError(message) from None
    say(f"write   ok: mkdir {probe}/source, transfer task {result['task_id']} wrote {probe}/copy")

    try:
        result = hook.submit_delete(
            endpoint_name, [probe], submission_id=hook.new_submission_id(), label=f"endpoint check {endpoint_name}"
        )
        wait_for_task(hook, result["task_id"], timeout, "delete failed")
        if hook.stat(endpoint.at(probe)) is not None:
            raise ToolError(f"delete failed: the delete task succeeded but {probe} is still there")
    except ToolError as exc:
        raise ToolError(f"{exc} (the probe folder {endpoint_name}:{probe} may be left; remove it)") from None
    except Exception as exc:
        raise ToolError(f"delete failed: {_describe(exc)} (the probe folder {endpoint_name}:{probe} is left)") from None
    say(f"delete  ok: delete task {result['task_id']} removed {probe}")
    say(f"endpoint {endpoint_name}: list, write and delete OK")


def _cleanup(hook: Any, endpoint_name: str, probe: str, timeout: float) -> str:
    """Remove the probe folder after a failed step; the note to add to the error when that fails."""
    try:
        result = hook.submit_delete(
            endpoint_name, [probe], submission_id=hook.new_submission_id(), label="endpoint check cleanup"
        )
        wait_for_task(hook, result["task_id"], timeout, "cleanup failed")
    except Exception as exc:
        return f" (and removing the probe folder {endpoint_name}:{probe} failed: {one_line(_describe(exc))})"
    return ""


def _describe(exc: BaseException) -> str:
    from als_provider.hooks.globus_transfer import describe_globus_error

    return str(exc) if isinstance(exc, ToolError) else describe_globus_error(exc)


def main(argv: list[str] | None = None) -> int:
    args_parser = parser(PROG, __doc__)
    args_parser.add_argument("endpoint", metavar="ENDPOINT_NAME", help="endpoint name (endpoints.yaml)")
    args_parser.add_argument("--conn-id", default="globus_default", help="Airflow connection (default: %(default)s)")
    args_parser.add_argument("--timeout", type=float, default=300.0, help="seconds per Globus task (default: 300)")
    args = args_parser.parse_args(argv)
    prepare()
    return run(PROG, lambda: check(args.endpoint, args.conn_id, args.timeout), _describe)


if __name__ == "__main__":
    sys.exit(main())
