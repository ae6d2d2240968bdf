"""What the steps side of a runner builds for a site."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class RunSteps:
    """A site's reconstruction steps: ``steps`` in order (the first follows ``plan``), the ``multiscale`` step the
    copies follow, what the derived SciCat dataset records (``parameters``) and the steps whose result reports
    the TIFF count (``reported``, for the results check; None when none does)."""

    steps: list[Any]
    multiscale: Any
    parameters: Any
    reported: dict[str, Any] | None
