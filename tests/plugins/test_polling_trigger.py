"""PollingTrigger's loop: the error budget, the deadline, progress lines, serialize (a scripted poll, no service)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from als_provider.triggers.base import PollingTrigger
from als_provider.triggers.inline import first_event


class Flaky(ConnectionError):
    """A transient error (the network)."""


class Refused(PermissionError):
    """A permanent error (credentials)."""


class ScriptHook:
    """Stands for a hook: a connection id is all the loop needs of it."""

    conn_name_attr = "script_conn_id"
    default_conn_name = "script_default"

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.closed = False

    def close(self) -> None:
        self.closed = True


class ScriptedTrigger(PollingTrigger):
    """Each poll takes the next step of ``SCRIPT``: an exception is raised, anything else returned."""

    hook_class = ScriptHook
    fields = ("name", "max_errors")
    SCRIPT: list[Any] = []

    def __init__(self, name: str = "work", *, max_errors: int | None = None, **settings: Any) -> None:
        super().__init__(name=name, max_errors=max_errors, poll_interval=settings.pop("poll_interval", 0), **settings)
        self.polls = 0

    @property
    def what(self) -> str:
        return self.name

    def poll(self) -> dict[str, Any] | None:
        assert self.hook.conn_id == self.script_conn_id
        step = self.SCRIPT[min(self.polls, len(self.SCRIPT) - 1)]
        self.polls += 1
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, str):
            self.progress(step)
            return None
        return step

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, Flaky)


def run(script: list[Any], **kwargs: Any) -> tuple[dict[str, Any], ScriptedTrigger]:
    ScriptedTrigger.SCRIPT = script
    trigger = ScriptedTrigger(**kwargs)
    return first_event(trigger), trigger


def test_transient_errors_are_polled_again_and_the_count_restarts_after_an_answer():
    done = {"status": "success"}
    event, trigger = run([Flaky("a"), Flaky("b"), "running", Flaky("c"), Flaky("d"), done], max_errors=3)
    assert event == done and trigger.polls == 6
    assert trigger.hook.closed  # the hook is closed when the wait ends


def test_too_many_transient_errors_in_a_row_end_the_wait():
    event, trigger = run([Flaky("network down")], max_errors=3)
    assert trigger.polls == 3
    assert event == {"status": "error", "message": "work: Flaky: network down"}


def test_a_permanent_error_ends_the_wait_at_once():
    event, trigger = run([Refused("bad key")], max_errors=3)
    assert trigger.polls == 1 and event == {"status": "error", "message": "work: Refused: bad key"}


def test_without_a_budget_transient_errors_last_until_the_deadline():
    started = time.monotonic()
    event, trigger = run([Flaky("x")], deadline=time.time() + 0.3, poll_interval=0.05)
    assert event == {"status": "timeout", "message": "work did not finish by its deadline"}
    assert trigger.polls > 2 and time.monotonic() - started < 5


def test_progress_is_logged_when_it_changes(capfd):
    run(["queued", "queued", "running", "running", {"status": "success"}])
    out, err = capfd.readouterr()
    logged = [line.split("]", 1)[1].split()[0] for line in (out + err).splitlines() if "[info" in line]
    assert logged == ["queued", "running"]


def test_serialize_names_the_connection_by_the_hook_and_round_trips():
    trigger = ScriptedTrigger("w", max_errors=2, script_conn_id="c", deadline=5.0, poll_interval=1.5)
    path, kwargs = trigger.serialize()
    assert kwargs == {"name": "w", "max_errors": 2, "script_conn_id": "c", "poll_interval": 1.5, "deadline": 5.0}
    assert ScriptedTrigger(**kwargs).serialize() == (path, kwargs)
    assert trigger.hook.conn_id == "c"
    with pytest.raises(TypeError, match="unexpected argument"):
        ScriptedTrigger(nonsense=1)
