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
