"""The functions registered with Globus Compute; each runs at a Compute endpoint (ALCF, or the local facility).

Every function is self-contained: Compute ships its source (``AllCodeStrategies``), so it may use nothing
from this module, and imports what it needs inside its body. The science lives in ``compute_functions``,
which must be installed in the endpoint's Python environment (same Python major.minor as the submitter).
Each returns a small JSON-compatible summary (paths, counts, timings), never array data, and raises on
any failure so the Airflow task fails with the remote traceback. Airflow asks for the result as JSON data and
refuses anything else (plugins/als_provider/hooks/globus_compute.py), so a summary must be plain JSON.
"""

from __future__ import annotations


def reconstruct(
    scan_path: str,
    out_dir: str,
    options: dict | None = None,
    run_key: str | None = None,
    private: bool = False,
    run_lease_seconds: float | None = None,
    tiff_dir: str | None = None,
    slabs: int = 1,
    **kwargs,
):
    """Reconstruct one scan into a TIFF stack ``tiff_dir`` (default ``out_dir/rec<dataset>``, Airflow names it)
    (``compute_functions.reconstruct.reconstruct_scan``).

    ``options`` is the ``recon`` conf (``compute_functions.options.RECON_SCHEMA``); its keys may also come as
    keyword arguments (``rows="0:4"``, ``center=1280.5``, ``engine="nufft"``..., they win over ``options``),
    as may the older ``reconstruct_scan`` keywords (``ring_strength``, ``filter_name``, ``nthreads``,
    ``workers``, ``chunk_rows``). A bad scan or option raises ``compute_functions.errors.ScanError`` (a
    ValueError) whose one-line message starts ``reconstruct: ``; the summary's ``options`` is what was used.
    The TIFF folder gets its results manifest last; ``run_key`` (from Airflow) lets one call per run write
    (``compute_functions.results_manifest.produce_once``), under a lease of ``run_lease_seconds`` (the task's
    timeout) that the writer renews while it lives. ``private`` (an export-controlled scan): what it
    writes is 2770/660 (``compute_functions.permissions.private_modes``). ``slabs`` > 1 (a reconstruction across
    nodes): the :func:`reconstruct_slab` tasks did the work; this call gathers their slabs into the stack
    (``compute_functions.slabs.gather``) and fails, retryably, while one is not complete.
    """
    import time

    import compute_functions.reconstruct
    import compute_functions.slabs
    from compute_functions.errors import named
    from compute_functions.permissions import private_modes
    from compute_functions.results_manifest import produce_once, remote_summary

    started = time.time()
    with named("reconstruct"), private_modes(private):
        output = str(tiff_dir or compute_functions.reconstruct.default_tiff_dir(scan_path, out_dir))
        recon = compute_functions.reconstruct.reconstruct_scan
        if slabs > 1:
            produce = lambda: compute_functions.slabs.gather(output, slabs)  # noqa: E731
        else:
            produce = lambda: recon(scan_path, out_dir, options, tiff_dir=output, **kwargs)  # noqa: E731
        summary = produce_once(run_key, output, "tiff_dir", produce, lease_seconds=run_lease_seconds)
    return remote_summary(summary, "reconstruct_scan", started, scan_path=scan_path, out_dir=out_dir)


def reconstruct_slab(
    scan_path: str,
    out_dir: str,
    options: dict | None = None,
    *,
    tiff_dir: str,
    slab: int,
    slabs: int,
    run_key: str | None = None,
    store_key: str | None = None,
    private: bool = False,
    run_lease_seconds: float | None = None,
    **kwargs,
):
    """Reconstruct slab ``slab`` of ``slabs`` of a scan (one node's share of a reconstruction across nodes,
    ``compute_functions.slabs.reconstruct_slab``) beside ``tiff_dir``, once per ``run_key``; :func:`reconstruct`
    with ``slabs`` then gathers them. ``store_key``: the key of the run's one-pass store, the same for all its
    slab tasks (each has its own ``run_key``). Arguments and errors as :func:`reconstruct`'s."""
    import time

    from compute_functions.errors import named
    from compute_functions.permissions import private_modes
    from compute_functions.results_manifest import remote_summary
    from compute_functions.slabs import reconstruct_slab as run_slab

    started = time.time()
    with named("reconstruct"), private_modes(private):
        summary = run_slab(
            scan_path,
            out_dir,
            options,
            tiff_dir=tiff_dir,
            slab=slab,
            slabs=slabs,
            run_key=run_key,
            store_key=store_key,
            lease_seconds=run_lease_seconds,
            **kwargs,
        )
    return remote_summary(summary, "reconstruct_slab", started, scan_path=scan_path, out_dir=out_dir)


def multiscale(
    tiff_dir: str,
    zarr_path: str,
    run_key: str | None = None,
    private: bool = False,
    run_lease_seconds: float | None = None,
    **options,
):
    """Write a multiscale OME-Zarr beside a TIFF stack (``compute_functions.multiscale.write_multiscale``), its
    results manifest last; ``run_key``: one call per run writes (leased for ``run_lease_seconds``),
    ``private``: 2770/660 (as :func:`reconstruct`)."""
    import time

    import compute_functions.multiscale

    started = time.time()
    from compute_functions.permissions import private_modes
    from compute_functions.results_manifest import produce_once, remote_summary

    write = compute_functions.multiscale.write_multiscale
    with private_modes(private):
        summary = produce_once(
            run_key, zarr_path, "zarr", lambda: write(tiff_dir, zarr_path, **options), lease_seconds=run_lease_seconds
        )
    return remote_summary(summary, "write_multiscale", started, tiff_dir=tiff_dir, zarr_path=zarr_path)


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


def open_task_group():
    """Do nothing: the call that opens a Compute task group for one run of an Airflow task (its real call is
    then submitted into that group, so a lost answer can be looked up there). Returns ``{"opened": True}``."""
    return {"opened": True}
