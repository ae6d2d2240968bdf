"""Run a trigger in the worker itself, for operators created with ``deferrable=False``."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.triggers.base import BaseTrigger


def first_event(trigger: BaseTrigger) -> dict[str, Any]:
    """Run ``trigger`` to its first event in this process and return the event's payload."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise RuntimeError(f"{type(trigger).__name__} ended without an event")

    return asyncio.run(first())
