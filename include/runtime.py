"""How the pipelines run on this profile: poll intervals, the Globus stall bound and the HPSS copy mode
(include/config/runtime.yaml)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
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
    return Runtime(profile, polls, settings["hpss_mode"], stall)
