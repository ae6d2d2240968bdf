"""Burst benchmark: many new scans triggered at once on the Celery stack (tools/local_stack.py, 2 workers).

``--scans`` (default 100) tiny scans are written to spot832, then ``bl832_new_file`` is triggered for each through
the REST API back to back (or spread over ``--within`` seconds), and every run is awaited. Reported: throughput
(scans/min, first trigger to last success), p50/p95 trigger-to-success (the run's ``end_date`` minus the moment
its POST returned), the facility's counters (Globus tasks created against the copies the runs made, duplicate
submissions, Compute tasks executed against created), the Transfer stand-in's most unfinished tasks at once
against its per-user cap (and refusals on it), and how the Globus waits were held: the ``globus_transfers`` pool's
deferred and running slots and the Airflow tasks running at once (worker slots), sampled every 2 s.

    .venv/bin/python -m benchmarks.bench_burst [--scans 100] [--within 0] [--cap 100]

Runs on a database of its own (``als_airflow_burst``, recreated) and a temporary home; stops everything it
started. Needs PostgreSQL and Redis (as ``make e2e``). Figures: docs/performance.md "A burst of scans".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.bench_orchestration import bench_stack, machine, parse_time, recreate_database, table
from facility.process import free_port
from include.endpoints import REPO_ROOT, load_endpoints
from include.plans import TO_DATA832, TO_NERSC
from tools.local_stack import TERMINAL_STATES, WORKER, LocalStack, Worker

DAG_ID = "bl832_new_file"
DATABASE = "als_airflow_burst"
FOLDER = "bench_burst"
POOL = "globus_transfers"
#: Two Celery workers on the stack's default queue (each with the stack's concurrency, 2).
WORKERS = {WORKER: Worker(), f"{WORKER}-2": Worker()}
SAMPLE_SECONDS = 2.0


def write_scans(stack: LocalStack, count: int) -> list[str]:
    """``count`` tiny scans (each its own file name inside, so its own SciCat dataset) under spot832
    ``raw/<FOLDER>/``; their ``file_path`` confs."""
    from compute_functions.sample_scan import write_sample_scan

    spot832 = load_endpoints("local", facility_root=stack.facility_root)["spot832"]
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    names = [f"{stamp}_burst{i:04d}.h5" for i in range(count)]
    for i, name in enumerate(names):
        path = spot832.posix_path(f"raw/{FOLDER}/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_sample_scan(path, size="tiny", seed=i)
    return [f"/global/raw/{FOLDER}/{name}" for name in names]


def list_runs(stack: LocalStack) -> list[dict[str, Any]]:
    runs, offset = [], 0
    while True:
        page = stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"limit": 100, "offset": offset}).json()
        runs += page["dag_runs"]
        offset += len(page["dag_runs"])
        if not page["dag_runs"] or offset >= page["total_entries"]:
            return runs


def list_task_instances(stack: LocalStack) -> list[dict[str, Any]]:
    tis, offset = [], 0
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/~/taskInstances"
    while True:
        page = stack.request("GET", path, params={"limit": 100, "offset": offset}).json()
        tis += page["task_instances"]
        offset += len(page["task_instances"])
        if not page["task_instances"] or offset >= page["total_entries"]:
            return tis


class Sampler(threading.Thread):
    """Every ``SAMPLE_SECONDS``: the Globus pool's slots, Airflow's running tasks, the stand-in's unfinished tasks."""

    def __init__(self, stack: LocalStack) -> None:
        super().__init__(daemon=True)
        self.stack, self.samples, self.stopped = stack, [], threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_SECONDS):
            try:
                pools = {p["name"]: p for p in self.stack.request("GET", "/api/v2/pools").json()["pools"]}
                active = self.stack.facility.transfer_limit(change=False)["active"]
            except Exception as exc:  # a sample lost to a busy API is not a result
                print(f"sample skipped: {exc}", file=sys.stderr)
                continue
            globus = pools[POOL]
            self.samples.append(
                {
                    "t": time.time(),
                    "globus_running": globus["running_slots"],
                    "globus_deferred": globus["deferred_slots"],
                    "globus_queued": globus["queued_slots"] + globus.get("scheduled_slots", 0),
                    "running_tasks": sum(p["running_slots"] for p in pools.values()),
                    "globus_active": sum(active.values()),
                }
            )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_burst(stack: LocalStack, scans: int, within: float, timeout: float) -> dict[str, Any]:
    files = write_scans(stack, scans)
    stack.facility.reset()
    cap = stack.facility.transfer_limit(change=False)["active_tasks"]
    pool = stack.request("GET", f"/api/v2/pools/{POOL}").json()
    if not pool["include_deferred"]:
        raise RuntimeError(f"the {POOL} pool does not count deferred tasks: see airflow_settings.yaml")
    stack.unpause(DAG_ID)
    sampler = Sampler(stack)
    sampler.start()
    triggered: dict[str, float] = {}
    first = time.time()
    for i, file_path in enumerate(files):
        if within:
            time.sleep(max(0.0, first + within * i / scans - time.time()))
        run_id = stack.trigger(DAG_ID, {"file_path": file_path})
        triggered[run_id] = time.time()
    span = time.time() - first
    print(f"{scans} runs triggered in {span:.1f}s", file=sys.stderr)
    deadline = time.monotonic() + timeout
    while True:
        runs = {r["dag_run_id"]: r for r in list_runs(stack) if r["dag_run_id"] in triggered}
        done = [r for r in runs.values() if r["state"] in TERMINAL_STATES]
        if len(done) == scans or time.monotonic() > deadline:
            break
        time.sleep(3.0)
    sampler.stopped.set()
    sampler.join()

    succeeded = {k: r for k, r in runs.items() if r["state"] == "success"}
    latencies = [parse_time(r["end_date"]).timestamp() - triggered[k] for k, r in succeeded.items()]
    last = max((parse_time(r["end_date"]).timestamp() for r in succeeded.values()), default=first)
    tis = [ti for ti in list_task_instances(stack) if ti["dag_run_id"] in triggered]
    copies = [ti for ti in tis if ti["task_id"] in (TO_DATA832, TO_NERSC) and ti["state"] == "success"]
    samples = sampler.samples
    return {
        "scans": scans,
        "workers": f"{len(WORKERS)} Celery workers x concurrency 2",
        "trigger_span_s": span,
        "succeeded": len(succeeded),
        "failed": sum(1 for r in runs.values() if r["state"] == "failed"),
        "unfinished": scans - len(done),
        "first_trigger_to_last_success_s": last - first,
        "scans_per_min": len(succeeded) / (last - first) * 60 if succeeded and last > first else None,
        "p50_s": statistics.median(latencies) if latencies else None,
        "p95_s": percentile(latencies, 0.95) if latencies else None,
        "max_s": max(latencies, default=None),
        "copy_tasks_succeeded": len(copies),
        "tries_above_one": sum(1 for ti in tis if (ti.get("try_number") or 1) > 1),
        "facility": stack.facility.stats(),
        "cap": cap,
        "pool_slots": pool["slots"],
        "max_globus_active": max((s["globus_active"] for s in samples), default=None),
        "max_globus_deferred": max((s["globus_deferred"] for s in samples), default=None),
        "max_globus_running": max((s["globus_running"] for s in samples), default=None),
        "max_running_tasks": max((s["running_tasks"] for s in samples), default=None),
        "samples_waiting_without_a_slot": sum(1 for s in samples if s["globus_active"] > s["globus_running"]),
        "samples_with_globus_work": sum(1 for s in samples if s["globus_active"]),
        "samples": samples,
    }


def report(results: dict[str, Any]) -> str:
    r, f = results["burst"], results["burst"]["facility"]
    rows = [
        ["scans triggered (bl832_new_file, tiny scans) / in (s)", f"{r['scans']} / {r['trigger_span_s']:.1f}"],
        ["workers", r["workers"]],
        ["runs succeeded / failed / unfinished", f"{r['succeeded']} / {r['failed']} / {r['unfinished']}"],
        ["first trigger → last success (s)", r["first_trigger_to_last_success_s"]],
        ["throughput (scans/min)", r["scans_per_min"]],
        ["trigger → success p50 / p95 / max (s)", f"{r['p50_s']:.1f} / {r['p95_s']:.1f} / {r['max_s']:.1f}"],
        [
            "Globus copies: tasks succeeded / tasks created / duplicate submits",
            f"{r['copy_tasks_succeeded']} / {f.get('transfer.task_created', 0)} / {f.get('transfer.duplicate', 0)}",
        ],
        [
            "Compute: tasks created / executed (new-file runs reconstruct nothing)",
            f"{f.get('compute.task_created', 0)} / {f.get('compute.executed', 0)}",
        ],
        ["SciCat raw datasets created", f.get("scicat.dataset_created", 0)],
        ["Airflow task tries above the first", r["tries_above_one"]],
        [
            "stand-in: most unfinished Globus tasks at once (peak) / cap / refusals",
            f"{f.get('task.active_peak', 0)} / {r['cap']} / {f.get('transfer.limit_refused', 0)}",
        ],
        [
            "globus_transfers pool (deferred counted): slots / most deferred / most running",
            f"{r['pool_slots']} / {r['max_globus_deferred']} / {r['max_globus_running']}",
        ],
        ["most Airflow tasks running at once (worker slots: 4)", r["max_running_tasks"]],
        [
            "samples with Globus work in flight / of them with fewer transfer tasks running than Globus tasks",
            f"{r['samples_with_globus_work']} / {r['samples_waiting_without_a_slot']}",
        ],
    ]
    head = f"machine: {json.dumps(results['machine'])}, date: {results['date']}"
    return head + "\n" + table(["measure", "value"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_burst", description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=100, help="new scans to trigger")
    parser.add_argument("--within", type=float, default=0.0, help="spread the triggers over this many seconds")
    parser.add_argument("--cap", type=int, help="the Transfer stand-in's cap on unfinished tasks (default 100)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the runs")
    parser.add_argument("--json", type=Path, help="also write every figure (and the samples) here")
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--keep", action="store_true", help="keep the stack's home (logs, facility) afterwards")
    args = parser.parse_args(argv)
    if not 1 <= args.scans <= 1000 or args.within < 0:
        parser.error("--scans takes 1 to 1000, --within a number of seconds >= 0")

    results: dict[str, Any] = {"machine": machine(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    recreate_database(args.database)
    home = Path(tempfile.mkdtemp(prefix="als-burst-"))
    stack = LocalStack(home, port=free_port(), database=args.database, executor="CeleryExecutor", workers=WORKERS)
    with bench_stack(stack, DAG_ID, keep=args.keep):
        if args.cap:
            stack.facility.transfer_limit(args.cap)
        results["burst"] = bench_burst(stack, args.scans, args.within, args.timeout)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0 if results["burst"]["succeeded"] == args.scans else 1


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    sys.exit(main())
