"""Orchestration benchmark on the real local stack (tools/local_stack.py: LocalExecutor, PostgreSQL).

(a) **Latency**: trigger-to-success of ``bl832_dispatcher`` on a tiny scan with compute excluded (the
    ``bl832_dispatcher_settings`` Variable enables only ``new_file``: two Globus copies and the SciCat
    ingest on the stand-ins), measured from the REST POST to the run's ``success`` as a client sees it; one
    warm-up run, then the median of ``--runs``, with where the time of the median run went per task.
(b) **Deferral at scale**: ``--transfers`` mapped GlobusTransferOperator tasks (benchmarks/dags/, loaded
    as an extra bundle) against a facility that holds every transfer ACTIVE for ``--hold`` seconds (a
    ``slow`` fault): how many are deferred at once, what holds executor slots meanwhile (task states, the
    default pool, the LocalExecutor worker processes), and the triggerer's memory (RSS of its process tree)
    idle, at the peak and after; then the time to drain.

    .venv/bin/python -m benchmarks.bench_orchestration [--runs 3] [--transfers 200] [--hold 300]

Runs on a database of its own (``als_airflow_bench``, recreated) and a temporary home; stops everything it
started. About 12 minutes on 2 cores. Figures: docs/orchestration-benchmark.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from facility.process import free_port
from include.endpoints import REPO_ROOT, load_endpoints
from tools.demo import write_demo_scan
from tools.local_stack import POSTGRES_URL, LocalStack

DISPATCHER = "bl832_dispatcher"
SETTINGS_VARIABLE = "bl832_dispatcher_settings"
BENCH_DAG = "bench_deferred_transfers"
BENCH_DAGS = Path(__file__).resolve().parent / "dags"
DATABASE = "als_airflow_bench"
FOLDER = "bench_deferred"
MiB = 2**20


class BenchStack(LocalStack):
    """The local stack with benchmarks/dags/ as a second DAG bundle (the benchmark DAG stays out of dags/)."""

    def _build_env(self) -> dict[str, str]:
        env = super()._build_env()
        key = "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"
        bundles = json.loads(env[key])
        bundles.append(
            {
                "name": "benchmarks",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(BENCH_DAGS)},
            }
        )
        env[key] = json.dumps(bundles)
        return env


# ------------------------------------------------------------------ helpers
def recreate_database(name: str) -> None:
    import psycopg2
    from psycopg2 import sql

    connection = psycopg2.connect(f"{POSTGRES_URL}/postgres")
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        connection.close()


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def seconds(start: str | None, end: str | None) -> float | None:
    a, b = parse_time(start), parse_time(end)
    return (b - a).total_seconds() if a and b else None


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (pasted as is into docs/orchestration-benchmark.md)."""
    cells = [[f"{c:.1f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def wait_for_dag(stack: LocalStack, dag_id: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        errors = stack.request("GET", "/api/v2/importErrors").json()["import_errors"]
        if errors:
            raise RuntimeError("; ".join(f"{e['filename']}: {e['stack_trace']}" for e in errors))
        with contextlib.suppress(Exception):
            stack.request("GET", f"/api/v2/dags/{dag_id}")
            return
        time.sleep(1.0)
    raise TimeoutError(f"{dag_id} not parsed after {timeout:.0f}s; see {stack.log_dir / 'dag-processor.log'}")


def get_variable(stack: LocalStack, key: str) -> str:
    return stack.request("GET", f"/api/v2/variables/{key}").json()["value"]


def set_variable(stack: LocalStack, key: str, value: str) -> None:
    stack.request("PATCH", f"/api/v2/variables/{key}", json={"key": key, "value": value})


def process_tree(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def rss_mib(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / MiB


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def title(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def executor_workers(stack: LocalStack) -> tuple[int, int]:
    """(busy, total) LocalExecutor workers: the scheduler's children titled ``... LocalExecutor: <idle>`` when
    free (a busy worker's title names its task; the task itself runs in a child of the worker)."""
    pid = stack.pid("scheduler")
    try:
        children = psutil.Process(pid).children() if pid else []
    except psutil.NoSuchProcess:
        children = []
    workers = [t for t in map(title, children) if "LocalExecutor" in t]
    return sum("<idle>" not in t for t in workers), len(workers)


# ------------------------------------------------------------------ (a) latency
def bench_latency(stack: LocalStack, runs: int, warmup: int) -> dict[str, Any]:
    original = get_variable(stack, SETTINGS_VARIABLE)
    set_variable(stack, SETTINGS_VARIABLE, json.dumps({name: name == "new_file" for name in json.loads(original)}))
    results = []
    try:
        for i in range(warmup + runs):
            conf = {"file_path": write_demo_scan(stack.facility_root, "tiny")}
            stack.unpause(DISPATCHER)
            started = time.monotonic()
            run_id = stack.trigger(DISPATCHER, conf)
            state = "queued"
            while state not in ("success", "failed"):
                time.sleep(0.25)
                state = stack.run_state(DISPATCHER, run_id)
            latency = time.monotonic() - started
            if state != "success":
                raise RuntimeError(f"{DISPATCHER} run {run_id} ended {state}; logs under {stack.log_dir}")
            run = stack.request("GET", f"/api/v2/dags/{DISPATCHER}/dagRuns/{run_id}").json()
            tis = task_instances(stack, DISPATCHER, run_id)
            result = {
                "run_id": run_id,
                "warmup": i < warmup,
                "latency_s": round(latency, 2),
                "queued_to_start_s": seconds(run["queued_at"], run["start_date"]),
                "start_to_end_s": seconds(run["start_date"], run["end_date"]),
                "tasks": [
                    {
                        "task_id": ti["task_id"],
                        "state": ti["state"],
                        "try": ti["try_number"],
                        "offset_s": seconds(run["start_date"], ti["start_date"]),
                        "duration_s": ti["duration"],
                    }
                    for ti in sorted(tis, key=lambda t: t["start_date"] or "~")
                ],
            }
            results.append(result)
            label = "warm-up" if result["warmup"] else f"run {i - warmup + 1}"
            print(f"(a) {label}: {latency:.1f}s trigger-to-success ({run_id})", file=sys.stderr)
    finally:
        set_variable(stack, SETTINGS_VARIABLE, original)
    measured = [r for r in results if not r["warmup"]]
    latencies = [r["latency_s"] for r in measured]
    median_run = sorted(measured, key=lambda r: r["latency_s"])[len(measured) // 2]
    return {
        "runs": results,
        "median_s": statistics.median(latencies),
        "min_s": min(latencies),
        "max_s": max(latencies),
        "median_run": median_run["run_id"],
    }


# ------------------------------------------------------------------ (b) deferral at scale
def task_instances(stack: LocalStack, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every task instance of a run, page by page (the API caps a page at ``[api] maximum_page_limit``, 100)."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
    found: list[dict[str, Any]] = []
    while True:
        page = stack.request("GET", path, params={"limit": 100, "offset": len(found), "order_by": "map_index"}).json()
        found += page["task_instances"]
        if not page["task_instances"] or len(found) >= page["total_entries"]:
            return found


def sample(stack: LocalStack, run_id: str, triggerer: list[psutil.Process]) -> dict[str, Any]:
    tis = task_instances(stack, BENCH_DAG, run_id)
    transfers = [ti for ti in tis if ti["task_id"] == "transfer"]
    states = Counter(ti["state"] or "none" for ti in transfers)
    pool = stack.request("GET", "/api/v2/pools/default_pool").json()
    busy, workers = executor_workers(stack)
    return {
        "t": time.monotonic(),
        "states": dict(states),
        "mapped": len(transfers),
        "deferred": states.get("deferred", 0),
        "running": states.get("running", 0) + states.get("queued", 0),
        "success": states.get("success", 0),
        "failed": states.get("failed", 0) + states.get("upstream_failed", 0),
        "pool_running": pool["running_slots"],
        "pool_deferred": pool["deferred_slots"],
        "pool_open": pool["open_slots"],
        "workers_busy": busy,
        "workers": workers,
        **sample_memory(stack),
        "triggerer_cpu_s": cpu_seconds(triggerer),
        "load1": os.getloadavg()[0],
    }


def sample_memory(stack: LocalStack) -> dict[str, float]:
    """RSS of the triggerer's processes (supervisor, trigger runner, log server) and of the runner alone."""
    triggerer = process_tree(stack.pid("triggerer"))
    return {
        "triggerer_rss_mib": rss_mib(triggerer),
        "trigger_runner_rss_mib": rss_mib([p for p in triggerer[1:] if "triggerer" in title(p)]),
    }


def bench_deferred(stack: LocalStack, count: int, hold: float, timeout: float) -> dict[str, Any]:
    spot832 = load_endpoints("local", facility_root=stack.facility_root)["spot832"]
    for i in range(count):
        path = spot832.posix_path(f"{FOLDER}/src/f{i:04d}.dat")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(64 * 1024))
    stack.facility.reset()
    stack.facility.inject("transfer", kind="slow", match=f"/{FOLDER}/src/", times=count, params={"seconds": hold})
    stack.facility.transfer_limit(max(count, 100))  # all of them held at once (the service's cap is 100 per user)
    time.sleep(5)  # the triggerer idle: nothing deferred yet
    idle = sample_memory(stack)

    stack.unpause(BENCH_DAG)
    started = time.monotonic()
    run_id = stack.trigger(BENCH_DAG, {"count": count, "folder": FOLDER})
    samples: list[dict[str, Any]] = []
    all_deferred = state = None
    while time.monotonic() - started < timeout:
        triggerer = process_tree(stack.pid("triggerer"))  # the trigger runner may be (re)spawned
        now = sample(stack, run_id, triggerer)
        samples.append(now)
        if all_deferred is None and now["deferred"] == count:
            all_deferred = now
        state = stack.run_state(BENCH_DAG, run_id)
        if state in ("success", "failed"):
            break
        time.sleep(2.0)
    finished = time.monotonic()
    if all_deferred is None:
        print(f"(b) never all {count} deferred at once: raise --hold", file=sys.stderr)
    time.sleep(5)
    after = sample_memory(stack)
    peak = max(samples, key=lambda s: (s["deferred"], -s["running"]))
    # while every transfer waited at once: what held slots, and what the triggerer spent
    held = [s for s in samples if s["deferred"] == count]
    window = held[-1]["t"] - held[0]["t"] if held else 0.0
    cpu_held = (held[-1]["triggerer_cpu_s"] - held[0]["triggerer_cpu_s"]) / window * 100 if window else None
    stats = stack.facility.stats()
    return {
        "run_id": run_id,
        "state": state,
        "count": count,
        "hold_s": hold,
        "all_deferred_after_s": round(all_deferred["t"] - started, 1) if all_deferred else None,
        "held_for_s": round(window, 1),
        "peak": {k: v for k, v in peak.items() if k != "t"},
        "mapped_seen": max(s["mapped"] for s in samples),
        "max_running_while_all_deferred": max((s["running"] for s in held), default=None),
        "samples_all_deferred": len(held),
        "samples_all_deferred_no_worker_busy": sum(s["workers_busy"] == 0 for s in held),
        "max_workers_busy_while_all_deferred": max((s["workers_busy"] for s in held), default=None),
        "max_pool_running_while_all_deferred": max((s["pool_running"] for s in held), default=None),
        "trigger_to_done_s": round(finished - started, 1),
        "triggerer_rss_mib": {
            key: {
                "idle": round(idle[key], 1),
                "peak": round(max(s[key] for s in samples), 1),
                "after": round(after[key], 1),
            }
            for key in ("triggerer_rss_mib", "trigger_runner_rss_mib")
        },
        "triggerer_cpu_percent_while_waiting": round(cpu_held, 1) if cpu_held is not None else None,
        "facility": {k: v for k, v in stats.items() if k.startswith(("transfer.", "fault.transfer"))},
        "timeline": [
            {k: (round(v - started, 1) if k == "t" else v) for k, v in s.items() if k != "states"} for s in samples
        ],
    }


# ------------------------------------------------------------------ report
def machine() -> dict[str, Any]:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "load1_at_start": round(os.getloadavg()[0], 2),
    }


def report(results: dict[str, Any]) -> str:
    out = [f"machine: {json.dumps(results['machine'])}"]
    if latency := results.get("latency"):
        rows = [
            [
                "warm-up" if r["warmup"] else f"{i}",
                r["latency_s"],
                r["queued_to_start_s"],
                r["start_to_end_s"],
                len(r["tasks"]),
            ]
            for i, r in enumerate(latency["runs"], start=1 - sum(r["warmup"] for r in latency["runs"]))
        ]
        out += [
            "\n(a) bl832_dispatcher trigger-to-success, tiny scan, new_file only (compute excluded)",
            table(["run", "trigger→success s", "queued→start s", "start→end s", "tasks"], rows),
            f"median {latency['median_s']:.1f}s (min {latency['min_s']:.1f}, max {latency['max_s']:.1f})",
            "\nmedian run, per task (offset from the run's start):",
            table(
                ["task", "state", "try", "starts at s", "takes s"],
                [
                    [t["task_id"], t["state"], t["try"], t["offset_s"], t["duration_s"]]
                    for r in latency["runs"]
                    if r["run_id"] == latency["median_run"]
                    for t in r["tasks"]
                ],
            ),
        ]
    if deferred := results.get("deferred"):
        rss = deferred["triggerer_rss_mib"]
        rows = [
            ["transfers (mapped GlobusTransferOperator task instances seen)", deferred["mapped_seen"]],
            ["facility holds each transfer ACTIVE for (s)", deferred["hold_s"]],
            ["all deferred at once, after trigger (s)", deferred["all_deferred_after_s"]],
            ["all of them deferred together for (s)", deferred["held_for_s"]],
            ["peak deferred at once", deferred["peak"]["deferred"]],
            ["max running/queued tasks meanwhile", deferred["max_running_while_all_deferred"]],
            [
                "samples meanwhile with all 4 LocalExecutor workers idle",
                f"{deferred['samples_all_deferred_no_worker_busy']} of {deferred['samples_all_deferred']}"
                f" (max busy {deferred['max_workers_busy_while_all_deferred']})",
            ],
            ["max default_pool running slots meanwhile", deferred["max_pool_running_while_all_deferred"]],
            [
                "default_pool at the peak: deferred / open slots",
                f"{deferred['peak']['pool_deferred']} / {deferred['peak']['pool_open']}",
            ],
            *(
                [f"{what} RSS idle / peak / after (MiB)", " / ".join(str(v) for v in rss[key].values())]
                for what, key in (
                    ("triggerer (all its processes)", "triggerer_rss_mib"),
                    ("trigger runner process", "trigger_runner_rss_mib"),
                )
            ),
            ["triggerer CPU while waiting (% of one core)", deferred["triggerer_cpu_percent_while_waiting"]],
            ["trigger → all succeeded (s)", deferred["trigger_to_done_s"]],
            ["run state", deferred["state"]],
            [
                "facility: submits / tasks created / duplicates / succeeded",
                " / ".join(
                    str(deferred["facility"].get(k, 0))
                    for k in ("transfer.submit", "transfer.task_created", "transfer.duplicate", "transfer.succeeded")
                ),
            ],
        ]
        out += [f"\n(b) {deferred['count']} transfers waiting at once (deferred)", table(["measure", "value"], rows)]
    return "\n".join(out)


@contextlib.contextmanager
def bench_stack(stack: LocalStack, dag_id: str, *, keep: bool = False):
    """Start ``stack`` and wait until it has parsed ``dag_id``; yield it; stop it and remove its home and its
    database (unless ``keep``), whatever happened."""
    started = time.monotonic()
    try:
        stack.start(timeout=300)
        wait_for_dag(stack, dag_id)
        print(f"stack up in {time.monotonic() - started:.0f}s under {stack.home}", file=sys.stderr)
        yield stack
    finally:
        stack.stop()
        if keep:
            print(f"kept {stack.home} (database {stack.database})", file=sys.stderr)
        else:
            shutil.rmtree(stack.home, ignore_errors=True)
            stack.drop_database()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_orchestration", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=3, help="measured dispatcher runs for (a) (after one warm-up)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--transfers", type=int, default=200, help="concurrent deferred transfers for (b)")
    parser.add_argument("--hold", type=float, default=300, help="seconds the facility keeps each transfer ACTIVE")
    parser.add_argument("--only", choices=["latency", "deferred"], help="run one part only")
    parser.add_argument("--json", type=Path, help="also write every figure (and (b)'s timeline) here")
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--keep", action="store_true", help="keep the stack's home (logs, facility) afterwards")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"machine": machine()}
    recreate_database(args.database)
    home = Path(tempfile.mkdtemp(prefix="als-bench-"))
    with bench_stack(BenchStack(home, port=free_port(), database=args.database), BENCH_DAG, keep=args.keep) as stack:
        if args.only in (None, "latency"):
            results["latency"] = bench_latency(stack, args.runs, args.warmup)
        if args.only in (None, "deferred"):
            results["deferred"] = bench_deferred(stack, args.transfers, args.hold, timeout=args.hold * 3 + 600)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    sys.exit(main())
