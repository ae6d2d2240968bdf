"""The ``sfapi`` runner, plan side: two Slurm jobs (include/jobs/tomo_recon.sh.j2, tomo_multiscale.sh.j2) through
the Superfacility API; #SBATCH defaults in include/config/nersc.yaml.

No sites.yaml key of its own. The first job stages the scan itself (source → raw) and reconstructs, across
``num_nodes`` nodes when asked (one srun task per node, each a slab); the jobs' Slurm logs are pruned with the
results. SciCat records the options asked (the ``recon`` conf). Steps side:
dags/pipelines/runners/sfapi.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from include.runners.base import STEPS, Runner, Site

if TYPE_CHECKING:
    from include.endpoints import Endpoints
    from include.paths import EndpointPath, Results, Scan

#: Each step's job template and the prefix of its job name.
JOBS = {"reconstruct": ("tomo_recon.sh.j2", "tomo_recon"), "multiscale": ("tomo_multiscale.sh.j2", "tomo_multiscale")}
#: A Slurm log of a job (include/slurm.py ``log_patterns``: ``%x_%j.out`` and ``.err``).
_SLURM_LOG = r"_\d+\.(?:out|err)$"


class Sfapi(Runner):
    name = "sfapi"
    label = "Slurm jobs on Perlmutter through SFAPI"
    stages_by = "the first job"
    records = "the options asked (the recon conf)"

    def plan(
        self, site: Site, scan: Scan, results: Results, recon: dict, endpoints: Endpoints, *, nodes: int = 1
    ) -> dict[str, Any]:
        """Each job's template values (by step), its ``#SBATCH`` overrides (``<step>_directives``: the
        reconstruction's ``nodes``), their names (``job_names``) and where their logs go (pruned with the
        results)."""
        from include.retention import retention_map
        from include.slurm import job_name

        relative = str(scan.relative_path)
        raw, scratch = endpoints[site.raw_endpoint], endpoints[site.scratch_endpoint]
        staged = str(raw.posix_path(relative))
        values = {
            "reconstruct": {
                "scan_source": str(endpoints[site.source_endpoint].posix_path(relative)),
                "scan": staged,
                "out_dir": str(scratch.posix_path(str(results.folder))),
                "tiff_dir": str(scratch.posix_path(str(results.tiff))),
                "nodes": nodes,  # > 1: one srun task per node, each a slab (include/jobs/tomo_recon.sh.j2)
                "recon_args": ["--options", json.dumps(recon, sort_keys=True)],
            },
            "multiscale": {
                "tiff_dir": str(scratch.posix_path(str(results.tiff))),
                "zarr": str(scratch.posix_path(str(results.zarr))),
                "scan": staged,
            },
        }
        names = {step: _job_name(step, scan) for step in STEPS}
        plan: dict[str, Any] = {**values, "job_names": names}
        plan["reconstruct_directives"] = {"nodes": nodes, "ntasks-per-node": 1} if nodes > 1 else {}
        plan["multiscale_directives"] = {}
        logs = slurm_logs()
        plan["job_logs"] = {
            **logs.to_dict(),
            "jobs": [job_name(names[step]) for step in STEPS],
            "location": retention_map()[0][logs.endpoint],
            "check_endpoint": site.beamline.long_term_endpoint,
            "check_path": site.beamline.source_path(scan),
        }
        return plan

    def leaves(self, site: Site, scan: Scan, endpoint: str, rel: str) -> bool:
        """A Slurm log of one of the scan's jobs."""
        from include.slurm import job_name

        logs = slurm_logs()
        parent, _, name = rel.rpartition("/")
        names = [job_name(_job_name(step, scan)) for step in STEPS]
        return endpoint == logs.endpoint and parent == str(logs.path) and log_of(names).match(name) is not None


def _job_name(step: str, scan: Scan) -> str:
    return f"{JOBS[step][1]}_{scan.folder}_{scan.dataset}"


def slurm_logs(profile: str | None = None) -> EndpointPath:
    """Where Slurm writes the jobs' logs (include/config/nersc.yaml ``logs``), as an endpoint path."""
    from include.endpoints import default_profile
    from include.paths import EndpointPath
    from include.profiles import load_profile
    from include.slurm import NERSC_CONFIG_FILE

    logs = load_profile(NERSC_CONFIG_FILE, profile or default_profile(), {}).settings["logs"]
    return EndpointPath(logs["endpoint"], logs["path"])


def log_of(jobs: Sequence[str]) -> re.Pattern[str]:
    """The names of the Slurm logs of ``jobs``."""
    return re.compile("^(?:" + "|".join(re.escape(job) for job in jobs) + ")" + _SLURM_LOG)


SFAPI = Sfapi()
