"""The package's imports run one way: ingest -> store -> answer -> pipeline -> serve/evaluation -> cli.

A module may import its own layer or a lower one; ``config``, ``errors`` and ``types`` are the
floor every layer stands on. Imports inside functions count too: a lazy import of a higher layer
still ties the lower one to it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

QA = Path(__file__).resolve().parents[1] / "qa"

#: Rank of each part of the package; a module may import only parts of its rank or lower.
LAYERS = {
    "config": 0,
    "errors": 0,
    "types": 0,
    "ingest": 1,
    "store": 2,
    "answer": 3,
    "pipeline": 4,
    "serve": 5,
    "evaluation": 5,
    "cli": 6,
    "__main__": 7,
}


def part_of(module: str) -> str | None:
    """The layer name of a dotted ``qa`` module ("qa.store.index" -> "store"), None for the
    package root (the public API) or a module outside ``qa``."""
    bits = module.split(".")
    if bits[0] != "qa" or len(bits) == 1:
        return None
    return bits[1]


def imported(tree: ast.AST, here: str) -> list[tuple[int, str]]:
    """Every ``qa`` module a source imports, with its line (``from qa import x`` names qa.x)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("qa")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = here.split(".")[: -node.level]
                base = ".".join([*pkg, *([base] if base else [])])
            if base == "qa":
                out += [(node.lineno, f"qa.{a.name}") for a in node.names]
            elif base.startswith("qa."):
                out.append((node.lineno, base))
    return out


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(QA.rglob("*.py")):
        rel = path.relative_to(QA.parent).with_suffix("")
        found.append((".".join(rel.parts).removesuffix(".__init__"), path))
    return found


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {part_of(name) for name, _ in modules()} - {None}
    assert parts <= LAYERS.keys(), f"give these a layer in LAYERS: {sorted(parts - LAYERS.keys())}"


@pytest.mark.parametrize(("name", "path"), modules(), ids=[n for n, _ in modules()])
def test_no_module_imports_a_higher_layer(name: str, path: Path) -> None:
    mine = part_of(name)
    if mine is None:
        return  # qa/__init__.py: the public API re-exports from every layer
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for line, target in imported(tree, name):
        theirs = part_of(target)
        rank = LAYERS["pipeline"] if theirs is None else LAYERS.get(theirs, 0)  # bare "qa" is the facade
        if rank > LAYERS[mine]:
            bad.append(f"{path.name}:{line} imports {target}")
    assert not bad, f"{name} (layer {mine}) imports a higher layer: {bad}"


def test_the_check_catches_an_upward_import() -> None:
    """The rule itself: a store module importing the reader is refused, a reader importing the
    store is not."""
    up = ast.parse("def f():\n    from qa.answer import reader\n")
    down = ast.parse("from qa.store.index import IndexData\n")
    (target,) = [t for _, t in imported(up, "qa.store.index")]
    assert part_of(target) == "answer" and LAYERS["answer"] > LAYERS["store"]
    (target,) = [t for _, t in imported(down, "qa.answer.reader")]
    assert part_of(target) == "store" and LAYERS["store"] <= LAYERS["answer"]
