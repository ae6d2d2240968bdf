"""Reading our YAML configuration files: one loader, schema-checked, errors naming the file, the key and its line.

Every file of include/config/ is read by :func:`load_config`: the YAML is parsed safely, each key's line is
remembered, the document is checked against the module's JSON schema (the first violation becomes one
:class:`~include.errors.ConfigError` ``<file>:<line>: <key.path>: <what is wrong>``), and the module's own
rules report through :meth:`ConfigDocument.error` in the same form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from include.errors import ConfigError

T = TypeVar("T")

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
        """The line of ``path``, or of its nearest parent that has one (``()``: where the document starts)."""
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)

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


def named(table: Mapping[str, T], name: str, what: str, source: Path) -> T:
    """``table[name]``; else a :class:`ConfigError` ``<source>: unknown <what> '<name>' (known: ...)``."""
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"{source}: unknown {what} {name!r} (known: {', '.join(sorted(table))})") from None


def _key_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], source: Path) -> None:
    """Record the line of every key and list item under ``node``; a key given twice in a mapping is an error
    (YAML would keep the last one silently)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if child in lines:
                raise ConfigError(f"{source}:{line}: {dotted(child)}: given twice (first on line {lines[child]})")
            lines[child] = line
            _key_lines(value_node, child, lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _key_lines(item, child, lines, source)


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
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None and context_mark.line != getattr(mark, "line", None):
            problem += f" ({context} started on line {context_mark.line + 1})"
        raise ConfigError(f"{at}: not valid YAML: {problem}") from None
    lines: dict[KeyPath, int] = {}
    if root is not None:
        lines[()] = root.start_mark.line + 1
        _key_lines(root, (), lines, source)
    document = ConfigDocument(data, source, lines)
    if schema is not None:
        check_schema(document, schema)
    return document


def load_config(path: Path | str, schema: dict | None = None) -> ConfigDocument:
    """Read and parse the configuration file ``path`` (checked against ``schema`` if given)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return parse_config(text, path, schema)


def check_schema(document: ConfigDocument, schema: dict) -> None:
    """Raise the first violation of ``schema`` (the one at the earliest line) as ``<file>:<line>: <key>: ...``;
    an unknown key is named at its own line."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    found = [(_where(document, error), error) for error in validator.iter_errors(document.data)]
    if not found:
        return
    path, error = min(
        found,
        key=lambda item: (document.line(item[0]) or 0, item[1].validator != "additionalProperties", len(item[0])),
    )
    raise document.error(path, _describe(error))


def _where(document: ConfigDocument, error: Any) -> KeyPath:
    """The key a violation is about: an unknown key itself (the first in the file), else the value's path."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        extra = [key for key in error.instance if key not in known]
        if extra:
            return (*path, min(extra, key=lambda key: document.line((*path, key)) or 0))
    return path


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


def _describe(error: Any) -> str:
    """A short human sentence for a schema violation (never the whole schema)."""
    validator, value = error.validator, error.instance
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return "unknown key" + (f" (known: {', '.join(allowed)})" if allowed else "")
    if validator == "required":
        missing = [key for key in error.validator_value if not isinstance(value, dict) or key not in value]
        return f"missing key(s) {', '.join(missing)}"
    if validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {expected}, got {_show(value)}"
    if validator == "enum":
        return f"one of {', '.join(map(str, error.validator_value))}, got {_show(value)}"
    if validator == "pattern":
        return f"{_show(value)} has the wrong form" + (
            f" ({error.schema['description']})" if "description" in error.schema else ""
        )
    if validator in _BOUNDS:
        return f"must be {_BOUNDS[validator]} {error.validator_value}, got {_show(value)}"
    if validator in ("minItems", "minProperties", "minLength"):
        return "must not be empty"
    return error.message.splitlines()[0][:200]
