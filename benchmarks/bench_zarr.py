"""Benchmark TIFF stack -> Zarr writers side by side: wall seconds, MB/s and peak RSS, each in its own process.

    .venv/bin/python benchmarks/bench_zarr.py                      # ~2 GiB: 512 x 1024 x 1024 float32
    .venv/bin/python benchmarks/bench_zarr.py --shape 64,512,512   # quick
    .venv/bin/python benchmarks/bench_zarr.py --writers ours,plain --keep

Writers (all NGFF 0.4 / Zarr v2, chunks (32, 256, 256), Blosc lz4 level 1 + shuffle where they allow it):
  ours      compute_functions.multiscale.write_multiscale (streamed slabs, 2x2x2 mean pyramid)
  ome-zarr  ome_zarr.writer.write_image on a dask array of the TIFFs (its default resize scaler)
  plain     level 0 only: slab-by-slab copy into one zarr array (the floor of any writer)
  ngff-zarr ngff_zarr.to_ngff_image -> to_multiscales (its default method) -> to_ngff_zarr, if installed
MB/s is the TIFF stack's bytes (1 MB = 1e6 B) over the child's wall time, imports and a final os.sync()
included (the page cache is flushed, untimed, before each run). Peak RSS is the
child's ru_maxrss from os.wait4. The stack is generated once (reconstruction-like: masked circle of smooth
structure plus noise) and reused; outputs are deleted after each run unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRITERS = ("ours", "ome-zarr", "plain", "ngff-zarr")
CHUNK = (32, 256, 256)


def generate_stack(directory: Path, shape: tuple[int, int, int], pixel_size_um: float = 0.65) -> Path:
    """Write a float32 TIFF stack ``rec<name>/<name>_<NNNNN>.tiff`` once; reuse it when complete."""
    import numpy as np
    import tifffile

    name = "bench_{}x{}x{}".format(*shape)
    folder = directory / f"rec{name}"
    done = folder / ".complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    z, y, x = shape
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:y, 0:x].astype(np.float32)
    r2 = ((yy - y / 2) / (y / 2)) ** 2 + ((xx - x / 2) / (x / 2)) ** 2
    mask = r2 <= 1.0
    base = (0.5 + 0.3 * np.sin(xx / 37.0) * np.cos(yy / 53.0)).astype(np.float32)
    for i in range(z):
        noise = rng.standard_normal((y, x), dtype=np.float32)
        sl = base * np.float32(1.0 + 0.2 * np.sin(i / 29.0)) + np.float32(0.05) * noise
        sl[~mask] = 0.0
        tifffile.imwrite(folder / f"{name}_{i:05d}.tiff", sl, metadata={"pixel_size_um": pixel_size_um})
    done.touch()
    return folder


def _tiff_dask(tiff_dir: Path, depth: int):
    import dask
    import dask.array as da
    import tifffile

    from compute_functions.tiff_stack import open_tiff_stack

    stack = open_tiff_stack(tiff_dir)
    read = dask.delayed(tifffile.imread, pure=True)
    planes = [da.from_delayed(read(f), shape=stack.shape[1:], dtype=stack.dtype) for f in stack.files]
    return stack, da.stack(planes).rechunk((depth, *CHUNK[1:]))


def run_child(writer: str, tiff_dir: Path, out: Path) -> dict:
    """Run one writer in this process (the child side)."""
    import numcodecs

    compressor = numcodecs.Blosc(cname="lz4", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)
    if writer == "ours":
        from compute_functions.multiscale import write_multiscale

        return write_multiscale(tiff_dir, out, chunk=CHUNK)
    if writer == "plain":
        import numpy as np
        import zarr

        from compute_functions.tiff_stack import open_tiff_stack

        stack = open_tiff_stack(tiff_dir)
        arr = zarr.create_array(
            out,
            shape=stack.shape,
            chunks=CHUNK,
            dtype=stack.dtype,
            compressors=compressor,
            zarr_format=2,
            chunk_key_encoding={"name": "v2", "separator": "/"},
            fill_value=0,
        )
        slab = np.empty((CHUNK[0], *stack.shape[1:]), dtype=stack.dtype)
        for z in range(0, stack.shape[0], CHUNK[0]):
            n = stack.read_into(z, slab)
            arr[z : z + n] = slab[:n]
        return {"levels": 1}
    from compute_functions.multiscale import default_levels

    if writer == "ome-zarr":
        import dask
        import zarr
        from ome_zarr.format import FormatV04
        from ome_zarr.writer import write_image

        stack, data = _tiff_dask(tiff_dir, CHUNK[0])
        levels = default_levels(stack.shape)
        factors = [{"z": 2**k, "y": 2**k, "x": 2**k} for k in range(1, levels)]
        group = zarr.open_group(out, mode="w", zarr_format=2)
        with dask.config.set(num_workers=2):
            write_image(
                data,
                group,
                scale_factors=factors,
                axes="zyx",
                fmt=FormatV04(),
                storage_options={"chunks": CHUNK, "compressor": compressor},
            )
        return {"levels": levels}
    if writer == "ngff-zarr":
        import dask
        import ngff_zarr as nz

        stack, data = _tiff_dask(tiff_dir, CHUNK[0])
        levels = default_levels(stack.shape)
        image = nz.to_ngff_image(
            data, dims=["z", "y", "x"], scale={a: stack.pixel_size_um or 1.0 for a in "zyx"}, axes_units="micrometer"
        )
        with dask.config.set(num_workers=2):
            multiscales = nz.to_multiscales(image, scale_factors=[2**k for k in range(1, levels)], chunks=CHUNK[1])
            nz.to_ngff_zarr(out, multiscales, version="0.4")
        return {"levels": levels}
    raise ValueError(f"unknown writer {writer!r}")


def run_parent(writer: str, tiff_dir: Path, out: Path, nbytes: int) -> dict:
    """Run a writer in a child process; measure its wall time and peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    os.sync()  # untimed: start without dirty pages of the previous run
    cmd = [sys.executable, __file__, "--child", writer, "--tiff", str(tiff_dir), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # per-child rusage; Popen.wait would reap it first
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read(), err_f.read()
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        return {"writer": writer, "error": tail[0]}
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    info = json.loads(stdout.decode().strip().splitlines()[-1])
    return {
        "writer": writer,
        "seconds": round(seconds, 2),
        "mb_per_s": round(nbytes / 1e6 / seconds, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 0),  # Linux: KiB
        "levels": info.get("levels"),
        "out_mb": round(size / 1e6, 1),
    }


def _summarise(writer: str, results: list[dict], nbytes: int) -> dict:
    """Median wall time (MB/s from it) and worst peak RSS over the repeats; the first error if any failed."""
    failed = [r for r in results if "error" in r]
    if failed:
        return failed[0]
    seconds = statistics.median(r["seconds"] for r in results)
    return {
        **results[0],
        "seconds": round(seconds, 2),
        "mb_per_s": round(nbytes / 1e6 / seconds, 1),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "runs": len(results),
    }


def _available(writer: str) -> bool:
    if writer != "ngff-zarr":
        return True
    try:
        import ngff_zarr  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="512,1024,1024", help="Z,Y,X of the generated stack (float32)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_zarr"), help="stack and outputs go here")
    parser.add_argument("--writers", default=",".join(WRITERS), help="comma-separated subset of " + ",".join(WRITERS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per writer; the table shows the median")
    parser.add_argument("--keep", action="store_true", help="keep the written stores")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tiff", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        info = run_child(args.child, args.tiff, args.out)
        os.sync()  # timed: the data must reach the disk, not just the page cache
        print(json.dumps(info, default=str))
        return 0

    shape = tuple(int(s) for s in args.shape.split(","))
    args.workdir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    tiff_dir = generate_stack(args.workdir, shape)
    nbytes = sum(f.stat().st_size for f in tiff_dir.glob("*.tiff"))
    print(f"stack {tiff_dir} {shape} float32 {nbytes / 2**30:.2f} GiB (ready in {time.perf_counter() - t:.0f} s)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)

    writers = args.writers.split(",")
    runs: dict[str, list[dict]] = {w: [] for w in writers}
    for _ in range(args.repeat):  # interleaved, so a burst of load from others hits every writer alike
        for writer in writers:
            if not _available(writer):
                runs[writer].append({"writer": writer, "error": "not installed"})
                continue
            out = args.workdir / f"{writer}.zarr"
            runs[writer].append(run_parent(writer, tiff_dir, out, nbytes))
            print(json.dumps(runs[writer][-1]), flush=True)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
    rows = [_summarise(writer, results, nbytes) for writer, results in runs.items()]

    ours = next((r for r in rows if r["writer"] == "ours" and "error" not in r), None)
    print()
    print(f"median of {args.repeat} run(s); peak RSS is the largest")
    print("| writer | levels | seconds | MB/s | peak RSS MB | output MB | time vs ours | RSS vs ours |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['writer']} | failed: {r['error']} | | | | | | |")
            continue
        ratio_t = f"{r['seconds'] / ours['seconds']:.2f}x" if ours else "-"
        ratio_m = f"{r['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x" if ours else "-"
        print(
            f"| {r['writer']} | {r['levels']} | {r['seconds']} | {r['mb_per_s']} | {r['peak_rss_mb']:.0f} | "
            f"{r['out_mb']} | {ratio_t} | {ratio_m} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
