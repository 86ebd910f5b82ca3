"""The layers point one way: a module imports only from its own layer or the ones below.

geometry/errors -> core -> schemes (accounting: events in, counters out) -> mm/audit ->
ops/compare/kernelcheck -> render -> widgets/cli.  Schemes sit below mm because the machine
feeds them its events; they never see page tables.
"""
import ast
import pathlib

import pytest

pytestmark = pytest.mark.nojit

LAYER = {"_jit": 0, "units": 0, "geometry": 0, "errors": 0, "overflow": 0, "vmemmap": 0,
         "core": 1, "schemes": 2, "mm": 3, "audit": 3,
         "ops": 4, "comparison": 4, "kernelcheck": 4, "session": 4, "describe": 4, "scenario_file": 4, "scenarios": 4, "teach": 4,
         "render": 5, "widgets": 6, "explain": 6, "bench": 6, "cli": 6, "warmup": 6,
         "__init__": 7, "__main__": 7}
PKG = pathlib.Path(__file__).resolve().parent.parent / "hgmviz"


def top(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0].removesuffix(".py")


def imported(path: pathlib.Path):
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(PKG).parts) - 1
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > depth:
                    continue
                if node.level - 1 < depth:       # inside the same subpackage
                    continue
                base = node.module.split(".")[0] if node.module else None
                names = [base] if base else [a.name for a in node.names]
                yield from names
            elif node.module and node.module.startswith("hgmviz."):
                yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("hgmviz."):
                    yield a.name.split(".")[1]


def test_every_module_has_a_layer():
    for path in PKG.rglob("*.py"):
        assert top(path) in LAYER, "add %s to LAYER in tests/test_layers.py" % top(path)


def test_imports_point_down():
    bad = []
    for path in PKG.rglob("*.py"):
        me = top(path)
        for target in imported(path):
            if target in LAYER and LAYER[target] > LAYER[me]:
                bad.append("%s (layer %d) imports %s (layer %d)" % (
                    path.relative_to(PKG), LAYER[me], target, LAYER[target]))
    assert bad == []
