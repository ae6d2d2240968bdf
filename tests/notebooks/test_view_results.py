"""notebooks/view_results.ipynb runs top to bottom (nbformat + exec, no Jupyter) on a tiny reconstruction."""

from __future__ import annotations

import pytest

from include.endpoints import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "view_results.ipynb"
nbformat = pytest.importorskip("nbformat", reason="nbformat (requirements-dev) runs the notebook in tests")
pytest.importorskip("matplotlib", reason="the notebook draws with matplotlib")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """A tiny scan reconstructed into rec<ds>/ and a 2-level rec<ds>.zarr/, as a pipeline leaves them."""
    from compute_functions.multiscale import write_multiscale
    from compute_functions.reconstruct import reconstruct_scan
    from compute_functions.sample_scan import write_sample_scan

    root = tmp_path_factory.mktemp("result")
    scan = write_sample_scan(root / "raw" / "20260101_120000_sample.h5", size="tiny")
    reconstruct_scan(scan, root / "alcf")
    tiff_dir = root / "alcf" / "rec20260101_120000_sample"
    write_multiscale(tiff_dir, levels=2, chunk=(4, 64, 64), workers=1)
    return tiff_dir


def run_notebook(result_path, monkeypatch) -> dict:
    """Execute every code cell in one namespace, as a kernel would (matplotlib without a display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    monkeypatch.setenv("ALS_RESULT", str(result_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    namespace: dict = {"__name__": "__main__"}
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            exec(compile(cell.source, f"{NOTEBOOK.name}[cell {index}]", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("which", ["tiff_dir", "zarr", "parent"])
def test_the_notebook_opens_the_tiff_slices_and_every_zarr_level(result, monkeypatch, capsys, which):
    import matplotlib.pyplot as plt
    import numpy as np
    import tifffile

    path = {"tiff_dir": result, "zarr": result.with_name(result.name + ".zarr"), "parent": result.parent}[which]
    ns = run_notebook(path, monkeypatch)
    out = capsys.readouterr().out
    slices = sorted(result.glob("*.tiff"))
    assert ns["tiff_volume"].shape == (len(slices), *tifffile.imread(slices[0]).shape)
    assert np.array_equal(ns["tiff_volume"][1], tifffile.imread(slices[1]))
    levels = ns["levels"]
    assert [lvl["path"] for lvl in levels] == ["0", "1"]
    assert levels[1]["scale"] == [2 * s for s in levels[0]["scale"]] and levels[0]["units"] == ["micrometer"] * 3
    assert "level 0 equals the TIFF slices" in out and "napari: set SHOW_IN_NAPARI" in out
    assert len(plt.get_fignums()) >= 3  # the TIFF view and one view per Zarr level
    plt.close("all")


def test_a_folder_without_results_is_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="expected one rec<dataset>/ folder"):
        run_notebook(tmp_path, monkeypatch)
