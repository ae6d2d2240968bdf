"""How a step reads its arguments from the ``plan`` task's XComs (``<pipeline>.<field>``), and the Globus copy of
one scan file that several pipelines start with."""

from __future__ import annotations

from airflow.sdk.definitions.xcom_arg import XComArg

from als_provider.operators.globus_transfer import GlobusTransferOperator
from include.runtime import load_runtime

PLAN_TASK = "plan"


def from_plan(planned, name: str, key: str) -> XComArg:
    """The field ``key`` of pipeline ``name``'s plan, as a value (dicts and lists stay what they are)."""
    return XComArg(planned.operator, key=f"{name}.{key}")


def plan_text(name: str, key: str, item: str | None = None) -> str:
    """The field ``key`` of pipeline ``name``'s plan (its entry ``item`` when given), as a template (for string
    arguments)."""
    pulled = f"ti.xcom_pull(task_ids='{PLAN_TASK}', key='{name}.{key}')"
    return f"{{{{ {pulled}['{item}'] }}}}" if item else f"{{{{ {pulled} }}}}"


def copy_scan(task_id: str, source: tuple[str, str], destination: tuple[str, str]) -> GlobusTransferOperator:
    """A Globus copy of one scan file (``(endpoint, path)`` each, paths may be templates); a scan already at
    the destination with the same size and time is not copied again (raw scans are immutable)."""
    return GlobusTransferOperator(
        task_id=task_id,
        source_endpoint=source[0],
        source_path=source[1],
        destination_endpoint=destination[0],
        destination_path=destination[1],
        recursive=False,
        skip_if_present=True,
        poll_interval=load_runtime().poll("transfer"),
    )
