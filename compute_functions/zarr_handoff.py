"""The hand-off of a one-pass store (compute_functions/zarr_slabs.py) to the multiscale step.

The reconstruction's workers leave the store they wrote, with a record of the TIFF stack and layout it was made
from, at ``.<rec<dataset>.zarr>.staged``; the multiscale step (:func:`compute_functions.multiscale.write_multiscale`)
takes it (:func:`take_staged`) only when that record matches what it would write, and otherwise discards it and
reads the TIFFs back. Neither side imports the other: both import this module.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SEAL = "onepass.json"  # inside the staged store until the multiscale step takes it


def staged_path(zarr_path: str | Path) -> Path:
    """Where the reconstruction leaves the store for the multiscale step: ``.<name>.staged`` beside it."""
    zarr_path = Path(zarr_path)
    return zarr_path.with_name(f".{zarr_path.name}.staged")


def fingerprint(tiff_dir: Path) -> list[list[Any]]:
    """Name, size and modification time of every TIFF of the folder: a later re-run changes it."""
    from compute_functions.tiff_stack import TIFF_SUFFIXES

    files = sorted(p for p in tiff_dir.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
    return [[p.name, (st := p.stat()).st_size, st.st_mtime_ns] for p in files]


def discard(zarr_path: str | Path) -> None:
    """Remove the staged store of ``zarr_path``, if any (a re-run without one-pass leaves none behind)."""
    staged = staged_path(zarr_path)
    if staged.exists():
        shutil.rmtree(staged, ignore_errors=True)


def take_staged(zarr_path: Path, stack: Any, layout: Any, compressor: str, ngff: str) -> Path | None:
    """The staged store of ``zarr_path`` when it was made from ``stack`` with this layout, compressor and NGFF
    version (its record removed: it is then the store, less its metadata); else None, and it is discarded."""
    staged = staged_path(zarr_path)
    record = staged / SEAL
    if not record.is_file():
        discard(zarr_path)
        return None
    try:
        seal_data = json.loads(record.read_text())
    except (OSError, ValueError):
        seal_data = {}
    wanted = {
        "fingerprint": fingerprint(stack.directory),
        "shapes": [list(s) for s in layout.shapes],
        "chunks": list(layout.chunks),
        "dtype": layout.dtype,
        "compressor": compressor,
        "ngff": ngff,
    }
    if seal_data != wanted:
        log.info("%s does not match %s or the options: reading the TIFFs", staged, stack.directory)
        discard(zarr_path)
        return None
    record.unlink()
    return staged
