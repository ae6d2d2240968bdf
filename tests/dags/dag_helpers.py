"""What DAG tests share: load a DAG with fast retries, read task states and XComs, place a sample scan."""

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
