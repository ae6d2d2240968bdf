"""Health check of the 8.3.2 transfer route: a fresh file moves spot832 → data832 → nersc832."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from als_provider.operators.globus_transfer import GlobusTransferOperator
from dags.pipelines.dag_ids import TRANSFER_CHECK_DAG_ID
from dags.pipelines.defaults import dag_defaults
from include.runtime import load_runtime

POLL_SECONDS = load_runtime().poll("transfer")

PROBE_FOLDER = "transfer_check"
#: Where the probe lands on each endpoint (never nersc832 ``raw/``, the protected long-term copy).
PROBE_FOLDERS = {"spot832": f"raw/{PROBE_FOLDER}", "data832_raw": PROBE_FOLDER, "nersc832": PROBE_FOLDER}
#: How long the clean-up waits for its delete tasks.
CLEANUP_SECONDS = 600
PROBE_PATH = "{{ ti.xcom_pull(task_ids='write_probe')['path'] }}"
PROBE_NAME = "{{ ti.xcom_pull(task_ids='write_probe')['name'] }}"

DOC = """
### Transfer health check (beamline 8.3.2)
Writes a fresh, uniquely named probe file on **spot832** (`raw/transfer_check/`), moves it with Globus
Transfer to **data832** (`data832_raw:transfer_check/`) and on to **nersc832** (`transfer_check/`, outside
the protected `raw/`), and checks size and checksum at each arrival. Any failed hop fails the run with Globus's
own message. Whatever happened, `remove_probes` then deletes every probe (`*.probe`, this run's and any an
earlier try left) in the three probe folders with Globus delete tasks and lists the folders to verify they are
gone; the run fails if one remains. Probes of earlier versions in nersc832 `raw/transfer_check/`: see
docs/pruning.md.

The worker writes the probe through spot832's `posix_root` (include/config/endpoints.yaml), so it must
run where spot832's root is mounted (on the local profile: the local facility folder).
"""


@task
def write_probe(params: dict) -> dict:
    """Write ``params.size_kib`` KiB of fresh random bytes at spot832; return its path, size and md5."""
    import hashlib
    import os
    import uuid

    from include.endpoints import load_endpoints

    stamp = pendulum.now("UTC").format("YYYYMMDD_HHmmss")
    relative = f"raw/{PROBE_FOLDER}/{stamp}_{uuid.uuid4().hex[:12]}.probe"
    target = load_endpoints()["spot832"].posix_path(relative)
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


@task(trigger_rule="all_done", retries=2, retry_delay=pendulum.duration(seconds=10))
def remove_probes() -> dict:
    """Delete every probe in the probe folders (Globus delete tasks), then list them: none may remain."""
    import time

    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.paths import EndpointPath

    hook = GlobusTransferHook()
    removed: dict[str, list[str]] = {}
    for endpoint, folder in PROBE_FOLDERS.items():
        try:
            names = [e["name"] for e in hook.listdir(EndpointPath(endpoint, folder)) if e["name"].endswith(".probe")]
        except FileNotFoundError:
            names = []
        if not names:
            continue
        task = hook.submit_delete(
            endpoint,
            [f"{folder}/{name}" for name in names],
            submission_id=hook.new_submission_id(),
            label=f"transfer check probes {endpoint}",
            recursive=False,
            ignore_missing=True,
        )
        deadline = time.monotonic() + CLEANUP_SECONDS
        while (status := hook.get_task(task["task_id"]))["status"] not in ("SUCCEEDED", "FAILED"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"delete task {task['task_id']} on {endpoint} still {status['status']}")
            time.sleep(1)
        if status["status"] == "FAILED":
            raise RuntimeError(f"delete task {task['task_id']} on {endpoint} failed: {status.get('fatal_error')}")
        left = [e["name"] for e in hook.listdir(EndpointPath(endpoint, folder)) if e["name"] in names]
        if left:
            raise RuntimeError(f"{endpoint}:{folder}: probe(s) {', '.join(left)} remain after their delete task")
        removed[endpoint] = names
        print(f"{endpoint}:{folder}: removed {len(names)} probe(s) ({task['task_id']}), verified gone")
    return removed


@dag(
    dag_id=TRANSFER_CHECK_DAG_ID,
    description="Move a fresh probe file spot832 → data832 → nersc832 and verify each copy",
    doc_md=DOC,
    tags=["bl832", "health-check", "globus"],
    **dag_defaults(schedule="@daily", max_active_runs=1),
    params={
        "size_kib": Param(
            64,
            type="integer",
            minimum=1,
            maximum=1024 * 1024,
            title="Probe size (KiB)",
            description="Size of the random probe file written on spot832.",
        ),
    },
)
def bl832_transfer_check():
    probe = write_probe()
    to_data832 = GlobusTransferOperator(
        task_id="spot832_to_data832",
        source_endpoint="spot832",
        source_path=PROBE_PATH,
        destination_endpoint="data832_raw",
        destination_path=f"{PROBE_FOLDER}/{PROBE_NAME}",
        recursive=False,
        poll_interval=POLL_SECONDS,
    )
    at_data832 = verify_arrival.override(task_id="verify_data832")(probe, "data832_raw", PROBE_FOLDER)
    to_nersc = GlobusTransferOperator(
        task_id="data832_to_nersc832",
        source_endpoint="data832_raw",
        source_path=f"{PROBE_FOLDER}/{PROBE_NAME}",
        destination_endpoint="nersc832",
        destination_path=f"{PROBE_FOLDER}/{PROBE_NAME}",
        recursive=False,
        poll_interval=POLL_SECONDS,
    )
    at_nersc = verify_arrival.override(task_id="verify_nersc832")(probe, "nersc832", PROBE_FOLDER)
    probe >> to_data832 >> at_data832 >> to_nersc >> at_nersc
    cleanup = remove_probes()
    publish_outputs([at_data832, at_nersc]) >> cleanup
    cleanup.as_teardown(setups=probe)  # runs whatever happened; the run's state is still the hops' state


bl832_transfer_check()
