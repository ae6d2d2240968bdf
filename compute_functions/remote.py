"""The functions registered with Globus Compute; each runs at a Compute endpoint (ALCF, or the local facility).

Every function is self-contained: Compute ships its source (``AllCodeStrategies``), so it may use nothing
from this module, and imports what it needs inside its body. The science lives in ``compute_functions``,
which must be installed in the endpoint's Python environment (same Python major.minor as the submitter).
Each returns a small JSON-compatible summary (paths, counts, timings), never array data, and raises on
any failure so the Airflow task fails with the remote traceback.
"""

from __future__ import annotations


def reconstruct(scan_path: str, out_dir: str, **options):
    """Reconstruct one scan into a TIFF stack ``out_dir`` (``compute_functions.reconstruct.reconstruct_scan``)."""
    import json
    import platform
    import time

    import compute_functions.reconstruct

    started = time.time()
    summary = compute_functions.reconstruct.reconstruct_scan(scan_path, out_dir, **options)
    if not isinstance(summary, dict):
        raise TypeError(f"reconstruct_scan returned {type(summary).__name__}, expected a dict")
    summary = json.loads(json.dumps(summary, default=str))
    summary.setdefault("scan_path", scan_path)
    summary.setdefault("out_dir", out_dir)
    summary["host"] = platform.node()
    summary["wall_seconds"] = round(time.time() - started, 3)
    return summary


def multiscale(tiff_dir: str, zarr_path: str, **options):
    """Write a multiscale OME-Zarr beside a TIFF stack (``compute_functions.multiscale.write_multiscale``)."""
    import json
    import platform
    import time

    import compute_functions.multiscale

    started = time.time()
    summary = compute_functions.multiscale.write_multiscale(tiff_dir, zarr_path, **options)
    if not isinstance(summary, dict):
        raise TypeError(f"write_multiscale returned {type(summary).__name__}, expected a dict")
    summary = json.loads(json.dumps(summary, default=str))
    summary.setdefault("tiff_dir", tiff_dir)
    summary.setdefault("zarr_path", zarr_path)
    summary["host"] = platform.node()
    summary["wall_seconds"] = round(time.time() - started, 3)
    return summary


def check_environment(paths: list[str] | None = None, require: bool = True):
    """Describe the endpoint (host, Python, science packages) and stat ``paths``; raise if one is missing."""
    import importlib.metadata
    import os
    import platform
    import sys

    found = {}
    for path in paths or []:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            found[path] = None
        else:
            found[path] = {"size": info.st_size, "is_dir": os.path.isdir(path)}
    packages = {}
    for name in ("numpy", "h5py", "tifffile", "zarr", "tomopy"):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    missing = [path for path, info in found.items() if info is None]
    if require and missing:
        raise FileNotFoundError(f"not found at {platform.node()}: {', '.join(missing)}")
    return {
        "host": platform.node(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "packages": packages,
        "paths": found,
    }
