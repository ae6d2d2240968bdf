"""include/slurm.py: the NERSC config, job names, the #SBATCH header and shell-safe script rendering."""

from __future__ import annotations

import os
import subprocess

import pytest

from include.errors import ConfigError
from include.slurm import (
    expand_log_pattern,
    job_name,
    load_nersc_config,
    render_script,
    sbatch_header,
)

NASTY = "sea shell; touch CANARY $(touch CANARY) `touch CANARY` 'q\" \n x"


def test_local_profile_has_spec_directives_and_runs_python_directly():
    config = load_nersc_config("local")
    assert config.machine == "perlmutter"
    d = config.directives
    assert (d["qos"], d["account"], d["constraint"], d["nodes"], d["cpus-per-task"], d["exclusive"]) == (
        "realtime",
        "als",
        "cpu",
        1,
        64,
        True,
    )
    assert config.launcher() == []
    assert config.log_patterns()["error"].endswith("/tomo_recon_logs/%x_%j.err")


def test_production_refuses_the_placeholder_digest():
    with pytest.raises(ConfigError, match="placeholder"):
        load_nersc_config("production")


def test_production_launcher_pins_the_image(tmp_path):
    from include.slurm import NERSC_CONFIG_FILE

    text = NERSC_CONFIG_FILE.read_text().replace("0" * 64, "ab" * 32)
    (tmp_path / "nersc.yaml").write_text(text)
    config = load_nersc_config("production", path=tmp_path / "nersc.yaml")
    assert config.launcher() == [
        "srun",
        "podman-hpc",
        "run",
        "--rm",
        "--volume=/pscratch/sd/a/alsdev/8.3.2:/pscratch/sd/a/alsdev/8.3.2",
        "ghcr.io/als-computing/microct@sha256:" + "ab" * 32,
    ]
    assert config.log_patterns()["output"] == "/pscratch/sd/a/alsdev/8.3.2/scratch/tomo_recon_logs/%x_%j.out"


def test_a_tag_instead_of_a_digest_is_refused(tmp_path):
    from include.slurm import NERSC_CONFIG_FILE

    text = NERSC_CONFIG_FILE.read_text().replace("@sha256:" + "0" * 64, ":master")
    (tmp_path / "nersc.yaml").write_text(text)
    with pytest.raises(ConfigError, match="pinned"):
        load_nersc_config("production", path=tmp_path / "nersc.yaml")


def test_job_names_are_safe_and_distinct():
    assert job_name("tomo_recon", "BLS-00564_dyparkinson", "20230224_132553_sea_shell") == (
        "tomo_recon_BLS-00564_dyparkinson_20230224_132553_sea_shell"
    )
    a, b = job_name("tomo_recon", "f", "sea shell"), job_name("tomo_recon", "f", "sea;shell")
    assert a != b and a.startswith("tomo_recon_f_sea_shell_")
    assert all(c.isalnum() or c in "_.-" for c in job_name("x", NASTY))
    assert job_name("x", NASTY) == job_name("x", NASTY)


def test_sbatch_header():
    header = sbatch_header({"qos": "realtime", "time": "0:15:00", "exclusive": True, "gpus": None, "x": False})
    assert header.splitlines() == ["#SBATCH --qos=realtime", "#SBATCH --time=0:15:00", "#SBATCH --exclusive"]
    with pytest.raises(ValueError, match="characters"):
        sbatch_header({"job-name": "a b"})
    with pytest.raises(ValueError, match="directive name"):
        sbatch_header({"qos\n#SBATCH --x": "y"})


def test_expand_log_pattern():
    assert expand_log_pattern("/l/%x_%j.err", "n", "42") == "/l/n_42.err"
    assert expand_log_pattern("/l/100%%_%j", "n", "7") == "/l/100%_7"


def test_render_recon_template_header_and_arrays():
    script = render_script(
        "tomo_recon.sh.j2",
        directives={"job-name": "j", "time": "0:15:00"},
        values={
            "scan_source": "/cfs/a.h5",
            "scan": "/ps/a.h5",
            "out_dir": "/out",
            "tiff_dir": "/out/reca",
            "nodes": 1,
            "run_key": "airflow-1",
            "launcher": ["srun", "podman-hpc", "run", "img@sha256:1"],
            "container": ["podman-hpc", "run", "img@sha256:1"],
            "python": "python",
            "recon_args": ["--center", "12.5"],
        },
    )
    assert script.startswith("#!/bin/bash\n#SBATCH --job-name=j\n#SBATCH --time=0:15:00\n")
    assert "LAUNCH=(srun podman-hpc run img@sha256:1)" in script
    assert "RECON_ARGS=(--center 12.5)" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_recon_script_with_a_nasty_scan_name_copies_and_passes_it_as_one_word(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    source = tmp_path / "cfs" / f"{NASTY}.h5"
    source.parent.mkdir()
    source.write_bytes(b"scan bytes")
    stub = tmp_path / "python-stub"
    stub.write_text('#!/bin/bash\nprintf "<%s>\\n" "$@"\n')
    stub.chmod(0o755)
    staged = tmp_path / "pscratch" / f"{NASTY}.h5"
    script = render_script(
        "tomo_recon.sh.j2",
        directives={"job-name": "j"},
        values={
            "scan_source": str(source),
            "scan": str(staged),
            "out_dir": str(tmp_path / "out"),
            "tiff_dir": str(tmp_path / "out" / f"rec{NASTY}"),
            "nodes": 1,
            "run_key": "airflow-1",
            "launcher": [],
            "container": [],
            "python": str(stub),
            "recon_args": ["--rows", "0:2"],
        },
    )
    result = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert staged.read_bytes() == b"scan bytes"
    expected = ["-m", "compute_functions.reconstruct", str(staged), str(tmp_path / "out"), "--rows", "0:2"]
    assert "".join(f"<{a}>\n" for a in expected) in result.stdout
    assert not list(work.iterdir()) and not list(tmp_path.rglob("CANARY"))


def test_recon_script_across_nodes_runs_one_srun_task_per_node_then_gathers(tmp_path):
    """Issue 25: ``nodes`` > 1 runs the slabs as one srun step of a task per node, then the gather, then the
    manifest (stubs print their arguments; the real srun and slabs run in tests/dags/test_across_nodes.py)."""
    stub = tmp_path / "bin" / "srun"
    stub.parent.mkdir()
    stub.write_text('#!/bin/bash\nprintf "srun<%s>\\n" "$@"\n')
    stub.chmod(0o755)
    python = tmp_path / "bin" / "python-stub"
    python.write_text('#!/bin/bash\nprintf "python<%s>\\n" "$@"\n')
    python.chmod(0o755)
    source = tmp_path / "a.h5"
    source.write_bytes(b"scan")
    script = render_script(
        "tomo_recon.sh.j2",
        directives={"job-name": "j", "nodes": 3},
        values={
            "scan_source": str(source),
            "scan": str(tmp_path / "ps" / "a.h5"),
            "out_dir": "/out",
            "tiff_dir": "/out/reca",
            "nodes": 3,
            "run_key": "airflow-1",
            "launcher": [],
            "container": ["podman-hpc", "run", "img@sha256:1"],
            "python": str(python),
            "recon_args": ["--options", "{}"],
        },
    )
    assert "#SBATCH --nodes=3" in script
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    words = [line[len("srun<") : -1] for line in lines if line.startswith("srun<")]
    assert words[:3] == ["--nodes=3", "--ntasks=3", "--ntasks-per-node=1"]
    assert words[3:6] == ["podman-hpc", "run", "img@sha256:1"]
    assert words[7:10] == ["-m", "compute_functions.slabs", "reconstruct"]
    assert words[-6:] == ["--slabs", "3", "--run-key", "airflow-1", "--options", "{}"]
    gather = [line for line in lines if line.startswith("python<")]
    assert "python<compute_functions.slabs>" in gather and "python<gather>" in gather
    assert lines.index("python<gather>") < lines.index("python<compute_functions.results_manifest>")


def test_rendered_values_reach_the_command_as_single_words(tmp_path):
    script = render_script(
        "command.sh.j2",
        directives={"job-name": "j"},
        values={"command": ["printf", "<%s>\\n", NASTY, "two words"], "launcher": []},
    )
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.endswith(f"<{NASTY}>\n<two words>\n")
    assert list(tmp_path.iterdir()) == []  # no CANARY file


def test_missing_values_and_bad_values_fail_loudly():
    with pytest.raises(ValueError, match="undefined"):
        render_script("command.sh.j2", directives={}, values={"launcher": []})
    with pytest.raises(ValueError, match="NUL"):
        render_script("command.sh.j2", directives={}, values={"command": ["a\x00b"], "launcher": []})
    with pytest.raises(ValueError, match="cannot put"):
        render_script("command.sh.j2", directives={}, values={"command": [None], "launcher": []})
    with pytest.raises(ConfigError, match="no job template"):
        render_script("nope.sh.j2", directives={}, values={})


def test_the_log_folder_is_read_without_the_rest_of_the_profile():
    """The production file still has the placeholder image (refused by load_nersc_config): its logs still answer."""
    from include.paths import EndpointPath
    from include.slurm import nersc_logs

    assert nersc_logs("production") == EndpointPath("nersc832_alsdev_pscratch_scratch", "tomo_recon_logs")
    assert nersc_logs("local") == nersc_logs("production")
