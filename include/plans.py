"""What one run of a pipeline will do, decided from the conf before anything moves.

A plan is plain JSON (it travels as XCom): the scan, each step's arguments, the copies the run makes or
may leave behind (:class:`~include.manifests.DeletionRequest`, each with the step whose success makes it
exist) and the outputs it publishes. The DAG-building code (dags/pipelines/) wires steps to these fields;
the rules themselves (where results go, what is checked against what) live here, testable without Airflow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Protocol

from include.beamlines import Beamline
from include.endpoints import Endpoints, load_endpoints
from include.paths import EndpointPath, Scan
from include.results import completeness
from include.retention import DeletionRequest, retention_map
from include.sites import HOME_RAW, HOME_SCRATCH, Site
from include.slurm import NERSC_CONFIG_FILE, job_name, load_nersc_config

#: The new-scan pipeline's steps and endpoints (SPEC §3): spot832 → data832 → nersc832.
NEW_FILE = "new_file"
TO_DATA832 = "spot832_to_data832"
TO_NERSC = "data832_to_nersc832"
SCICAT_INGEST = "scicat_ingest"
#: The steps of a configured beamline (include/config/beamlines.yaml) whose success makes a copy exist.
MOVE_TO_NERSC = "move_to_nersc"
PTYCHO_CHECK = "check_ptycho_results"
#: The step of a reconstruction that checks its results on data832_scratch.
RESULTS_CHECK = "check_results"
ARCHIVE_CHECK = "verify_archive"
#: Results of the ptychography pipeline go to <results_endpoint>:<folder>/<PTYCHO_FOLDER>/rec<dataset>/.
PTYCHO_FOLDER = "ptycho"
#: The long-term raw copy (never pruned) and the retention location of results on data832_scratch.
LONG_TERM_RAW = "nersc832"
SCRATCH_LOCATION = "data832_scratch"
#: Paths hsi gets inside its own command line: nothing it would split or interpret.
_HSI_SAFE = re.compile(r"^[A-Za-z0-9_.,+@=/-]+$")


class Listing(Protocol):
    """What checking results needs of a Globus Transfer hook."""

    def stat(self, where: EndpointPath) -> dict[str, Any] | None: ...
    def ls(self, where: EndpointPath) -> list[dict[str, Any]]: ...
    def listdir(self, where: EndpointPath) -> list[dict[str, Any]]: ...


class ResultsError(RuntimeError):
    """Results are missing or incomplete after the step that writes them reported success."""


def output(endpoint: str, path: str, after: str | None = None) -> dict[str, Any]:
    """An output of the run: ``endpoint:path``, published once the step ``after`` (if any) succeeded."""
    return {**EndpointPath(endpoint, path).to_dict(), "after": after}


def new_file_plan(scan: Scan, *, offsite: bool) -> dict[str, Any]:
    """The new-scan pipeline: copies, and which of them may later be pruned (spot832 once data832 has it;
    data832 once the long-term NERSC copy exists). ``offsite``: the scan may leave the beamline."""
    relative = str(scan.relative_path)
    raw = f"raw/{relative}"
    deletions = [DeletionRequest("spot832", raw, "data832", "spot832", after=TO_DATA832)]
    outputs = [output(HOME_RAW, relative, after=TO_DATA832)]
    if offsite:
        deletions.append(DeletionRequest("data832", raw, LONG_TERM_RAW, "data832", after=TO_NERSC))
        outputs.append(output("nersc832", raw, after=TO_NERSC))
    return {
        "pipeline": NEW_FILE,
        "scan": relative,
        "offsite": offsite,
        "skip_steps": [] if offsite else [TO_NERSC, SCICAT_INGEST],
        "notes": [] if offsite else ["the scan stays at the beamline: no nersc832 copy, no SciCat record"],
        # SciCat sourceFolder: the long-term copy (data832 raw is pruned after days), docs/scicat.md.
        "scicat_source_folder": raw_source_folder(scan),
        "deletions": [d.to_dict() for d in deletions],
        "outputs": outputs,
    }


def raw_source_folder(scan: Scan, endpoints: Endpoints | None = None) -> str:
    """The SciCat ``sourceFolder`` of an 8.3.2 scan: its folder's long-term copy, nersc832 ``raw/<folder>``."""
    return (endpoints or load_endpoints())[LONG_TERM_RAW].globus_path(f"raw/{scan.folder}")


def results_source_folder(site: Site, scan: Scan, endpoints: Endpoints | None = None) -> str:
    """The SciCat ``sourceFolder`` of a site's results: their archive copy (long-term) when the site has one,
    else their copy on data832_scratch (the only one that stays)."""
    endpoint = site.archive_endpoint or HOME_SCRATCH
    return (endpoints or load_endpoints())[endpoint].globus_path(str(scan.results(site).folder))


def site_plan(site: Site, scan: Scan, recon: dict[str, Any], endpoints: Endpoints | None = None) -> dict[str, Any]:
    """A reconstruction at ``site``: the staged scan, the results' paths at every endpoint, each step's
    arguments for the site's runner, the copies it leaves (recorded whatever the steps did, so a failed
    run orphans nothing) and the outputs on data832_scratch.

    Retention by construction (include/config/retention.yaml): results at the site are checked against the
    site's archive (long-term, at NERSC) when it has one, else against data832_scratch (which outlives
    them); results on data832_scratch go against the NERSC archive copy, or, for a site opted in to
    ``regenerate_from_raw``, once the long-term raw copy (nersc832 ``raw/<scan>``) exists."""
    endpoints = endpoints or load_endpoints()
    relative = str(scan.relative_path)
    results = scan.results(site)
    raw, scratch = endpoints[site.raw_endpoint], endpoints[site.scratch_endpoint]
    staged = str(raw.posix_path(relative))
    deletions: list[DeletionRequest] = []
    if site.stages_raw:
        deletions.append(DeletionRequest(site.raw_endpoint, relative, site.source_endpoint, site.retention_location))
    regenerable = site.name in retention_map()[1]
    for folder in results.folders():
        if site.copies_back:
            check = site.archive_endpoint or HOME_SCRATCH
            deletions.append(DeletionRequest(site.scratch_endpoint, str(folder), check, site.retention_location))
        if site.archive_endpoint:
            deletions.append(DeletionRequest(HOME_SCRATCH, str(folder), site.archive_endpoint, SCRATCH_LOCATION))
        elif regenerable:
            raw_copy = f"raw/{relative}"
            deletions.append(
                DeletionRequest(HOME_SCRATCH, str(folder), LONG_TERM_RAW, SCRATCH_LOCATION, check_path=raw_copy)
            )
    deletions += sidecar_requests(site, scan)
    plan: dict[str, Any] = {
        "pipeline": site.name,
        "runner": site.runner,
        "scan": relative,
        "results_folder": str(results.folder),
        "tiff_path": str(results.tiff),
        "zarr_path": str(results.zarr),
        "preview_path": str(results.preview),
        "scicat_source_folder": results_source_folder(site, scan, endpoints),
        "scicat_raw_source_folder": raw_source_folder(scan, endpoints),
        "recon": recon,
        "deletions": [d.to_dict() for d in deletions],
        "outputs": [output(HOME_SCRATCH, str(folder)) for folder in results.folders()],
        "checks": {
            RESULTS_CHECK: [
                tiff_check(HOME_SCRATCH, str(results.tiff), count_from="reconstruct"),
                *(complete_check(HOME_SCRATCH, str(folder)) for folder in results.folders()),
            ]
        },
    }
    tiff_dir, zarr_dir = str(scratch.posix_path(str(results.tiff))), str(scratch.posix_path(str(results.zarr)))
    if site.runner == "globus_compute":
        plan["reconstruct"] = {
            "scan_path": staged,
            "out_dir": str(scratch.posix_path(str(results.folder))),
            "options": recon,  # the recon conf, unchanged: every site runs the same options
        }
        plan["multiscale"] = {"tiff_dir": tiff_dir, "zarr_path": zarr_dir, "raw": staged}
    else:  # sfapi: the first job stages the scan itself (source → raw), then both run the container
        names = f"{scan.folder}_{scan.dataset}"
        plan["reconstruct_job_name"] = f"tomo_recon_{names}"
        plan["reconstruct_job_values"] = {
            "scan_source": str(endpoints[site.source_endpoint].posix_path(relative)),
            "scan": staged,
            "out_dir": str(scratch.posix_path(str(results.folder))),
            "recon_args": ["--options", json.dumps(recon, sort_keys=True)],
        }
        plan["multiscale_job_name"] = f"tomo_multiscale_{names}"
        plan["multiscale_job_values"] = {"tiff_dir": tiff_dir, "zarr": zarr_dir, "scan": staged}
        logs = slurm_logs()
        plan["job_logs"] = {
            **logs.to_dict(),
            "jobs": [job_name(plan[f"{step}_job_name"]) for step in ("reconstruct", "multiscale")],
            "location": retention_map()[0][logs.endpoint],
            "check_path": f"raw/{relative}",
        }
    return plan


# -- what a run leaves beside its results: pruned with them ------------------------------------------
#: The run-once marker of a results folder (compute_functions/results_manifest.py ``run_once``).
RUN_RESULT = ".{}.run-result"
#: A Slurm log of a job (include/slurm.py ``log_patterns``: ``%x_%j.out`` and ``.err``).
_SLURM_LOG = r"_\d+\.(?:out|err)$"


def slurm_logs(profile: str | None = None) -> EndpointPath:
    """Where Slurm writes the jobs' logs (include/config/nersc.yaml ``logs``), as an endpoint path."""
    from include.endpoints import default_profile
    from include.profiles import profile_settings

    settings = profile_settings(
        NERSC_CONFIG_FILE, profile or default_profile(), {"machine", "directives", "logs", "container"}
    )
    return EndpointPath(settings["logs"]["endpoint"], settings["logs"]["path"])


def sidecar_requests(site: Site, scan: Scan) -> list[DeletionRequest]:
    """The run-once markers a Compute site's reconstruction leaves beside its results on the site's scratch:
    regenerable (a re-run writes them again), so they go once the scan's long-term raw copy exists."""
    if site.runner != "globus_compute":
        return []
    location = retention_map()[0][site.scratch_endpoint]
    return [
        DeletionRequest(
            site.scratch_endpoint,
            str(folder.parent / RUN_RESULT.format(folder.name)),
            LONG_TERM_RAW,
            location,
            check_path=f"raw/{scan.relative_path}",
        )
        for folder in scan.results(site).folders()
    ]


def is_sidecar(endpoint: str, rel: str, scan: Scan, sites: Sequence[Site]) -> bool:
    """Whether ``endpoint:rel`` is a run-once marker or a Slurm log that a run of ``scan`` at one of ``sites``
    leaves (what :func:`sidecar_requests` and :func:`job_log_requests` schedule)."""
    rel = str(rel)
    for site in sites:
        if any(rel == r.path and endpoint == r.endpoint for r in sidecar_requests(site, scan)):
            return True
        if site.runner == "sfapi":
            logs = slurm_logs()
            names = [job_name(f"{kind}_{scan.folder}_{scan.dataset}") for kind in ("tomo_recon", "tomo_multiscale")]
            parent, _, name = rel.rpartition("/")
            if endpoint == logs.endpoint and parent == str(logs.path) and _log_of(names).match(name):
                return True
    return False


def _log_of(jobs: Sequence[str]) -> re.Pattern[str]:
    return re.compile("^(?:" + "|".join(re.escape(job) for job in jobs) + ")" + _SLURM_LOG)


def job_log_requests(hook: Listing, plan: dict[str, Any]) -> list[DeletionRequest]:
    """The Slurm logs of the plan's jobs that exist now (every try's, failed jobs' too: one listing of the log
    folder), each pruned with the results once the scan's long-term raw copy exists."""
    logs = plan.get("job_logs")
    if not logs:
        return []
    folder = EndpointPath(logs["endpoint"], logs["path"])
    try:
        entries = hook.listdir(folder)
    except FileNotFoundError:
        return []
    pattern = _log_of(logs["jobs"])
    return [
        DeletionRequest(
            folder.endpoint,
            str(folder.path / entry["name"]),
            LONG_TERM_RAW,
            logs["location"],
            check_path=logs["check_path"],
        )
        for entry in sorted(entries, key=lambda e: e["name"])
        if entry.get("type") == "file" and pattern.match(entry["name"])
    ]


def beamline_plan(
    beamline: Beamline, scans: Scan | Sequence[Scan], *, hpss_mode: str, endpoints: Endpoints | None = None
) -> dict[str, Any]:
    """A configured beamline's new-scan pipeline for one scan or several (one run, upstream's list of files):
    one move of every file to NERSC CFS, one SciCat step (a raw dataset per file), one Slurm job per pipeline
    that works through the files in order; a beamline's copy may go once the NERSC copy exists, a NERSC copy
    once its tape copy is verified. ``hpss_mode``: how the archive job copies (include/config/runtime.yaml).

    ``scans`` lists the files (``scan`` is the first); the jobs' values hold one entry per file, in that
    order (``scans``/``out_dirs``, ``sources``/``destinations``). The files of a run share one folder when
    the beamline catalogues them (``scicat_source_folder``: that folder's NERSC copy, the record's
    ``sourceFolder``)."""

    scans = [scans] if isinstance(scans, Scan) else list(scans)
    if not scans:
        raise ValueError("no scan to move: file_path is an empty list")
    endpoints = endpoints or load_endpoints()
    relatives = [str(scan.relative_path) for scan in scans]
    repeated = sorted({r for r in relatives if relatives.count(r) > 1})
    if repeated:
        raise ValueError(f"file_path lists {', '.join(repeated)} more than once")
    nersc = endpoints[beamline.nersc_endpoint]
    ptycho, archive = beamline.pipeline("ptycho"), beamline.pipeline("hpss_archive")
    plan: dict[str, Any] = {"pipeline": beamline.key, "scan": relatives[0], "scans": relatives, "checks": {}}
    folders = sorted({scan.folder for scan in scans})
    if beamline.pipeline("scicat") is not None:
        if len(folders) > 1:
            raise ValueError(f"file_path lists files of several folders ({', '.join(folders)}); one run, one folder")
        plan["scicat_source_folder"] = nersc.globus_path(folders[0])
    first = scans[0]
    more = f"_and_{len(scans) - 1}_more" if len(scans) > 1 else ""
    if ptycho is not None:
        datasets = [f"{scan.folder}/rec{scan.dataset}" for scan in scans]
        shared = sorted({d for d in datasets if datasets.count(d) > 1})
        if shared:  # a.edf and a.h5 of one folder would write the same ptycho results
            raise ValueError(
                f"file_path lists several files whose ptychography results are the same folder "
                f"{', '.join(shared)}; give one file per dataset in a run"
            )
        plan["ptycho_job_name"] = f"ptycho_{first.folder}_{first.dataset}{more}"
        plan["ptycho_job_values"] = {
            "scans": [],
            "out_dirs": [],
            "launcher": load_nersc_config().launcher(
                (str(nersc.posix_root), str(endpoints[ptycho["results_endpoint"]].posix_root)), gpu=True
            ),
        }
    if archive is not None:
        plan["hpss_archive_job_name"] = f"hpss_archive_{first.folder}_{first.dataset}{more}"
        plan["hpss_archive_job_values"] = {"sources": [], "destinations": [], "mode": hpss_mode}
    deletions: list[DeletionRequest] = []
    outputs: list[dict[str, Any]] = []
    for scan, relative in zip(scans, relatives, strict=True):
        deletions.append(
            DeletionRequest(
                beamline.source_endpoint,
                relative,
                beamline.nersc_endpoint,
                beamline.source_retention,
                after=MOVE_TO_NERSC,
            )
        )
        outputs.append(output(beamline.nersc_endpoint, relative, after=MOVE_TO_NERSC))
        if ptycho is not None:
            results_endpoint = endpoints[ptycho["results_endpoint"]]
            results_path = f"{scan.folder}/{PTYCHO_FOLDER}/rec{scan.dataset}"
            plan["ptycho_job_values"]["scans"].append(str(nersc.posix_path(relative)))
            plan["ptycho_job_values"]["out_dirs"].append(str(results_endpoint.posix_path(results_path)))
            plan["checks"].setdefault(PTYCHO_CHECK, []).append(tiff_check(ptycho["results_endpoint"], results_path))
            outputs.append(output(ptycho["results_endpoint"], results_path, after=PTYCHO_CHECK))
        if archive is not None:
            source = nersc.posix_path(relative)
            destination = endpoints[archive["archive_endpoint"]].posix_path(relative)
            if hpss_mode == "hsi":
                for path in (source, destination):
                    if not _HSI_SAFE.match(str(path)):
                        raise ValueError(f"{path}: characters hsi would split or interpret; archive it by hand")
            plan["hpss_archive_job_values"]["sources"].append(str(source))
            plan["hpss_archive_job_values"]["destinations"].append(str(destination))
            plan["checks"].setdefault(ARCHIVE_CHECK, []).append(
                {
                    "kind": "copy",
                    **EndpointPath(archive["archive_endpoint"], relative).to_dict(),
                    "of": EndpointPath(beamline.nersc_endpoint, relative).to_dict(),
                }
            )
            deletions.append(
                DeletionRequest(
                    beamline.nersc_endpoint,
                    relative,
                    archive["archive_endpoint"],
                    archive["retention_location"],
                    after=ARCHIVE_CHECK,
                )
            )
            outputs.append(output(archive["archive_endpoint"], relative, after=ARCHIVE_CHECK))
    plan["deletions"] = [d.to_dict() for d in deletions]
    plan["outputs"] = outputs
    return plan


def tiff_check(endpoint: str, path: str, count_from: str | None = None) -> dict[str, Any]:
    """A check that ``endpoint:path`` holds a TIFF stack: as many TIFFs as the step ``count_from`` reported
    writing (its result's ``n_slices``), or at least one when no step reports a count."""
    return {"kind": "tiff_stack", **EndpointPath(endpoint, path).to_dict(), "count_from": count_from}


def complete_check(endpoint: str, path: str) -> dict[str, Any]:
    """A check that ``endpoint:path`` holds exactly the files its results manifest counts (include/results.py):
    no file missing, none left over from an earlier run."""
    return {"kind": "complete", **EndpointPath(endpoint, path).to_dict()}


def verify_results(hook: Listing, checks: list[dict[str, Any]], counts: dict[str, int | None]) -> list[str]:
    """Run the plan's checks through ``hook``; returns one line per check, raises :class:`ResultsError`.

    ``counts``: the TIFF count each step reported (``count_from`` of a TIFF check names the step).
    """
    lines = []
    for check in checks:
        where = EndpointPath(check["endpoint"], check["path"])
        found = hook.stat(where)
        if found is None:
            raise ResultsError(f"{where} is missing after the run reported success")
        if check["kind"] == "tiff_stack":
            tiffs = [e for e in hook.ls(where) if e.get("name", "").endswith(".tiff")]
            expected = counts.get(check["count_from"]) if check.get("count_from") else None
            if expected is not None and len(tiffs) != expected:
                raise ResultsError(f"{where} holds {len(tiffs)} TIFFs, the reconstruction wrote {expected}")
            if not tiffs:
                raise ResultsError(f"{where} holds no TIFF after the run reported success")
            lines.append(f"{where}: {len(tiffs)} TIFFs")
        elif check["kind"] == "complete":
            found = completeness(hook, where)
            if not found.complete:
                raise ResultsError(f"{where} is incomplete after the run reported success: {found.reason}")
            lines.append(f"{where}: {found.reason}")
        elif check["kind"] == "copy":
            original = EndpointPath.from_dict(check["of"])
            want = hook.stat(original)
            if want is None or found.get("size") != want.get("size"):
                raise ResultsError(f"{where} has {found.get('size')} bytes, {original} {want and want.get('size')}")
            lines.append(f"{where}: {found['size']} bytes, same as {original}")
        else:
            lines.append(f"{where}: present")
    return lines


def _exists(item: dict[str, Any], succeeded: set[str]) -> bool:
    """Whether a planned copy or output exists: it belongs to no step, or its step (``after``) succeeded."""
    return item.get("after") is None or item["after"] in succeeded


def due_requests(plan: dict[str, Any], succeeded: set[str]) -> list[DeletionRequest]:
    """The plan's deletion requests whose copy exists."""
    return [DeletionRequest.from_dict(d) for d in plan.get("deletions", []) if _exists(d, succeeded)]


def due_outputs(plan: dict[str, Any], succeeded: set[str]) -> list[EndpointPath]:
    """The plan's outputs that exist."""
    return [EndpointPath.from_dict(o) for o in plan.get("outputs", []) if _exists(o, succeeded)]
