"""Profile-keyed configuration files: a ``production`` section, and other profiles that override it key by key.

include/config/nersc.yaml and include/config/runtime.yaml have this shape; the profile is the endpoints
profile (``ALS_ENDPOINT_PROFILE``: ``production`` or ``local``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

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


def profile_settings(path: Path, profile: str, allowed: set[str]) -> dict[str, Any]:
    """The settings of ``profile`` in the file at ``path``; errors name the file, the profile and the key."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("production"), dict):
        raise ConfigError(f"{path}: production: missing")
    if profile not in document:
        raise ConfigError(f"{path}: no profile {profile!r} (known: {', '.join(sorted(document))})")
    settings = document["production"] if profile == "production" else merge(document["production"], document[profile])
    unknown = set(settings) - allowed
    if unknown:
        raise ConfigError(f"{path}: {profile}: unknown key(s) {', '.join(sorted(unknown))}")
    return settings
