"""RemoteWorkOperator: the one resumable-remote core of the provider's operators.

Submit with the remote id kept in the task state store, re-attach on retry, defer (or wait in the worker),
check the final event: written here once; a service's operator adds its calls (:meth:`submit`,
:meth:`status_of`, :meth:`make_trigger`, :meth:`result`), as the AWS provider's ``AwsBaseOperator`` and
waiter triggers keep the loop for every AWS service. Work in several pieces (clear a destination, then copy;
compare, then delete) runs each piece under its own state key with :meth:`RemoteWorkOperator.run_step` or
:meth:`RemoteWorkOperator.start` and :meth:`RemoteWorkOperator.wait`, and goes on in
:meth:`RemoteWorkOperator.resume`: every wait is the same deferred trigger.
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from functools import cached_property
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context

from als_provider.triggers.base import PollingTrigger
from als_provider.triggers.inline import first_event

#: What :meth:`RemoteWorkOperator.status_of` says of the remote work an earlier try started.
LIVE = "live"  # queued or running: wait for it
SUCCEEDED = "succeeded"  # ended well: take its result
GONE = "gone"  # ended in failure, or the service no longer knows it: start afresh
#: Deferred waits get this much longer than the trigger's own deadline (so the trigger reports it first).
DEFER_GRACE = timedelta(minutes=10)


#: task_state_store key naming the piece of remote work a deferred wait is for (``{"key": None}``: the main one).
WAITING_KEY = "remote_work_waiting"
#: State field naming the run of the task instance the state belongs to (see :func:`generation`).
GENERATION_KEY = "generation"
#: task_state_store key of the record of the task instance's current run: ``{"max_tries", "first_try", "ended"}``.
RUN_KEY = "run_of_task_instance"
#: XCom key of the one line a remote-work task failed with for good (the pipeline's ``finish`` repeats it).
FAILURE_KEY = "failure"


class RemoteWorkError(RuntimeError):
    """Remote work failed, timed out or could not be started."""


def generation(context: Context) -> int:
    """The first try number of this run of the task instance: the same for its retries, new after a Clear.

    Only a Clear changes ``max_tries`` (it sets ``max_tries = try_number + retries``; a retry, and a change of
    the code's ``retries`` between tries, leave it), so the task state store keeps a record of the current run
    (:data:`RUN_KEY`): the ``max_tries`` it saw and its first try. A try that finds another ``max_tries``, or a
    record whose run ended (succeeded, or failed for good: only a Clear runs the task instance again, even where
    the Clear left ``max_tries`` as it was), starts a new run at its own try number. The first record is seeded
    with ``max_tries - retries + 1`` (how earlier versions counted, as the task SDK's
    ``get_first_reschedule_date`` does), so tasks in flight keep their generation. A Clear of a running task
    (RESTARTING) is a retry. Without a task state store: ``max_tries - retries + 1``.
    """
    ti = context["ti"]
    store = context.get("task_state_store")
    legacy = int(ti.max_tries) - int(getattr(ti.task, "retries", 0) or 0) + 1
    if store is None:
        return legacy
    record = store.get(RUN_KEY) or {}
    if record.get("max_tries") == int(ti.max_tries) and not record.get("ended") and record.get("first_try"):
        return int(record["first_try"])
    first_try = int(ti.try_number) if record else min(max(legacy, 1), int(ti.try_number))
    store.set(RUN_KEY, {"max_tries": int(ti.max_tries), "first_try": first_try, "ended": False})
    return first_try


def end_run(context: Context) -> None:
    """Record that this run of the task instance ended (success, or a failure with no retry left): whatever
    runs it next is a Clear, and starts a new generation."""
    store = context.get("task_state_store")
    if store is not None:
        first_try = generation(context)
        store.set(RUN_KEY, {"max_tries": int(context["ti"].max_tries), "first_try": first_try, "ended": True})


def ends_the_run(context: Context, exc: BaseException) -> bool:
    """Whether ``exc`` fails the task instance for good (no retry follows)."""
    from airflow.sdk.exceptions import AirflowFailException

    ti = context.get("ti")
    if isinstance(exc, AirflowFailException) or ti is None:
        return isinstance(exc, AirflowFailException)
    return int(ti.try_number) > int(ti.max_tries)


def failure_line(exc: BaseException) -> str:
    """``exc`` in one line: its message's first line (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_retry(context: Context) -> bool:
    """True for the second and later tries since the task instance last started (or was cleared)."""
    return int(context["ti"].try_number) > generation(context)


def task_key(context: Context) -> str:
    """A key naming this task instance (dag, run, task, map index) and its run since the last Clear: the same
    across retries, new after a Clear (an SFAPI job's comment, a Compute function's ``run_key``)."""
    ti = context["ti"]
    parts = [ti.dag_id, ti.run_id, ti.task_id, str(getattr(ti, "map_index", -1)), str(generation(context))]
    return "airflow-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


class RemoteWorkOperator(BaseOperator):
    """Run one piece of remote work per task instance and wait for it, resumably.

    ``execute``: the state an earlier try of this task instance stored (``task_state_store``, scoped to dag,
    run, task and map index across tries) is looked up; remote work that is live is re-attached to, work that
    succeeded gives its result, and only work that ended in failure or is unknown to the service is submitted
    afresh. Retry re-attaches, Clear starts over: the state records the :func:`generation` it was written in,
    and a state of an earlier generation (the task instance was cleared since) is ignored, so a cleared task
    starts new remote work. Then the wait is deferred (``deferrable=True``, the default) or run in the worker,
    and the final event is checked: anything but ``{"status": "success", ...}`` fails the task with the
    service's message. Further pieces of work (:meth:`run_step`) are waited for the same way and continue in
    :meth:`resume`.

    A service's operator sets ``hook_class`` (built with ``conn_id``), ``state_key`` (renaming one breaks the
    retries of tasks in flight) and ``id_key`` (the remote id in its state), and implements :meth:`submit`,
    :meth:`status_of`, :meth:`make_trigger` and :meth:`result`; optionally :meth:`prepare`,
    :meth:`already_done`, :meth:`find_lost`, :meth:`attached`, :meth:`failure`, :meth:`forget`, :meth:`cancel`,
    and, for work in several pieces, :meth:`begin` and :meth:`resume`.

    :param conn_id: the hook's connection (each operator names its argument, e.g. ``globus_conn_id``).
    :param deferrable: wait in the triggerer (default) or in the worker.
    :param poll_interval: seconds between polls of the remote work.
    :param wait_timeout: longest wait (each operator says from when); ``None``: no limit.
    """

    hook_class: ClassVar[type]
    state_key: ClassVar[str]
    id_key: ClassVar[str] = "task_id"
    error_class: ClassVar[type[Exception]] = RemoteWorkError

    def __init__(
        self,
        *,
        conn_id: str,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        wait_timeout: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id, self.deferrable = conn_id, deferrable
        self.poll_interval, self.wait_timeout = poll_interval, wait_timeout
        self._remote: dict[str, Any] | None = None  # the work this worker waits for (on_kill cancels it)
        self._key: str | None = None  # the state key of the work being started, when not ``state_key``

    @cached_property
    def hook(self) -> Any:
        """The service's hook: one per try (``execute`` and ``execute_complete`` start with a new one)."""
        return self.get_hook()

    def get_hook(self) -> Any:
        return self.hook_class(self.conn_id)

    # -- the state store: the one place that reads and writes it ------------------------------------
    def _load_state(self, context: Context, key: str | None = None) -> dict[str, Any]:
        """What an earlier try of this task instance stored under ``key`` (default: the work being started)."""
        store = context.get("task_state_store")
        if store is None:
            self.log.warning("No task state store: a retry of this task cannot re-attach to its remote work")
            return {}
        state = dict(store.get(key or self._key or self.state_key) or {})
        written_in, current = state.get(GENERATION_KEY), generation(context)
        if state and written_in is not None and written_in != current:
            self.log.info(
                "The task instance was cleared since try %s started %s: starting new remote work",
                written_in,
                self.describe(state),
            )
            return {}
        return state

    def _save_state(self, context: Context, state: dict[str, Any], key: str | None = None) -> None:
        """Keep ``state`` for later tries (of this run of the task instance) under ``key``."""
        store = context.get("task_state_store")
        if store is not None:
            store.set(key or self._key or self.state_key, {**state, GENERATION_KEY: generation(context)})

    # -- the core ------------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        self.__dict__.pop("hook", None)
        return self._ending_the_run(context, self.begin, context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """A deferred wait ended: :meth:`resume` with the piece of work it was for and its final event."""
        self.__dict__.pop("hook", None)
        key = self._load_state(context, WAITING_KEY).get("key")
        return self._ending_the_run(context, self.resume, context, key, event)

    def _ending_the_run(self, context: Context, step: Any, *args: Any) -> Any:
        """``step(*args)``; its success, or a failure no retry follows, ends this run of the task instance
        (:func:`end_run`). A deferral (``TaskDeferred``, a ``BaseException``) ends nothing."""
        try:
            result = step(*args)
        except Exception as exc:
            if ends_the_run(context, exc):
                end_run(context)
                self._publish_failure(context, exc)
            raise
        end_run(context)
        return result

    def _publish_failure(self, context: Context, exc: BaseException) -> None:
        """Push ``exc``'s one line (XCom ``failure``) for the pipeline's ``finish``; the task's own error stands
        whatever happens here."""
        try:
            context["ti"].xcom_push(key=FAILURE_KEY, value=failure_line(exc))
        except Exception as push_error:  # the original error is raised either way
            self.log.warning("could not publish this task's failure line: %s", push_error)

    def begin(self, context: Context) -> Any:
        """A try's way in: :meth:`prepare`, then the main remote work (:meth:`start`) and its wait.

        An operator whose work has several pieces overrides it (and :meth:`resume`) to start the first piece."""
        self.prepare(context)
        state, status = self.start(context)
        if status is None:  # nothing needed doing remotely
            return self.resume(context, None, state)
        if status == SUCCEEDED:  # the trigger's first poll reads the final event
            return self.resume(context, None, first_event(self.make_trigger(state)))
        return self.wait(context, state)

    def resume(self, context: Context, key: str | None, event: dict[str, Any]) -> Any:
        """Go on once the work under ``key`` (``None``: the main work) ended with ``event``: for the main work,
        anything but ``{"status": "success", ...}`` fails the task with the service's message, else
        :meth:`result`. An operator with several pieces of work overrides it for its other keys."""
        if event.get("status") != "success":
            raise self.failure(event)
        return self.result(context, event)

    def start(self, context: Context, key: str | None = None) -> tuple[dict[str, Any], str | None]:
        """Re-attach to the earlier try's remote work, or submit it; returns its state and status.

        The status is LIVE or SUCCEEDED; ``None`` means :meth:`already_done` found nothing to do and the state
        is then the final event.
        """
        self._key = key
        state = self._load_state(context)
        if state.get(self.id_key):
            status = self.status_of(state)
            if status != GONE:
                self.log.info("Re-attaching to %s from an earlier try (%s)", self.describe(state), status)
                self.attached(context, state)
                return state, status
            self.log.warning(
                "%s of an earlier try ended in failure or is unknown: starting afresh", self.describe(state)
            )
            state = self.forget(state)
        elif (state.get("submitting_at") or is_retry(context)) and (found := self.find_lost(context)):
            self.log.info("Found %s submitted by an earlier try; re-attaching", self.describe(found))
            self._save_state(context, found)
            self.attached(context, found)
            return found, LIVE
        if (done := self.already_done(context)) is not None:
            return done, None
        state = self.submit(context, state)
        self._save_state(context, state)
        self.log.info("Submitted %s", self.describe(state))
        self.attached(context, state)
        return state, LIVE

    def run_step(self, context: Context, key: str, work: dict[str, Any]) -> Any:
        """Run ``work`` (the state :meth:`submit` starts from) as a piece of remote work under ``key``, wait for
        it and :meth:`resume` with ``key`` and its final event (after a deferral, in :meth:`execute_complete`).

        Exactly once: work an earlier try left live under ``key`` is re-attached to, and an interrupted
        submission is sent again with its stored id; work under ``key`` that already ended is not reused (a
        step is asked for only while it is still needed), so ``work`` is submitted afresh."""
        state = self._load_state(context, key)
        if state.get(self.id_key) and self.status_of(state) == LIVE:
            self.log.info("Re-attaching to %s from an earlier try", self.describe(state))
        else:
            resend = {} if state.get(self.id_key) else {k: v for k, v in state.items() if k != GENERATION_KEY}
            self._key = key
            try:
                state = self.submit(context, {**work, **resend})
                self._save_state(context, state)
            finally:
                self._key = None
            self.log.info("Submitted %s", self.describe(state))
        return self.wait(context, state, key)

    def wait(self, context: Context, state: dict[str, Any], key: str | None = None) -> Any:
        """Wait for the remote work of ``state`` (kept under ``key``; ``None``: the main work): defer to the
        triggerer, or run the trigger here; then :meth:`resume`."""
        trigger = self.make_trigger(state)
        if self.deferrable:
            self._save_state(context, {"key": key}, WAITING_KEY)
            remaining = None if trigger.deadline is None else max(0.0, trigger.deadline - time.time())
            timeout = None if remaining is None else timedelta(seconds=remaining) + DEFER_GRACE
            self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)
        self._remote = state
        try:
            event = first_event(trigger)
        finally:
            self._remote = None
        return self.resume(context, key, event)

    def on_kill(self) -> None:
        """Cancel the remote work this worker waits for (a deferred wait is cancelled by its trigger)."""
        if self._remote:
            self.cancel(self._remote)

    # -- what a service's operator provides --------------------------------------------------------
    def prepare(self, context: Context) -> None:
        """Validate and resolve the arguments before anything remote happens (bad input fails here)."""

    def status_of(self, state: dict[str, Any]) -> str:
        """LIVE, SUCCEEDED or GONE: how the remote work of ``state`` (which has its id) stands."""
        raise NotImplementedError

    def submit(self, context: Context, state: dict[str, Any]) -> dict[str, Any]:
        """Start the remote work and return the state to keep (with its id under ``id_key``).

        ``state`` is what an earlier, interrupted submission stored (empty if none): e.g. a client-chosen id
        to submit again with. Store such an id (:meth:`_save_state`) before the remote call.
        """
        raise NotImplementedError

    def make_trigger(self, state: dict[str, Any]) -> PollingTrigger:
        """The trigger that waits for the remote work of ``state``."""
        raise NotImplementedError

    def result(self, context: Context, event: dict[str, Any]) -> Any:
        """The task's return value (XCom) from a success event."""
        return event

    def describe(self, state: dict[str, Any]) -> str:
        """The remote work, for log lines."""
        return f"{self.state_key} {state.get(self.id_key)}"

    def already_done(self, context: Context) -> dict[str, Any] | None:
        """A success event if nothing needs submitting (e.g. the copy is already there), else ``None``."""
        return None

    def find_lost(self, context: Context) -> dict[str, Any] | None:
        """On a retry with no id stored: the state of work an earlier try started but could not record."""
        return None

    def attached(self, context: Context, state: dict[str, Any]) -> None:
        """Called with the state of the work this try waits for, once it is known."""

    def forget(self, state: dict[str, Any]) -> dict[str, Any]:
        """What of a failed earlier try's state a fresh submission starts from (nothing by default)."""
        return {}

    def failure(self, event: dict[str, Any]) -> Exception:
        """The exception a failed, timed-out or refused remote work fails the task with."""
        return self.error_class(event.get("message") or f"{type(self).__name__}: remote work failed: {event}")

    def cancel(self, state: dict[str, Any]) -> None:
        """Cancel the remote work (when a user kills the task), where the service can."""
