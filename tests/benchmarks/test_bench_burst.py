"""The short version of benchmarks/bench_burst.py (its run on the Celery stack is in ``make bench``): percentiles
and the table from a fixed result."""

from __future__ import annotations

from benchmarks.bench_burst import percentile, report


def test_percentiles_are_of_the_values_themselves():
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 0.5) in (10.0, 11.0)
    assert percentile(values, 0.95) == 19.0
    assert percentile([3.0], 0.95) == 3.0


def test_the_table_names_every_figure_the_issue_asks_for():
    burst = {
        "scans": 20, "workers": "2 Celery workers x concurrency 2", "trigger_span_s": 4.2, "succeeded": 20,
        "failed": 0, "unfinished": 0, "first_trigger_to_last_success_s": 95.0, "scans_per_min": 12.6, "p50_s": 40.0,
        "p95_s": 80.0, "max_s": 90.0, "copy_tasks_succeeded": 40, "tries_above_one": 0, "cap": 100, "pool_slots": 16,
        "facility": {"transfer.task_created": 40, "transfer.duplicate": 0, "task.active_peak": 9},
        "max_globus_deferred": 9, "max_globus_running": 2, "max_running_tasks": 4,
        "samples_with_globus_work": 30, "samples_waiting_without_a_slot": 30,
    }  # fmt: skip
    text = report({"machine": {"cores": 2}, "date": "2026-12-07 18:10 UTC", "burst": burst})
    assert "2026-12-07 18:10 UTC" in text and '"cores": 2' in text
    for figure in ("| 12.6 ", "40.0 / 80.0 / 90.0", "40 / 40 / 0", "9 / 100 / 0", "16 / 9 / 2", "20 / 0 / 0"):
        assert figure in text, figure
