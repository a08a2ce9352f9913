"""The package's dependency rules (docs/ARCHITECTURE.md), checked on its import statements.

Every import counts, at module level or inside a function: a lazy import is still a
dependency. A module may import its own package and the packages of lower layers; the
stages (one layer) never import each other, they talk through artifacts.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ssl_toolkit"

#: Package -> layer. A package imports only itself and packages of lower layers.
LAYERS = {
    "core": 0,  # errors, config, console, geometry, readers, artifacts, labels, memory, cpu
    "features": 1,  # FeatureSpec, the extractor, the on-disk format
    "losses": 1,
    "models": 2,  # networks, registry, checkpoints, the Localizer interface
    "analysis": 3,  # metrics, thresholds, calibration, density, frames, plots
    "data_prep": 4,  # stages: ssl prep ...
    "training": 4,  # ssl train
    "evaluation": 4,  # ssl eval, ssl baseline, ssl report
    "inference": 4,  # ssl export, ssl predict
    "testing": 4,  # fixtures built from the lower layers
    "experiments": 5,  # the toy and the demo run the stages
    "cli": 6,
    "__main__": 7,
}
STAGE_LAYER = 4


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every ``ssl_toolkit`` import of the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(source if source is not None else path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(ln, t) for ln, t in found if t == "ssl_toolkit" or t.startswith("ssl_toolkit.")]


def top_package(module: str) -> str | None:
    """``core`` for ``ssl_toolkit.core.geometry``; None for the root package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def violations(path: Path, source: str | None = None) -> list[str]:
    """Imports of the file that break the layering, as ``file:line: a -> b (why)``."""
    own = top_package(module_name(path))
    if own is None:
        return []
    bad = []
    for line, target in imports(path, source):
        other = top_package(target)
        if other is None or other == own:
            continue  # the root package (__version__) or the module's own package
        why = None
        if LAYERS[other] > LAYERS[own]:
            why = "upward"
        elif LAYERS[other] == LAYERS[own]:
            why = "sideways between stages" if LAYERS[own] == STAGE_LAYER else "sideways"
        if why:
            bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {own} -> {other} ({why})")
    return bad


def package_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_package_has_a_layer():
    tops = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in package_files()}
    assert tops - {"__init__"} <= set(LAYERS), sorted(tops - set(LAYERS) - {"__init__"})


def test_no_upward_or_sideways_import():
    bad = [v for p in package_files() for v in violations(p)]
    assert not bad, "\n".join(bad)


def test_the_rule_catches_a_sideways_import_between_stages():
    """A training module that reached into the evaluation stage would fail the test above."""
    fake = ROOT / "training" / "shortcut.py"
    src = "def f():\n    from ..evaluation.evaluate import evaluate_run\n"
    assert violations(fake, src) == [
        "ssl_toolkit/training/shortcut.py:2: training -> evaluation (sideways between stages)"
    ]
    up = "from ..inference.export import export_run\n"
    assert violations(ROOT / "models" / "x.py", up)[0].endswith("models -> inference (upward)")


def _module_graph() -> dict[str, set[str]]:
    names = {module_name(p) for p in package_files()}
    graph = defaultdict(set)
    for p in package_files():
        for _, target in imports(p):
            while target not in names and "." in target:  # `from pkg import name`
                target = target.rpartition(".")[0]
            if target != module_name(p):
                graph[module_name(p)].add(target)
    return graph


@pytest.mark.parametrize(
    "graph", [None, {"a": {"b"}, "b": {"c"}, "c": {"a"}}], ids=["package", "a-b-c"]
)
def test_no_import_cycle(graph):
    """No module imports itself through others (the package's graph); a hand-made cycle is
    found (the check can fail)."""
    g = _module_graph() if graph is None else graph
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, stack: list[str]) -> bool:
        state[m] = 1
        for n in sorted(g.get(m, ())):
            if state.get(n) == 1:
                cycle.extend(stack[stack.index(n) :] + [m, n] if n in stack else [m, n])
                return True
            if state.get(n) is None and visit(n, [*stack, m]):
                return True
        state[m] = 2
        return False

    found = any(state.get(m) is None and visit(m, []) for m in sorted(g))
    if graph is None:
        assert not found, " -> ".join(cycle)
    else:
        assert found and cycle[0] == cycle[-1]
