"""The package's imports follow the pipeline and hold no cycle (read with ast: nothing is imported here).

Every import counts, also the ones inside functions: a lazy import back against the pipeline is still
a dependency, only hidden. Order (a folder may import its own and lower ranks only):

    errors, _quiet, user_files, entry_points, outputs, progress, validate  <  models, data, devices  <  lod  <  train
    <  export  <  latency  <  solve  <  quality  <  fit  <  report  <  cli, __main__, the package

export sits below latency (the design sketch has it after solve) because profiling times exported
programs: the exporter needs nothing from latency, the profiler needs the exporter.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "maestro_edge"
RANKS = [("errors", "_quiet", "user_files", "entry_points", "outputs", "progress", "validate"), ("models", "data", "devices"), ("lod",),
         ("train",), ("export",), ("latency",), ("solve",), ("quality",), ("fit",), ("report",),
         ("cli", "__main__", "")]
RANK = {folder: rank for rank, folders in enumerate(RANKS) for folder in folders}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("maestro_edge", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (``from pkg import sub`` names the submodule)."""
    graph = defaultdict(set)
    for name, path in found.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("maestro_edge"):
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in found else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("maestro_edge")]
            else:
                continue
            graph[name].update(t for t in targets if t in found and t != name)
    return graph


def folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first walk, as the cycle it closes."""
    found, state = [], {}

    def walk(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node, [])
    return found


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_in_a_cycle():
    assert cycles(import_graph(modules())) == []


def test_no_folder_imports_in_a_cycle():
    folders = defaultdict(set)
    for module, targets in import_graph(modules()).items():
        folders[folder(module)].update(folder(t) for t in targets if folder(t) != folder(module))
    assert cycles(folders) == []


def test_imports_follow_the_pipeline():
    found = modules()
    unranked = sorted({folder(m) for m in found} - set(RANK))
    assert not unranked, f"give these folders a rank in RANKS: {unranked}"
    against = [f"{m} imports {t}" for m, targets in import_graph(found).items() for t in sorted(targets)
               if RANK[folder(t)] > RANK[folder(m)]]
    assert against == []
