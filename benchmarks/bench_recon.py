"""End-to-end reconstruction benchmark on a full-size synthetic scan, side by side with algotom.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_recon.py [--rows 24] [--work /tmp/bench_recon]``.

Scans (written once into ``--work``): the 8.3.2 full layout, 1313 angles x ``--rows`` rows x 2560 columns
(``compute_functions.sample_scan``: noise, flats, darks, ring-making gain errors); and a half-acquisition scan,
2626 angles over 360 degrees x ``--rows`` x 1280 columns with the axis 80 px from the right edge (stitched
slices ~2400 px wide, about the full layout's width).

Runs, each in its own process (peak RSS of the whole process tree sampled every 0.2 s):
1. ours, one core (``workers=1, nthreads=1``): read, normalise, rings (sorting), nufft, 1/cm, mask, write;
2. ours, two cores (``workers=2``, one thread each);
3. ours + phase retrieval (Paganin, delta/beta 1000), one core;
4. ours, half acquisition (360 -> 180 stitching, axis found by the overlap search), one core;
5. algotom, one core, on ``--baseline-slices`` slices: h5py read, the same normalisation, algotom's
   ``remove_stripe_based_sorting`` and ``dfi_reconstruction``, float32 TIFF.
Runs 1 and 2 are repeated at the end (the machine is shared and its load moves); the speed column uses the faster
run 1. The centre is given (the true axis) except in run 4. Columns: the pipeline's steps per slice (summed over
workers: CPU-like seconds); **s/slice** = wall time without the once-per-run centre and FFTW planning; then wall
and CPU seconds per slice of the whole process tree, start-up, imports and planning included. Machine probe: the
same numpy FFT loop in one and in two processes, before and after, says what two processes could gain right then.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FULL = (1313, 2560)


def make_scans(work: Path, rows: int) -> tuple[Path, float, Path, float]:
    from compute_functions.phantom import phantom_sinogram
    from compute_functions.sample_scan import geometry, write_sample_scan, write_transmission_scan

    work.mkdir(parents=True, exist_ok=True)
    full = work / f"20260101_000000_full_{rows}.h5"
    shape = (FULL[0], rows, FULL[1])
    if not full.exists():
        write_sample_scan(full, size=shape, block_rows=4)
    center = geometry(shape).center
    half = work / f"20260101_000000_half_{rows}.h5"
    half_center = 1199.6
    if not half.exists():
        theta = np.linspace(0, 360, 2 * FULL[0], endpoint=False)
        trans = np.empty((theta.size, rows, 1280), np.float32)
        for r in range(rows):
            z = -0.25 + 0.5 * (r + 0.5 - rows / 2) / max(rows, 8)
            lines = phantom_sinogram(np.deg2rad(theta), 1280, half_center, z, 1150.0)
            trans[:, r, :] = np.exp(-lines * (2.0 / 1150.0))
        write_transmission_scan(half, trans, theta, noise=True)
    return full, center, half, half_center


RUNNER = r"""
import json, sys, time
from pathlib import Path
kind, scan, out, conf, workers, threads, n = sys.argv[1:8]
conf, workers, threads, n = json.loads(conf), int(workers), int(threads), int(n)
if kind == "ours":
    from compute_functions.reconstruct import reconstruct_scan
    s = reconstruct_scan(scan, out, conf, workers=workers, nthreads=threads, zarr=False)  # TIFFs, as algotom
    print(json.dumps({"n": s["n_slices"], "seconds": s["seconds"], "center": s["center"], "size": s["slice_size"],
                      "workers": s["workers"]}))
else:
    import h5py, numpy as np, tifffile
    from algotom.prep.removal import remove_stripe_based_sorting
    from algotom.rec.reconstruction import dfi_reconstruction
    from compute_functions.preprocessing import normalize
    sec = dict.fromkeys(("read", "normalize", "rings", "reconstruct", "write"), 0.0)
    t0 = time.perf_counter()
    Path(out).mkdir(parents=True, exist_ok=True)
    with h5py.File(scan, "r") as f:
        theta = np.deg2rad(f["exchange/theta"][...])
        for r in range(n):
            t = time.perf_counter()
            proj = f["exchange/data"][:, r : r + 1, :].astype(np.float32)
            flats, darks = f["exchange/data_white"][:, r : r + 1, :], f["exchange/data_dark"][:, r : r + 1, :]
            sec["read"] += time.perf_counter() - t; t = time.perf_counter()
            sino = normalize(proj, flats, darks)[:, 0, :]
            sec["normalize"] += time.perf_counter() - t; t = time.perf_counter()
            sino = remove_stripe_based_sorting(sino, 21)
            sec["rings"] += time.perf_counter() - t; t = time.perf_counter()
            rec = dfi_reconstruction(sino, conf["center"], angles=theta, apply_log=False)
            sec["reconstruct"] += time.perf_counter() - t; t = time.perf_counter()
            tifffile.imwrite(f"{out}/slice_{r:05d}.tiff", rec.astype(np.float32))
            sec["write"] += time.perf_counter() - t
    sec["total"] = time.perf_counter() - t0
    print(json.dumps({"n": n, "seconds": sec, "center": conf["center"], "size": int(rec.shape[0])}))
"""


def communicate_sampled(
    proc: subprocess.Popen, measure: Callable[[list[int]], int], interval: float
) -> tuple[str, str, int]:
    """``proc.communicate()``, sampling the RSS of ``proc`` and its children every ``interval`` seconds meanwhile;
    also the peak of ``measure`` over the samples (``sum``: the whole tree, ``max``: its largest process)."""
    import psutil

    peak = [0]

    def sample() -> None:
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(proc.pid)
            while proc.poll() is None:
                rss = []
                for p in [parent, *parent.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        rss.append(p.memory_info().rss)
                if rss:
                    peak[0] = max(peak[0], measure(rss))
                time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, stderr = proc.communicate()
    thread.join()
    return stdout, stderr, peak[0]


def run(kind: str, scan: Path, out: Path, conf: dict, workers: int, threads: int, n: int = 0) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    args = [
        sys.executable,
        "-c",
        RUNNER,
        kind,
        str(scan),
        str(out),
        json.dumps(conf),
        str(workers),
        str(threads),
        str(n),
    ]
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    stdout, stderr, peak = communicate_sampled(proc, sum, 0.2)
    if proc.returncode:
        raise RuntimeError(f"{kind} failed:\n{stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_gb"] = peak / 2**30
    # CPU seconds of the run and its workers (reaped), start-up and imports included; wall seconds likewise
    result["cpu"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result["wall"] = time.perf_counter() - start
    return result


def _fft_work(n: int) -> float:
    a = np.random.default_rng(0).random((2048, 2048)).astype(np.complex64)
    t = time.perf_counter()
    for _ in range(n):
        np.fft.fft2(a)
    return time.perf_counter() - t


def machine_probe() -> str:
    """What two processes can gain on this machine right now: the same FFT loop in one and in two processes."""
    import multiprocessing

    one = _fft_work(10)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_fft_work, [1, 1])  # start-up
        t = time.perf_counter()
        pool.map(_fft_work, [10, 10])
        two = time.perf_counter() - t
    return f"numpy FFT loop: 1 process {one:.1f} s, 2 processes x the work {two:.1f} s: {2 * one / two:.2f}x available"


def row(name: str, r: dict, base: float | None = None) -> str:
    s, n = r["seconds"], r["n"]
    per = {k: s.get(k, 0.0) / n for k in ("read", "normalize", "rings", "corrections", "reconstruct", "write")}
    work = per_slice(r)
    cells = " | ".join(f"{per[k]:.3f}" for k in per)
    speed = f"{base / work:.2f}x" if base else "-"
    return (
        f"| {name} | {n} | {r['size']} | {cells} | **{work:.3f}** | {r['wall'] / n:.3f} | {r['cpu'] / n:.3f} | "
        f"{s.get('centre', 0.0):.1f} | {s.get('setup', 0.0):.1f} | {r['peak_rss_gb']:.2f} | {speed} |"
    )


HEADER = (
    "| run | slices | slice px | read | normalise | rings | corrections | reconstruct | write | **s/slice** "
    "| wall s/slice, all in | CPU s/slice, all in | centre s | plan s | peak RSS GB | speed vs ours 1 core |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--baseline-slices", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_recon"))
    parser.add_argument("--skip", nargs="*", default=[], help="runs to skip: two phase half algotom")
    args = parser.parse_args()
    t = time.perf_counter()
    full, center, half, _ = make_scans(args.work, args.rows)
    print(f"scans ready ({time.perf_counter() - t:.0f} s); load average before: {os.getloadavg()}", flush=True)
    probe_before = machine_probe()
    print(f"machine before: {probe_before}", flush=True)
    results: list[tuple[str, dict]] = []
    base = {"center": center, "engine": "nufft"}

    def ours(name: str, scan: Path, conf: dict, workers: int = 1) -> None:
        out = args.work / name.replace(" ", "_").replace(",", "")
        results.append((name, run("ours", scan, out, conf, workers, workers)))
        print(row(*results[-1]), flush=True)

    # The reference runs first and last (the machine is shared: the load moves); variants in between.
    ours("ours, 1 core", full, base)
    if "two" not in args.skip:
        ours("ours, 2 cores", full, base, 2)
    if "phase" not in args.skip:
        ours("ours + phase retrieval, 1 core", full, {**base, "phase_retrieval": True, "delta_beta": 1000.0})
    if "half" not in args.skip:
        ours("ours, half acquisition (2626 x 1280), 1 core", half, {"half_acquisition": True, "engine": "nufft"})
    if "algotom" not in args.skip:
        alg = run("algotom", full, args.work / "alg", {"center": center}, 1, 1, args.baseline_slices)
        results.append(("algotom sorting + DFI, 1 core", alg))
        print(row(*results[-1]), flush=True)
    ours("ours, 1 core (again)", full, base)
    if "two" not in args.skip:
        ours("ours, 2 cores (again)", full, base, 2)
    one = min((r for name, r in results if name.startswith("ours, 1 core")), key=lambda r: r["seconds"]["total"])
    ref = per_slice(one)
    print(f"\n{FULL[0]} angles x {FULL[1]} columns x {args.rows} rows; load average after: {os.getloadavg()}")
    print(f"machine before: {probe_before}\nmachine after:  {machine_probe()}")
    print(HEADER)
    for name, r in results:
        print(row(name, r, ref))
    alg = next((r for name, r in results if name.startswith("algotom")), None)
    two = [r for name, r in results if name.startswith("ours, 2 cores")]
    if alg is not None:
        print(f"\nalgotom sorting + DFI / ours, 1 core: {per_slice(alg) / ref:.1f}x (issue 25 goal >= 15x)")
    if two:
        best = min(per_slice(r) for r in two)
        print(f"ours 1 core / ours 2 cores: {ref / best:.2f}x (issue 25 goal >= 1.8x)")


def per_slice(r: dict) -> float:
    """Wall seconds per slice without the once-per-run centre and planning (the **s/slice** column)."""
    s = r["seconds"]
    return (s["total"] - s.get("centre", 0.0) - s.get("setup", 0.0) / r.get("workers", 1)) / r["n"]


if __name__ == "__main__":
    main()
