"""How the pipelines run on this profile: poll intervals, the Globus stall bound and the HPSS copy mode
(include/config/runtime.yaml)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from include.endpoints import REPO_ROOT, default_profile
from include.profiles import load_profile

RUNTIME_FILE = REPO_ROOT / "include" / "config" / "runtime.yaml"
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

    def poll(self, service: str) -> float:
        """Seconds between polls of ``service`` (one of :data:`SERVICES`)."""
        return self.poll_seconds[service]


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
    },
}


def load_runtime(profile: str | None = None, *, path: Path | None = None) -> Runtime:
    """Load and check the runtime settings of ``profile`` (default: the endpoints profile)."""
    return _load(profile or default_profile(), Path(path or RUNTIME_FILE).resolve())


@functools.lru_cache(maxsize=8)
def _load(profile: str, path: Path) -> Runtime:
    settings = load_profile(path, profile, SCHEMA).settings
    polls = {service: float(seconds) for service, seconds in settings["poll_seconds"].items()}
    stall = float(settings.get("transfer_stall_seconds", Runtime.transfer_stall_seconds))
    stable = float(settings.get("scan_stable_seconds", Runtime.scan_stable_seconds))
    readers = dict(settings.get("scan_readers") or {})
    return Runtime(profile, polls, settings["hpss_mode"], stall, stable, readers)
