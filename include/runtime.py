"""How the pipelines run on this profile: poll intervals, the Globus stall bound, the HPSS copy mode and the
Celery queues of the tasks that read a host's disk (include/config/runtime.yaml)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from include.endpoints import REPO_ROOT, default_profile
from include.errors import ConfigError
from include.profiles import load_profile

RUNTIME_FILE = REPO_ROOT / "include" / "config" / "runtime.yaml"
#: Names another file of runtime.yaml's shape for this process (a test stack's: tests/e2e/test_celery.py).
RUNTIME_FILE_ENV = "ALS_RUNTIME_FILE"
SERVICES = ("transfer", "compute", "sfapi", "hpss")
HPSS_MODES = ("hsi", "copy")


@dataclass(frozen=True)
class Runtime:
    """The runtime settings of one profile."""

    profile: str
    poll_seconds: dict[str, float]
    hpss_mode: str
    #: Seconds a Globus task may stay stalled on a fault before it is cancelled and the Airflow task fails.
    transfer_stall_seconds: float = 1800.0
    #: Seconds between plan's two looks at a new scan's size: a size that changed is still being written.
    scan_stable_seconds: float = 5.0
    #: How plan reads a new scan's first bytes (its HDF5 check), per source endpoint: an SFTP connection id,
    #: or ``local`` (the local facility's folder of the endpoint). An endpoint not listed is not read.
    scan_readers: dict[str, str] = field(default_factory=dict)
    #: The Celery queue of the tasks that read a collection's files on the worker's disk (the SciCat steps), by
    #: collection (include/config/endpoints.yaml): served by a worker on that host (docs/operations.md).
    disk_queues: dict[str, str] = field(default_factory=dict)

    def poll(self, service: str) -> float:
        """Seconds between polls of ``service`` (one of :data:`SERVICES`)."""
        return self.poll_seconds[service]

    def disk_queue(self, *endpoints: str) -> dict[str, str]:
        """``{"queue": ...}`` for a task that reads the files of ``endpoints`` on the worker's disk: the queue of
        their collection (``disk_queues``), or ``{}`` (the default queue) where none is set. Pass it to the
        operator (``**runtime.disk_queue(...)``)."""
        from include.endpoints import load_endpoints

        known = load_endpoints()
        queues = {self.disk_queues.get(known[name].collection.name) for name in endpoints}
        if len(queues) > 1:
            raise ConfigError(
                f"{runtime_file()}: disk_queues puts {', '.join(endpoints)} on different queues "
                f"({', '.join(sorted(map(str, queues)))}); a task reads them on one worker: give their collections "
                "one queue"
            )
        queue = queues.pop() if queues else None
        return {"queue": queue} if queue else {}


_SECONDS = {"type": "number", "exclusiveMinimum": 0, "maximum": 3600}
#: The settings of one profile in runtime.yaml.
SCHEMA: dict = {
    "type": "object",
    "required": ["poll_seconds", "hpss_mode"],
    "additionalProperties": False,
    "properties": {
        "poll_seconds": {
            "type": "object",
            "required": list(SERVICES),
            "additionalProperties": False,
            "properties": dict.fromkeys(SERVICES, _SECONDS),
        },
        "hpss_mode": {"enum": list(HPSS_MODES)},
        "transfer_stall_seconds": {"type": "number", "minimum": 0},
        "scan_stable_seconds": {"type": "number", "minimum": 0, "maximum": 600},
        "scan_readers": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
        # null: none (a profile clears production's); a key is a collection of include/config/endpoints.yaml
        "disk_queues": {"type": ["object", "null"], "additionalProperties": {"type": "string", "minLength": 1}},
    },
}


def runtime_file() -> Path:
    """The runtime file of this process: ``ALS_RUNTIME_FILE`` where set, else include/config/runtime.yaml."""
    return Path(os.environ.get(RUNTIME_FILE_ENV) or RUNTIME_FILE)


def load_runtime(profile: str | None = None, *, path: Path | None = None) -> Runtime:
    """Load and check the runtime settings of ``profile`` (default: the endpoints profile) from ``path`` (default:
    :func:`runtime_file`)."""
    return _load(profile or default_profile(), Path(path or runtime_file()).resolve())


@functools.lru_cache(maxsize=8)
def _load(profile: str, path: Path) -> Runtime:
    settings = load_profile(path, profile, SCHEMA).settings
    polls = {service: float(seconds) for service, seconds in settings["poll_seconds"].items()}
    stall = float(settings.get("transfer_stall_seconds", Runtime.transfer_stall_seconds))
    stable = float(settings.get("scan_stable_seconds", Runtime.scan_stable_seconds))
    readers = dict(settings.get("scan_readers") or {})
    queues = dict(settings.get("disk_queues") or {})
    if queues:
        from include.endpoints import load_endpoints

        collections = load_endpoints(profile).collections
        for name in queues:
            if name not in collections:
                raise ConfigError(
                    f"{path}: disk_queues.{name} ({profile}): no collection {name!r} in include/config/endpoints.yaml "
                    f"(known: {', '.join(sorted(collections))})"
                )
    return Runtime(profile, polls, settings["hpss_mode"], stall, stable, readers, queues)
