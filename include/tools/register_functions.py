"""Register the Globus Compute functions and print their ids: ``include.compute_registry`` under the tools' name.

Takes the same arguments (``--conn-id``, ``--only NAME ...``, ``--json``); see that module.
"""

from __future__ import annotations

import sys

from include.compute_registry import main

if __name__ == "__main__":
    sys.exit(main())
