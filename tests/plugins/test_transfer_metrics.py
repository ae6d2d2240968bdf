"""Transfer metrics: a real transfer (dag.test) sends its numbers over StatsD to a UDP socket we listen on."""

from __future__ import annotations

import json

import pytest

from include.paths import EndpointPath
from include.transfer_metrics import metrics_record
from tests.fixture_dags.transfer_operator_dags import DAGS

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_a_transfer_sends_bytes_files_duration_and_rate_tagged_by_route(facility, local_endpoints, statsd_received):
    source = local_endpoints.posix(EndpointPath("spot832", "raw/operator_test/plain"))
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"m" * 4096)

    dag_run = DAGS["plain"].test()
    assert dag_run.state == "success"

    lines = statsd_received("airflow.als.transfer.rate")
    tags = ",source=spot832,destination=data832_raw,route=spot832-to-data832_raw,status=SUCCEEDED"
    by_name = {line.split(",", 1)[0]: line for line in lines if line.startswith("airflow.als.transfer.")}
    assert by_name["airflow.als.transfer.count"] == f"airflow.als.transfer.count{tags}:1|c"
    assert by_name["airflow.als.transfer.bytes"] == f"airflow.als.transfer.bytes{tags}:4096|c"
    assert by_name["airflow.als.transfer.files"] == f"airflow.als.transfer.files{tags}:1|c"
    assert by_name["airflow.als.transfer.duration"].startswith(f"airflow.als.transfer.duration{tags}:")
    assert by_name["airflow.als.transfer.duration"].endswith("|ms")
    assert by_name["airflow.als.transfer.rate"].startswith(f"airflow.als.transfer.rate{tags}:")
    assert float(by_name["airflow.als.transfer.rate"].split(":")[1].split("|")[0]) > 0

    xcom = _return_value(dag_run, "copy")
    assert xcom["metrics"]["route"] == "spot832-to-data832_raw"
    assert (xcom["metrics"]["bytes"], xcom["metrics"]["files"]) == (4096, 1)


def test_record_rate_is_bytes_over_duration_else_globus_figure():
    summary = {
        "task_id": "t",
        "status": "SUCCEEDED",
        "bytes_transferred": 10_000,
        "files_transferred": 4,
        "files_skipped": 1,
        "duration_seconds": 4.0,
        "effective_bytes_per_second": 1,
        "source": {"endpoint": "spot832", "path": "a"},
        "destination": {"endpoint": "data832_raw", "path": "a"},
    }
    record = metrics_record(summary)
    assert record["route"] == "spot832-to-data832_raw"
    assert (record["bytes"], record["files"], record["files_skipped"]) == (10000, 4, 1)
    assert record["bytes_per_second"] == 2500
    assert metrics_record({**summary, "duration_seconds": 0.0})["bytes_per_second"] == 1
    json.dumps(record)  # the XCom/log form is plain JSON


def _return_value(dag_run, task_id: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == "return_value",
            )
        )
    return json.loads(value) if isinstance(value, str) else value
