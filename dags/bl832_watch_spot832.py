"""Watch spot832's raw tree over SFTP and start the dispatcher once per finished scan."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG

from als_provider.sensors.sftp_new_scan import SFTPNewScanSensor
from dags.pipelines.dag_ids import DISPATCHER_DAG_ID, WATCH_SPOT832_DAG_ID
from dags.pipelines.defaults import with_default

DAG_ID = WATCH_SPOT832_DAG_ID

DOC = f"""
### Watch spot832 for new scans (beamline 8.3.2)
An alternative to the beamline calling the API: notices scans written to spot832 and starts
`{DISPATCHER_DAG_ID}` once per scan. Runs continuously, one run at a time.

**`watch`** (deferred, in the triggerer) lists `<raw root>/<folder>/<file>.h5` over SFTP (connection
`sftp_spot832`; raw root from its `raw_root` extra, default `/global/raw`) and ignores names that are not
SPEC §1 scan names. A scan is **finished** when its size and mtime were unchanged for `stable_polls`
listings `poll_interval` seconds apart *and* it is a complete HDF5 file (superblock end-of-file address ==
size, not flagged open for writing, h5py opens it over SFTP). It succeeds with the finished scans that have
no dispatcher run yet; when none appears within an hour it is skipped and the next run starts.

**`dispatch`** (mapped, one per scan) triggers `{DISPATCHER_DAG_ID}` with run id
`scan__<folder>__<dataset>__<hash>` and conf `file_path`, `is_export_controlled`, `send_to_nersc`.
An existing run id makes it *skipped*: a restart or a second run never starts a scan twice.

**Export control** (never "unknown means allowed"): a scan is export-controlled when this run's
`is_export_controlled` is true or its folder is in the `controlled` list of the Variable
`als_export_control_folders`; it is recorded (signed, never downgraded) before it is dispatched. It is
dispatched as not export-controlled only when its folder is in the signed `released` list. A scan of any
other folder is **held** (logged, not dispatched) until an operator runs
`python -m tools.export_control release|control '<folder or pattern>'`. See docs/watching.md.
"""

with DAG(
    dag_id=DAG_ID,
    description="Notice finished scans on spot832 (SFTP) and start bl832_dispatcher once per scan",
    schedule="@continuous",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    doc_md=DOC,
    tags=["bl832", "watcher", "new-scan", "sftp"],
    default_args={"owner": "bl832-computing", "retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "stable_polls": with_default(
            3,
            type="integer",
            minimum=2,
            maximum=100,
            description="listings with an unchanged size before a scan is checked",
        ),
        "poll_interval": with_default(
            30, type="number", minimum=0.1, maximum=3600, description="seconds between listings of the raw tree"
        ),
        "lookback_hours": with_default(
            72, type="number", minimum=0, description="only scans modified this recently (0: every scan on spot832)"
        ),
        "is_export_controlled": with_default(
            False,
            type="boolean",
            description="true: every dispatched scan is export-controlled; false: each scan's status comes from "
            "the folder list (Variable als_export_control_folders), scans of unlisted folders are held",
        ),
        "send_to_nersc": with_default(
            True, type="boolean", description="conf of every dispatched scan: copy it to NERSC"
        ),
    },
) as dag:
    watch = SFTPNewScanSensor(
        task_id="watch",
        dispatch_dag_id=DISPATCHER_DAG_ID,
        sftp_conn_id="sftp_spot832",
        stable_polls="{{ params.stable_polls }}",
        poll_interval="{{ params.poll_interval }}",
        lookback_hours="{{ params.lookback_hours }}",
        is_export_controlled="{{ params.is_export_controlled }}",
        send_to_nersc="{{ params.send_to_nersc }}",
        timeout=timedelta(hours=1).total_seconds(),
        soft_fail=True,
    )
    TriggerDagRunOperator.partial(
        task_id="dispatch",
        trigger_dag_id=DISPATCHER_DAG_ID,
        logical_date=None,
        wait_for_completion=False,
        skip_when_already_exists=True,
        openlineage_inject_parent_info=False,
        map_index_template="{{ task.trigger_run_id }}",
    ).expand_kwargs(watch.output)
