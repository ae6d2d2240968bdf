"""What one run of a pipeline will do, decided from the conf before anything moves.

A plan is a :class:`Plan` (:class:`NewFilePlan`, :class:`SitePlan`, :class:`BeamlinePlan`): the scan, each
step's arguments, the copies the run makes or may leave behind (:class:`~include.retention.DeletionRequest`,
each with the step whose success makes it exist), the checks of what the steps wrote and the outputs it
publishes. It crosses XCom as one serialised form (:meth:`Plan.to_dict`: the ``plan`` task pushes each field as
``<pipeline>.<field>``) and comes back typed (:meth:`Plan.from_dict`). The DAG-building code (dags/pipelines/)
wires steps to these fields; the rules themselves (where results go, what is checked against what) live here,
testable without Airflow.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar, Protocol

from include.beamlines import Beamline, Tomography, default_tomography
from include.endpoints import Endpoints, load_endpoints
from include.paths import EndpointPath, Scan
from include.results import completeness
from include.retention import DeletionRequest, retention_map
from include.sites import Site

#: The new-scan pipeline's steps (SPEC §3): spot832 → data832 → nersc832 for 8.3.2.
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
#: A forced re-run over complete results writes ``<folder>/<results_folder>/rerun-<run>/`` (:func:`rerun_folder`).
RERUN_PREFIX = "rerun-"
#: Paths hsi gets inside its own command line: nothing it would split or interpret.
_HSI_SAFE = re.compile(r"^[A-Za-z0-9_.,+@=/-]+$")


class Listing(Protocol):
    """What checking results needs of a Globus Transfer hook."""

    def stat(self, where: EndpointPath) -> dict[str, Any] | None: ...
    def ls(self, where: EndpointPath) -> list[dict[str, Any]]: ...
    def listdir(self, where: EndpointPath) -> list[dict[str, Any]]: ...


class ResultsError(RuntimeError):
    """Results are missing or incomplete after the step that writes them reported success."""


@dataclass(frozen=True)
class Output:
    """An output of the run: ``where``, published once the step ``after`` (if any) succeeded."""

    where: EndpointPath
    after: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.where.to_dict(), "after": self.after}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Output:
        return cls(EndpointPath.from_dict(data), data.get("after"))


def output(endpoint: str, path: str, after: str | None = None) -> Output:
    """An output of the run: ``endpoint:path``, published once the step ``after`` (if any) succeeded."""
    return Output(EndpointPath(endpoint, path), after)


@dataclass(frozen=True)
class Check:
    """A check through Globus of what a step wrote at ``where``: ``tiff_stack`` (TIFFs, as many as the step
    ``count_from`` reported writing), ``complete`` (exactly the files its results manifest counts) or ``copy``
    (the same size as ``of``)."""

    kind: str
    where: EndpointPath
    count_from: str | None = None
    of: EndpointPath | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, **self.where.to_dict()}
        if self.kind == "tiff_stack":
            data["count_from"] = self.count_from
        if self.of is not None:
            data["of"] = self.of.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Check:
        of = data.get("of")
        where, of = EndpointPath.from_dict(data), EndpointPath.from_dict(of) if of else None
        return cls(data["kind"], where, data.get("count_from"), of)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What one run of pipeline ``pipeline`` will do (the fields every pipeline has; each kind adds its own)."""

    pipeline: str
    scan: str
    deletions: tuple[DeletionRequest, ...] = ()
    outputs: tuple[Output, ...] = ()
    #: The checks of each checking step, by its task id.
    checks: Mapping[str, tuple[Check, ...]] = field(default_factory=dict)
    #: Steps ``plan`` skips for this run, and why (lines for the log).
    skip_steps: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: Each step's arguments by step (function keyword arguments, job values), and what else the steps read
    #: (``job_names``, ``job_logs``): fields of the serialised form, like the others.
    steps: Mapping[str, Any] = field(default_factory=dict)
    #: The fields every plan has: what :meth:`from_dict` reads back.
    COMMON: ClassVar[tuple[str, ...]] = ("pipeline", "scan", "deletions", "outputs", "checks", "skip_steps", "notes")

    def to_dict(self) -> dict[str, Any]:
        """The one serialised form (JSON values): every field, ``steps`` spread among them."""
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "steps":
                data.update(value)
            elif f.name in ("deletions", "outputs"):
                data[f.name] = [item.to_dict() for item in value]
            elif f.name == "checks":
                data[f.name] = {step: [c.to_dict() for c in checks] for step, checks in value.items()}
            else:
                data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """The plan back from its serialised form: the common fields typed, the others in ``steps``."""
        return Plan(
            pipeline=data["pipeline"],
            scan=data["scan"],
            deletions=tuple(DeletionRequest.from_dict(d) for d in data.get("deletions") or ()),
            outputs=tuple(Output.from_dict(o) for o in data.get("outputs") or ()),
            checks={step: tuple(map(Check.from_dict, checks)) for step, checks in (data.get("checks") or {}).items()},
            skip_steps=tuple(data.get("skip_steps") or ()),
            notes=tuple(data.get("notes") or ()),
            steps={key: value for key, value in data.items() if key not in cls.COMMON},
        )


@dataclass(frozen=True, kw_only=True)
class NewFilePlan(Plan):
    """A new scan of a tomography beamline: source → storage → long-term copies, SciCat."""

    offsite: bool
    #: The scan on the source and the long-term copy (``<raw_folder>/<folder>/<file>``).
    source_path: str
    scicat_source_folder: str


@dataclass(frozen=True, kw_only=True)
class SitePlan(Plan):
    """A reconstruction at a site; ``steps``: its runner's arguments of each step (include/runners/)."""

    runner: str
    results_folder: str
    tiff_path: str
    zarr_path: str
    preview_path: str
    scicat_source_folder: str
    scicat_raw_source_folder: str
    recon: Mapping[str, Any]
    #: Nodes the reconstruction runs on (upstream's ``num_nodes``: dags/pipelines/params.py).
    num_nodes: int = 1


@dataclass(frozen=True, kw_only=True)
class BeamlinePlan(Plan):
    """A moving beamline's run of one or several files; ``steps``: each job's values and ``job_names``."""

    scans: tuple[str, ...]
    #: Each file's SciCat ``sourceFolder`` (its folder's NERSC copy), in ``scans``' order; empty without SciCat.
    scicat_source_folders: tuple[str, ...] = ()


def new_file_plan(scan: Scan, *, offsite: bool, beamline: Tomography | None = None) -> NewFilePlan:
    """The new-scan pipeline of a tomography ``beamline`` (default: 8.3.2's): source → storage → long-term
    copies, and which of them may later be pruned (the source's once the storage has it; the storage's once
    the long-term copy exists). ``offsite``: the scan may leave the beamline."""
    beamline = beamline or default_tomography()
    relative, raw = str(scan.relative_path), beamline.source_path(scan)
    deletions = [
        DeletionRequest(
            beamline.source_endpoint, raw, beamline.storage_endpoint, beamline.source_retention, after=TO_DATA832
        )
    ]
    outputs = [output(beamline.raw_endpoint, relative, after=TO_DATA832)]
    if offsite:
        deletions.append(
            DeletionRequest(
                beamline.storage_endpoint, raw, beamline.long_term_endpoint, beamline.raw_retention, after=TO_NERSC
            )
        )
        outputs.append(output(beamline.long_term_endpoint, raw, after=TO_NERSC))
    return NewFilePlan(
        pipeline=NEW_FILE,
        scan=relative,
        source_path=raw,
        offsite=offsite,
        skip_steps=() if offsite else (TO_NERSC, SCICAT_INGEST),
        notes=() if offsite else ("the scan stays at the beamline: no long-term copy, no SciCat record",),
        # SciCat sourceFolder: upstream's (the folder as spot832 names it), docs/scicat.md; the raw ingest reads
        # the scan on the storage, else (a catch-up after it was pruned) its long-term copy at source_path.
        scicat_source_folder=raw_source_folder(beamline, scan),
        deletions=tuple(deletions),
        outputs=tuple(outputs),
    )


def raw_source_folder(beamline: Tomography, scan: Scan, endpoints: Endpoints | None = None) -> str:
    """The SciCat ``sourceFolder`` of a scan: its folder as the beamline's callers name it,
    ``<source_folder_root>/<folder>`` (8.3.2: ``/global/raw/<folder>``, upstream's), or without a
    ``scicat.source_folder_root`` its folder's long-term copy (the long-term endpoint's ``<raw_folder>/<folder>``).
    The raw ingest records it and the derived one looks its raw dataset up by it (both from the plan)."""
    if beamline.source_folder_root:
        return str(PurePosixPath(beamline.source_folder_root, scan.folder))
    return (endpoints or load_endpoints())[beamline.long_term_endpoint].globus_path(beamline.raw_folder_of(scan))


def results_source_folder(site: Site, scan: Scan, endpoints: Endpoints | None = None) -> str:
    """The SciCat ``sourceFolder`` of a site's results: their archive copy (long-term) when the site has one,
    else their copy at home (the only one that stays)."""
    endpoint = site.archive_endpoint or site.beamline.scratch_endpoint
    return (endpoints or load_endpoints())[endpoint].globus_path(str(scan.results(site).folder))


def rerun_folder(run_id: str) -> str:
    """The folder of a forced re-run's results, ``rerun-<run id>`` (sanitised, with a hash of the exact id): the
    same for every try and Clear of one DAG run, another for each new run."""
    import hashlib

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", run_id)[:60]
    return f"{RERUN_PREFIX}{safe}-{hashlib.sha256(run_id.encode()).hexdigest()[:6]}"


def rerun_site(site: Site, rerun: str | None) -> Site:
    """``site`` writing its results into the re-run folder ``rerun`` under its own (itself when ``rerun`` is None)."""
    if not rerun:
        return site
    return dataclasses.replace(site, results_folder=str(PurePosixPath(site.results_folder or ".", rerun)))


def _unversioned(rel: PurePosixPath) -> PurePosixPath:
    """``rel`` without its re-run folder (below the scan's folder): what the run would have written unforced."""
    return PurePosixPath(*rel.parts[:1], *(p for p in rel.parts[1:] if not p.startswith(RERUN_PREFIX)))


def site_plan(
    site: Site,
    scan: Scan,
    recon: dict[str, Any],
    endpoints: Endpoints | None = None,
    *,
    rerun: str | None = None,
    nodes: int = 1,
) -> SitePlan:
    """A reconstruction at ``site``: the results' paths at every endpoint, each step's arguments for the site's
    runner (include/runners/), the copies it leaves (recorded whatever the steps did, so a failed run orphans
    nothing) and the outputs at home (the beamline's scratch endpoint).

    Retention by construction (include/config/retention.yaml): results at the site are checked against the
    site's archive (long-term, at NERSC) when it has one, else against home (which outlives them); results at
    home go against the archive copy, or, for a site opted in to ``regenerate_from_raw``, once the long-term
    raw copy (nersc832 ``raw/<scan>``) exists. ``rerun``: a forced re-run's folder (:func:`rerun_folder`): every
    result path, marker and copy is under it, beside the complete results it leaves as they are. ``nodes``: the
    reconstruction runs across that many nodes (upstream's ``num_nodes``), each writing a slab beside the TIFF
    folder until they are put together; the slabs a failed run leaves are pruned with the results."""
    endpoints = endpoints or load_endpoints()
    site = rerun_site(site, rerun)
    beamline, relative = site.beamline, str(scan.relative_path)
    home = beamline.scratch_endpoint
    results = scan.results(site)
    deletions: list[DeletionRequest] = []
    if site.stages_raw:
        deletions.append(DeletionRequest(site.raw_endpoint, relative, site.source_endpoint, site.retention_location))
    regenerable = site.name in retention_map()[1]
    for folder in results.folders():
        if site.copies_back:
            check = site.archive_endpoint or home
            deletions.append(DeletionRequest(site.scratch_endpoint, str(folder), check, site.retention_location))
        if site.archive_endpoint:
            deletions.append(DeletionRequest(home, str(folder), site.archive_endpoint, beamline.scratch_retention))
        elif regenerable:
            deletions.append(
                DeletionRequest(
                    home,
                    str(folder),
                    beamline.long_term_endpoint,
                    beamline.scratch_retention,
                    check_path=beamline.source_path(scan),
                )
            )
    deletions += site.run.sidecars(site, scan)
    if nodes > 1:
        deletions.append(slabs_sidecar(site, scan, nodes))
    return SitePlan(
        pipeline=site.name,
        runner=site.runner,
        scan=relative,
        results_folder=str(results.folder),
        tiff_path=str(results.tiff),
        zarr_path=str(results.zarr),
        preview_path=str(results.preview),
        scicat_source_folder=results_source_folder(site, scan, endpoints),
        scicat_raw_source_folder=raw_source_folder(beamline, scan, endpoints),
        recon=recon,
        deletions=tuple(deletions),
        outputs=tuple(output(home, str(folder)) for folder in results.folders()),
        checks={
            RESULTS_CHECK: (
                tiff_check(home, str(results.tiff), count_from="reconstruct"),
                *(complete_check(home, str(folder)) for folder in results.folders()),
            )
        },
        steps=site.run.plan(site, scan, results, recon, endpoints, nodes=nodes),
        num_nodes=nodes,
    )


def slabs_sidecar(site: Site, scan: Scan, nodes: int) -> DeletionRequest:
    """The slabs of a reconstruction across ``nodes`` nodes, ``.rec<dataset>.slabs-<n>/`` beside its TIFF folder
    on the site's scratch (compute_functions/slabs.py; gone once put together): what a failed run leaves there
    goes once the long-term raw copy to regenerate from exists."""
    tiff = scan.results(site).tiff
    return DeletionRequest(
        site.scratch_endpoint,
        str(tiff.with_name(f".{tiff.name}.slabs-{nodes}")),
        site.beamline.long_term_endpoint,
        retention_map()[0][site.scratch_endpoint],
        check_path=site.beamline.source_path(scan),
    )


# -- what a run leaves beside its results: pruned with them ------------------------------------------
def is_sidecar(endpoint: str, rel: str, scan: Scan, sites: Sequence[Site]) -> bool:
    """Whether ``endpoint:rel`` is something a run of ``scan`` at one of ``sites`` leaves beside its results (a
    run-once marker, a Slurm log: what each site's runner schedules with them)."""
    return any(site.run.leaves(site, scan, endpoint, str(rel)) for site in sites)


def regeneration_problem(endpoint: str, rel: PurePosixPath, check_endpoint: str, check_path: str) -> str | None:
    """Why ``endpoint:rel`` may not be pruned once ``check_endpoint:check_path`` exists (None: it may).

    Only against a scan's long-term raw copy (a tomography beamline's ``long_term`` endpoint,
    ``<raw_folder>/<folder>/<file>``), and only for what a run of that scan regenerates: its results at home of
    a site opted in to ``regenerate_from_raw`` (retention.yaml), or what its runs leave beside the results
    (run-once markers, Slurm logs: :func:`is_sidecar`)."""
    from include.beamlines import load_beamlines
    from include.paths import parse_scan
    from include.sites import load_sites

    clean = PurePosixPath(check_path)
    beamlines = [b for b in load_beamlines().tomography.values() if b.long_term_endpoint == check_endpoint]
    beamline = next((b for b in beamlines if clean.parent.parent == PurePosixPath(b.raw_folder)), None)
    if beamline is None:
        known = ", ".join(
            f"{b.long_term_endpoint}:{b.raw_folder}/<folder>/<file>" for b in load_beamlines().tomography.values()
        )
        return f"a check_path is only the scan's long-term raw copy, {known}"
    try:
        scan = parse_scan(f"{clean.parent.name}/{clean.name}")
    except ValueError as exc:
        return f"the check path is not a scan ({exc})"
    regenerable = retention_map()[1]
    rel = _unversioned(PurePosixPath(rel))  # a forced re-run's results and markers: as the run's own
    sites = load_sites().enabled(beamline.key)
    home = beamline.scratch_endpoint
    for site in sites:
        if endpoint == home and site.name in regenerable and rel in scan.results(site).folders():
            return None
    if is_sidecar(endpoint, str(rel), scan, sites):
        return None
    return (
        f"not the results on {home} of {scan} of a site opted in to regenerate_from_raw "
        f"({', '.join(sorted(regenerable)) or 'none'}; retention.yaml), nor a marker or log of its runs"
    )


def job_log_requests(hook: Listing, plan: Plan) -> list[DeletionRequest]:
    """The Slurm logs of the plan's jobs that exist now (every try's, failed jobs' too: one listing of the log
    folder), each pruned with the results once the scan's long-term raw copy exists."""
    from include.runners.sfapi import log_of

    logs = plan.steps.get("job_logs")
    if not logs:
        return []
    folder = EndpointPath(logs["endpoint"], logs["path"])
    try:
        entries = hook.listdir(folder)
    except FileNotFoundError:
        return []
    pattern = log_of(logs["jobs"])
    return [
        DeletionRequest(
            folder.endpoint,
            str(folder.path / entry["name"]),
            logs["check_endpoint"],
            logs["location"],
            check_path=logs["check_path"],
        )
        for entry in sorted(entries, key=lambda e: e["name"])
        if entry.get("type") == "file" and pattern.match(entry["name"])
    ]


def beamline_plan(
    beamline: Beamline, scans: Scan | Sequence[Scan], *, hpss_mode: str, endpoints: Endpoints | None = None
) -> BeamlinePlan:
    """A configured beamline's new-scan pipeline for one scan or several (one run, upstream's list of files):
    one move of every file to NERSC CFS, one SciCat step (a raw dataset per file), one Slurm job per pipeline
    that works through the files in order; a beamline's copy may go once the NERSC copy exists, a NERSC copy
    once its tape copy is verified. ``hpss_mode``: how the archive job copies (include/config/runtime.yaml).

    ``scans`` lists the files (``scan`` is the first); the jobs' values hold one entry per file, in that
    order (``scans``/``out_dirs``, ``sources``/``destinations``). Folders may nest and differ: exactly the
    listed files move, each to the same relative path (not upstream's whole common parent folder); a catalogued
    file's record names its own folder's NERSC copy (``scicat_source_folders``, the records' ``sourceFolder``)."""

    from include.slurm import load_nersc_config

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
    steps: dict[str, Any] = {"job_names": {}}
    checks: dict[str, list[Check]] = {}
    source_folders = ()
    if beamline.pipeline("scicat") is not None:
        source_folders = tuple(nersc.globus_path(scan.folder) for scan in scans)
    first = scans[0]
    more = f"_and_{len(scans) - 1}_more" if len(scans) > 1 else ""
    if ptycho is not None:
        datasets = [str(scan.results_under("").tiff) for scan in scans]
        shared = sorted({d for d in datasets if datasets.count(d) > 1})
        if shared:  # a.edf and a.h5 of one folder would write the same ptycho results
            raise ValueError(
                f"file_path lists several files whose ptychography results are the same folder "
                f"{', '.join(shared)}; give one file per dataset in a run"
            )
        steps["job_names"]["ptycho"] = f"ptycho_{first.folder}_{first.dataset}{more}"
        steps["ptycho"] = {
            "scans": [],
            "out_dirs": [],
            "launcher": load_nersc_config().launcher(
                (str(nersc.posix_root), str(endpoints[ptycho["results_endpoint"]].posix_root)), gpu=True
            ),
        }
    if archive is not None:
        steps["job_names"]["hpss_archive"] = f"hpss_archive_{first.folder}_{first.dataset}{more}"
        steps["hpss_archive"] = {"sources": [], "destinations": [], "mode": hpss_mode}
    deletions: list[DeletionRequest] = []
    outputs: list[Output] = []
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
            results_path = str(scan.results_under(PTYCHO_FOLDER).tiff)
            steps["ptycho"]["scans"].append(str(nersc.posix_path(relative)))
            steps["ptycho"]["out_dirs"].append(str(results_endpoint.posix_path(results_path)))
            checks.setdefault(PTYCHO_CHECK, []).append(tiff_check(ptycho["results_endpoint"], results_path))
            outputs.append(output(ptycho["results_endpoint"], results_path, after=PTYCHO_CHECK))
        if archive is not None:
            source = nersc.posix_path(relative)
            destination = endpoints[archive["archive_endpoint"]].posix_path(relative)
            if hpss_mode == "hsi":
                for path in (source, destination):
                    if not _HSI_SAFE.match(str(path)):
                        raise ValueError(f"{path}: characters hsi would split or interpret; archive it by hand")
            steps["hpss_archive"]["sources"].append(str(source))
            steps["hpss_archive"]["destinations"].append(str(destination))
            checks.setdefault(ARCHIVE_CHECK, []).append(
                Check(
                    "copy",
                    EndpointPath(archive["archive_endpoint"], relative),
                    of=EndpointPath(beamline.nersc_endpoint, relative),
                )
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
    return BeamlinePlan(
        pipeline=beamline.key,
        scan=relatives[0],
        scans=tuple(relatives),
        scicat_source_folders=source_folders,
        deletions=tuple(deletions),
        outputs=tuple(outputs),
        checks={step: tuple(found) for step, found in checks.items()},
        steps=steps,
    )


def tiff_check(endpoint: str, path: str, count_from: str | None = None) -> Check:
    """A check that ``endpoint:path`` holds a TIFF stack: as many TIFFs as the step ``count_from`` reported
    writing (its result's ``n_slices``), or at least one when no step reports a count."""
    return Check("tiff_stack", EndpointPath(endpoint, path), count_from=count_from)


def complete_check(endpoint: str, path: str) -> Check:
    """A check that ``endpoint:path`` holds exactly the files its results manifest counts (include/results.py):
    no file missing, none left over from an earlier run."""
    return Check("complete", EndpointPath(endpoint, path))


def verify_results(hook: Listing, checks: Sequence[Check], counts: dict[str, int | None]) -> list[str]:
    """Run the plan's checks through ``hook``; returns one line per check, raises :class:`ResultsError`.

    ``counts``: the TIFF count each step reported (``count_from`` of a TIFF check names the step).
    """
    lines = []
    for check in checks:
        where = check.where
        found = hook.stat(where)
        if found is None:
            raise ResultsError(f"{where} is missing after the run reported success")
        if check.kind == "tiff_stack":
            tiffs = [e for e in hook.ls(where) if e.get("name", "").endswith(".tiff")]
            expected = counts.get(check.count_from) if check.count_from else None
            if expected is not None and len(tiffs) != expected:
                raise ResultsError(f"{where} holds {len(tiffs)} TIFFs, the reconstruction wrote {expected}")
            if not tiffs:
                raise ResultsError(f"{where} holds no TIFF after the run reported success")
            lines.append(f"{where}: {len(tiffs)} TIFFs")
        elif check.kind == "complete":
            found = completeness(hook, where)
            if not found.complete:
                raise ResultsError(f"{where} is incomplete after the run reported success: {found.reason}")
            lines.append(f"{where}: {found.reason}")
        elif check.kind == "copy" and check.of is not None:
            want = hook.stat(check.of)
            if want is None or found.get("size") != want.get("size"):
                raise ResultsError(f"{where} has {found.get('size')} bytes, {check.of} {want and want.get('size')}")
            lines.append(f"{where}: {found['size']} bytes, same as {check.of}")
        else:
            lines.append(f"{where}: present")
    return lines


def due_requests(plan: Plan, succeeded: set[str]) -> list[DeletionRequest]:
    """The plan's deletion requests whose copy exists: it belongs to no step, or its step (``after``) succeeded."""
    return [d for d in plan.deletions if d.after is None or d.after in succeeded]


def due_outputs(plan: Plan, succeeded: set[str]) -> list[EndpointPath]:
    """The plan's outputs that exist."""
    return [o.where for o in plan.outputs if o.after is None or o.after in succeeded]
