"""DESIGN's package boundary: ``probes`` and ``steering`` take a Task and import nothing from
``interp.organism`` (at module level or inside a function); the organism's code lives in it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def organism_imports(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of ``interp.organism`` (or of ``organism`` from ``interp``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "interp":
            names = [f"interp.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[:2] == ["interp", "organism"]]
    return found


def test_the_checker_finds_top_level_and_function_local_imports():
    source = (
        "import interp.organism.world\n"
        "from interp import organism\n"
        "def f():\n    from interp.organism.store import load_world\n"
        "x = 'organism:base'  # a model spec, not an import\n"
        "from interp.models import load_model\n"
    )
    assert organism_imports(source) == [
        (1, "interp.organism.world"), (2, "interp.organism"), (4, "interp.organism.store")
    ]


@pytest.mark.parametrize("package", ["probes", "steering"])
def test_package_imports_nothing_from_the_organism(package):
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in organism_imports(path.read_text())
    ]
    assert bad == [], "organism code belongs in interp/organism/, not in " + package + ":\n" + "\n".join(bad)
