"""What DAG tests share (and plugin and facility tests): load a DAG with fast retries, read task states and XComs,
place a sample scan, wait for a Compute task."""

from __future__ import annotations

from datetime import timedelta

from include.endpoints import REPO_ROOT


def load_dag(dag_id: str, file_name: str | None = None, *, fast_retries: bool = True):
    """The DAG ``dag_id`` from ``dags/<file_name or dag_id>.py``; retries keep their count but not their delay."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / (file_name or f"{dag_id}.py")))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    if fast_retries:
        for task in dag.tasks:
            task.retry_delay = timedelta(seconds=0)
    return dag


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def xcom(dag_run, task_id: str, key: str = "return_value"):
    """One XCom value of a finished run, read from the metadata database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)


def write_scan(local_endpoints, endpoint: str, relative: str, size: str = "tiny"):
    """A generated sample scan at ``endpoint:relative``; returns its local path."""
    from compute_functions.sample_scan import write_sample_scan

    path = local_endpoints[endpoint].posix_path(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_sample_scan(path, size=size)
    return path


def recorded(dag_run) -> list[dict]:
    """The deletion-manifest entries a run recorded (read from the metadata database)."""
    from include.manifests import KEY_PREFIX, ManifestEntry, MetadataDbVariables, load_entries

    store = MetadataDbVariables()
    return [
        {"endpoint": e.endpoint, "path": e.path, "check_endpoint": e.check_endpoint, "location": e.location}
        for e in load_entries(store.keys(KEY_PREFIX), store=store)
        if isinstance(e, ManifestEntry) and e.dag_id == dag_run.dag_id and e.run_id == dag_run.run_id
    ]


def entry_of_copy(hook, endpoint: str, path: str, check: str, location: str, **fields):
    """A deletion-manifest entry for what ``endpoint:path`` holds now (its record listed through ``hook``), checked
    against ``check`` and kept at ``location``; ``fields``: the entry's others (key, not_before, dag_id, run_id…)."""
    from include.manifests import DeletionRequest, ManifestEntry
    from include.pruning import record_copies

    [(_, record)] = record_copies(hook, [DeletionRequest(endpoint, path, check, location)])
    assert record is not None, f"nothing at {endpoint}:{path}"
    return ManifestEntry(
        endpoint=endpoint, path=path, check_endpoint=check, location=location, **record.to_dict(), **fields
    )


def backdate(dag_run, days: int):
    """Record again, ``days`` ago, every deletion the run's ``finish`` tasks recorded (prune refuses a future
    ``as_of``, so the run is moved into the past instead); returns that moment."""
    from datetime import UTC, datetime

    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.manifests import DeletionRequest, schedule_deletions
    from include.pruning import record_copies

    then = datetime.now(UTC) - timedelta(days=days)
    requests = [
        DeletionRequest(r["endpoint"], r["path"], r["check_endpoint"], r["location"], check_path=r.get("check_path"))
        for ti in dag_run.get_task_instances()
        if ti.task_id.endswith("finish")
        for r in (ti.xcom_pull(task_ids=ti.task_id) or {}).get("recorded", [])
    ]
    copies = record_copies(GlobusTransferHook(), requests)
    schedule_deletions(copies, dag_id=dag_run.dag_id, run_id=f"{dag_run.run_id}-backdated", now=then)
    return then


def run_with_a_failing_job(dag, facility, run_conf: dict, *, match: str, state: str, after: float = 0):
    """dag.test(run_conf) while SFAPI ends each job whose name matches ``match`` in ``state`` (``after`` seconds),
    every task's retries at 0 (put back after); the run fails: returns it and its task states."""
    facility.inject("sfapi", "state", match=match, times=5, params={"state": state, "after": after})
    retries = {task.task_id: task.retries for task in dag.tasks}
    try:
        for task in dag.tasks:
            task.retries = 0
        dag_run = dag.test(run_conf=run_conf)
    finally:
        for task in dag.tasks:
            task.retries = retries[task.task_id]
    assert dag_run.state == "failed"
    return dag_run, states(dag_run)


def run_in_db(dag):
    """dag.test() of a DAG defined in a test (serialised to the metadata DB first: dag.test() runs only DAGs it
    finds there); returns the run and its task instances by task id."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
        session.flush()
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )
    dag_run = dag.test()
    return dag_run, {ti.task_id: ti for ti in dag_run.get_task_instances()}


class TaskStateStore:
    """The task state store's interface (get/set), kept in a dict."""

    def __init__(self) -> None:
        self.values: dict = {}

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value) -> None:
        self.values[key] = value


def wait_for_compute_task(hook, task_id: str, timeout: float = 60.0) -> dict:
    """``hook.get_task(task_id)`` (a GlobusComputeHook) once the Compute task is no longer pending."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = hook.get_task(task_id)
        if not task["pending"]:
            return task
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} still pending after {timeout}s")


class SimulatedWorkerCrash(RuntimeError):
    """Stands for the worker dying right after a step of the first try."""


def first_try() -> bool:
    """Whether the running task instance is in its first try."""
    from airflow.sdk import get_current_context

    return get_current_context()["ti"].try_number == 1


def crash_after(hook, method: str, message):
    """``hook``, whose ``method`` does its work and then dies (SimulatedWorkerCrash) in the first try: the call
    reached the service, its answer never reached the task. ``message``: the crash's, or a function of the call's
    result and arguments that returns it (``None``: no crash after this call)."""
    if first_try():
        original = getattr(hook, method)

        def call_then_die(*args, **kwargs):
            result = original(*args, **kwargs)
            why = message(result, *args, **kwargs) if callable(message) else message
            if why is None:
                return result
            raise SimulatedWorkerCrash(why)

        setattr(hook, method, call_then_die)
    return hook
