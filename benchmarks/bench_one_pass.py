"""One pass to TIFF and Zarr against TIFFs then Zarr (issue 25, item 3), on the full-width synthetic scan.

Run: ``PYTHONPATH=. .venv/bin/python -m benchmarks.bench_one_pass [--rows 32] [--repeat 3] [--work /tmp/bench_recon]``.

The scan is bench_recon's (1313 angles x ``--rows`` x 2560 columns, written once into ``--work``; the centre is
given). For 1 and 2 worker processes, repeated ``--repeat`` times, each run in its own process:

- **TIFF only**: ``reconstruct_scan(zarr=False)``: the reference wall time;
- **today**: that TIFF stack, then the multiscale step reading it back (``write_multiscale``, 2 threads);
- **one pass**: ``reconstruct_scan()`` (the workers write the Zarr as they go), then the multiscale step,
  which finds the staged store and only writes the metadata and the preview.

The one-pass store is compared (every file but the preview, byte for byte) with today's writer run on the
one-pass run's own TIFF stack (the claim: the same store for the same stack); a store that differs is kept, with
its reference, under ``--work``/differing-<workers>-<run>/. The two runs' TIFF stacks are compared too: they
may differ in the last bits where FFTW times its plans (``FFTW_MEASURE``, a worker of 32 slices or more picks
the fastest algorithm, which can change from run to run), and so may stores made from them. Times are the steps' own
(``seconds.total`` of the reconstruction, ``seconds`` of the multiscale step): start-up excluded, the same for
all. Peak RSS is the largest of any single process (a worker writes its slab: the goal is <= 1 GB each).
Then the writer alone: 1 and 2 processes push synthetic slices (a real slice of the stack, shifted) through
``SlabPyramid`` into one store, against today's writer on the same stack: Zarr MB/s per number of writers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.bench_recon import communicate_sampled

ROOT = Path(__file__).resolve().parents[1]
FULL = (1313, 2560)

RUNNER = r"""
import json, sys
mode, scan, out, conf, workers = sys.argv[1:6]
conf = json.loads(conf)
workers = workers if mode == "reference" else int(workers)
from compute_functions.reconstruct import reconstruct_scan
from compute_functions.multiscale import write_multiscale
if mode in ("zarr", "reference"):  # the multiscale step alone; "reference": into another path, from the TIFFs
    s = write_multiscale(out, workers if mode == "reference" else None, raw=scan)
    print(json.dumps({"seconds": s["seconds"], "one_pass": s["one_pass"], "zarr": s["zarr"], "bytes": s["bytes"]}))
else:
    s = reconstruct_scan(scan, out, conf, workers=workers, nthreads=workers, zarr=mode == "one_pass")
    print(json.dumps({"seconds": s["seconds"]["total"], "zarr_cpu": s["seconds"]["zarr"], "tiff_dir": s["tiff_dir"],
                      "workers": s["workers"], "n": s["n_slices"]}))
"""

WRITERS = r"""
import json, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import multiprocessing
import tifffile
from benchmarks.bench_one_pass import write_block

if __name__ == "__main__":
    from compute_functions import zarr_slabs
    from compute_functions.reconstruct import _split
    out, plane_path, n, writers = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    shape = (n, *tifffile.imread(plane_path).shape)
    t = time.perf_counter()
    store = zarr_slabs.create(out, shape, "float32", {})
    blocks = _split(list(range(n)), writers, zarr_slabs.block_alignment(store.layout))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(blocks), mp_context=ctx) as pool:
        list(pool.map(write_block, [store] * len(blocks), [plane_path] * len(blocks), [b[0] for b in blocks],
                      [b[-1] + 1 for b in blocks]))
    zarr_slabs.merge_pieces(store)
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "mb_per_s": n * shape[1] * shape[2] * 4 / 1e6 / seconds,
                      "writers": len(blocks)}))
"""


def write_block(store, plane_path: str, z0: int, z1: int) -> None:
    """One writer process: slices ``z0 .. z1`` (a real slice, rolled by z) through its ``SlabPyramid``."""
    import numpy as np
    import tifffile

    from compute_functions.zarr_slabs import SlabPyramid

    plane = tifffile.imread(plane_path)
    pyramid = SlabPyramid(store, z0, z1)
    for z in range(z0, z1):
        pyramid.add(np.roll(plane, z, axis=1))
    pyramid.close()


def make_scan(work: Path, rows: int) -> tuple[Path, float]:
    from compute_functions.sample_scan import geometry, write_sample_scan

    work.mkdir(parents=True, exist_ok=True)
    scan = work / f"20260101_000000_full_{rows}.h5"  # the same file as bench_recon's
    shape = (FULL[0], rows, FULL[1])
    if not scan.exists():
        write_sample_scan(scan, size=shape, block_rows=4)
    return scan, geometry(shape).center


def run(args: list[str], code: str = RUNNER) -> dict:
    """One process (and its workers); its output's last line, plus the peak RSS of its largest process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    stdout, stderr, peak = communicate_sampled(proc, max, 0.1)
    if proc.returncode:
        raise RuntimeError(f"{args[0]} failed:\n{stderr}")
    return {**json.loads(stdout.strip().splitlines()[-1]), "rss_gb": peak / 2**30}


def same_store(a: Path, b: Path) -> bool:
    files = [p.relative_to(a) for p in sorted(a.rglob("*")) if p.is_file() and p.name != "preview.png"]
    others = [p.relative_to(b) for p in sorted(b.rglob("*")) if p.is_file() and p.name != "preview.png"]
    return files == others and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def max_difference(a: Path, b: Path) -> float:
    """The largest absolute pixel difference between two TIFF stacks of the same names (inf if names differ)."""
    import numpy as np
    import tifffile

    names = sorted(p.name for p in a.glob("*.tiff"))
    if names != sorted(p.name for p in b.glob("*.tiff")):
        return float("inf")
    return max(float(np.max(np.abs(tifffile.imread(a / n) - tifffile.imread(b / n)))) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_recon"))
    args = parser.parse_args()
    scan, center = make_scan(args.work, args.rows)
    conf = json.dumps({"center": center, "engine": "nufft"})
    print(f"load average before: {os.getloadavg()}", flush=True)
    rows: list[str] = []
    identical, tiff_diffs = True, []
    for workers in (1, 2):
        runs: dict[str, list[dict]] = {"tiff": [], "today": [], "one_pass": [], "finish": []}
        for _ in range(args.repeat):
            today_dir, one_dir = args.work / f"today_{workers}", args.work / f"onepass_{workers}"
            for folder in (today_dir, one_dir):
                shutil.rmtree(folder, ignore_errors=True)
            tiff = run(["tiff", str(scan), str(today_dir), conf, str(workers)])
            today = run(["zarr", str(scan), tiff["tiff_dir"], conf, "0"])
            one = run(["one_pass", str(scan), str(one_dir), conf, str(workers)])
            finish = run(["zarr", str(scan), one["tiff_dir"], conf, "0"])
            assert finish["one_pass"] and not today["one_pass"]
            ref = run(["reference", str(scan), one["tiff_dir"], conf, str(one_dir / "reference.zarr")])
            assert not ref["one_pass"]
            if not same_store(Path(ref["zarr"]), Path(finish["zarr"])):
                identical = False
                kept = args.work / f"differing-{workers}-{len(runs['tiff'])}"
                shutil.rmtree(kept, ignore_errors=True)
                for name, store in (("one_pass.zarr", finish["zarr"]), ("reference.zarr", ref["zarr"])):
                    shutil.copytree(store, kept / name)
                print(f"  one-pass store differs from today's writer on its own TIFFs: kept in {kept}", flush=True)
            tiff_diffs.append(max_difference(Path(tiff["tiff_dir"]), Path(one["tiff_dir"])))
            for key, value in (("tiff", tiff), ("today", today), ("one_pass", one), ("finish", finish)):
                runs[key].append(value)
            print(
                f"  {workers} worker(s): TIFF {tiff['seconds']:.1f} s + Zarr {today['seconds']:.1f} s; one pass "
                f"{one['seconds']:.1f} s (Zarr CPU {one['zarr_cpu']:.1f} s) + finish {finish['seconds']:.1f} s; "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
        gb = runs["today"][0]["bytes"] / 1e9
        one_total, today_total = med["one_pass"] + med["finish"], med["tiff"] + med["today"]
        rss = max(r["rss_gb"] for r in runs["one_pass"])
        rows.append(
            f"| {workers} | {med['tiff']:.1f} | {med['today']:.1f} "
            f"| {today_total:.1f} ({today_total / med['tiff']:.2f}x) "
            f"| {med['one_pass']:.1f} | {med['finish']:.2f} | **{one_total:.1f} ({one_total / med['tiff']:.2f}x)** "
            f"| {gb / med['today'] * 1e3:.0f} | {max(r['rss_gb'] for r in runs['tiff']):.2f} | {rss:.2f} |"
        )
    n = args.rows
    plane = sorted(Path(runs["tiff"][0]["tiff_dir"]).glob("*.tiff"))[n // 2]
    writers = []
    for count in (1, 2):
        results = []
        for _ in range(args.repeat):
            out = args.work / f"writers_{count}.zarr"
            result = run([str(out), str(plane), str(4 * n), str(count)], WRITERS)
            for stale in args.work.glob(f".{out.name}.partial-*"):
                shutil.rmtree(stale)
            results.append(result)
        writers.append((count, statistics.median(r["mb_per_s"] for r in results), max(r["rss_gb"] for r in results)))
    print(
        f"\n{FULL[0]} angles x {FULL[1]} columns x {n} rows, {args.repeat} runs each (median); "
        f"load average after: {os.getloadavg()}; one-pass stores identical to today's writer on the same TIFFs: "
        f"{identical}; largest difference between the TIFF-only and one-pass runs' stacks: {max(tiff_diffs):.3g}"
    )
    print(
        "| workers | TIFF only s | today's Zarr step s | today total | one pass (TIFF + Zarr) s | finish step s "
        "| **one pass total (vs TIFF only)** | today's Zarr MB/s | peak RSS GB/process, TIFF only | one pass |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))
    print(f"\nZarr writers alone ({4 * n} slices of 2560 x 2560 float32, {4 * n * 2560 * 2560 * 4 / 1e9:.1f} GB):")
    print("| writer processes | MB/s | peak RSS GB/process |\n|---|---|---|")
    for count, mbs, rss in writers:
        print(f"| {count} | {mbs:.0f} | {rss:.2f} |")


if __name__ == "__main__":
    main()
