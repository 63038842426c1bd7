"""No import cycles among the project's own modules, function-level imports included.

Every module of ``optprune/``, ``formulations/`` (installed as
``optprune.formulations``) and ``solvers/`` (``optprune.solvers``) is parsed
with :mod:`ast`; every ``import`` / ``from ... import`` anywhere in it (module
level or inside a function) that names a project module is an edge, and so is
the package ``__init__`` it runs on the way (an ancestor package of the target
that is not an ancestor of the importer). Imports under ``if TYPE_CHECKING:``
never run and are left out. A cycle means two modules each need the other: the
code that makes them so lives in the wrong room.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"optprune": ROOT / "optprune", "optprune.formulations": ROOT / "formulations",
           "optprune.solvers": ROOT / "solvers"}

#: Cycles known and tolerated: a strongly connected component passes when every module in it matches an
#: entry's patterns ("a.b" exactly, "a.b.*" for its submodules). None today: every cycle fails the test.
KNOWN_CYCLES: list[tuple[tuple[str, ...], str]] = []


def _matches(module: str, patterns: tuple[str, ...]) -> bool:
    return any(module == p or (p.endswith(".*") and module.startswith(p[:-1])) for p in patterns)


def _known(component: set[str]) -> bool:
    return any(all(_matches(m, patterns) for m in component) for patterns, _ in KNOWN_CYCLES)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for prefix, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = list(rel.parts)
            if parts[0] in ("formulations", "solvers") and prefix == "optprune":
                continue  # a link or copy of the mapped packages: counted under their installed names
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skip.update(id(n) for n in ast.walk(child))
    return skip


def _targets(module: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_nodes(tree)
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names = [stem] + [f"{stem}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def import_graph() -> nx.DiGraph:
    modules = _modules()
    known = set(modules)
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for module, path in modules.items():
        own_ancestors = {module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)}
        for target in _targets(module, path, known):
            graph.add_edge(module, target)
            parts = target.split(".")
            for k in range(1, len(parts)):
                ancestor = ".".join(parts[:k])
                if ancestor in known and ancestor not in own_ancestors and ancestor != module:
                    graph.add_edge(module, ancestor)
    return graph


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph()
    assert graph.number_of_nodes() > 50
    assert graph.has_edge("optprune.pruning._pruner", "optprune.scoring")
    assert graph.has_edge("optprune.search._torch", "optprune.structure")
    # the package __init__ an import runs on the way is an edge too (_unstructured imports only scoring._weights)
    assert graph.has_edge("optprune.pruning._unstructured", "optprune.scoring")


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = []
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        if _known(component):
            continue
        cycle = nx.find_cycle(graph.subgraph(component))
        cycles.append(" -> ".join([a for a, _ in cycle] + [cycle[0][0]]))
    assert not cycles, "import cycles among the project's modules:\n" + "\n".join(cycles)


def test_known_cycles_are_not_stale() -> None:
    components = [c for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    stale = [reason for patterns, reason in KNOWN_CYCLES
             if not any(all(_matches(m, patterns) for m in c) for c in components)]
    assert not stale, f"these known cycles are gone; remove them from KNOWN_CYCLES: {stale}"


def test_structure_search_formulation_never_reaches_a_solver() -> None:
    # formulations build models; the structure search solves them in optprune.search
    graph = import_graph()
    package = "optprune.formulations.structure_search"
    modules = [m for m in graph if m == package or m.startswith(package + ".")]
    assert len(modules) > 3
    for module in modules:
        solvers = [t for t in graph.successors(module) if t == "optprune.solvers" or t.startswith("optprune.solvers.")]
        assert not solvers, f"{module} imports {solvers}"


def test_the_model_type_and_the_cli_commands_import_nothing_above_them() -> None:
    # solvers are built on the MILP (files are read and written by optprune.solvers), and the CLI's app is
    # assembled in cli._app from command modules that never import it (nor the optprune.cli package)
    graph = import_graph()
    assert not [t for t in graph.successors("optprune.milp") if t.startswith("optprune.solvers")]
    commands = [m for m in graph if m.startswith("optprune.cli._") and m != "optprune.cli._app"]
    assert len(commands) >= 8
    for module in commands:
        back = [t for t in graph.successors(module) if t in ("optprune.cli", "optprune.cli._app")]
        assert not back, f"{module} imports {back}"
