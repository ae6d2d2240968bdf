"""The functions this project runs with Globus Compute, by name: the one door from the runtime to compute_functions.

Every function registered with Globus Compute is a function of ``compute_functions.remote`` (each is
self-contained: it imports what it needs inside its body). :data:`FUNCTIONS` names them; :func:`resolve`
loads one; :func:`recon_options` is the options module the sites validate with, for the DAG layer to check a
run's options against the same code. Both load compute_functions by ``importlib`` inside the call, so importing
this module (a DAG file does, through include.sites) loads none of the science code; no other runtime module
imports compute_functions (tests/test_architecture.py).

``python -m tools.register_functions`` registers them with Globus Compute and prints their ids (pin them in a
site's ``function_ids`` in include/config/sites.yaml). Unpinned functions are registered once per code version
(:func:`code_version` of what a registration sends; GlobusComputeHook.ensure_function).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: The functions of compute_functions.remote that are registered with Globus Compute.
FUNCTIONS: tuple[str, ...] = (
    "reconstruct",
    "reconstruct_slab",
    "multiscale",
    "check_environment",
    "open_task_group",
)


def resolve(name: str) -> Callable[..., Any]:
    """The function registered under ``name``; ValueError naming the known ones otherwise."""
    if name not in FUNCTIONS:
        raise ValueError(f"unknown Compute function {name!r} (known: {', '.join(sorted(FUNCTIONS))})")
    return getattr(importlib.import_module("compute_functions.remote"), name)


def recon_options() -> ModuleType:
    """``compute_functions.options``: the reconstruction options schema and its checks (pure Python)."""
    return importlib.import_module("compute_functions.options")


def code_version(function_code: str) -> str:
    """The version of a function's registered code: the SHA-256 of the ``function_code`` a registration sends."""
    return hashlib.sha256(function_code.encode()).hexdigest()
