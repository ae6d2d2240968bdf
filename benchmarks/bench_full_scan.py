"""A full-width scan through ``bl832_dispatcher`` on the real local stack, stage by stage, and a model of the
sea-shell scan on 64-core nodes built from the rates it measured (issue 25, item 1).

The scan: ``compute_functions.sample_scan`` (1313 angles x ``--rows`` x 2560 columns, uint16, noise, flats,
darks, rings), written a block of rows at a time onto the facility's spot832. The stack: tools/local_stack.py
(LocalExecutor, PostgreSQL, the local facility: Globus transfers, a Globus Compute endpoint whose worker
processes run compute_functions/remote.py on this machine, SciCat). The ``bl832_dispatcher_settings`` Variable
turns on ``new_file`` and ``--site`` only (default ``alcf``: the one site whose steps are all the issue's
stages — stage the scan, reconstruct, Zarr, copy home, SciCat; ``local`` reads and writes home directly).

The table, one row per task instance: seconds (the task instance's start to end, as the REST API gives them:
scheduling and poll intervals included), GB (from the files: the scan for a transfer of it, the TIFF stack for
``reconstruct`` and ``copy_tiff``, the Zarr store for ``multiscale`` and ``copy_zarr``), GB/s, and the peak
RSS of the facility's process tree (it runs the transfers and the Compute workers; psutil every 0.5 s, the sum
of the processes' RSS, so shared pages count more than once) while the task ran.

    .venv/bin/python -m benchmarks.bench_full_scan [--rows 128] [--site alcf] [--json out.json] [--md out.md]

Runs on a database of its own (``als_airflow_bench_full``, recreated) and a temporary home; stops everything
it started. About 10 minutes at 128 rows on 2 cores. Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.bench_orchestration import (
    MiB,
    bench_stack,
    get_variable,
    machine,
    parse_time,
    process_tree,
    recreate_database,
    rss_mib,
    set_variable,
    table,
    task_instances,
)

DISPATCHER = "bl832_dispatcher"
SETTINGS_VARIABLE = "bl832_dispatcher_settings"
DATABASE = "als_airflow_bench_full"
FOLDER = "BLS-00025_bench"
ANGLES, WIDTH = 1313, 2560
#: The sea-shell scan of the seeds' headline (SPEC's full layout): rows, width, angles.
SEA_SHELL = (2160, 2560, 1313)
GB = 1e9
#: The steps that copy the scan itself.
SCAN_COPIES = ("spot832_to_data832", "data832_to_nersc832", "stage_raw")
#: The reconstruction's timings that are not per slice (compute_functions/reconstruct.py ``seconds``).
ONCE_PER_RUN = ("setup", "centre", "total")


# ------------------------------------------------------------------ sizes and the table
def folder_bytes(path: str | Path | None) -> int:
    """Bytes of a file, or of every file under a folder (0 when it is not there)."""
    if not path:
        return 0
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def stage_bytes(task_id: str, sizes: dict[str, int]) -> int | None:
    """What a task moved or wrote, by its step (``sizes``: ``scan``, ``tiff``, ``zarr`` bytes); None: no data."""
    step = task_id.rpartition(".")[2]
    if step in SCAN_COPIES:
        return sizes["scan"]
    if step in ("reconstruct", "copy_tiff", "archive_tiff"):
        return sizes["tiff"]
    if step in ("multiscale", "copy_zarr", "archive_zarr"):
        return sizes["zarr"]
    return None


def peak_between(samples: list[tuple[float, float]], start: str | None, end: str | None) -> float | None:
    """The largest sampled value (``(epoch seconds, value)``) while a task ran; None when none was sampled."""
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return None
    inside = [v for t, v in samples if a.timestamp() - 0.5 <= t <= b.timestamp() + 0.5]
    return max(inside) if inside else None


def stage_rows(tis: list[dict[str, Any]], sizes: dict[str, int], rss: list[tuple[float, float]]) -> list[dict]:
    """One row per task instance that ran, in start order: stage, seconds, GB, GB/s, peak RSS GB."""
    rows = []
    for ti in sorted(tis, key=lambda t: t.get("start_date") or "~"):
        if ti.get("state") != "success" or ti.get("start_date") is None:
            continue
        seconds = ti.get("duration")
        nbytes = stage_bytes(ti["task_id"], sizes)
        peak = peak_between(rss, ti["start_date"], ti.get("end_date"))
        rows.append(
            {
                "stage": ti["task_id"] + (f"[{ti['map_index']}]" if _mapped(ti) else ""),
                "seconds": round(seconds, 1) if seconds is not None else None,
                "gb": round(nbytes / GB, 2) if nbytes else None,
                "gb_s": round(nbytes / GB / seconds, 2) if nbytes and seconds else None,
                "peak_rss_gb": round(peak, 2) if peak is not None else None,
            }
        )
    return rows


def _mapped(ti: dict[str, Any]) -> bool:
    index = ti.get("map_index")
    return index is not None and index >= 0


def stage_table(rows: list[dict]) -> str:
    formats = {"seconds": "{:.1f}", "gb": "{:.2f}", "gb_s": "{:.2f}", "peak_rss_gb": "{:.2f}"}
    cells = [[r["stage"], *("" if r[k] is None else f.format(r[k]) for k, f in formats.items())] for r in rows]
    return table(["stage", "seconds", "GB", "GB/s", "peak RSS GB"], cells)


# ------------------------------------------------------------------ the model
@dataclass(frozen=True)
class Rates:
    """Rates measured here, per core or per process."""

    recon_s_per_slice_core: float  # the reconstruction's per-slice steps (read ... write, and the Zarr level 0
    #                                 written as it goes when ``one_pass``), summed over its workers, / slices
    recon_setup_s: float  # once per run: a worker's engine setup (FFTW planning), plus finding the centre
    zarr_mb_s_per_writer: float  # the multiscale step: MB of the float32 stack per second, one process
    transfer_gb_s: float  # a Globus copy of the scan, GB/s
    one_pass: bool  # the reconstruction wrote the Zarr; the multiscale step only finished it


@dataclass(frozen=True)
class Assumptions:
    """What the model cannot measure on this machine: stated, not measured."""

    cores_per_node: int = 64
    parallel_efficiency: float = 1.0  # of the per-core rate from 2 cores to 64 cores of one node
    fs_write_gb_s_per_node: float = 2.0  # one node's write bandwidth to the file system (caps a one-pass write)

    def lines(self) -> list[str]:
        return [
            f"{self.cores_per_node} cores per node, one reconstruction worker per core",
            f"parallel efficiency {self.parallel_efficiency:.2f} of the per-core rate measured here (on all the "
            "cores of this machine) across a node's cores, and of one node across N (each node a slab of rows)",
            "the reconstruction: its once-per-run setup (each worker's, in parallel, as measured), then the "
            "per-slice steps, which scale with width^2 x angles per slice, spread over every worker",
            f"one-pass Zarr: written by the workers as they reconstruct, capped by {self.fs_write_gb_s_per_node} "
            "GB/s of file-system writes per node (assumed, not measured here); the finishing multiscale step "
            "runs once, in one process, at its measured MB/s over the whole stack",
            "without one pass: the multiscale step reads the TIFFs back in one process at its measured MB/s",
            "float32 slices, width x width each; the scan is uint16; transfers run at the measured GB/s whatever N "
            "(not part of the goal); copy home moves the TIFF stack and the Zarr, taken as 2x the float32 stack",
        ]


@dataclass(frozen=True)
class Estimate:
    nodes: int
    recon_s: float
    zarr_s: float
    transfer_in_s: float
    copy_home_s: float

    @property
    def recon_zarr_s(self) -> float:
        return self.recon_s + self.zarr_s


def model(
    rates: Rates,
    assume: Assumptions = Assumptions(),
    scan: tuple[int, int, int] = SEA_SHELL,
    measured_shape: tuple[int, int] = (WIDTH, ANGLES),
    nodes: Iterable[int] = (1, 2, 4, 8),
) -> list[Estimate]:
    """The sea-shell scan (``scan``: rows, width, angles) on N nodes of ``assume.cores_per_node`` cores."""
    rows, width, angles = scan
    per_slice = rates.recon_s_per_slice_core * (width / measured_shape[0]) ** 2 * (angles / measured_shape[1])
    stack_gb = rows * width * width * 4 / GB
    raw_gb = angles * rows * width * 2 / GB
    out = []
    for n in nodes:
        cores = n * assume.cores_per_node * assume.parallel_efficiency
        compute = rows * per_slice / cores
        finish = stack_gb * 1000 / rates.zarr_mb_s_per_writer
        written = stack_gb / (n * assume.fs_write_gb_s_per_node)  # a one-pass write, at the file system's speed
        recon = rates.recon_setup_s + (max(compute, written) if rates.one_pass else compute)
        transfer = rates.transfer_gb_s
        out.append(Estimate(n, recon, finish, raw_gb / transfer, stack_gb * 2 / transfer))
    return out


def model_report(rates: Rates, assume: Assumptions = Assumptions(), **kwargs: Any) -> str:
    estimates = model(rates, assume, **kwargs)
    rows = [
        [e.nodes, e.recon_s, e.zarr_s, e.recon_zarr_s, e.recon_zarr_s / 60, e.transfer_in_s, e.copy_home_s]
        for e in estimates
    ]
    scan = kwargs.get("scan", SEA_SHELL)
    return "\n".join(
        [
            f"model: the sea-shell scan ({scan[0]} rows x {scan[1]} x {scan[2]} angles) on N nodes of "
            f"{assume.cores_per_node} cores",
            "rates measured here: " + ", ".join(f"{k} {v}" for k, v in asdict(rates).items()),
            "assumptions:",
            *(f"- {line}" for line in assume.lines()),
            table(
                ["nodes", "reconstruction s", "Zarr step s", "recon + Zarr s", "min", "stage scan s", "copy home s"],
                rows,
            ),
        ]
    )


def measured_rates(summaries: dict[str, dict], rows: list[dict], sizes: dict[str, int], cores: int) -> Rates:
    """The model's rates from a run: the reconstruct and multiscale summaries (their XCom) and the stage table."""
    recon = summaries["reconstruct"]
    zarr = summaries["multiscale"]
    seconds = recon.get("seconds") or {}
    workers, slices = int(recon.get("workers") or 1), int(recon["n_slices"])
    if "setup" in seconds:  # the per-step seconds, summed over the workers (each one core)
        per_slice = sum(v for k, v in seconds.items() if k not in ONCE_PER_RUN) / slices
        setup = seconds["setup"] / workers + seconds.get("centre", 0.0)
    else:
        per_slice, setup = float(seconds.get("total") or recon["wall_seconds"]) * cores / slices, 0.0
    transfers = [r["gb_s"] for r in rows if r["stage"].rpartition(".")[2] in SCAN_COPIES and r["gb_s"]]
    if not transfers:
        raise ValueError("no copy of the scan in the stage table: the transfer rate cannot be measured")
    zarr_s = float(zarr.get("seconds") or zarr["wall_seconds"])
    return Rates(
        recon_s_per_slice_core=round(per_slice, 4),
        recon_setup_s=round(setup, 2),
        zarr_mb_s_per_writer=round(int(zarr.get("bytes") or sizes["tiff"]) / 1e6 / zarr_s, 1),
        transfer_gb_s=max(transfers),
        one_pass=bool(zarr.get("one_pass")),
    )


# ------------------------------------------------------------------ the run
class RssSampler(threading.Thread):
    """(epoch seconds, GB) of a process tree's summed RSS every ``interval`` s, until ``stop()``."""

    def __init__(self, pid: int | None, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.samples = pid, interval, []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.time(), rss_mib(process_tree(self.pid)) * MiB / GB))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def write_scan(facility_root: Path, rows: int, width: int, angles: int) -> tuple[str, Path, float]:
    """The scan on spot832 where the beamline writes; (its path as the beamline reports it, file, seconds)."""
    from compute_functions.sample_scan import write_sample_scan
    from include.endpoints import load_endpoints

    name = f"{datetime.now(UTC):%Y%m%d_%H%M%S}_full_{rows}rows.h5"
    target = load_endpoints("local", facility_root=facility_root)["spot832"].posix_path(f"raw/{FOLDER}/{name}")
    started = time.monotonic()
    write_sample_scan(target, size=(angles, rows, width), block_rows=8)
    return f"/global/raw/{FOLDER}/{name}", target, time.monotonic() - started


def xcom(stack, run_id: str, task_id: str) -> dict:
    path = f"/api/v2/dags/{DISPATCHER}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    value = stack.request("GET", path).json()["value"]
    return json.loads(value) if isinstance(value, str) else value


def run_scan(stack, args: argparse.Namespace) -> dict[str, Any]:
    file_path, scan, write_s = write_scan(stack.facility_root, args.rows, args.width, args.angles)
    print(f"scan {scan} ({scan.stat().st_size / GB:.2f} GB) written in {write_s:.0f}s", file=sys.stderr)
    original = get_variable(stack, SETTINGS_VARIABLE)
    settings = {name: name in ("new_file", args.site) for name in json.loads(original)}
    set_variable(stack, SETTINGS_VARIABLE, json.dumps(settings))
    sampler = RssSampler(stack.pid("facility"))
    sampler.start()
    try:
        stack.unpause(DISPATCHER)
        started = time.monotonic()
        run_id = stack.trigger(DISPATCHER, {"file_path": file_path, "num_nodes": args.num_nodes})
        state = stack.wait(DISPATCHER, run_id, timeout=args.timeout, poll=2.0)
        elapsed = time.monotonic() - started
    finally:
        sampler.stop()
        set_variable(stack, SETTINGS_VARIABLE, original)
    tis = task_instances(stack, DISPATCHER, run_id)
    if state != "success":
        failed = [ti["task_id"] for ti in tis if ti["state"] not in ("success", "skipped")]
        raise RuntimeError(f"{DISPATCHER} run {run_id} ended {state} ({', '.join(failed)}); logs: {stack.log_dir}")
    summaries = {step: xcom(stack, run_id, f"{args.site}.{step}") for step in ("reconstruct", "multiscale")}
    sizes = {
        "scan": scan.stat().st_size,
        "tiff": folder_bytes(summaries["reconstruct"]["tiff_dir"]),
        "zarr": folder_bytes(summaries["multiscale"]["zarr"]),
    }
    rows = stage_rows(tis, sizes, sampler.samples)
    rates = measured_rates(summaries, rows, sizes, os.cpu_count() or 1)
    return {
        "run_id": run_id,
        "settings": settings,
        "num_nodes": args.num_nodes,
        "scan_shape": [args.angles, args.rows, args.width],
        "scan_write_s": round(write_s, 1),
        "trigger_to_success_s": round(elapsed, 1),
        "sizes": sizes,
        "rss_idle_gb": round(sampler.samples[0][1], 2) if sampler.samples else None,
        "stages": rows,
        "summaries": {k: {key: v.get(key) for key in SUMMARY_KEYS if key in v} for k, v in summaries.items()},
        "rates": asdict(rates),
    }


SUMMARY_KEYS = ("n_slices", "workers", "engine", "center", "seconds", "seconds_per_slice", "wall_seconds",
                "mb_per_s", "bytes", "one_pass", "levels")  # fmt: skip


def report(results: dict[str, Any]) -> str:
    angles, rows, width = results["scan_shape"]
    rates = Rates(**results["rates"])
    return "\n".join(
        [
            f"machine: {json.dumps(results['machine'])}",
            f"date: {results['date']}",
            f"scan: {angles} angles x {rows} rows x {width} columns ({results['sizes']['scan'] / GB:.2f} GB), "
            f"written in {results['scan_write_s']}s; {DISPATCHER} with {json.dumps(results['settings'])}, "
            f"num_nodes {results.get('num_nodes', 1)}: "
            f"{results['trigger_to_success_s']}s trigger to success; facility tree RSS before: "
            f"{results['rss_idle_gb']} GB",
            stage_table(results["stages"]),
            "reconstruct: " + json.dumps(results["summaries"]["reconstruct"]),
            "multiscale: " + json.dumps(results["summaries"]["multiscale"]),
            "",
            model_report(rates, measured_shape=(width, angles)),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_full_scan", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128, help="detector rows of the scan (the issue asks >= 128)")
    parser.add_argument("--width", type=int, default=WIDTH, help=argparse.SUPPRESS)
    parser.add_argument("--angles", type=int, default=ANGLES, help=argparse.SUPPRESS)
    parser.add_argument("--site", default="alcf", help="the one reconstruction site the dispatcher runs")
    parser.add_argument("--num-nodes", type=int, default=1, help="the run's num_nodes (slabs: one per node)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--md", type=Path, help="also write the report here")
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--keep", action="store_true", help="keep the stack's home (logs, facility, results)")
    parser.add_argument("--report", type=Path, help="no run: print the report (and model) of a saved --json")
    args = parser.parse_args(argv)
    if args.report:
        results = json.loads(args.report.read_text())
        sizes = results["sizes"]
        results["rates"] = asdict(
            measured_rates(results["summaries"], results["stages"], sizes, results["machine"]["cores"])
        )
        print(report(results))
        return 0
    if args.rows < 1:
        parser.error("--rows: must be at least 1")

    from facility.process import free_port
    from tools.local_stack import LocalStack

    results: dict[str, Any] = {"machine": machine(), "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"}
    recreate_database(args.database)
    home = Path(tempfile.mkdtemp(prefix="als-bench-full-"))
    with bench_stack(LocalStack(home, port=free_port(), database=args.database), DISPATCHER, keep=args.keep) as stack:
        results.update(run_scan(stack, args))
    results["load1_at_end"] = round(os.getloadavg()[0], 2)
    text = report(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if args.md:
        args.md.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    from include.endpoints import REPO_ROOT

    os.chdir(REPO_ROOT)
    sys.exit(main())
