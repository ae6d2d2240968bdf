"""Reading our YAML configuration files: one loader, schema-checked, errors naming the file, the key and its line.

Every file of include/config/ is read by :func:`load_config`: the YAML is parsed safely, each key's line is
remembered, the document is checked against the module's JSON schema (the first violation becomes one
:class:`~include.errors.ConfigError` ``<file>:<line>: <key.path>: <what is wrong>``), and the module's own
rules report through :meth:`ConfigDocument.error` in the same form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from include.errors import ConfigError

#: A key path inside a document: mapping keys and list indexes, e.g. ``("sites", "alcf", "runner")``.
KeyPath = tuple[str | int, ...]


def dotted(path: KeyPath) -> str:
    """``sites.alcf.runner``, ``beamlines.bl733.file_suffixes[1]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass(frozen=True)
class ConfigDocument:
    """A parsed configuration file: its data, where it came from, and the line of every key."""

    data: Any
    source: Path
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest parent that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def where(self, path: KeyPath) -> str:
        """``<file>:<line>: <key.path>`` (the line left out when unknown)."""
        line = self.line(path)
        at = f"{self.source}:{line}" if line else f"{self.source}"
        return f"{at}: {dotted(path)}" if path else at

    def error(self, path: KeyPath | str, message: str) -> ConfigError:
        """A :class:`ConfigError` naming the file, the key (a tuple or a dotted string) and its line."""
        if isinstance(path, str):
            path = tuple(int(p) if p.isdigit() else p for p in path.split(".")) if path else ()
        return ConfigError(f"{self.where(path)}: {message}")


def _key_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*path, key)
            lines[child] = key_node.start_mark.line + 1
            _key_lines(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _key_lines(item, child, lines)


def parse_config(text: str, source: Path | str, schema: dict | None = None) -> ConfigDocument:
    """Parse YAML ``text`` (from ``source``) and check it against ``schema`` (JSON schema) if given."""
    source = Path(source)
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{source}:{mark.line + 1}" if mark is not None else f"{source}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{at}: not valid YAML: {problem}") from None
    lines: dict[KeyPath, int] = {}
    if root is not None:
        _key_lines(root, (), lines)
    document = ConfigDocument(data, source, lines)
    if schema is not None:
        check_schema(document, schema)
    return document


def load_config(path: Path | str, schema: dict | None = None, *, missing_ok: bool = False) -> ConfigDocument:
    """Read and parse the configuration file ``path``; a missing file is an error unless ``missing_ok``
    (then the document is empty: ``data`` is None)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        if missing_ok:
            return ConfigDocument(None, path)
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return parse_config(text, path, schema)


def check_schema(document: ConfigDocument, schema: dict) -> None:
    """Raise the first violation of ``schema`` (the one at the earliest line) as ``<file>:<line>: <key>: ...``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(document.data))
    if not errors:
        return
    error = min(errors, key=lambda e: (document.line(tuple(e.absolute_path)) or 0, len(e.absolute_path)))
    path = tuple(error.absolute_path)
    raise document.error(path, _describe(error))


def _describe(error: Any) -> str:
    """A short human sentence for a schema violation (never the whole schema)."""
    validator, value = error.validator, error.instance
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        names = ", ".join(map(str, extra)) or "?"
        return f"unknown key(s) {names}" + (f" (known: {', '.join(allowed)})" if allowed else "")
    if validator == "required":
        missing = [key for key in error.validator_value if not isinstance(value, dict) or key not in value]
        return f"missing key(s) {', '.join(missing)}"
    if validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {expected}, got {value!r}"
    if validator == "enum":
        return f"{value!r} is not one of {', '.join(map(str, error.validator_value))}"
    if validator == "pattern":
        return f"{value!r} has the wrong form" + (
            f" ({error.schema['description']})" if "description" in error.schema else ""
        )
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{value!r} is out of range ({validator} {error.validator_value})"
    if validator == "minItems":
        return "must not be empty"
    return error.message.splitlines()[0][:200]
