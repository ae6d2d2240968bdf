"""Transfer metrics: each Globus transfer's bytes, files, duration and rate, per route, to Airflow's metrics.

:func:`record_transfer` is called by GlobusTransferOperator with its result summary. It emits, through the
Task SDK's metrics API (``airflow.sdk.observability.stats``: StatsD, DogStatsD or OpenTelemetry, as
``[metrics]`` configures), with tags ``source``, ``destination``, ``route`` (``<source>-to-<destination>``,
endpoint names of endpoints.yaml) and ``status`` (``SUCCEEDED`` or ``SKIPPED``):

=============================  =======  ==========================================
``als.transfer.count``         counter  one per transfer
``als.transfer.bytes``         counter  bytes transferred
``als.transfer.files``         counter  files transferred
``als.transfer.duration``      timer    request to completion (ms on the wire)
``als.transfer.rate``          gauge    bytes per second of this transfer
=============================  =======  ==========================================

For dashboards built on upstream's Prometheus metrics (splash_flows ``orchestration/prometheus_utils.py``:
``nersc_transfer_*`` pushed to a Pushgateway), a transfer that moved bytes also sets gauges whose names carry
what upstream's labels held (:func:`named_gauges`; deploy/statsd_mapping.yml maps them back to upstream's names
and labels in statsd_exporter, docs/operations.md):

======================================================  =====  =======================================
``als.transfer.last.<destination>.bytes``               gauge  bytes of the destination's last transfer
``als.transfer.last.<destination>.seconds``             gauge  its duration in seconds
``als.transfer.last.<destination>.bytes_per_second``    gauge  its rate
``als.transfer.task.<destination>.<task_id>.requests``  gauge  1 (one series per Globus task)
``als.transfer.task.<destination>.<task_id>.bytes``     gauge  bytes of that task
======================================================  =====  =======================================

It returns the same numbers as one record (kept under ``metrics`` in the task's XCom) and logs it as
``transfer_metrics {json}``: the run-level summary, since Airflow 3 has no task API for the run's note.
Plain StatsD drops tags: set ``[metrics] statsd_influxdb_enabled = True`` (tags as ``,k=v``) or use
DogStatsD/OpenTelemetry to graph per route (docs/operations.md).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

PREFIX = "als.transfer"
LOG_MARKER = "transfer_metrics"
#: The gauges whose names carry the destination (and the Globus task): what statsd_exporter can turn into labels.
LAST, TASK = f"{PREFIX}.last", f"{PREFIX}.task"
#: A name component: endpoint names and Globus task ids (UUIDs) only; anything else would split the name.
_COMPONENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def route_of(source: str, destination: str) -> str:
    return f"{source}-to-{destination}"


def metrics_record(summary: dict[str, Any]) -> dict[str, Any]:
    """The metrics of one transfer from GlobusTransferOperator's summary (missing numbers count as 0)."""
    source = (summary.get("source") or {}).get("endpoint", "unknown")
    destination = (summary.get("destination") or {}).get("endpoint", "unknown")
    transferred = int(summary.get("bytes_transferred") or 0)
    duration = summary.get("duration_seconds")
    duration = float(duration) if duration is not None else None
    if duration and duration > 0:
        rate = transferred / duration
    else:  # Globus's own figure when request/completion times are missing or equal
        rate = float(summary.get("effective_bytes_per_second") or 0)
    return {
        "route": route_of(source, destination),
        "source": source,
        "destination": destination,
        "task_id": summary.get("task_id"),
        "status": summary.get("status") or "UNKNOWN",
        "bytes": transferred,
        "files": int(summary.get("files_transferred") or 0),
        "files_skipped": int(summary.get("files_skipped") or 0),
        "duration_seconds": duration,
        "bytes_per_second": round(rate, 1),
    }


def _stats():
    """The Task SDK's metrics module, initialised from ``[metrics]`` if this process has not done it.

    A task process started by a worker is initialised by the task runner; ``dag.test()`` and plain
    processes are not, and would otherwise drop every metric.
    """
    from airflow.sdk._shared.observability.metrics import stats

    if stats._factory is None:
        from airflow.sdk.configuration import conf
        from airflow.sdk.observability.metrics import stats_utils

        stats.initialize(
            factory=stats_utils.get_stats_factory(),
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True),
        )
    return stats


def emit(record: dict[str, Any]) -> None:
    """Send one record's numbers to Airflow's metrics backend, tagged by route."""
    stats = _stats()
    tags = {key: str(record[key]) for key in ("source", "destination", "route", "status")}
    stats.incr(f"{PREFIX}.count", tags=tags)
    stats.incr(f"{PREFIX}.bytes", count=record["bytes"], tags=tags)
    stats.incr(f"{PREFIX}.files", count=record["files"], tags=tags)
    if record["duration_seconds"] is not None:
        stats.timing(f"{PREFIX}.duration", timedelta(seconds=record["duration_seconds"]), tags=tags)
    stats.gauge(f"{PREFIX}.rate", record["bytes_per_second"], tags=tags)
    for name, value in named_gauges(record).items():  # untagged: the name is the series (statsd_mapping.yml)
        stats.gauge(name, value)


def named_gauges(record: dict[str, Any]) -> dict[str, float]:
    """The gauges named after the destination (and Globus task) of one record, before Airflow's ``statsd_prefix``.

    As upstream (splash_flows transfer_controller.py:304), only a transfer that moved bytes sets them; the
    per-task pair needs the Globus task id."""
    destination, task_id = record["destination"], record.get("task_id")
    if record["bytes"] <= 0 or not _COMPONENT.match(destination):
        return {}
    gauges = {
        f"{LAST}.{destination}.bytes": record["bytes"],
        f"{LAST}.{destination}.bytes_per_second": record["bytes_per_second"],
    }
    if record["duration_seconds"] is not None:
        gauges[f"{LAST}.{destination}.seconds"] = record["duration_seconds"]
    if task_id and _COMPONENT.match(str(task_id)):
        gauges[f"{TASK}.{destination}.{task_id}.requests"] = 1
        gauges[f"{TASK}.{destination}.{task_id}.bytes"] = record["bytes"]
    return gauges


def record_transfer(summary: dict[str, Any], log: logging.Logger | Any) -> dict[str, Any]:
    """Emit and log the metrics of one transfer; returns the record. A metrics failure never fails the task."""
    record = metrics_record(summary)
    try:
        emit(record)
    except Exception as exc:  # a broken metrics backend must not fail a transfer that succeeded
        log.warning("could not emit transfer metrics: %s: %s", type(exc).__name__, exc)
    log.info("%s %s", LOG_MARKER, json.dumps(record, sort_keys=True))
    return record
