"""Profile-keyed configuration files: a ``production`` section, and a ``local`` one that overrides it key by key.

include/config/nersc.yaml and include/config/runtime.yaml have this shape; the profile is the endpoints
profile (``ALS_ENDPOINT_PROFILE``: ``production`` or ``local``). The file is checked against the module's
schema of one profile's settings (``production`` must have every required key; ``local`` may leave any out),
and errors name the file, the line and the section the value comes from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.config_files import ConfigDocument, KeyPath, load_config
from include.endpoints import PROFILES
from include.errors import ConfigError


def merge(base: dict, override: dict | None) -> dict:
    """``base`` with ``override`` laid over it, recursively for mappings (neither is changed)."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _optional(schema: Any) -> Any:
    """``schema`` with every ``required`` left out (an override may set any part)."""
    if isinstance(schema, dict):
        return {key: _optional(value) for key, value in schema.items() if key != "required"}
    if isinstance(schema, list):
        return [_optional(item) for item in schema]
    return schema


def profile_schema(settings: dict) -> dict:
    """The schema of a profile-keyed file whose profiles' settings have the shape ``settings``."""
    return {
        "type": "object",
        "required": ["production"],
        "additionalProperties": False,
        "properties": {"production": settings, "local": _optional(settings)},
    }


@dataclass(frozen=True)
class ProfileSettings:
    """One profile's settings (``production`` with the profile's overrides) and the file they come from."""

    document: ConfigDocument
    profile: str
    settings: dict[str, Any]

    def error(self, key: KeyPath, message: str) -> ConfigError:
        """A :class:`ConfigError` at ``key`` of the section that sets it (the profile's own, else production)."""
        section = self.profile if (self.profile, *key) in self.document.lines else "production"
        return self.document.error((section, *key), message)


def load_profile(path: Path, profile: str, settings_schema: dict) -> ProfileSettings:
    """The settings of ``profile`` in the file at ``path``, checked against ``settings_schema``."""
    if profile not in PROFILES:
        raise ConfigError(f"{path}: unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    document = load_config(path, profile_schema(settings_schema))
    data = document.data
    settings = data["production"] if profile == "production" else merge(data["production"], data.get(profile))
    return ProfileSettings(document, profile, settings)


def profile_settings(path: Path, profile: str, allowed: set[str]) -> dict[str, Any]:
    """The settings of ``profile``, keys limited to ``allowed``. Only include/plans.py ``slurm_logs`` still calls
    this: it goes once that calls :func:`include.slurm.nersc_logs`."""
    schema = {"type": "object", "additionalProperties": False, "properties": {key: {} for key in allowed}}
    return load_profile(path, profile, schema).settings
