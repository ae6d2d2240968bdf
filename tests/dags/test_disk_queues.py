"""Issue 22 item 6: the tasks that read a host's disk (the SciCat steps) go to that host's Celery queue
(runtime.yaml ``disk_queues``); every other task stays on the default queue, any worker runs it."""

from __future__ import annotations

import pytest
import yaml

from include.endpoints import REPO_ROOT
from include.errors import ConfigError

QUEUES = {"data832": "q-data832", "data733": "q-data733", "data7012": "q-data7012"}


def runtime_file(tmp_path, queues) -> str:
    data = yaml.safe_load((REPO_ROOT / "include" / "config" / "runtime.yaml").read_text())
    data["local"]["disk_queues"] = queues
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_every_task_that_reads_a_host_disk_carries_its_queue_and_no_other_does(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from als_provider.operators.scicat import SciCatIngestDerivedOperator, SciCatIngestRawOperator
    from include.endpoints import load_endpoints

    monkeypatch.setattr("include.runtime.RUNTIME_FILE", runtime_file(tmp_path, QUEUES))
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert not bag.import_errors
    collections = {name: e.collection.name for name, e in load_endpoints().endpoints.items()}
    routed, default = [], []
    for dag in bag.dags.values():
        for task in dag.tasks:
            where = f"{dag.dag_id}.{task.task_id}"
            if getattr(task, "is_mapped", False) or type(task).__name__ == "MappedOperator":
                continue  # the catch-up's registrations: see docs/operations.md
            if isinstance(task, SciCatIngestRawOperator):
                assert task.queue == QUEUES[collections[task.endpoint]], where
                routed.append(where)
            elif isinstance(task, SciCatIngestDerivedOperator):
                assert task.queue == QUEUES[collections[task.endpoint]] == QUEUES[collections[task.raw_endpoint]]
                routed.append(where)
            else:
                assert task.queue not in QUEUES.values(), f"{where} needs no host's disk"
                default.append(where)
    assert any(".scicat_derived" in w for w in routed) and any(w.startswith("bl733") for w in routed)
    assert any(w.startswith("bl832_transfer_check") for w in default)  # Globus only


def test_the_local_profile_routes_nothing_and_production_names_a_queue_per_host():
    from include.runtime import load_runtime

    assert load_runtime("local").disk_queue("data832_raw") == {}
    production = load_runtime("production")
    assert production.disk_queue("data832_raw", "data832_scratch") == {"queue": "data832"}
    assert production.disk_queue("data733") == {"queue": "data733"}
    assert production.disk_queue("nersc832") == {}


def test_an_unknown_collection_or_a_split_task_is_refused_in_one_line(tmp_path):
    from include.runtime import load_runtime

    with pytest.raises(ConfigError, match=r"disk_queues\.data_832 \(local\): no collection 'data_832'"):
        load_runtime("local", path=runtime_file(tmp_path, {"data_832": "q"}))
    split = load_runtime("local", path=runtime_file(tmp_path, {"data832": "a", "nersc_cfs": "b"}))
    with pytest.raises(ConfigError, match="different queues"):
        split.disk_queue("data832_raw", "nersc832")


def test_als_runtime_file_names_the_runtime_file_of_a_process(tmp_path, monkeypatch):
    from include.runtime import RUNTIME_FILE_ENV, load_runtime

    monkeypatch.setenv(RUNTIME_FILE_ENV, runtime_file(tmp_path, {"data832": "q-stack"}))
    assert load_runtime("local").disk_queue("data832_raw") == {"queue": "q-stack"}
