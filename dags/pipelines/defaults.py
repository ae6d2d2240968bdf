"""What every DAG of this repository shares: one place for the start date, retries and owner."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum

#: Deferrable tasks need retries >= 1 (apache/airflow#72716); a retry re-attaches to remote work.
RETRIES = 2
RETRY_DELAY = timedelta(seconds=30)


def dag_defaults(*, owner: str = "bl832-computing", max_active_runs: int = 16, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``DAG(...)``: manual schedule, no catch-up, fixed start date, owner and retries.

    ``overrides`` replace any key (``schedule="@daily"``, ``default_args={...}`` merged into the defaults).
    """
    default_args = {"owner": owner, "retries": RETRIES, "retry_delay": RETRY_DELAY}
    default_args.update(overrides.pop("default_args", {}))
    return {
        "schedule": None,
        "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
        "catchup": False,
        "max_active_runs": max_active_runs,
        "default_args": default_args,
        **overrides,
    }
