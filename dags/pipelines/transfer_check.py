"""Transfer health checks: a fresh, uniquely named probe file moves along a beamline's route with Globus.

:func:`make_transfer_check_dag` builds one check from its route (the endpoints and probe folders, first to
last): ``write_probe`` writes random bytes at the first stop, each hop is a Globus transfer followed by a check
of size and md5, and ``remove_probes`` (a teardown: whatever happened; a deferred Globus delete per endpoint,
:class:`~als_provider.operators.globus_delete.GlobusDeleteOperator`) deletes every probe in the probe folders and
lists them to verify they are gone. 8.3.2 (dags/bl832_transfer_check.py) and each configured beamline with a
``transfer_check`` entry (:func:`make_beamline_transfer_check_dag`) run one every 12 h.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, CronTriggerTimetable, Param, task

from als_provider.operators.globus_delete import GlobusDeleteOperator
from als_provider.operators.globus_transfer import GlobusTransferOperator
from dags.pipelines.defaults import dag_defaults
from include.beamlines import Beamline
from include.runtime import load_runtime

#: Every 12 h, at midnight and noon at the ALS (upstream's flight checks: "0 */12 * * *", America/Los_Angeles).
SCHEDULE = "0 */12 * * *"
TIMEZONE = "America/Los_Angeles"
#: How long the clean-up waits for each of its delete tasks.
CLEANUP_TIMEOUT = timedelta(minutes=10)
PROBE_NAME = "{{ ti.xcom_pull(task_ids='write_probe')['name'] }}"


@dataclass(frozen=True)
class Stop:
    """Where the probe lands on one endpoint: ``endpoint:folder/<probe>``; ``label`` names the tasks."""

    endpoint: str
    folder: str
    label: str


@task
def write_probe(endpoint: str, folder: str, params=None) -> dict:
    """Write ``params.size_kib`` KiB of fresh random bytes at ``endpoint:folder/``; return path, size, md5.

    The name holds the time and a random part, so no run (nor a retry) ever meets another's probe."""
    import hashlib
    import os
    import uuid

    from include.endpoints import load_endpoints

    stamp = pendulum.now("UTC").format("YYYYMMDD_HHmmss")
    relative = f"{folder}/{stamp}_{uuid.uuid4().hex[:12]}.probe"
    target = load_endpoints()[endpoint].posix_path(relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = os.urandom(int(params["size_kib"]) * 1024)
    target.write_bytes(payload)
    return {"path": relative, "name": target.name, "size": len(payload), "md5": hashlib.md5(payload).hexdigest()}


@task
def verify_arrival(probe: dict, endpoint: str, folder: str) -> dict:
    """Check the copy at ``endpoint:folder/<name>``: same size through Globus, same md5 where readable."""
    import hashlib

    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.endpoints import load_endpoints
    from include.paths import EndpointPath

    where = EndpointPath(endpoint, f"{folder}/{probe['name']}")
    found = GlobusTransferHook().stat(where)
    if found is None:
        raise FileNotFoundError(f"{where} is missing after its transfer reported success")
    if found.get("size") != probe["size"]:
        raise ValueError(f"{where} has {found.get('size')} bytes, expected {probe['size']}")
    local = load_endpoints().posix(where)
    if local.is_file():
        md5 = hashlib.md5(local.read_bytes()).hexdigest()
        if md5 != probe["md5"]:
            raise ValueError(f"{where} md5 {md5} differs from the probe's {probe['md5']}")
        print(f"{where}: {found['size']} bytes, md5 {md5} matches")
    else:
        print(f"{where}: {found['size']} bytes; md5 verified by Globus (verify_checksum), not readable here")
    return where.to_dict()


@task
def publish_outputs(copies: list[dict], ti=None) -> list[dict]:
    """Return the verified copies; the run publishes no outputs (XCom ``outputs`` is empty): its probes go."""
    ti.xcom_push(key="outputs", value=[])
    return list(copies)


def remove_probes(folders: dict[str, str], **kwargs: Any) -> GlobusDeleteOperator:
    """The task ``remove_probes``: every ``*.probe`` in ``folders`` (endpoint -> folder) deleted with one deferred
    Globus delete task per endpoint, then listed again (none may remain); ``kwargs`` go to the operator."""
    return GlobusDeleteOperator(
        task_id="remove_probes", folders=folders, pattern="*.probe", delete_timeout=CLEANUP_TIMEOUT, **kwargs
    )


def make_transfer_check_dag(
    dag_id: str, route: list[Stop], *, description: str, doc_md: str, tags: list[str], owner: str
) -> DAG:
    """The health check ``dag_id``: a probe written at ``route[0]`` moves hop by hop to ``route[-1]``, each
    arrival verified; every 12 h (America/Los_Angeles); a failed run notifies the team."""
    if len(route) < 2 or len({stop.endpoint for stop in route}) != len(route):
        raise ValueError(f"{dag_id}: a route is two or more distinct endpoints")
    poll = load_runtime().poll("transfer")
    with DAG(
        dag_id=dag_id,
        description=description,
        doc_md=doc_md,
        tags=[*tags, "health-check", "globus"],
        params={
            "size_kib": Param(
                64,
                type="integer",
                minimum=1,
                maximum=1024 * 1024,
                title="Probe size (KiB)",
                description=f"Size of the random probe file written on {route[0].endpoint}.",
            ),
        },
        **dag_defaults(
            owner=owner,
            max_active_runs=1,
            notify=True,
            schedule=CronTriggerTimetable(SCHEDULE, timezone=TIMEZONE),
            start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
        ),
    ) as dag:
        first = route[0]
        probe = write_probe(first.endpoint, first.folder)
        previous, last, arrivals = first, probe, []
        for stop in route[1:]:
            hop = GlobusTransferOperator(
                task_id=f"{previous.label}_to_{stop.label}",
                source_endpoint=previous.endpoint,
                source_path=f"{previous.folder}/{PROBE_NAME}",
                destination_endpoint=stop.endpoint,
                destination_path=f"{stop.folder}/{PROBE_NAME}",
                recursive=False,
                poll_interval=poll,
            )
            arrived = verify_arrival.override(task_id=f"verify_{stop.label}")(probe, stop.endpoint, stop.folder)
            last >> hop >> arrived
            previous, last = stop, arrived
            arrivals.append(arrived)
        cleanup = remove_probes(
            {stop.endpoint: stop.folder for stop in route},
            poll_interval=poll,
            trigger_rule="all_done",
            retries=2,
            retry_delay=timedelta(seconds=10),
        )
        publish_outputs(arrivals) >> cleanup
        cleanup.as_teardown(setups=probe)  # runs whatever happened; the run's state is still the hops' state
    return dag


def make_beamline_transfer_check_dag(beamline: Beamline) -> DAG:
    """``<key>_transfer_check`` of a configured beamline: its source endpoint → the NERSC end of its
    ``transfer_check`` entry (include/config/beamlines.yaml)."""
    if beamline.transfer_check is None:
        raise ValueError(f"beamline {beamline.key} has no transfer_check entry in beamlines.yaml")
    nersc, folder = beamline.transfer_check["endpoint"], beamline.transfer_check["folder"]
    route = [Stop(beamline.source_endpoint, folder, beamline.source_endpoint), Stop(nersc, folder, nersc)]
    doc = f"""
### Transfer health check (beamline {beamline.beamline})
Every 12 h (00:00 and 12:00 America/Los_Angeles), writes a fresh, uniquely named probe file on
**{beamline.source_endpoint}** (`{folder}/`, no scan folder), moves it with Globus Transfer to **{nersc}**
(`{folder}/`, outside the raw copy `{beamline.nersc_endpoint}`), the route of `{beamline.dag_id}`, and checks
size and checksum on arrival. A failed hop fails the run with Globus's own message and notifies the team. Whatever
happened, `remove_probes` then deletes every probe (`*.probe`) in both probe folders with Globus delete tasks and
lists the folders to verify they are gone. Configured in include/config/beamlines.yaml
(`{beamline.key}.transfer_check`); built by dags/pipelines/transfer_check.py.

The worker writes the probe through {beamline.source_endpoint}'s `posix_root` (include/config/endpoints.yaml),
so it must run where that storage is mounted (on the local profile: the local facility folder).
"""
    return make_transfer_check_dag(
        beamline.transfer_check_dag_id,
        route,
        description=f"Move a fresh probe file {beamline.source_endpoint} → {nersc} and verify it ({beamline.beamline})",
        doc_md=doc,
        tags=[beamline.key],
        owner=beamline.owner,
    )
