"""RemoteWorkOperator's state seam: a retry reads what earlier tries stored, a Clear starts over.

Airflow keeps ``max_tries - retries + 1`` as the first try since the task instance was last cleared (a Clear
sets ``max_tries = try_number + retries``); the state records it. The end-to-end proof on PostgreSQL is
tests/e2e/test_exactly_once_on_the_stack.py.
"""

from __future__ import annotations

from types import SimpleNamespace

from als_provider.operators.base import RemoteWorkOperator, generation, is_retry
from tests.dags.dag_helpers import TaskStateStore


class Work(RemoteWorkOperator):
    hook_class = object
    state_key = "work"


def context(store: TaskStateStore, *, try_number: int, max_tries: int, retries: int = 2) -> dict:
    ti = SimpleNamespace(try_number=try_number, max_tries=max_tries, task=SimpleNamespace(retries=retries))
    return {"ti": ti, "task_state_store": store}


def test_retries_of_one_run_share_the_state():
    store, op = TaskStateStore(), Work(task_id="w", conn_id="c")
    first = context(store, try_number=1, max_tries=2)
    op._save_state(first, {"task_id": "remote-1"})
    retry = context(store, try_number=2, max_tries=2)
    assert is_retry(retry) and not is_retry(first)
    assert op._load_state(retry)["task_id"] == "remote-1"


def test_a_clear_after_success_starts_over():
    """Issue 13 finding 4: the state outlived success, so a cleared task re-attached to its old work."""
    store, op = TaskStateStore(), Work(task_id="w", conn_id="c")
    op._save_state(context(store, try_number=1, max_tries=2), {"task_id": "remote-1"})
    cleared = context(store, try_number=2, max_tries=1 + 2)  # Clear after try 1: max_tries = 1 + retries
    assert generation(cleared) == 2 and not is_retry(cleared)
    assert op._load_state(cleared) == {}
    op._save_state(cleared, {"task_id": "remote-2"})
    retry_after_clear = context(store, try_number=3, max_tries=3)
    assert op._load_state(retry_after_clear)["task_id"] == "remote-2"


def test_a_clear_after_exhausted_retries_starts_over():
    store, op = TaskStateStore(), Work(task_id="w", conn_id="c")
    op._save_state(context(store, try_number=3, max_tries=2), {"task_id": "remote-1"})
    assert op._load_state(context(store, try_number=4, max_tries=3 + 2)) == {}


def test_state_written_before_generations_is_still_read():
    store, op = TaskStateStore(), Work(task_id="w", conn_id="c")
    store.set("work", {"task_id": "remote-0"})  # a task in flight when this version was deployed
    assert op._load_state(context(store, try_number=2, max_tries=2))["task_id"] == "remote-0"
