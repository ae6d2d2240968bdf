"""Every trigger of the provider survives the triggerer's round trip: serialize() -> cls(**kwargs) -> serialize().

The triggerer stores ``serialize()``'s classpath and kwargs (as JSON) and rebuilds the trigger from them in
another process; an attribute that is not serialized, or serialized under another name, is lost there. The
classes are found by importing every module of ``als_provider.triggers``: a new trigger fails here until it
has an example below.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil

import pytest
from airflow.triggers.base import BaseTrigger

import als_provider.triggers

#: Constructor arguments per trigger, as unlike the defaults as possible.
EXAMPLES: dict[str, dict] = {
    "als_provider.triggers.globus_transfer.GlobusTaskTrigger": {
        "task_id": "t-1",
        "globus_conn_id": "globus_test",
        "poll_interval": 3.5,
        "deadline": 1_900_000_000.5,
        "cancel_on_fatal": False,
    },
    "als_provider.triggers.globus_transfer.GlobusPathTrigger": {
        "endpoint": "data832_raw",
        "path": "a/b.h5",
        "globus_conn_id": "globus_test",
        "poll_interval": 7.0,
        "deadline": 1_900_000_000.0,
    },
    "als_provider.triggers.globus_compute.GlobusComputeTaskTrigger": {
        "task_id": "c-1",
        "globus_compute_conn_id": "compute_test",
        "poll_interval": 3.0,
        "deadline": 123.5,
        "function_name": "reconstruct",
    },
    "als_provider.triggers.sfapi.SFAPIJobTrigger": {
        "job_id": "123",
        "machine": "muller",
        "sfapi_conn_id": "sfapi_test",
        "poll_interval": 2.0,
        "deadline": 1_900_000_000.0,
        "error_log": "/x/y.err",
        "job_name": "n",
        "tail_lines": 5,
        "max_poll_errors": 3,
        "cancel_on_kill": False,
    },
    "als_provider.triggers.sftp_new_scan.SFTPNewScanTrigger": {
        "dispatch_dag_id": "some_dispatcher",
        "sftp_conn_id": "sftp_test",
        "raw_root": "/data/raw",
        "stable_polls": 4,
        "poll_interval": 2.5,
    },
}


def trigger_classes() -> dict[str, type[BaseTrigger]]:
    """classpath -> class of every concrete BaseTrigger defined in a module of als_provider.triggers."""
    found = {}
    for module_info in pkgutil.walk_packages(als_provider.triggers.__path__, "als_provider.triggers."):
        module = importlib.import_module(module_info.name)
        for cls in vars(module).values():
            if (
                inspect.isclass(cls)
                and issubclass(cls, BaseTrigger)
                and cls.__module__ == module.__name__
                and not inspect.isabstract(cls)
            ):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


CLASSES = trigger_classes()


def test_every_trigger_has_an_example_and_every_example_a_trigger():
    missing = sorted(set(CLASSES) - set(EXAMPLES))
    assert not missing, f"add an example of the constructor arguments of {missing} to EXAMPLES"
    assert set(EXAMPLES) == set(CLASSES), f"examples of triggers that are gone: {sorted(set(EXAMPLES) - set(CLASSES))}"


@pytest.mark.parametrize("classpath", sorted(CLASSES))
def test_serialize_round_trips(classpath):
    if classpath not in EXAMPLES:
        pytest.fail(f"{classpath} has no example in EXAMPLES")
    cls = CLASSES[classpath]
    trigger = cls(**EXAMPLES[classpath])
    path, kwargs = trigger.serialize()
    assert path == classpath
    assert kwargs | EXAMPLES[classpath] == kwargs  # every example argument is serialized as given
    stored = json.loads(json.dumps(kwargs))  # the triggerer keeps them as JSON
    module, _, name = path.rpartition(".")
    clone = getattr(importlib.import_module(module), name)(**stored)
    assert clone.serialize() == (path, kwargs)
    clone.task_id = "some_dag.some_task"  # the triggerer sets the Airflow task's id on every trigger it loads
    assert clone.serialize() == (path, kwargs)
