"""Reconstruction across nodes (upstream's ``num_nodes``): n slab tasks, one per node, then one gather.

Slab k of n reconstructs the k-th contiguous block of the scan's slices (``reconstruct_scan(slab=(k, n))``: the
centre and every other choice are made over the whole scan, so the slabs together are the one-node stack) into
``.<tiff name>.slabs-<n>/slab-<k>/`` beside the TIFF folder, and marks it complete (``slab.json``, written last);
its workers also write their planes of the whole stack's one-pass OME-Zarr store (``zarr-<run>/`` in the same
folder, made by the first slab: ``compute_functions.zarr_slabs``), when the slices allow chunk-aligned slabs.
A slab task given a ``run_key`` runs once per key (``results_manifest.run_once``): a retry of the run skips the
slabs that completed and redoes only the failed ones; a new run (a Clear) redoes them all.

:func:`gather` refuses unless every slab is complete and all agree (dataset, centre, options, the slices they
cover), then hard-links their TIFFs into ``<tiff name>/`` atomically (the old stack stays whole until the new one
is in place; the slabs stay until it is), merges and seals the one-pass store for the multiscale step (which then
only finishes it) and removes the slabs.

CLI (the NERSC job, one ``srun`` task per node, the slab from ``SLURM_PROCID``)::

    python -m compute_functions.slabs reconstruct SCAN.h5 OUT_DIR --tiff-dir DIR --slabs N [--slab K]
        [--run-key KEY] [--options JSON]
    python -m compute_functions.slabs gather DIR --slabs N

A bad scan or option exits 2 with one line ``reconstruct: <reason>`` (as ``compute_functions.reconstruct``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from compute_functions.errors import EXIT_DATA_ERROR, ScanError, data_error_exit

#: The completion marker of a slab folder, written last.
DONE = "slab.json"
#: The most nodes a run may ask for (dags/pipelines/params.py checks a conf against it).
MAX_SLABS = 64


def slabs_root(tiff_dir: str | os.PathLike, slabs: int) -> Path:
    """``.<tiff name>.slabs-<n>/`` beside the TIFF folder: where the n slabs of a run are written."""
    tiff_dir = Path(tiff_dir)
    return tiff_dir.with_name(f".{tiff_dir.name}.slabs-{slabs}")


def slab_dir(tiff_dir: str | os.PathLike, slab: int, slabs: int) -> Path:
    """The folder of slab ``slab`` of ``slabs``."""
    return slabs_root(tiff_dir, slabs) / f"slab-{slab:03d}"


def _check(slab: int | None, slabs: int) -> None:
    if isinstance(slabs, bool) or not isinstance(slabs, int) or not 1 <= slabs <= MAX_SLABS:
        raise ValueError(f"slabs: {slabs!r}: must be a whole number from 1 to {MAX_SLABS}")
    if slab is not None and (isinstance(slab, bool) or not isinstance(slab, int) or not 0 <= slab < slabs):
        raise ValueError(f"slab: {slab!r}: must be a whole number from 0 to {slabs - 1}")


def reconstruct_slab(
    scan_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: dict[str, Any] | None = None,
    *,
    tiff_dir: str | os.PathLike,
    slab: int,
    slabs: int,
    run_key: str | None = None,
    store_key: str | None = None,
    lease_seconds: float | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Reconstruct slab ``slab`` of ``slabs`` of the scan into :func:`slab_dir`, once per ``run_key``; returns its
    summary (``reconstruct_scan``'s, with ``slab``). ``store_key`` names the run's one-pass store, the one key all
    its slabs share (default ``run_key``: the NERSC job's slabs share it; each Compute slab task has its own)."""
    from compute_functions.reconstruct import reconstruct_scan
    from compute_functions.results_manifest import run_once, write_json

    _check(slab, slabs)
    folder = slab_dir(tiff_dir, slab, slabs)

    # the one-pass store all slabs of this run write (one per run key: a Clear never meets an earlier run's pieces)
    key = (store_key or run_key or "").encode()
    store = slabs_root(tiff_dir, slabs) / f"zarr-{hashlib.sha256(key).hexdigest()[:12]}"

    def produce() -> dict[str, Any]:
        summary = reconstruct_scan(
            scan_path, out_dir, options, tiff_dir=folder, slab=(slab, slabs), slab_store=store, **kwargs
        )
        write_json(folder / DONE, summary)  # last: the slab is complete
        return summary

    return run_once(folder, run_key, produce, lease_seconds=lease_seconds)


def gather(tiff_dir: str | os.PathLike, slabs: int) -> dict[str, Any]:
    """Put the complete slabs of ``tiff_dir`` together into it; returns the whole reconstruction's summary.

    RuntimeError (retryable: the slabs' task failed or has not run) when a slab is not complete, naming it;
    ValueError when the slabs disagree (they belong to different runs or options)."""
    from compute_functions.reconstruct import atomic_dir

    _check(None, slabs)
    final = Path(tiff_dir)
    root = slabs_root(final, slabs)
    summaries, missing = [], []
    for k in range(slabs):
        try:
            summaries.append(json.loads((slab_dir(final, k, slabs) / DONE).read_text()))
        except (OSError, ValueError):
            missing.append(str(k))
    if missing:
        raise RuntimeError(
            f"gather: slab {', '.join(missing)} of {slabs} not complete in {root} (the slab task failed or did "
            "not run: retry the reconstruction)"
        )
    first = summaries[0]
    for k, summary in enumerate(summaries):
        for key in ("dataset", "center", "options", "binning", "engine"):
            if summary.get(key) != first.get(key):
                raise ValueError(f"gather: slab {k} has another {key} than slab 0 ({root}): slabs of different runs")
        if summary.get("slab", {}).get("index") != k or summary["slab"].get("of") != slabs:
            where = slab_dir(final, k, slabs)
            raise ValueError(f"gather: {where} holds slab {summary.get('slab')}, not {k} of {slabs}")
    total = sum(s["n_slices"] for s in summaries)
    names = [sorted(p.name for p in slab_dir(final, k, slabs).glob("*.tiff")) for k in range(slabs)]
    if total != first["slab"]["total_slices"] or sum(map(len, names)) != total:
        raise ValueError(
            f"gather: the slabs in {root} hold {sum(map(len, names))} slices of {first['slab']['total_slices']}"
        )
    covered = [s for s in summaries if s["n_slices"]]  # a node with no slices wrote no TIFF and no store
    with atomic_dir(final) as tmp:
        for k, files in enumerate(names):
            for name in files:
                _link(slab_dir(final, k, slabs) / name, tmp / name)
    staged = _finish_store([s["slab"].get("zarr") for s in covered], final)
    shutil.rmtree(root, ignore_errors=True)
    seconds: dict[str, float] = {}
    for summary in summaries:
        for key, value in summary["seconds"].items():
            seconds[key] = round(seconds.get(key, 0.0) + value, 3)
    return {
        **{key: value for key, value in first.items() if key not in ("slab", "seconds", "seconds_per_slice")},
        "tiff_dir": str(final),
        "n_slices": total,
        "rows": [covered[0]["rows"][0], covered[-1]["rows"][1]],
        "workers": sum(s["workers"] for s in summaries),
        "zarr_staged": None if staged is None else str(staged),  # None: the multiscale step reads the TIFFs
        "slabs": slabs,
        "slab_seconds": [s["seconds"]["total"] for s in summaries],
        "seconds": seconds,  # summed over the slabs (CPU-side); the wall time is the slowest slab's
    }


def _finish_store(stores: list[dict[str, Any] | None], final: Path) -> Path | None:
    """The slabs' one-pass store, its shared chunk layers merged and sealed for the multiscale step to finish
    (``compute_functions.zarr_slabs``); None when a slab wrote none (the multiscale step reads the TIFFs)."""
    from compute_functions import zarr_slabs

    zarr_path = zarr_slabs.zarr_path_of(final)
    if not stores or any(s is None or s["path"] != stores[0]["path"] for s in stores):
        zarr_slabs.discard(zarr_path)
        return None
    spec = stores[0]
    if not Path(spec["path"]).is_dir() and zarr_slabs.staged_path(zarr_path).is_dir():
        return zarr_slabs.staged_path(zarr_path)  # sealed by an earlier gather of these slabs that died after it
    store = zarr_slabs.describe(Path(spec["path"]), tuple(spec["shape"]), spec["dtype"], spec["options"])
    zarr_slabs.merge_pieces(store)
    return zarr_slabs.seal(store, final, zarr_path)


def _link(source: Path, target: Path) -> None:
    """A hard link (the same file, no copy); a copy where the file system refuses links."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute_functions.slabs", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("reconstruct", help="reconstruct one slab (default: the srun task's, SLURM_PROCID)")
    rec.add_argument("scan", type=Path)
    rec.add_argument("out_dir", type=Path)
    rec.add_argument("--tiff-dir", type=Path, required=True)
    rec.add_argument("--slabs", type=int, required=True)
    rec.add_argument("--slab", type=int, default=None)
    rec.add_argument("--run-key", default=None)
    rec.add_argument("--options", default=None, help="the recon conf as one JSON object")
    gat = sub.add_parser("gather", help="put the complete slabs together into the TIFF folder")
    gat.add_argument("tiff_dir", type=Path)
    gat.add_argument("--slabs", type=int, required=True)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_DATA_ERROR if exc.code else 0
    if args.command == "gather":
        print(json.dumps(gather(args.tiff_dir, args.slabs)))
        return 0
    from compute_functions.reconstruct import options_argument

    slab = args.slab if args.slab is not None else int(os.environ.get("SLURM_PROCID", "0"))
    try:
        options = options_argument(args.options)
        summary = reconstruct_slab(
            args.scan, args.out_dir, options, tiff_dir=args.tiff_dir, slab=slab, slabs=args.slabs, run_key=args.run_key
        )
    except (ScanError, FileNotFoundError) as exc:
        return data_error_exit("reconstruct", exc)
    print(json.dumps({key: summary.get(key) for key in ("dataset", "n_slices", "rows", "slab", "center")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
