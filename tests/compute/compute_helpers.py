"""What compute tests share: a sinogram with ring stripes, a fresh Python at the repository root."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from compute_functions.phantom import phantom_sinogram
from include.endpoints import REPO_ROOT


def striped_sinogram(angles: int, columns: int, radius: float, stripes: int, noise: float = 0.0):
    """(clean, dirty): a phantom's sinogram over 180° (centred), and the same with ``stripes`` columns offset
    by ±0.02..0.04 (ring artefacts) and Gaussian noise of sigma ``noise``; seeded, so always the same."""
    theta = np.deg2rad(np.linspace(0, 180, angles, endpoint=False))
    clean = phantom_sinogram(theta, columns, columns / 2, -0.25, radius).astype(np.float32) * 0.02
    rng = np.random.default_rng(0)
    offsets = np.zeros(columns, np.float32)
    bad = rng.choice(columns, stripes, replace=False)
    offsets[bad] = rng.choice([-1, 1], stripes) * rng.uniform(0.02, 0.04, stripes)
    dirty = clean + offsets
    if noise:
        dirty = dirty + rng.normal(0, noise, clean.shape).astype(np.float32)
    return clean, dirty


def run_python(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """``python *args`` in a fresh interpreter at the repository root (its packages importable), output kept."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout)


def last_json(proc: subprocess.CompletedProcess) -> dict:
    """The JSON object a successful run printed last."""
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
