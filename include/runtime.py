"""How the pipelines run on this profile: poll intervals, the Globus stall bound and the HPSS copy mode
(include/config/runtime.yaml)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from include.endpoints import REPO_ROOT, default_profile
from include.errors import ConfigError
from include.profiles import profile_settings

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


def load_runtime(profile: str | None = None, *, path: Path | None = None) -> Runtime:
    """Load and validate the runtime settings of ``profile`` (default: the endpoints profile)."""
    return _load(profile or default_profile(), Path(path or RUNTIME_FILE).resolve())


@functools.lru_cache(maxsize=8)
def _load(profile: str, path: Path) -> Runtime:
    settings = profile_settings(path, profile, {"poll_seconds", "hpss_mode", "transfer_stall_seconds"})
    polls = settings.get("poll_seconds")
    if not isinstance(polls, dict) or set(polls) != set(SERVICES):
        raise ConfigError(f"{path}: {profile}.poll_seconds: needs exactly {', '.join(SERVICES)}")
    for service, seconds in polls.items():
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 3600:
            raise ConfigError(f"{path}: {profile}.poll_seconds.{service}: a number of seconds in (0, 3600]")
    mode = settings.get("hpss_mode")
    if mode not in HPSS_MODES:
        raise ConfigError(f"{path}: {profile}.hpss_mode: one of {', '.join(HPSS_MODES)}, got {mode!r}")
    stall = settings.get("transfer_stall_seconds", Runtime.transfer_stall_seconds)
    if isinstance(stall, bool) or not isinstance(stall, int | float) or stall < 0:
        raise ConfigError(f"{path}: {profile}.transfer_stall_seconds: a number of seconds >= 0")
    return Runtime(profile, {k: float(v) for k, v in polls.items()}, mode, float(stall))
