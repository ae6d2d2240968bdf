"""The import direction of the project (architecture issue 12), checked on the source with ``ast``.

dags (and the DAG-building code of dags/pipelines/) → provider (``als_provider``) → include core → nothing
of ours; compute_functions depends on nothing of ours. Dev and ops commands (tools/) and the local
facility (facility/, stand-in services for tools and tests) are outside the runtime code: no
runtime layer imports them.

Every ``.py`` file of dags/, plugins/als_provider/, include/ and compute_functions/ is parsed; every import
counts, at module level or inside a function (a lazy import is still a dependency). ``from x import y`` is
an import of ``x.y`` when that is one of our modules, else of ``x``. Relative imports are resolved against
the importing module's package. A DAG file's import of a module next to it (Airflow puts dags/ on
sys.path) counts as ``dags.<module>``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where each of our top-level packages lives.
ROOTS: dict[str, Path] = {
    "dags": REPO_ROOT / "dags",
    "als_provider": REPO_ROOT / "plugins" / "als_provider",
    "include": REPO_ROOT / "include",
    "compute_functions": REPO_ROOT / "compute_functions",
    "facility": REPO_ROOT / "facility",
    "tools": REPO_ROOT / "tools",
}
OURS = tuple(ROOTS)
#: Dev and test parts beside the runtime code (top-level folders): the stand-ins and the commands.
NOT_CORE = ("tools", "facility")


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported."""

    importer: str  # our module doing the import
    path: Path  # its file
    line: int
    statement: str  # the import statement as written
    module: str  # the module it imports (resolved)
    lazy: bool  # inside a function, class or ``if`` rather than at module level

    def __str__(self) -> str:
        where = " (inside a function)" if self.lazy else ""
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}: `{self.statement}` imports {self.module}{where}"


def within(module: str, *prefixes: str) -> bool:
    """``module`` is one of ``prefixes`` or inside one of them."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def module_name(path: Path) -> tuple[str, bool]:
    """The dotted name of our file ``path`` and whether it is a package's ``__init__``."""
    for top, root in ROOTS.items():
        if path.is_relative_to(root):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                return ".".join(parts[:-1]), True
            return ".".join(parts), False
    raise ValueError(f"{path} is not in one of our packages")


@cache
def our_files() -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of ours."""
    files = {}
    for root in ROOTS.values():
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            files[module_name(path)[0]] = path
    return files


def _eager_imports(tree: ast.Module) -> set[int]:
    """ids of the import nodes that run whenever the module is imported: its body, ``try`` and ``with`` blocks.

    Imports in function and class bodies and under ``if`` (``TYPE_CHECKING``, platform checks) are *lazy*;
    they still count as dependencies, the flag only says so in the report.
    """
    eager: set[int] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, ast.Import | ast.ImportFrom):
                eager.add(id(statement))
            elif isinstance(statement, ast.Try):
                for block in (statement.body, statement.orelse, statement.finalbody):
                    visit(block)
                for handler in statement.handlers:
                    visit(handler.body)
            elif isinstance(statement, ast.With):
                visit(statement.body)

    visit(tree.body)
    return eager


def imports_in(source: str, importer: str, is_package: bool, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import of the module ``importer`` (source ``source``), resolved against the modules ``known``."""
    tree = ast.parse(source, filename=str(path))
    eager = _eager_imports(tree)
    package = importer if is_package else importer.rpartition(".")[0]
    in_dags = within(importer, "dags")
    dag_folder_modules = {name.split(".")[1] for name in known if name.startswith("dags.")}

    def absolute(name: str) -> str:
        top = name.split(".")[0]
        if in_dags and top not in OURS and top in dag_folder_modules:
            return f"dags.{name}"
        return name

    nodes = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    for node in sorted(nodes, key=lambda node: (node.lineno, node.col_offset)):
        if isinstance(node, ast.Import):
            targets = [absolute(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = absolute(node.module or "")
            targets = []
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.append(submodule if submodule in known else base)
        statement = ast.unparse(node)
        for target in dict.fromkeys(targets):
            yield Import(importer, path, node.lineno, statement, target, lazy=id(node) not in eager)


@cache
def all_imports() -> tuple[Import, ...]:
    known = set(our_files())
    found = []
    for name, path in our_files().items():
        is_package = path.name == "__init__.py"
        found.extend(imports_in(path.read_text(), name, is_package, path, known))
    return tuple(found)


def violations(
    importers: tuple[str, ...], except_in: tuple[str, ...], forbidden: tuple[str, ...], eager: tuple[str, ...] = ()
) -> list[Import]:
    """Imports by modules in ``importers`` (but not in ``except_in``) of modules in ``forbidden``, and
    module-level imports of modules in ``eager``."""
    return [
        found
        for found in all_imports()
        if within(found.importer, *importers)
        and not within(found.importer, *except_in)
        and (within(found.module, *forbidden) or (not found.lazy and within(found.module, *eager)))
    ]


RULES = {
    "compute_functions imports nothing of ours": (("compute_functions",), (), ("dags", "als_provider", "include")),
    # Plain Python, testable without Airflow: the two adapters that reach Airflow (the Variable store of the
    # deletion manifests, Airflow's statsd for transfer metrics) import it inside the function that needs it.
    "include core imports no DAG code, provider, tools, facility, science, nor Airflow at module level": (
        ("include",),
        NOT_CORE,
        ("dags", "als_provider", "tools", "facility", "compute_functions"),
        ("airflow",),
    ),
    "als_provider imports no DAG code, tools or facility": (
        ("als_provider",),
        (),
        ("dags", "tools", "facility"),
    ),
    "dags import no tools or facility": (("dags",), (), ("tools", "facility")),
    "facility imports only include core": (
        ("facility",),
        (),
        ("als_provider", "dags", "tools", "compute_functions"),
    ),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_import_direction(rule):
    found = violations(*RULES[rule])
    if found:
        pytest.fail(f"{rule}; {len(found)} import(s) break it:\n" + "\n".join(f"  {v}" for v in found), pytrace=False)


def find_cycles(edges: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """One cycle (as its imports) per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, {}):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in sorted(edges):
            if node not in index:
                connect(node)
    finally:
        sys.setrecursionlimit(limit)

    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # shortest path back to start within the component (breadth first), as its imports
        previous: dict[str, Import] = {}
        frontier = [start]
        while frontier and start not in previous:
            following = []
            for node in frontier:
                for target, found in sorted(edges.get(node, {}).items()):
                    if target in members and target not in previous:
                        previous[target] = found
                        following.append(target)
            frontier = following
        cycle, node = [], start
        while True:
            found = previous[node]
            cycle.append(found)
            node = found.importer
            if node == start:
                break
        cycles.append(cycle[::-1])
    return cycles


def import_graph() -> dict[str, dict[str, Import]]:
    """importer -> imported module -> the first import of it (our modules only, no self-imports)."""
    known = set(our_files())
    graph: dict[str, dict[str, Import]] = {}
    for found in all_imports():
        if found.module in known and found.module != found.importer:
            graph.setdefault(found.importer, {}).setdefault(found.module, found)
    return graph


def test_no_import_cycle():
    cycles = find_cycles(import_graph())
    report = "\n".join(
        f"cycle {' -> '.join([cycle[0].importer, *(found.module for found in cycle)])}:\n"
        + "\n".join(f"  {found}" for found in cycle)
        for cycle in cycles
    )
    if cycles:
        pytest.fail(f"{len(cycles)} import cycle(s) among our modules:\n{report}", pytrace=False)


# -- the checker itself, on source written here ------------------------------------------------------
KNOWN = {"include", "include.paths", "tools", "tools.run_dag", "als_provider", "dags", "dags.pipelines"}
KNOWN |= {"dags.pipelines.dag_ids", "als_provider.hooks", "als_provider.hooks.sftp"}


def resolved(source: str, importer: str = "als_provider.hooks.sftp", is_package: bool = False) -> list[tuple]:
    path = REPO_ROOT / "x.py"
    return [(found.module, found.line, found.lazy) for found in imports_in(source, importer, is_package, path, KNOWN)]


def test_every_kind_of_import_is_found_and_resolved():
    source = """\
import os, include.paths
from include import paths, errors
from tools import run_dag as runner
from airflow.sdk import task
try:
    import h5py
except ImportError:
    h5py = None

def later():
    from tools.run_dag import run
    if True:
        import dags.pipelines.dag_ids
"""
    assert resolved(source) == [
        ("os", 1, False),
        ("include.paths", 1, False),
        ("include.paths", 2, False),
        ("include", 2, False),
        ("tools.run_dag", 3, False),
        ("airflow.sdk", 4, False),
        ("h5py", 6, False),
        ("tools.run_dag", 11, True),
        ("dags.pipelines.dag_ids", 13, True),
    ]


def test_relative_imports_and_dag_folder_imports_are_resolved():
    assert resolved("from . import sftp\nfrom .. import hooks\nfrom ..hooks.sftp import X\n") == [
        ("als_provider.hooks.sftp", 1, False),
        ("als_provider.hooks", 2, False),
        ("als_provider.hooks.sftp", 3, False),
    ]
    assert resolved("from . import sftp\n", importer="als_provider.hooks", is_package=True) == [
        ("als_provider.hooks.sftp", 1, False)
    ]
    # Airflow puts dags/ on sys.path: `import pipelines.dag_ids` in a DAG file is dags.pipelines.dag_ids
    assert resolved("import pipelines.dag_ids\n", importer="dags.bl832_x") == [("dags.pipelines.dag_ids", 1, False)]


def test_a_cycle_is_found_and_reported_with_its_imports():
    path = REPO_ROOT / "x.py"

    def edge(a: str, b: str) -> Import:
        return Import(a, path, 1, f"import {b}", b, lazy=False)

    edges = {
        "a": {"b": edge("a", "b")},
        "b": {"c": edge("b", "c"), "d": edge("b", "d")},
        "c": {"a": edge("c", "a")},
        "d": {},
    }
    [cycle] = find_cycles(edges)
    assert [(found.importer, found.module) for found in cycle] == [("a", "b"), ("b", "c"), ("c", "a")]
    assert find_cycles({"a": {"b": edge("a", "b")}, "b": {}}) == []


def test_every_package_of_ours_is_scanned():
    files = our_files()
    for top in OURS:
        assert top in files or any(name.startswith(top + ".") for name in files), top
    assert "tools.run_dag" in files and "als_provider.triggers.sftp_new_scan" in files
