"""Transfer health checks: the route's seed file is copied with Globus, hop by hop, as a uniquely named probe.

:func:`make_transfer_check_dag` builds one check from its route (the endpoints and probe folders, first to
last). Upstream's flight checks do the same (splash_flows 1648452 orchestration/flows/bl832/move.py
``test_transfers_832``, bl733/move.py ``move_733_flight_check``): no task reads or writes a beamline's disk, so
any Airflow worker runs a check (docs/operations.md, "Health checks"). ``check_seed`` finds the seed
(``<folder>/transfer_check.seed`` at the first stop, :mod:`include.transfer_seeds`, put there once at deployment)
through Globus and names the run's probe; the first hop copies the seed to ``<folder>/<probe>`` on the second
stop, each later hop the probe onward, every one checksum-verified by Globus (``verify_checksum``) and checked
by size through Globus on arrival; ``remove_probes`` (a teardown: whatever happened; a deferred Globus delete per
endpoint, :class:`~als_provider.operators.globus_delete.GlobusDeleteOperator`) deletes every probe in the probe
folders (never the seed) and lists them to verify they are gone. 8.3.2 (dags/bl832_transfer_check.py) and each
configured beamline with a ``transfer_check`` entry (:func:`make_beamline_transfer_check_dag`) run one every 12 h.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, CronTriggerTimetable, task

from als_provider.operators.globus_delete import GlobusDeleteOperator
from als_provider.operators.globus_transfer import GlobusTransferOperator
from dags.pipelines.defaults import dag_defaults
from include.beamlines import Beamline
from include.runtime import load_runtime
from include.transfer_seeds import SEED_NAME

#: Every 12 h, at midnight and noon at the ALS (upstream's flight checks: "0 */12 * * *", America/Los_Angeles).
SCHEDULE = "0 */12 * * *"
TIMEZONE = "America/Los_Angeles"
#: How long the clean-up waits for each of its delete tasks.
CLEANUP_TIMEOUT = timedelta(minutes=10)
PROBE_NAME = "{{ ti.xcom_pull(task_ids='check_seed')['name'] }}"


@dataclass(frozen=True)
class Stop:
    """Where the probe lands on one endpoint: ``endpoint:folder/<probe>``; ``label`` names the tasks."""

    endpoint: str
    folder: str
    label: str


@task
def check_seed(endpoint: str, folder: str) -> dict:
    """Find the seed ``endpoint:folder/transfer_check.seed`` through Globus; name this run's probe.

    Returns the seed's path and size and the probe's name, which holds the time and a random part, so no run
    (nor a retry) ever meets another's probe. A missing seed fails the run at once, saying how to put it there."""
    import uuid

    from airflow.sdk.exceptions import AirflowFailException

    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.transfer_seeds import seed_of

    seed = seed_of(endpoint, folder)
    found = GlobusTransferHook().stat(seed)
    if found is None or found.get("type") not in (None, "file"):
        raise AirflowFailException(
            f"health-check seed {seed} is missing: put any small file there once (e.g. 64 KiB of random bytes, "
            "docs/operations.md 'Health checks'); the check copies it with Globus and never deletes it"
        )
    stamp = pendulum.now("UTC").format("YYYYMMDD_HHmmss")
    name = f"{stamp}_{uuid.uuid4().hex[:12]}.probe"
    print(f"seed {seed}: {found.get('size')} bytes; this run's probe: {name}")
    return {"seed": str(seed.path), "name": name, "size": found.get("size")}


@task
def verify_arrival(probe: dict, endpoint: str, folder: str) -> dict:
    """Check the copy at ``endpoint:folder/<name>`` through Globus: there, with the seed's size (its content was
    checksum-verified by Globus, ``verify_checksum``); nothing is read on this worker."""
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.paths import EndpointPath

    where = EndpointPath(endpoint, f"{folder}/{probe['name']}")
    found = GlobusTransferHook().stat(where)
    if found is None:
        raise FileNotFoundError(f"{where} is missing after its transfer reported success")
    if found.get("size") != probe["size"]:
        raise ValueError(f"{where} has {found.get('size')} bytes, expected {probe['size']} (the seed's)")
    print(f"{where}: {found['size']} bytes; checksum verified by Globus (verify_checksum)")
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
    """The health check ``dag_id``: the seed at ``route[0]`` is copied as a probe hop by hop to ``route[-1]``, each
    arrival verified; every 12 h (America/Los_Angeles); a failed run notifies the team."""
    if len(route) < 2 or len({stop.endpoint for stop in route}) != len(route):
        raise ValueError(f"{dag_id}: a route is two or more distinct endpoints")
    poll = load_runtime().poll("transfer")
    with DAG(
        dag_id=dag_id,
        description=description,
        doc_md=doc_md,
        tags=[*tags, "health-check", "globus"],
        **dag_defaults(
            owner=owner,
            max_active_runs=1,
            notify=True,
            schedule=CronTriggerTimetable(SCHEDULE, timezone=TIMEZONE),
            start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
        ),
    ) as dag:
        first = route[0]
        probe = check_seed(first.endpoint, first.folder)
        previous, last, arrivals = first, probe, []
        for stop in route[1:]:
            hop = GlobusTransferOperator(
                task_id=f"{previous.label}_to_{stop.label}",
                source_endpoint=previous.endpoint,
                # the first hop copies the seed, each later one the probe the hop before it made
                source_path=f"{previous.folder}/{SEED_NAME if previous is first else PROBE_NAME}",
                destination_endpoint=stop.endpoint,
                destination_path=f"{stop.folder}/{PROBE_NAME}",
                recursive=False,
                verify_checksum=True,
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
Every 12 h (00:00 and 12:00 America/Los_Angeles), copies the seed **{beamline.source_endpoint}**
`{folder}/{SEED_NAME}` (no scan folder; put there once at deployment) with Globus Transfer, checksum-verified, to
a fresh, uniquely named probe on **{nersc}** (`{folder}/`, outside the raw copy `{beamline.nersc_endpoint}`), the
route of `{beamline.dag_id}`, and checks its size through Globus on arrival. A failed hop fails the run with
Globus's own message and notifies the team. Whatever happened, `remove_probes` then deletes every probe
(`*.probe`; never the seed) in both probe folders with Globus delete tasks and lists the folders to verify they
are gone. Configured in include/config/beamlines.yaml
(`{beamline.key}.transfer_check`); built by dags/pipelines/transfer_check.py.

Globus only: no task reads a beamline's disk, any worker runs it (docs/operations.md, "Health checks").
"""
    return make_transfer_check_dag(
        beamline.transfer_check_dag_id,
        route,
        description=f"Copy the seed as a probe {beamline.source_endpoint} → {nersc}, verify it ({beamline.beamline})",
        doc_md=doc,
        tags=[beamline.key],
        owner=beamline.owner,
    )
