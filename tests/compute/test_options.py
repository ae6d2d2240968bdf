"""The recon conf contract: schema, validation, one-line errors (exit 2), --options, remote, param lines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from compute_functions import remote
from compute_functions.errors import ScanError
from compute_functions.options import DEFAULTS, ENGINES, RECON_SCHEMA, resolved_options, validate_options
from compute_functions.param_line import main as param_main
from compute_functions.param_line import parse_param_line
from compute_functions.reconstruct import main, reconstruct_scan
from compute_functions.sample_scan import write_sample_scan

REPO = Path(__file__).resolve().parents[2]
DS = "20240224_132553_phantom"
UPSTREAM_HINTS = ("Upstream", "algotom")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_sample_scan(tmp_path_factory.mktemp("scan") / f"{DS}.h5", size="tiny")


def test_schema_is_json_and_documents_every_key():
    text = json.dumps(RECON_SCHEMA)
    assert json.loads(text) == RECON_SCHEMA
    assert RECON_SCHEMA["type"] == "object" and RECON_SCHEMA["additionalProperties"] is False
    props = RECON_SCHEMA["properties"]
    for key in ("rows", "center", "ring_removal", "engine", "binning"):  # the keys of older confs
        assert key in props
    assert props["engine"]["enum"] == ENGINES == ["auto", "nufft", "fbp", "dfi", "tomopy"]
    assert props["binning"]["minimum"] == 1 and props["binning"]["maximum"] == 8
    for key, spec in props.items():
        assert spec.get("description") and any(h in spec["description"] for h in UPSTREAM_HINTS), key
    docs = (REPO / "docs" / "recon-options.md").read_text()
    for key in props:
        assert f"`{key}`" in docs, f"{key} missing from docs/recon-options.md"


def test_options_module_imports_no_numpy():
    code = (
        "import sys, compute_functions.options as o; o.validate_options({'rows': '0:4'}); print('numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": 1}, "colour: unknown option"),
        ({"rows": "4:2"}, 'rows: "4:2": A must be smaller than B; e.g. "rows": "2:4"'),
        ({"rows": "a:b"}, 'rows: "a:b": must be A:B or A:B:S'),
        ({"binning": 9}, "binning: 9: must be an integer from 1 to 8"),
        ({"binning": 1.5}, 'binning: 1.5: must be an integer from 1 to 8; write a whole number, e.g. "binning": 2'),
        ({"engine": "astra"}, 'engine: "astra": must be one of auto, nufft, fbp, dfi, tomopy'),
        ({"ring_removal": "yes"}, 'ring_removal: "yes": must be true or false; write "ring_removal": true'),
        ({"center": -3}, "center: -3: must be a number >= 0"),
        ({"delta_beta": 100, "phase_alpha": 1e-4}, "delta_beta: 100: give delta_beta or phase_alpha"),
        ({"beam_hardening_coefficients": [1]}, "beam_hardening_coefficients: [1]: must be a list of 2 to 6 numbers"),
        ({"cast_min": 5, "cast_max": 1}, "cast_max: 1: must be above cast_min (5)"),
        ({"ring_removal": False, "ring_method": "fw"}, 'ring_removal: false: contradicts ring_method "fw"'),
    ],
)
def test_validate_options_names_the_key(options, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)) as info:
        validate_options(options)
    assert isinstance(info.value, ScanError) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "line"),
    [
        ({"binning": "2"}, 'binning: "2": must be an integer from 1 to 8; write "binning": 2 (no quotes)'),
        ({"ring_filter": "fw"}, "ring_filter: unknown option; did you mean ring_method?"),
        ({"bining": 2}, "bining: unknown option; did you mean binning?"),
        ({"engine": "tomo"}, 'engine: "tomo": must be one of auto, nufft, fbp, dfi, tomopy; did you mean "tomopy"?'),
        (
            {"rows": "a:b"},
            'rows: "a:b": must be A:B or A:B:S (start, stop, step; either side optional); e.g. "rows": "0:100"',
        ),
        ({"ring_wavelet": "DB5"}, 'ring_wavelet: "DB5": must be a PyWavelets name; e.g. "ring_wavelet": "db5"'),
        (
            {"ignore_projections": [3, -1]},
            "ignore_projections[1]: -1: must be an integer from 0 to 1000000; give a value in that range",
        ),
    ],
)
def test_i23_finding_2_each_refusal_is_one_line_with_key_value_and_fix(options, line):
    """The whole message: the key, the value as written, what is wrong and the fix; never the regex."""
    with pytest.raises(ScanError) as info:
        validate_options(options)
    assert str(info.value) == line
    assert "^" not in line and "\\d" not in line


def test_i23_finding_2_integers_have_upper_bounds():
    """99999999999999999999 reached the science as middle_rows; now every integer option has a maximum."""
    integers = [k for k, v in RECON_SCHEMA["properties"].items() if v["type"] == "integer"]
    assert "middle_rows" in integers and "center_row" in integers
    for key in integers:
        assert "maximum" in RECON_SCHEMA["properties"][key], key
        with pytest.raises(ScanError, match=f"^{key}: 99999999999999999999: must be an integer from"):
            validate_options({key: 99999999999999999999})
    with pytest.raises(ScanError, match=r"^ignore_projections\[0\]: 99999999999999999999: "):
        validate_options({"ignore_projections": [99999999999999999999]})
    assert validate_options({"middle_rows": 2160, "center_row": 2559}) == {"middle_rows": 2160, "center_row": 2559}


def test_resolved_options_fill_defaults_and_keep_the_old_alias():
    assert validate_options({"rows": "0:4", "binning": 2.0}) == {"rows": "0:4", "binning": 2}
    used = resolved_options({"ring_removal": False})
    assert used["ring_method"] == "none" and used["ring_removal"] is False
    assert resolved_options({})["ring_method"] == "sorting" and set(DEFAULTS) <= set(resolved_options({}))
    json.dumps(used)


def test_options_reach_summary_and_tiff_metadata(tiny, tmp_path):
    conf = {"rows": "1:3", "engine": "nufft", "ring_method": "sf", "center": 65.9, "cast": "uint16"}
    summary = reconstruct_scan(tiny, tmp_path, conf)
    assert summary["options"]["ring_method"] == "sf" and summary["options"]["cast"] == "uint16"
    assert summary["center_method"] == "given" and summary["n_slices"] == 2
    with tifffile.TiffFile(Path(summary["tiff_dir"]) / f"{DS}_00001.tiff") as tf:
        tags = json.loads(tf.pages[0].description)
        assert tf.asarray().dtype == np.uint16
    assert tags["options"]["ring_method"] == "sf" and tags["options"]["rows"] == "1:3"


def test_remote_accepts_options_dict_and_keywords(tiny, tmp_path):
    summary = remote.reconstruct(str(tiny), str(tmp_path), {"rows": "0:2", "engine": "nufft"}, center=65.9)
    assert summary["n_slices"] == 2 and summary["center"] == 65.9 and summary["options"]["engine"] == "nufft"
    assert summary["scan_path"] == str(tiny) and "host" in summary
    old_style = remote.reconstruct(str(tiny), str(tmp_path / "b"), rows="0:1", ring_removal=False, engine="nufft")
    assert old_style["options"]["ring_method"] == "none"
    with pytest.raises(
        ScanError, match=r"^reconstruct: colour: unknown option; the options are listed in docs/recon-options.md$"
    ):
        remote.reconstruct(str(tiny), str(tmp_path / "c"), {"colour": "red"})


def test_cli_options_json(tiny, tmp_path, capsys):
    assert main([str(tiny), str(tmp_path), "--options", '{"rows": "0:2", "center": 65.9}', "--engine", "nufft"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_slices"] == 2 and summary["engine"] == "nufft" and summary["options"]["center"] == 65.9


def _scan_variant(tmp_path: Path, tiny: Path, name: str, edit) -> Path:
    path = tmp_path / f"{name}.h5"
    path.write_bytes(tiny.read_bytes())
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _no_flats(f):
    del f["exchange/data_white"]


def _bad_flats(f):
    del f["exchange/data_white"]
    f["exchange/data_white"] = np.ones((2, 3, 5), np.uint16)


def _zeros(f):
    f["exchange/data"][...] = 0


BAD_SCANS = [
    (_no_flats, "no flat fields"),
    (_bad_flats, "data_white has shape (2, 3, 5)"),
    (_zeros, "the projections are all zero"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_SCANS)
def test_bad_scans_exit_2_with_one_line(tiny, tmp_path, capsys, edit, message):
    scan = _scan_variant(tmp_path, tiny, edit.__name__, edit)
    assert main([str(scan), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reconstruct: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / f"rec{scan.stem}").exists()


def test_bad_option_and_sparse_pc_exit_2(tiny, tmp_path, capsys):
    assert main([str(tiny), str(tmp_path), "--options", '{"colour": "red"}']) == 2
    assert capsys.readouterr().err.strip() == (
        "reconstruct: colour: unknown option; the options are listed in docs/recon-options.md"
    )
    assert main([str(tiny), str(tmp_path), "--options", "{not json"]) == 2
    assert capsys.readouterr().err.startswith("reconstruct: --options: not JSON")
    sparse = write_sample_scan(tmp_path / "sparse.h5", size=(46, 2, 64), range_deg=90.0)
    assert main([str(sparse), str(tmp_path)]) == 2
    assert "span only 90.0 degrees" in capsys.readouterr().err


def test_truncated_file_in_a_subprocess(tiny, tmp_path):
    data = tiny.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) * 2 // 3])
    proc = subprocess.run(
        [sys.executable, "-m", "compute_functions.reconstruct", str(cut), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("reconstruct: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_param_line_converts_the_example():
    line = '20230224_132553_sea_shell.h5 cor 1196 sinoused "-1,10,1" doPhaseRetrieval 1 alphaReg 0.0002'
    scan, recon = parse_param_line(line)
    assert scan == "20230224_132553_sea_shell.h5"
    assert recon == {
        "center": 1196.0,
        "middle_rows": 10,  # sinoused "-1,10,1": the 10 middle rows (upstream lines 375-377)
        "phase_retrieval": True,
        "phase_alpha": 0.0002,
        "ring_method": "fw",  # upstream default doFWringremoval True
    }
    _, recon = parse_param_line(
        "a.h5 doFWringremoval 0 doTIringremoval 1 ringNBlock 2 projused (0,100,2) sinoused 10,20,1 "
        "castTo8bit 1 cast8bit_min -5 cast8bit_max 20 projIgnoreList 3,7 chunk_sino 50 doNormalize 1"
    )
    assert recon == {
        "ring_method": "ti",
        "ring_nblock": 2,
        "projections": "0:100:2",
        "rows": "10:20",
        "cast": "uint8",
        "cast_min": -5.0,
        "cast_max": 20.0,
        "ignore_projections": [3, 7],
    }
    validate_options(recon)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a.h5 outputFilename c1196.0", "outputFilename: output names are fixed"),
        ("a.h5 useNormalize_nf 1", "useNormalize_nf: '1' has no counterpart"),
        ("a.h5 doTIringremoval 1", "doTIringremoval: only one sinogram ring filter at a time"),
        ("a.h5 recon_algorithm sirt", "recon_algorithm: 'sirt'"),
        ("a.h5 frobnicate 3", "frobnicate: unknown upstream option"),
        ("a.h5 cor", "cor: has no value"),
        ("a.h5 cor abc", "cor: 'abc' is not a number"),
    ],
)
def test_param_line_refuses_naming_the_key(line, message, capsys):
    assert param_main([line]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"param_line: {message}") and len(err.splitlines()) == 1


def test_param_line_cli(capsys):
    assert param_main(["x.h5 cor 1196 outputFilename c1196.0", "--ignore", "outputFilename", "--with-scan"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"scan": "x.h5", "recon": {"center": 1196.0, "ring_method": "fw"}}


def test_options_reach_the_zarr_attrs_with_a_row_step(tiny, tmp_path):
    import zarr

    from compute_functions.multiscale import write_multiscale

    summary = reconstruct_scan(tiny, tmp_path, {"rows": "0:4:2", "center": 65.9, "ring_method": "ti"})
    assert [p.name for p in sorted(Path(summary["tiff_dir"]).iterdir())] == [f"{DS}_00000.tiff", f"{DS}_00002.tiff"]
    out = write_multiscale(summary["tiff_dir"], tmp_path / f"rec{DS}.zarr", preview=False)
    attrs = dict(zarr.open_group(out["zarr"], mode="r").attrs)
    assert attrs["reconstruction"]["options"]["ring_method"] == "ti"
    assert attrs["reconstruction"]["row_step"] == 2 and attrs["reconstruction"]["center"] == 65.9


def test_two_worker_processes_write_the_same_slices(tiny, tmp_path):
    one = reconstruct_scan(tiny, tmp_path / "one", {"center": 65.9, "engine": "nufft"}, workers=1)
    two = reconstruct_scan(tiny, tmp_path / "two", {"center": 65.9, "engine": "nufft"}, workers=2, nthreads=2)
    assert one["workers"] == 1 and two["workers"] == 2 and two["n_slices"] == 4
    for name in sorted(p.name for p in Path(one["tiff_dir"]).iterdir()):
        a = tifffile.imread(Path(one["tiff_dir"]) / name)
        b = tifffile.imread(Path(two["tiff_dir"]) / name)
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(a).max())
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [f"rec{DS}"]  # no scratch left


def test_scan_error_survives_the_trip_back_from_a_worker():
    import pickle

    err = pickle.loads(pickle.dumps(ScanError("scan.h5: cannot read\n/exchange/data")))
    assert isinstance(err, ScanError) and str(err) == "scan.h5: cannot read /exchange/data"
