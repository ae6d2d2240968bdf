"""Slurm batch scripts for NERSC: the config of include/config/nersc.yaml and safe script rendering.

Templates live in include/jobs/ (Jinja, ``StrictUndefined``). Every ``{{ value }}`` a template prints is
shell-quoted with :func:`shlex.quote` on the way out (a list becomes quoted words), so a file name with
spaces, quotes or ``;`` reaches the script as one literal word; only the ``#SBATCH`` header (validated
word by word) and values wrapped in :class:`Raw` are printed as they are. Templates assign the quoted
values to shell variables at the top and use ``"$VAR"`` below.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.endpoints import REPO_ROOT, default_profile, load_endpoints
from include.errors import ConfigError
from include.paths import EndpointPath
from include.profiles import load_profile

NERSC_CONFIG_FILE = REPO_ROOT / "include" / "config" / "nersc.yaml"
JOBS_DIR = REPO_ROOT / "include" / "jobs"
_DIRECTIVE_KEY = re.compile(r"^[a-z][a-z0-9-]*$")
#: What a directive value may contain: sbatch reads the header itself, so no spaces, quotes or newlines.
_DIRECTIVE_VALUE = re.compile(r"^[A-Za-z0-9_.,:/%=@+-]+$")
_DIGEST_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(?::[0-9]+)?(?:/[a-z0-9._-]+)*@sha256:[0-9a-f]{64}$")
_PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_JOB_NAME = 200


class Raw(str):
    """A template value printed as is (already safe shell text)."""


@dataclass(frozen=True)
class NerscConfig:
    """The NERSC settings of one profile."""

    profile: str
    machine: str
    directives: dict[str, Any]
    log_dir: Path
    runtime: str
    image: str | None
    volumes: tuple[str, ...]
    python: str

    def launcher(self, volumes: tuple[str, ...] = (), *, gpu: bool = False) -> list[str]:
        """The words before ``python -m ...`` in a job: ``srun`` and the :meth:`container` call, or nothing on the
        local profile."""
        container = self.container(volumes, gpu=gpu)
        return ["srun", *container] if container else []

    def container(self, volumes: tuple[str, ...] = (), *, gpu: bool = False) -> list[str]:
        """The container call with the configured folders and ``volumes`` mounted (and the GPU), or nothing on the
        local profile: what a job puts after its own ``srun`` options (one task per node, issue 25)."""
        if self.runtime == "none":
            return []
        mounts = [f"--volume={v}:{v}" for v in dict.fromkeys([*self.volumes, *volumes])]
        return ["podman-hpc", "run", "--rm", *(["--gpu"] if gpu else []), *mounts, str(self.image)]

    def log_patterns(self) -> dict[str, str]:
        """``output``/``error`` directives of SPEC §3: ``<logs>/%x_%j.out`` and ``.err``."""
        return {"output": f"{self.log_dir}/%x_%j.out", "error": f"{self.log_dir}/%x_%j.err"}


#: The settings of one profile in nersc.yaml; :func:`_load` checks the directives, the image and the log endpoint.
SCHEMA: dict = {
    "type": "object",
    "required": ["machine", "logs", "container"],
    "additionalProperties": False,
    "properties": {
        "machine": {"type": "string", "minLength": 1},
        "directives": {"type": "object"},
        "logs": {
            "type": "object",
            "required": ["endpoint", "path"],
            "additionalProperties": False,
            "properties": {"endpoint": {"type": "string", "minLength": 1}, "path": {"type": "string", "minLength": 1}},
        },
        "container": {
            "type": "object",
            "required": ["runtime"],
            "additionalProperties": False,
            "properties": {
                "runtime": {"enum": ["podman-hpc", "none"]},
                "image": {"type": "string"},
                "volumes": {
                    "type": "array",
                    "items": {
                        "type": "string",
                        "pattern": "^/[A-Za-z0-9_.,:/%=@+-]*$",
                        "description": "a plain absolute path",
                    },
                },
                "python": {"type": "string", "minLength": 1},
            },
        },
    },
}


def load_nersc_config(profile: str | None = None, *, path: Path | None = None) -> NerscConfig:
    """Load include/config/nersc.yaml for a profile (default: the endpoints profile) and check it."""
    profile = profile or default_profile()
    return _load(profile, Path(path or NERSC_CONFIG_FILE).resolve())


def nersc_logs(profile: str | None = None, *, path: Path | None = None) -> EndpointPath:
    """Where Slurm writes the jobs' logs (``logs`` of nersc.yaml), as an endpoint path; reads nothing else
    of the profile (a production file with a placeholder image still answers)."""
    settings = load_profile(Path(path or NERSC_CONFIG_FILE), profile or default_profile(), SCHEMA).settings
    return EndpointPath(settings["logs"]["endpoint"], settings["logs"]["path"])


@functools.lru_cache(maxsize=8)
def _load(profile: str, path: Path) -> NerscConfig:
    loaded = load_profile(path, profile, SCHEMA)
    settings = loaded.settings
    directives = settings.get("directives") or {}
    for key, value in directives.items():
        try:
            sbatch_header({key: value})
        except ValueError as exc:
            raise loaded.error(("directives", key), str(exc)) from None
    logs, endpoints = settings["logs"], load_endpoints(profile)
    if logs["endpoint"] not in endpoints:
        raise loaded.error(("logs", "endpoint"), f"unknown endpoint {logs['endpoint']!r} (endpoints.yaml)")
    log_dir = endpoints[logs["endpoint"]].posix_path(logs["path"])
    container = settings["container"]
    runtime, image = container["runtime"], container.get("image")
    if runtime != "none":
        if not isinstance(image, str) or not _DIGEST_IMAGE.match(image):
            raise loaded.error(("container", "image"), f"must be pinned as <name>@sha256:<64 hex>, got {image!r}")
        if image.endswith(_PLACEHOLDER_DIGEST):
            raise loaded.error(("container", "image"), "the digest is the all-zero placeholder; pin a real one")
    volumes = tuple(container.get("volumes") or ())
    python = container.get("python", "python")
    return NerscConfig(profile, settings["machine"], dict(directives), log_dir, runtime, image, volumes, python)


def job_name(*parts: str) -> str:
    """A Slurm job name from parts (``tomo_recon``, folder, file stem): safe characters only, deterministic.

    Unsafe runs become ``_``; when that changed anything, a short hash of the original keeps names of
    different scans distinct.
    """
    original = "_".join(parts)
    name = _JOB_NAME_UNSAFE.sub("_", original).strip("_")
    if name != original or len(name) > MAX_JOB_NAME:
        digest = hashlib.sha256(original.encode()).hexdigest()[:8]
        name = f"{name[: MAX_JOB_NAME - 9]}_{digest}"
    return name


def sbatch_header(directives: Mapping[str, Any]) -> str:
    """``#SBATCH --key=value`` lines; ``True`` gives a bare flag, ``False``/``None`` leaves the option out."""
    lines = []
    for key, value in directives.items():
        if not _DIRECTIVE_KEY.match(str(key)):
            raise ValueError(f"bad directive name {key!r}")
        if value is None or value is False:
            continue
        if value is True:
            lines.append(f"#SBATCH --{key}")
            continue
        text = str(value)
        if not _DIRECTIVE_VALUE.match(text):
            raise ValueError(f"directive --{key}: value {text!r} has characters sbatch would split or mangle")
        lines.append(f"#SBATCH --{key}={text}")
    return "\n".join(lines)


def expand_log_pattern(pattern: str, name: str, jobid: str) -> str:
    """A Slurm ``--output``/``--error`` pattern with ``%x``, ``%j`` and ``%%`` filled in."""
    return pattern.replace("%%", "\0").replace("%x", name).replace("%j", str(jobid)).replace("\0", "%")


def _shell(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool) or value is None or isinstance(value, Mapping):
        raise ValueError(f"cannot put {type(value).__name__} {value!r} in a shell script")
    if isinstance(value, list | tuple):
        return " ".join(_shell(v) for v in value)
    text = str(value)
    if "\x00" in text:
        raise ValueError("a script value contains a NUL byte")
    return shlex.quote(text)


@functools.lru_cache(maxsize=8)
def _environment(search_dir: str):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(search_dir),
        undefined=jinja2.StrictUndefined,
        finalize=_shell,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_script(template: str, *, directives: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """Render ``include/jobs/<template>`` (or an absolute template path) with the header and quoted ``values``."""
    import jinja2

    if "sbatch" in values:
        raise ValueError("'sbatch' is reserved for the directive header")
    path = Path(template)
    search_dir, name = (path.parent, path.name) if path.is_absolute() else (JOBS_DIR, template)
    try:
        text = _environment(str(search_dir)).get_template(name).render(sbatch=Raw(sbatch_header(directives)), **values)
    except jinja2.TemplateNotFound:
        raise ConfigError(f"no job template {name!r} in {search_dir}") from None
    except jinja2.UndefinedError as exc:
        raise ValueError(f"job template {template!r}: {exc.message}") from None
    if not text.startswith("#!"):
        raise ValueError(f"job template {template!r} does not start with '#!'")
    return text
