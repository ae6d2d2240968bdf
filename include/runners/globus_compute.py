"""The ``globus_compute`` runner, plan side: the functions of compute_functions/remote.py at a Compute endpoint
(across ``num_nodes`` nodes: a ``reconstruct_slab`` task per node, then ``reconstruct`` puts the slabs together).

sites.yaml keys: ``compute_endpoint_id`` (required, a UUID), ``function_ids`` (pinned ids), ``placeholder``,
``task_timeout_minutes``. The scan is staged by Globus; SciCat records the options the reconstruction used
(its summary). Steps side: dags/pipelines/runners/globus_compute.py.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from include.runners.base import STEPS, Fail, Runner, Site

if TYPE_CHECKING:
    from include.endpoints import Endpoints
    from include.paths import Results, Scan
    from include.retention import DeletionRequest

#: The run-once marker of a results folder (compute_functions/results_manifest.py ``run_once``).
RUN_RESULT = ".{}.run-result"


class GlobusCompute(Runner):
    name = "globus_compute"
    label = "Globus Compute"
    stages_by = "Globus"
    keys = frozenset({"compute_endpoint_id", "function_ids", "placeholder", "task_timeout_minutes"})
    records = "the options the reconstruction used (its summary)"

    def validate(self, entry: dict[str, Any], fail: Fail) -> dict[str, Any]:
        from include.compute_registry import FUNCTIONS

        endpoint = entry.get("compute_endpoint_id")
        if not isinstance(endpoint, str) or not endpoint.strip():
            raise fail("compute_endpoint_id", "missing (runner globus_compute)")
        function_ids = entry.get("function_ids") or {}
        if not isinstance(function_ids, dict):
            raise fail("function_ids", "expected a mapping of function name to id")
        unknown = set(map(str, function_ids)) - set(FUNCTIONS)
        if unknown:
            known = ", ".join(sorted(FUNCTIONS))
            raise fail("function_ids", f"unknown function(s) {', '.join(sorted(unknown))} (known: {known})")
        timeout = entry.get("task_timeout_minutes", 120)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise fail("task_timeout_minutes", "must be a positive integer")
        placeholder = entry.get("placeholder", False)
        if not isinstance(placeholder, bool):
            raise fail("placeholder", "must be true or false")
        return {
            "compute_endpoint_id": _uuid(endpoint.strip(), "compute_endpoint_id", fail),
            "function_ids": {str(fn): _uuid(str(fid), f"function_ids.{fn}", fail) for fn, fid in function_ids.items()},
            "task_timeout_minutes": timeout,
            "placeholder": placeholder,
        }

    def plan(
        self, site: Site, scan: Scan, results: Results, recon: dict, endpoints: Endpoints, *, nodes: int = 1
    ) -> dict[str, Any]:
        """Each function's keyword arguments; the scan is read where Globus staged it. Across ``nodes`` nodes,
        ``slabs`` holds the arguments of each ``reconstruct_slab`` task and ``reconstruct`` puts their slabs
        together (``slabs``: none on one node)."""
        raw, scratch = endpoints[site.raw_endpoint], endpoints[site.scratch_endpoint]
        staged = str(raw.posix_path(str(scan.relative_path)))
        reconstruct = {
            "scan_path": staged,
            "out_dir": str(scratch.posix_path(str(results.folder))),
            "tiff_dir": str(scratch.posix_path(str(results.tiff))),  # the name from include.paths.Results
            "options": recon,  # the recon conf, unchanged: every site runs the same options
        }
        return {
            "reconstruct": {**reconstruct, "slabs": nodes} if nodes > 1 else reconstruct,
            "slabs": [{**reconstruct, "slab": k, "slabs": nodes} for k in range(nodes)] if nodes > 1 else [],
            "multiscale": {
                "tiff_dir": str(scratch.posix_path(str(results.tiff))),
                "zarr_path": str(scratch.posix_path(str(results.zarr))),
                "raw": staged,
            },
        }

    def private(self, steps: dict[str, Any]) -> dict[str, Any]:
        """Each function writes 2770/660 (its ``private`` argument), each slab task too."""
        slabs = [{**kwargs, "private": True} for kwargs in steps.get("slabs", [])]
        return {**steps, **{step: {**steps[step], "private": True} for step in STEPS}, "slabs": slabs}

    def sidecars(self, site: Site, scan: Scan) -> list[DeletionRequest]:
        """The run-once markers the functions leave beside the results on the site's scratch: regenerable (a
        re-run writes them again), so they go once the scan's long-term raw copy exists."""
        from include.retention import DeletionRequest, retention_map

        location = retention_map()[0][site.scratch_endpoint]
        return [
            DeletionRequest(
                site.scratch_endpoint,
                str(folder.parent / RUN_RESULT.format(folder.name)),
                site.beamline.long_term_endpoint,
                location,
                check_path=site.beamline.source_path(scan),
            )
            for folder in scan.results(site).folders()
        ]


def _uuid(value: str, key: str, fail: Fail) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise fail(key, f"{value!r} is not a UUID") from None


GLOBUS_COMPUTE = GlobusCompute()
