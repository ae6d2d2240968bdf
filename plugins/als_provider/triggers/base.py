"""PollingTrigger: the one poll loop of the provider's triggers (one error budget, one deadline, one serialize).

A service's trigger declares its hook class and its constructor fields and implements :meth:`PollingTrigger.poll`
(one look at the remote work: the final event's payload, or ``None`` to poll again); the loop, the budget for transient
errors, the deadline, progress logging and ``serialize()`` live here, as the AWS provider's
``AwsBaseWaiterTrigger`` keeps them for every AWS waiter.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Mapping
from functools import cached_property
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent


class PollingTrigger(BaseTrigger):
    """Poll a remote service until :meth:`poll` returns an event, an error ends the wait or ``deadline`` passes.

    Every trigger takes ``<hook's conn_name_attr>`` (e.g. ``globus_conn_id``), ``poll_interval`` (seconds)
    and ``deadline`` (epoch seconds, ``None``: none) besides its own ``fields``. An exception from a poll is
    classified by :meth:`is_transient`: a transient one (network, 5xx, 429) is logged and polled again, up to
    ``max_errors`` in a row (``None``: until the deadline); any other ends the wait at once with an error event
    carrying :meth:`describe_error`. At the deadline :meth:`on_deadline` decides the last event (and cancels
    the remote work where the service can). A blocking ``poll`` (SDK calls) runs in a worker thread; an
    ``async def poll`` (an asyncio client) is awaited in the triggerer's loop.

    Subclasses set:

    - ``hook_class``: the service's hook; its ``conn_name_attr`` and ``default_conn_name`` name the
      connection argument (a trigger that builds its client itself sets :meth:`connection` instead);
    - ``fields``: their own constructor arguments, all serialized (with the connection, ``poll_interval`` and
      ``deadline``); ``renamed`` maps an argument to the attribute that keeps it (``BaseTrigger`` owns
      ``task_id``, which the triggerer overwrites: a remote task id is kept as e.g. ``globus_task_id``);

    and implement :meth:`poll` (and, where the defaults do not fit, :attr:`what`, :meth:`is_transient`,
    :meth:`describe_error`, :meth:`failure`, :meth:`on_deadline`, :meth:`close`).
    """

    hook_class: ClassVar[type]
    fields: ClassVar[tuple[str, ...]] = ()
    renamed: ClassVar[Mapping[str, str]] = {}
    #: Consecutive transient errors tolerated (``None``: until the deadline); a field may override it.
    max_errors: int | None = None

    def __init__(self, *, poll_interval: float = 10.0, deadline: float | None = None, **values: Any) -> None:
        super().__init__()
        conn, default = self.connection()
        values.setdefault(conn, default)
        unknown = set(values) - {conn, *self.fields}
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected argument(s): {', '.join(sorted(unknown))}")
        self.poll_interval = poll_interval
        self.deadline = deadline
        for name, value in values.items():
            setattr(self, self.renamed.get(name, name), value)
        self._last_progress: str | None = None

    @classmethod
    def connection(cls) -> tuple[str, str]:
        """The connection argument's name and default: the hook's."""
        return cls.hook_class.conn_name_attr, cls.hook_class.default_conn_name

    # -- serialization ---------------------------------------------------------------------------
    def serialize(self) -> tuple[str, dict[str, Any]]:
        names = (*self.fields, self.connection()[0], "poll_interval", "deadline")
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {name: getattr(self, self.renamed.get(name, name)) for name in names},
        )

    # -- what a service's trigger provides ----------------------------------------------------------
    @abc.abstractmethod
    def poll(self) -> dict[str, Any] | None:
        """One look at the remote work (in a thread; an ``async def poll`` is awaited): the final event's
        payload, or ``None``."""

    @property
    def what(self) -> str:
        """The remote work, for messages."""
        return type(self).__name__

    def is_transient(self, exc: BaseException) -> bool:
        """Whether a failed poll is worth repeating (the hook's classification of the error)."""
        return False

    def describe_error(self, exc: BaseException) -> str:
        """The message of the error event a failed poll ends with (the service's own words)."""
        return f"{self.what}: {type(exc).__name__}: {exc}"

    def failure(self, message: str, status: str = "error") -> dict[str, Any]:
        """The payload of an event that ends the wait without success."""
        return {"status": status, "message": message}

    def on_deadline(self) -> dict[str, Any]:
        """The last event when ``deadline`` passed (runs in a thread; cancel the remote work here if possible)."""
        return self.failure(f"{self.what} did not finish by its deadline", status="timeout")

    # -- the loop ----------------------------------------------------------------------------------
    @cached_property
    def hook(self) -> Any:
        return self.hook_class(getattr(self, self.connection()[0]))

    async def close(self) -> None:
        """Release the client when the wait ends (default: the hook's ``close``, where it has one)."""
        close = getattr(self.__dict__.get("hook"), "close", None)
        if close is not None:
            await asyncio.to_thread(close)

    def progress(self, line: str) -> None:
        """Log ``line`` when it differs from the last one logged."""
        if line != self._last_progress:
            self.log.info("%s", line)
            self._last_progress = line

    async def run(self) -> AsyncIterator[TriggerEvent]:
        errors = 0
        look = self.poll if inspect.iscoroutinefunction(self.poll) else lambda: asyncio.to_thread(self.poll)
        try:
            while True:
                try:
                    event = await look()
                except Exception as exc:
                    if not self.is_transient(exc):
                        yield TriggerEvent(self.failure(self.describe_error(exc)))
                        return
                    errors += 1
                    limit = "" if self.max_errors is None else f"/{self.max_errors}"
                    self.log.warning("poll failed (%d%s in a row): %s", errors, limit, self.describe_error(exc))
                    if self.max_errors is not None and errors >= self.max_errors:
                        yield TriggerEvent(self.failure(self.describe_error(exc)))
                        return
                else:
                    errors = 0
                    if event is not None:
                        yield TriggerEvent(event)
                        return
                if self.deadline is not None and time.time() >= self.deadline:
                    yield TriggerEvent(await asyncio.to_thread(self.on_deadline))
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            await self.close()
