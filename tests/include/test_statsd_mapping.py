"""Issue 22, item 9: what a transfer sends over StatsD comes out of statsd_exporter with deploy/statsd_mapping.yml
under upstream's Prometheus names and labels (splash_flows orchestration/prometheus_utils.py), so upstream's Grafana
dashboards work unchanged.

The StatsD lines are the real ones (include/transfer_metrics.emit through Airflow's StatsD logger to a UDP socket);
the mapping is applied with statsd_exporter's glob semantics, implemented below: ``*`` matches one dot-separated
component, ``$n``/``${n}`` in the name and label values is the n-th match, the first matching rule wins (ordering on),
``match_metric_type`` restricts a rule to one StatsD type, ``action: drop`` drops, and a metric no rule matches keeps
its name with every character outside ``[a-zA-Z0-9_]`` replaced by ``_``; tags (InfluxDB style) become labels.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import yaml

from include.endpoints import REPO_ROOT
from include.transfer_metrics import emit, metrics_record

MAPPING = REPO_ROOT / "deploy" / "statsd_mapping.yml"
STATSD_TYPES = {"c": "counter", "g": "gauge", "ms": "observer", "h": "observer", "d": "observer"}
#: Upstream's metrics (prometheus_utils.py:13-39) and the labels of each series (:54-58, pushed at :66-71 with
#: job nersc_transfer and instance data_transfer), for one data832 -> nersc832 copy (transfer_controller.py:196).
PUSHED = {"job": "nersc_transfer", "instance": "data_transfer"}
UPSTREAM = {
    "nersc_transfer_request_count": {"execution_id", *PUSHED},
    "nersc_transfer_total_bytes": {"execution_id", *PUSHED},
    "nersc_transfer_file_bytes": {"machine", *PUSHED},
    "nersc_transfer_speed_bytes_per_second": {"machine", *PUSHED},
    "nersc_transfer_time_seconds": {"machine", *PUSHED},
}


# -- statsd_exporter's glob mapping, as its README describes it ----------------------------------------------------
def _glob(pattern: str) -> re.Pattern:
    return re.compile("^" + r"\.".join("([^.]+)" if p == "*" else re.escape(p) for p in pattern.split(".")) + "$")


def _expand(template: str, groups: tuple[str, ...]) -> str:
    return re.sub(r"\$\{(\d+)\}|\$(\d+)", lambda m: groups[int(m.group(1) or m.group(2)) - 1], template)


def map_line(mappings: list[dict], line: str) -> tuple[str, dict[str, str], str, str] | None:
    """One StatsD line -> (Prometheus name, labels, type, value) as statsd_exporter exports it; None if dropped."""
    head, _, rest = line.partition(":")
    value, _, kind = rest.partition("|")
    name, *tags = head.split(",")
    labels = dict(tag.split("=", 1) for tag in tags)
    kind = STATSD_TYPES[kind.split("|")[0]]
    for rule in mappings:
        assert rule.get("match_type", "glob") == "glob", rule
        if rule.get("match_metric_type", kind) != kind or not (found := _glob(rule["match"]).match(name)):
            continue
        if rule.get("action") == "drop":
            return None
        mapped = {key: _expand(str(v), found.groups()) for key, v in (rule.get("labels") or {}).items()}
        return _expand(rule["name"], found.groups()), {**labels, **mapped}, kind, value
    return re.sub(r"[^a-zA-Z0-9_]", "_", name), labels, kind, value


@pytest.fixture(scope="module")
def mappings() -> list[dict]:
    document = yaml.safe_load(MAPPING.read_text())
    assert document["defaults"]["match_type"] == "glob" and not document["defaults"]["glob_disable_ordering"]
    for rule in document["mappings"]:
        assert set(rule) <= {"match", "match_metric_type", "name", "help", "labels", "ttl", "action"}, rule
        assert "*" not in rule["name"], rule
    return document["mappings"]


@pytest.fixture
def statsd_lines(statsd_received):
    """A function that emits a transfer's metrics through Airflow's StatsD logger (influx tags) and returns the
    lines a UDP socket received."""

    def send(record: dict) -> list[str]:
        emit(record)
        return statsd_received()

    return send


def transfer(source: str, destination: str, *, moved: int = 8_000_000, task_id: str | None = None) -> dict:
    return metrics_record(
        {
            "task_id": task_id or str(uuid.uuid4()),
            "status": "SUCCEEDED",
            "bytes_transferred": moved,
            "files_transferred": 1,
            "duration_seconds": 4.0,
            "source": {"endpoint": source, "path": "BLS-00001_x/a.h5"},
            "destination": {"endpoint": destination, "path": "raw/BLS-00001_x/a.h5"},
        }
    )


def test_the_nersc_copy_yields_upstreams_metrics_and_labels(mappings, statsd_lines):
    task_id = str(uuid.uuid4())
    lines = statsd_lines(transfer("data832_raw", "nersc832", task_id=task_id))
    exported = [m for line in lines if (m := map_line(mappings, line)) is not None]
    upstream = {name: (labels, kind, value) for name, labels, kind, value in exported if name in UPSTREAM}
    assert {name: set(labels) for name, (labels, _, _) in upstream.items()} == UPSTREAM
    assert {kind for _, kind, _ in upstream.values()} == {"gauge"}  # upstream's are all Gauges
    for name in ("nersc_transfer_request_count", "nersc_transfer_total_bytes"):
        assert upstream[name][0]["execution_id"] == f"exec_{task_id}"
    for name in ("nersc_transfer_file_bytes", "nersc_transfer_speed_bytes_per_second", "nersc_transfer_time_seconds"):
        assert upstream[name][0]["machine"] == "nersc832"  # upstream: destination.name (transfer_controller.py:196)
    assert all(
        labels["job"] == "nersc_transfer" and labels["instance"] == "data_transfer"
        for labels, _, _ in upstream.values()
    )
    values = {name: float(value) for name, (_, _, value) in upstream.items()}
    assert values == {
        "nersc_transfer_request_count": 1,
        "nersc_transfer_total_bytes": 8_000_000,
        "nersc_transfer_file_bytes": 8_000_000,
        "nersc_transfer_speed_bytes_per_second": 2_000_000,
        "nersc_transfer_time_seconds": 4,
    }
    # the per-route counters keep their own names and tags
    assert any(name == "airflow_als_transfer_bytes" and labels["route"] == "data832_raw-to-nersc832"
               for name, labels, _, _ in exported)  # fmt: skip


def test_other_destinations_never_reach_upstreams_names(mappings, statsd_lines):
    lines = statsd_lines(transfer("spot832", "data832_raw"))
    exported = [m for line in lines if (m := map_line(mappings, line)) is not None]
    assert not [name for name, *_ in exported if name.startswith("nersc_transfer_")]
    last = {name: labels for name, labels, *_ in exported if name.startswith("als_transfer_last_")}
    assert set(last) == {"als_transfer_last_bytes", "als_transfer_last_bytes_per_second", "als_transfer_last_seconds"}
    assert {labels["destination"] for labels in last.values()} == {"data832_raw"}
    assert len(exported) < len(lines)  # its per-transfer series are dropped


def test_a_transfer_that_moved_nothing_sets_no_upstream_gauge(mappings, statsd_lines):
    """As upstream (transfer_controller.py:304: only when bytes moved)."""
    lines = statsd_lines(transfer("data832_raw", "nersc832", moved=0))
    assert lines  # the per-route counters still go
    assert not [line for line in lines if (m := map_line(mappings, line)) and m[0].startswith("nersc_transfer_")]


def test_the_matcher_follows_the_exporters_rules(mappings):
    """The semantics the tests above rely on: one component per ``*``, first rule wins, drop, type filter."""
    assert map_line(mappings, "airflow.als.transfer.last.nersc832.bytes:5|g")[0] == "nersc_transfer_file_bytes"
    assert map_line(mappings, "airflow.als.transfer.last.nersc832.bytes:5|c")[0] != "nersc_transfer_file_bytes"
    assert map_line(mappings, "airflow.als.transfer.last.a.b.bytes:5|g")[0] == "airflow_als_transfer_last_a_b_bytes"
    assert map_line(mappings, "airflow.als.transfer.task.data733.t-1.bytes:5|g") is None
    assert (
        map_line(mappings, "airflow.dag_processing.total_parse_time:5|g")[0]
        == "airflow_dag_processing_total_parse_time"
    )


def test_the_doc_explains_the_scrape(mappings):
    text = Path(REPO_ROOT / "docs" / "operations.md").read_text()
    assert "deploy/statsd_mapping.yml" in text and "honor_labels: true" in text
