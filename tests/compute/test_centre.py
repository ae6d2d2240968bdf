"""Centre finding: phase correlation of opposite views and algotom's Vo method, against the true axis."""

from __future__ import annotations

import numpy as np
import pytest

from compute_functions.centre import find_center_pc, find_center_vo, opposite_pair
from compute_functions.phantom import phantom_sinogram

N = 256


@pytest.mark.parametrize("center", [131.3, 120.7])
def test_centre_within_half_pixel(center):
    theta = np.linspace(0, 180, 181)
    rng = np.random.default_rng(1)
    views = np.stack([phantom_sinogram(np.deg2rad(theta), N, center, z, 0.38 * N) for z in (-0.3, -0.25, -0.2)], 1)
    views += rng.normal(0, 0.01 * views.max(), views.shape)
    first, second = opposite_pair(theta)
    assert (first, second) == (0, 180)
    assert find_center_pc(views[first], views[second]) == pytest.approx(center, abs=0.5)
    assert find_center_vo(views[:, 1]) == pytest.approx(center, abs=0.5)


def test_opposite_pair_needs_a_180_view():
    assert opposite_pair(np.linspace(0, 360, 721, endpoint=False)) == (0, 360)
    with pytest.raises(ValueError, match="no projection within"):
        opposite_pair(np.linspace(0, 90, 46))
