"""The short version of benchmarks/bench_full_scan.py (its full run is in ``make bench``): the sea-shell model's
arithmetic on fixed rates, and the stage table built from task instances and the files of a tiny scan."""

from __future__ import annotations

import pytest

from benchmarks.bench_full_scan import (
    GB,
    Assumptions,
    Rates,
    folder_bytes,
    measured_rates,
    model,
    model_report,
    report,
    stage_rows,
    stage_table,
    write_scan,
)

STACK_GB = 2160 * 2560 * 2560 * 4 / GB  # the sea shell's float32 stack, 56.6 GB
RAW_GB = 1313 * 2160 * 2560 * 2 / GB  # its uint16 projections, 14.5 GB


def test_model_separate_zarr_step_is_one_writer_over_the_whole_stack():
    rates = Rates(
        recon_s_per_slice_core=0.8, recon_setup_s=0.0, zarr_mb_s_per_writer=300.0, transfer_gb_s=0.5, one_pass=False
    )
    one, two = model(rates, nodes=(1, 2))
    assert one.recon_s == pytest.approx(2160 * 0.8 / 64)  # 27 s
    assert two.recon_s == pytest.approx(one.recon_s / 2)
    assert one.zarr_s == two.zarr_s == pytest.approx(STACK_GB * 1000 / 300)  # 189 s: one writer, any N
    assert one.recon_zarr_s == pytest.approx(one.recon_s + one.zarr_s)
    assert one.transfer_in_s == pytest.approx(RAW_GB / 0.5)
    assert one.copy_home_s == pytest.approx(2 * STACK_GB / 0.5)


def test_model_one_pass_is_the_slower_of_compute_and_the_file_system():
    fast = Rates(
        recon_s_per_slice_core=0.2, recon_setup_s=0.0, zarr_mb_s_per_writer=2000.0, transfer_gb_s=1.0, one_pass=True
    )
    one, four = model(fast, Assumptions(fs_write_gb_s_per_node=2.0), nodes=(1, 4))
    assert one.recon_s == pytest.approx(STACK_GB / 2.0)  # 28.3 s of writes > 2160 x 0.2 / 64 = 6.75 s of compute
    assert four.recon_s == pytest.approx(STACK_GB / 8.0)  # each node writes its slab
    assert one.zarr_s == four.zarr_s == pytest.approx(STACK_GB * 1000 / 2000)  # the finish step: one process
    slow = Rates(
        recon_s_per_slice_core=2.0, recon_setup_s=5.0, zarr_mb_s_per_writer=2000.0, transfer_gb_s=1.0, one_pass=True
    )
    (compute_bound,) = model(slow, Assumptions(fs_write_gb_s_per_node=2.0, parallel_efficiency=0.5), nodes=(1,))
    assert compute_bound.recon_s == pytest.approx(5.0 + 2160 * 2.0 / 32)  # setup + 135 s > 28.3 s of writes


def test_model_scales_a_rate_measured_on_another_shape():
    rates = Rates(
        recon_s_per_slice_core=0.1, recon_setup_s=0.0, zarr_mb_s_per_writer=300.0, transfer_gb_s=1.0, one_pass=False
    )
    (half_width,) = model(rates, measured_shape=(1280, 1313), nodes=(1,))
    assert half_width.recon_s == pytest.approx(2160 * 0.1 * 4 / 64)  # width^2: 4x per slice
    text = model_report(rates, measured_shape=(1280, 1313))
    assert "assumptions:" in text and "64 cores per node" in text and "| nodes" in text


def tis(*rows):
    return [
        {"task_id": t, "state": state, "start_date": start, "end_date": end, "duration": duration}
        for t, state, start, end, duration in rows
    ]


def test_stage_rows_from_task_instances_and_the_files_of_a_tiny_scan(tmp_path):
    file_path, scan, _ = write_scan(tmp_path, rows=4, width=64, angles=31)
    assert file_path.startswith("/global/raw/") and scan.is_file()
    tiff = tmp_path / "rec"
    tiff.mkdir()
    (tiff / "a.tif").write_bytes(b"x" * 3000)
    (tiff / "sub").mkdir()
    (tiff / "sub" / "b.tif").write_bytes(b"x" * 1000)
    sizes = {"scan": folder_bytes(scan), "tiff": folder_bytes(tiff), "zarr": folder_bytes(tmp_path / "missing")}
    assert sizes["scan"] == scan.stat().st_size > 31 * 4 * 64 * 2 and sizes["tiff"] == 4000 and sizes["zarr"] == 0

    t = "2026-12-07T18:00:{:02d}Z".format
    instances = tis(
        ("alcf.reconstruct", "success", t(10), t(20), 10.0),
        ("new_file.spot832_to_data832", "success", t(1), t(3), 2.0),
        ("alcf.copy_zarr", "skipped", None, None, None),
        ("plan", "success", t(0), t(1), 1.0),
    )
    base = 1796666400.0  # 2026-12-07T18:00:00Z
    rss = [(base + 2, 0.5), (base + 12, 1.5), (base + 15, 2.5), (base + 40, 9.0)]
    rows = stage_rows(instances, {"scan": 2 * 10**9, "tiff": 5 * 10**9, "zarr": 0}, rss)
    assert [r["stage"] for r in rows] == ["plan", "new_file.spot832_to_data832", "alcf.reconstruct"]
    plan, copy, recon = rows
    assert plan["gb"] is None and plan["gb_s"] is None
    assert (copy["gb"], copy["gb_s"], copy["peak_rss_gb"]) == (2.0, 1.0, 0.5)
    assert (recon["gb"], recon["gb_s"], recon["peak_rss_gb"]) == (5.0, 0.5, 2.5)  # not the 9.0 after it ended
    table = stage_table(rows)
    header, _, *cells = (line.split("|")[1:-1] for line in table.splitlines())
    assert [c.strip() for c in header] == ["stage", "seconds", "GB", "GB/s", "peak RSS GB"]
    assert [c.strip() for c in cells[2]] == ["alcf.reconstruct", "10.0", "5.00", "0.50", "2.50"]
    assert [c.strip() for c in cells[0]] == ["plan", "1.0", "", "", ""]

    zarr = {"seconds": 0.5, "bytes": 4_000_000, "one_pass": True}
    copy_rows = [{"stage": "new_file.spot832_to_data832", "gb_s": 0.4}, {"stage": "alcf.stage_raw", "gb_s": 0.6}]
    # no step breakdown: the wall time on every core of the machine
    bare = {"n_slices": 4, "workers": 2, "seconds": {"total": 2.0}, "wall_seconds": 3.0}
    rates = measured_rates({"reconstruct": bare, "multiscale": zarr}, copy_rows, sizes, cores=2)
    assert rates == Rates(1.0, 0.0, zarr_mb_s_per_writer=8.0, transfer_gb_s=0.6, one_pass=True)
    # the steps summed over the workers, per slice; setup once per worker (in parallel) and the centre once
    steps = {"setup": 6.0, "centre": 0.5, "total": 9.0, "read": 1.0, "rings": 3.0, "reconstruct": 4.0, "zarr": 2.0}
    summaries = {"reconstruct": {**bare, "seconds": steps}, "multiscale": zarr}
    rates = measured_rates(summaries, copy_rows, sizes, cores=2)
    assert (rates.recon_s_per_slice_core, rates.recon_setup_s) == (10.0 / 4, 6.0 / 2 + 0.5)
    with pytest.raises(ValueError, match="transfer rate"):
        measured_rates(summaries, rows[:1], sizes, cores=2)

    text = report(
        {
            "machine": {"cpu": "test", "cores": 2},
            "date": "2026-12-07 18:00 UTC",
            "scan_shape": [31, 4, 64],
            "sizes": sizes,
            "scan_write_s": 0.1,
            "settings": {"new_file": True, "alcf": True},
            "trigger_to_success_s": 20.0,
            "rss_idle_gb": 0.4,
            "stages": rows,
            "summaries": summaries,
            "rates": rates.__dict__,
        }
    )
    assert table in text and "model: the sea-shell scan (2160 rows" in text and "2026-12-07 18:00 UTC" in text
