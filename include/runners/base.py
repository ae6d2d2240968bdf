"""What every runner declares on the plan side: the sites.yaml keys it reads, what it plans, what it leaves.

A runner is how a site runs the reconstruction (``globus_compute``: functions at a Compute endpoint; ``sfapi``:
Slurm jobs through the Superfacility API). Its plan side lives in include/runners/<name>.py, its steps side
(the operators of a site) in dags/pipelines/runners/<name>.py, its hook/operator/trigger in the provider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from include.beamlines import Tomography
    from include.endpoints import Endpoints
    from include.errors import ConfigError
    from include.paths import Results, Scan
    from include.retention import DeletionRequest

#: Raises the error of a sites.yaml key: ``fail(key, message)`` names the file, the site and the key.
Fail = Callable[[str, str], "ConfigError"]
#: The two steps every runner plans and runs, in this order.
STEPS = ("reconstruct", "multiscale")


class Site(Protocol):
    """What a runner reads of a site (include.sites.Site, which validates its entry through the runner)."""

    name: str
    source_endpoint: str
    raw_endpoint: str
    scratch_endpoint: str
    results_folder: str
    beamline: Tomography


class Runner:
    """The plan side of a runner (one instance per runner, registered in include/runners/__init__.py)."""

    #: The ``runner`` value of sites.yaml.
    name: ClassVar[str]
    #: How it runs, for the DAG's docs ("Globus Compute").
    label: ClassVar[str]
    #: Who copies the scan from the site's source to its raw endpoint when they differ.
    stages_by: ClassVar[str]
    #: The sites.yaml keys only this runner reads (a site of another runner may not set them).
    keys: ClassVar[frozenset[str]] = frozenset()
    #: What the derived SciCat dataset records as the run's parameters, for the DAG's docs.
    records: ClassVar[str]

    def validate(self, entry: dict[str, Any], fail: Fail) -> dict[str, Any]:
        """The Site fields of this runner's keys in ``entry`` (a sites.yaml entry), checked."""
        return {}

    def plan(
        self, site: Site, scan: Scan, results: Results, recon: dict, endpoints: Endpoints, *, nodes: int = 1
    ) -> dict[str, Any]:
        """The arguments of each step (:data:`STEPS`), and whatever else the steps side reads from the plan.
        ``nodes`` > 1: the reconstruction runs across that many nodes, one slab of the slices each
        (compute_functions/slabs.py), then the slabs are put together before the multiscale step."""
        raise NotImplementedError

    def private(self, steps: dict[str, Any]) -> dict[str, Any]:
        """The steps' arguments of an export-controlled scan's run: what they write is private (2770/660)."""
        raise ValueError(f"runner {self.name} cannot write private results: no export-controlled scan runs on it")

    def sidecars(self, site: Site, scan: Scan) -> list[DeletionRequest]:
        """What a run leaves beside the results that is pruned with them, known before it runs."""
        return []

    def leaves(self, site: Site, scan: Scan, endpoint: str, rel: str) -> bool:
        """Whether ``endpoint:rel`` is something a run of ``scan`` at ``site`` leaves (a sidecar or a log)."""
        return any(r.endpoint == endpoint and r.path == rel for r in self.sidecars(site, scan))
