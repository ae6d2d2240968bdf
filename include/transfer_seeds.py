"""The seed files of the transfer health checks: one fixed file in the first stop's probe folder of each check.

A check never writes on a beamline's disk: each run copies the seed with Globus (checksum-verified) to a uniquely
named probe on the next stop (dags/pipelines/transfer_check.py). The seed is put there once, at deployment
(docs/operations.md, "Health checks"); on the local profile :func:`write_local_seeds` puts it in the facility's
folders (tools/local_airflow.py, for every local Airflow). Never deleted by a check (its name is not ``*.probe``).
"""

from __future__ import annotations

import os
from pathlib import Path

from include.paths import EndpointPath

#: The seed's name in a check's first probe folder.
SEED_NAME = "transfer_check.seed"
#: The size of the seed the local facility gets (and the suggested size at deployment).
SEED_BYTES = 64 * 1024
#: The first stop of the 8.3.2 check (dags/bl832_transfer_check.py): spot832 ``raw/transfer_check``.
BL832_FIRST_STOP = ("spot832", "raw/transfer_check")


def seed_of(endpoint: str, folder: str) -> EndpointPath:
    """Where the seed of a check whose first stop is ``endpoint:folder/`` lies."""
    return EndpointPath(endpoint, f"{folder}/{SEED_NAME}")


def seed_paths() -> list[EndpointPath]:
    """The seed of every health check: 8.3.2's, then each configured beamline's with a ``transfer_check``."""
    from include.beamlines import load_beamlines

    seeds = [seed_of(*BL832_FIRST_STOP)]
    for beamline in load_beamlines():
        if beamline.transfer_check is not None:
            seeds.append(seed_of(beamline.source_endpoint, beamline.transfer_check["folder"]))
    return seeds


def write_local_seeds(facility_root: Path) -> list[Path]:
    """Create every missing seed under the local facility at ``facility_root`` (random bytes); return them all."""
    from include.endpoints import load_endpoints

    endpoints = load_endpoints("local", facility_root=facility_root)
    written = []
    for seed in seed_paths():
        path = endpoints.posix(seed)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(SEED_BYTES))
        written.append(path)
    return written
