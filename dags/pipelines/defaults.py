"""What every DAG of this repository shares: one place for the start date, retries and owner."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param

from als_provider.notifications import failure_notifiers

#: Deferrable tasks need retries >= 1 (apache/airflow#72716); a retry re-attaches to remote work.
RETRIES = 2
RETRY_DELAY = timedelta(seconds=30)


def with_default(default: Any, **kwargs: Any) -> Param:
    """``Param(default, **kwargs)``, shown in the trigger form without the red "required" asterisk.

    The Airflow 3 form marks every field required unless its JSON-schema type admits null, though a field
    with a default is filled in already. Here the type admits null for the form and ``not: null`` still refuses
    it, so a task never sees None: leave the key out to take the default (``conf_refusal`` says so)."""
    param = Param(default, **kwargs)
    kind = param.schema.get("type")
    if isinstance(kind, str):
        param.schema["type"] = [kind, "null"]
        param.schema["not"] = {"type": "null"}
    return param


def dag_defaults(
    *, owner: str = "bl832-computing", max_active_runs: int = 16, notify: bool = False, **overrides: Any
) -> dict[str, Any]:
    """Keyword arguments for ``DAG(...)``: manual schedule, no catch-up, fixed start date, owner and retries.

    ``notify=True``: a failed run is mailed (and posted to the chat webhook, if configured) to the beamline
    team (``on_failure_callback``; docs/notifications.md). ``overrides`` replace any key (``schedule="@daily"``,
    ``default_args={...}`` merged into the defaults).
    """
    default_args = {"owner": owner, "retries": RETRIES, "retry_delay": RETRY_DELAY}
    default_args.update(overrides.pop("default_args", {}))
    kwargs: dict[str, Any] = {
        "schedule": None,
        "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
        "catchup": False,
        "max_active_runs": max_active_runs,
        "default_args": default_args,
    }
    if notify:
        kwargs["on_failure_callback"] = failure_notifiers()
    return {**kwargs, **overrides}
