"""The import direction of the project (architecture issues 12 and 24), checked on the source with ``ast``.

The runtime: dags (and the DAG-building code of dags/pipelines/) → provider (``als_provider``) → include core →
nothing of ours. compute_functions (the science, run at the sites) depends on nothing of ours, and the runtime
reaches it through one door: ``include.compute_registry`` loads it with ``importlib`` inside a call, no other
runtime module imports it. Dev and ops commands (tools/) and the local facility (facility/, stand-in services
for tools and tests) are top-level folders beside the runtime: no runtime layer imports them; the facility
imports only the include core; tools, the top, may import any of ours.

Every ``.py`` file of dags/, plugins/als_provider/, include/, compute_functions/, facility/ and tools/ is parsed;
every import counts, at module level or inside a function (a lazy import is still a dependency). ``from x import
y`` is an import of ``x.y`` when that is one of our modules, else of ``x``. Relative imports are resolved against
the importing module's package. A DAG file's import of a module next to it (Airflow puts dags/ on sys.path)
counts as ``dags.<module>``. A load by name (``importlib.import_module``, ``importlib.util.find_spec``,
``__import__``) counts as an import of the module it names: a string literal, a module-level constant (a string
or a tuple/list of strings) or the variable of a ``for`` over one; a load whose name cannot be read that way is
an import of :data:`UNRESOLVED`, which no rule allows.
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


#: Functions that load a module named by their first argument.
LOADERS = ("importlib.import_module", "import_module", "importlib.util.find_spec", "find_spec", "__import__")
#: The module a load by name imports when the checker cannot read the name.
UNRESOLVED = "<unresolved dynamic import>"
#: Where an import runs only when something calls or chooses it (it still counts, flagged as lazy).
LAZY_BLOCKS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.If, ast.For, ast.While)


def _lazy_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes that do not run whenever the module is imported: inside a function, a class, an ``if``
    (``TYPE_CHECKING``, platform checks) or a loop. ``try`` and ``with`` blocks at module level run."""
    lazy: set[int] = set()
    for block in ast.walk(tree):
        if isinstance(block, LAZY_BLOCKS):
            lazy.update(id(node) for node in ast.walk(block) if node is not block)
    return lazy


def _string_values(node: ast.expr | None) -> list[str] | None:
    """The strings of a literal string, tuple or list of strings; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List) and all(
        isinstance(item, ast.Constant) and isinstance(item.value, str) for item in node.elts
    ):
        return [item.value for item in node.elts]
    return None


def _loaded_names(tree: ast.Module) -> Iterator[tuple[ast.Call, list[str] | None]]:
    """Every call of a :data:`LOADERS` function with the module names it may load (None: not readable)."""
    constants: dict[str, list[str]] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign | ast.AnnAssign) and (values := _string_values(statement.value)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            constants.update({target.id: values for target in targets if isinstance(target, ast.Name)})
    loops: dict[str, list[str]] = {}
    for loop in ast.walk(tree):
        if isinstance(loop, ast.For | ast.AsyncFor) and isinstance(loop.target, ast.Name):
            over = loop.iter
            values = constants.get(over.id) if isinstance(over, ast.Name) else _string_values(over)
            if values:
                loops.setdefault(loop.target.id, []).extend(values)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and ast.unparse(node.func) in LOADERS]
    for call in sorted(calls, key=lambda call: (call.lineno, call.col_offset)):
        argument = call.args[0] if call.args else None
        if isinstance(argument, ast.Name):
            yield call, loops.get(argument.id) or constants.get(argument.id)
        else:
            yield call, _string_values(argument) if isinstance(argument, ast.Constant) else None


def imports_in(source: str, importer: str, is_package: bool, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import of the module ``importer`` (source ``source``), resolved against the modules ``known``."""
    tree = ast.parse(source, filename=str(path))
    lazy = _lazy_nodes(tree)
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
            yield Import(importer, path, node.lineno, statement, target, lazy=id(node) in lazy)
    for call, names in _loaded_names(tree):
        statement = ast.unparse(call)
        for name in names or [UNRESOLVED]:
            if name.startswith("."):
                level = len(name) - len(name.lstrip("."))
                base = package.split(".")[: len(package.split(".")) - (level - 1)]
                name = ".".join([*base, name.lstrip(".")])
            yield Import(importer, path, call.lineno, statement, name, lazy=id(call) in lazy)


@cache
def all_imports() -> tuple[Import, ...]:
    known = set(our_files())
    found = []
    for name, path in our_files().items():
        is_package = path.name == "__init__.py"
        found.extend(imports_in(path.read_text(), name, is_package, path, known))
    return tuple(found)


@dataclass(frozen=True)
class Rule:
    """Modules in ``importers`` (but not in ``except_in``) import nothing in ``forbidden``, and nothing in
    ``eager`` at module level."""

    importers: tuple[str, ...]
    forbidden: tuple[str, ...] = ()
    eager: tuple[str, ...] = ()
    except_in: tuple[str, ...] = ()

    def breaks(self, found: Import) -> bool:
        return (
            within(found.importer, *self.importers)
            and not within(found.importer, *self.except_in)
            and (within(found.module, *self.forbidden) or (not found.lazy and within(found.module, *self.eager)))
        )


RUNTIME = ("dags", "als_provider", "include")
REGISTRY = "include.compute_registry"
RULES = {
    "compute_functions imports nothing of ours": Rule(
        ("compute_functions",), ("dags", "als_provider", "include", *NOT_CORE)
    ),
    # Plain Python, testable without Airflow: the two adapters that reach Airflow (the Variable store of the
    # deletion manifests, Airflow's statsd for transfer metrics) import it inside the function that needs it.
    "include core imports no DAG code, provider, tools nor facility, and Airflow only inside a function": Rule(
        ("include",), ("dags", "als_provider", *NOT_CORE), eager=("airflow",)
    ),
    f"the runtime reaches compute_functions only through {REGISTRY}": Rule(
        RUNTIME, ("compute_functions",), except_in=(REGISTRY,)
    ),
    f"{REGISTRY} loads compute_functions only inside a call (importing it loads no science)": Rule(
        (REGISTRY,), eager=("compute_functions",)
    ),
    "als_provider imports no DAG code, tools or facility": Rule(("als_provider",), ("dags", *NOT_CORE)),
    "dags import no tools or facility": Rule(("dags",), NOT_CORE),
    "facility imports only include core": Rule(("facility",), ("als_provider", "dags", "tools", "compute_functions")),
    "every load by name names its module (a literal or a module-level constant)": Rule(OURS, (UNRESOLVED,)),
    # No rule for tools/: the top, like the tests, a command may use any of ours (run_dag checks a conf with
    # dags.pipelines.params, demo writes a sample scan with compute_functions, the operator commands use hooks).
}
#: Imports that break a rule today, each with where it is being fixed; an entry that no longer breaks fails.
KNOWN_BREAKS: dict[tuple[str, str], str] = {}


def violations(rule: Rule) -> list[Import]:
    """The imports that break ``rule``, less :data:`KNOWN_BREAKS`."""
    return [
        found for found in all_imports() if rule.breaks(found) and (found.importer, found.module) not in KNOWN_BREAKS
    ]


@pytest.mark.parametrize("rule", list(RULES))
def test_import_direction(rule):
    found = violations(RULES[rule])
    if found:
        pytest.fail(f"{rule}; {len(found)} import(s) break it:\n" + "\n".join(f"  {v}" for v in found), pytrace=False)


def test_every_known_break_still_breaks_a_rule():
    breaking = {
        (found.importer, found.module) for found in all_imports() if any(r.breaks(found) for r in RULES.values())
    }
    fixed = [f"{importer} -> {module}" for importer, module in KNOWN_BREAKS if (importer, module) not in breaking]
    assert not fixed, f"fixed: remove from KNOWN_BREAKS: {', '.join(fixed)}"


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


def test_loads_by_name_are_imports_of_the_module_they_name():
    source = """\
import importlib
import importlib.util
from importlib import import_module

SERVICES = ("include.paths", "tools.run_dag")
REMOTE = "dags.pipelines.dag_ids"
importlib.import_module("include.paths")

def later(name):
    import_module(REMOTE)
    importlib.util.find_spec("h5py")
    __import__("tools")
    importlib.import_module(".sftp", __package__)
    for service in SERVICES:
        importlib.import_module(service)
    importlib.import_module(name)
    importlib.import_module(f"include.{name}")
"""
    assert [found for found in resolved(source) if found[0] not in ("importlib", "importlib.util")] == [
        ("include.paths", 7, False),
        ("dags.pipelines.dag_ids", 10, True),
        ("h5py", 11, True),
        ("tools", 12, True),
        ("als_provider.hooks.sftp", 13, True),
        ("include.paths", 15, True),
        ("tools.run_dag", 15, True),
        (UNRESOLVED, 16, True),
        (UNRESOLVED, 17, True),
    ]


def test_a_rule_is_broken_by_a_load_by_name_and_by_an_unreadable_one():
    path = REPO_ROOT / "x.py"
    source = 'import importlib\n\ndef run(name):\n    importlib.import_module("compute_functions.remote")\n'
    [load] = [found for found in imports_in(source, "dags.bl832_x", False, path, KNOWN) if found.lazy]
    assert RULES["the runtime reaches compute_functions only through include.compute_registry"].breaks(load)
    in_registry = Import(REGISTRY, path, 4, load.statement, load.module, lazy=True)
    assert not any(rule.breaks(in_registry) for rule in RULES.values())
    at_module_level = Import(REGISTRY, path, 4, load.statement, load.module, lazy=False)
    assert [name for name, rule in RULES.items() if rule.breaks(at_module_level)] == [
        "include.compute_registry loads compute_functions only inside a call (importing it loads no science)"
    ]
    unreadable = Import("facility.app", path, 9, "importlib.import_module(name)", UNRESOLVED, lazy=True)
    assert [name for name, rule in RULES.items() if rule.breaks(unreadable)] == [
        "every load by name names its module (a literal or a module-level constant)"
    ]
