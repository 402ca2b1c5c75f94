"""The package's imports follow its declared layers: a module imports only from its own layer or the
ones below, and no modules import each other in a cycle. Read from the sources (ast), so imports
inside functions count too; ``if TYPE_CHECKING:`` imports count for the layers but not as cycles
(they never run)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmrebal"

# Lowest first. A package may import its own modules, and any package of a lower layer; packages of
# one layer do not import each other. "" is the top-level package itself (``mmrebal.__version__``).
LAYERS: list[set[str]] = [
    {"", "paths", "registry", "storage"},  # no mmrebal imports besides these
    {"names"},  # registered names from the sources, before torch loads
    {"cache"},  # the HDF5 format, its writer and reader
    {"media"},  # decoding: frames, audio, features and their settings
    {"prep", "models"},  # dataset adapters and the prep runner | encoders, fusions, the model
    {"data", "methods"},  # loader settings, batch loader, device transfer | model-side methods
    {"evaluation"},  # metrics, the scoring pass, ScoreResult and sampler-independent scores
    {"samplers"},  # data-side methods
    {"engine"},  # config, build, trainer, hooks, checkpoints, traces, DDP, scoring runs
    {"report", "sweep"},  # tables and figures of finished runs | the sweep grid
    {"cluster"},  # the sweep on submitit
    {"cli"},  # the command line
    {"__main__"},  # python -m mmrebal
]
LAYER_OF = {package: i for i, layer in enumerate(LAYERS) for package in layer}


def module_name(path: Path) -> str:
    parts = ["mmrebal", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def package_of(module: str) -> str:
    """``mmrebal.engine.trainer`` -> ``engine``; a top-level module is its own package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str) -> Iterator[tuple[str, int, bool]]:
    """(imported mmrebal module, line, inside ``if TYPE_CHECKING``) for every import in ``module``,
    at any depth; ``from mmrebal.x import y`` names ``mmrebal.x.y`` when that is a module."""
    tree = ast.parse(MODULES[module].read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            typing_only |= {id(n) for child in node.body for n in ast.walk(child)}
    base = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                source = f"{anchor}.{node.module}" if node.module else anchor
            else:
                source = node.module or ""
            names = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        else:
            continue
        for name in names:
            if name == "mmrebal" or name.startswith("mmrebal."):
                while name not in MODULES:  # mmrebal.x.attr -> mmrebal.x
                    name = name.rpartition(".")[0]
                yield name, node.lineno, id(node) in typing_only


def test_every_package_has_a_layer() -> None:
    assert {package_of(m) for m in MODULES} == set(LAYER_OF)


def test_imports_only_go_down_the_layers() -> None:
    wrong = []
    for module in MODULES:
        mine = package_of(module)
        for target, line, _ in imports(module):
            theirs = package_of(target)
            if theirs != mine and LAYER_OF[theirs] >= LAYER_OF[mine]:
                wrong.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} {module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others() -> None:
    graph = {m: {t for t, _, typing in imports(m) if not typing and t != m} for m in MODULES}
    assert cycles(graph) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_function_level_imports_are_seen() -> None:
    found = {target for target, _, _ in imports("mmrebal.cli.train")}
    assert "mmrebal.prep.runner" in found  # imported inside default_cache()
