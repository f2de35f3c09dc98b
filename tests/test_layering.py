"""The house's imports only point down, and no modules import each other in a cycle.

Every module under ``src/metajax`` and ``envs/`` (installed as ``metajax.envs``) is read with
``ast``; every ``import`` counts, function-level ones included (a lazy import is still a
dependency). A module may import its own layer or a lower one. Cycles are looked for among
module-level imports (function-level ones run after both modules have loaded), leaving out
``if TYPE_CHECKING:`` blocks.

A new module gets its place in ``LAYERS``; a module the table does not place fails the test.
Imports written as strings (``importlib.import_module``, the envs' lazy registry) are not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"metajax": ROOT / "src" / "metajax", "metajax.envs": ROOT / "envs"}

ORDER = ("envs", "core", "learners", "train", "runs", "top")  # low to high
# Dotted prefix -> layer; the longest matching prefix decides. Place new modules here.
LAYERS: dict[str, str] = {
    # the ground floor: environments, imports nothing from metajax outside metajax.envs
    "metajax.envs": "envs",
    # core modules: shared pieces every learner may use
    "metajax.types": "core",
    "metajax.errors": "core",
    "metajax.rollout": "core",
    "metajax.networks": "core",
    "metajax.distributed": "core",
    "metajax.multihost": "core",
    "metajax.replay": "core",
    "metajax.baselines": "core",
    "metajax.cores": "core",
    "metajax.posteriors": "core",
    # learners (learners.base is the interface train/evaluate use)
    "metajax.learners": "learners",
    # running any learner: the training loop and evaluation (evaluate imports learners.base;
    # train and evaluate do not need each other's layer above them)
    "metajax.train": "train",
    "metajax.evaluate": "train",
    # one run from options: RunArgs, build, metadata, evaluate-and-report, TOML loading
    "metajax.runs": "runs",
    # task-inference probes: load a run (runs.build, train's checkpoints), probe, report
    "metajax.inference": "runs",
    # several seeds of one learner trained at once (train's chunk vmapped over seeds)
    "metajax.seeds": "runs",
    # entry points
    "metajax.cli": "top",
    "metajax.sweep": "top",
    "metajax.sweep_report": "top",
    "metajax.__main__": "top",
}
ROOT_PACKAGE_LAYER = "envs"  # ``metajax`` itself (``__init__``: the version, no imports)
CLI_IMPORTERS = {"metajax.__main__"}  # nothing else may import metajax.cli
# Inside envs/: the adapters (gymnax, brax, xminigrid glue) sit under the task families, so
# they import only the envs' own ground pieces; the families import the adapters.
ADAPTERS = "metajax.envs.adapters"
ADAPTER_IMPORTS = ("metajax.envs.core", "metajax.envs.errors", "metajax.envs.wrappers", ADAPTERS)


@dataclass(frozen=True)
class Import:
    """One import of a metajax module found in ``source``."""

    source: str  # importing module
    target: str  # imported module (or the package whose attribute is imported)
    line: int
    module_level: bool  # executed when ``source`` is imported (not in a function)


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the house."""
    modules = {}
    for package, directory in SOURCES.items():
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            if package == "metajax" and name.startswith("metajax.envs"):
                continue  # not part of src/metajax
            modules[name] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, module_level: bool) -> Iterator[tuple[ast.AST, bool]]:
    """Import nodes under ``node`` and whether each runs at import time."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, module_level
        inside = module_level
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside = False
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            inside = False
        yield from _walk(child, inside)


def _base_package(module: str, path: Path, level: int) -> str:
    parts = module.split(".")
    if path.name != "__init__.py":
        parts = parts[:-1]
    return ".".join(parts[: len(parts) - (level - 1)] if level > 1 else parts)


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """The metajax imports of one module, resolved to module names where possible."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node, module_level in _walk(tree, True):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                prefix = _base_package(module, path, node.level)
                base = f"{prefix}.{base}" if base else prefix
            targets = []
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                targets.append(candidate if candidate in known else base)
        for target in dict.fromkeys(targets):  # one entry per imported module
            if target == "metajax" or target.startswith("metajax."):
                yield Import(module, target, node.lineno, module_level)


def _inside(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str | None:
    """The layer of ``module`` by its longest prefix in ``LAYERS`` (None: not placed)."""
    if module == "metajax":
        return ROOT_PACKAGE_LAYER
    matches = [p for p in LAYERS if _inside(module, p)]
    return LAYERS[max(matches, key=len)] if matches else None


def all_imports() -> list[Import]:
    modules = module_files()
    known = set(modules)
    return [imp for name, path in modules.items() for imp in imports_of(name, path, known)]


def _where(imp: Import) -> str:
    kind = "" if imp.module_level else " (in a function)"
    return f"{imp.source}:{imp.line} imports {imp.target}{kind}"


def test_every_module_has_a_layer():
    unplaced = sorted({m for m in module_files() if layer_of(m) is None})
    unplaced += sorted({i.target for i in all_imports() if layer_of(i.target) is None})
    assert not unplaced, (
        f"modules without a layer: {', '.join(sorted(set(unplaced)))}; "
        "place them in LAYERS at the top of tests/test_layering.py"
    )


def test_imports_point_down():
    violations = []
    for imp in all_imports():
        source, target = layer_of(imp.source), layer_of(imp.target)
        if source is None or target is None:
            continue  # reported by test_every_module_has_a_layer
        if ORDER.index(target) > ORDER.index(source):
            violations.append(f"{_where(imp)}: {source} -> {target} points up")
        if _inside(imp.source, ADAPTERS) and not any(
            _inside(imp.target, allowed) for allowed in ADAPTER_IMPORTS
        ):
            violations.append(f"{_where(imp)}: adapters import only {ADAPTER_IMPORTS}")
        if _inside(imp.target, "metajax.cli") and imp.source not in CLI_IMPORTERS:
            violations.append(f"{_where(imp)}: only {', '.join(CLI_IMPORTERS)} may import cli")
    assert not violations, "imports that point up the house:\n" + "\n".join(violations)


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, first repeated last) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return [_cycle_in(edges, component) for component in components]


def _cycle_in(edges: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(edges.get(v, set()) & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle in component {component}")


def test_find_cycles_reports_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(edges) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    known = set(module_files())
    edges: dict[str, set[str]] = {m: set() for m in known}
    for imp in all_imports():
        if imp.module_level and imp.target in known and imp.target != imp.source:
            edges[imp.source].add(imp.target)
    cycles = find_cycles(edges)
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )
