"""The functions this project runs with Globus Compute, by name.

:data:`FUNCTIONS` maps each name to its ``module:function`` in compute_functions; :func:`resolve` imports
it. ``python -m tools.register_functions`` registers them with Globus Compute and prints their
ids (pin them in a site's ``function_ids`` in include/config/sites.yaml). Unpinned functions are registered
once per code version (:func:`code_version` of what a registration sends; GlobusComputeHook.ensure_function).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from typing import Any

#: name -> ``module:function``; every function is self-contained (see compute_functions/remote.py).
FUNCTIONS: dict[str, str] = {
    "reconstruct": "compute_functions.remote:reconstruct",
    "multiscale": "compute_functions.remote:multiscale",
    "check_environment": "compute_functions.remote:check_environment",
    "open_task_group": "compute_functions.remote:open_task_group",
}


def resolve(name: str) -> Callable[..., Any]:
    """The function registered under ``name``; ValueError naming the known ones otherwise."""
    try:
        target = FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown Compute function {name!r} (known: {', '.join(sorted(FUNCTIONS))})") from None
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def code_version(function_code: str) -> str:
    """The version of a function's registered code: the SHA-256 of the ``function_code`` a registration sends."""
    return hashlib.sha256(function_code.encode()).hexdigest()
