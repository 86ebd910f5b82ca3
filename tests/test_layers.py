"""The layers point one way: a module imports only from its own layer or the ones below.

geometry/errors -> core -> schemes (accounting: events in, counters out) -> mm/audit ->
ops/compare/kernelcheck -> render -> widgets/cli.  Schemes sit below mm because the machine
feeds them its events; they never see page tables.
"""
import ast
import pathlib

import pytest

pytestmark = pytest.mark.nojit

LAYER = {"_jit": 0, "units": 0, "geometry": 0, "errors": 0, "overflow": 0, "vmemmap": 0, "kernel_names": 0,
         "core": 1, "schemes": 2, "mm": 3, "audit": 3,
         "ops": 4, "comparison": 4, "kernelcheck": 4, "session": 4, "describe": 4, "scenario_file": 4, "scenarios": 4, "teach": 4, "handout": 4,
         "render": 5, "widgets": 6, "explain": 6, "bench": 6, "cli": 6, "warmup": 6, "notebook_errors": 6,
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


# --- no import cycles among hgmviz modules (function-level imports included) ------------
#: Cycles known today, each a set of module names; keep it empty.  The test below fails when
#: a listed cycle is gone, so the list can never hide a new one.
KNOWN_CYCLES: list = []


def _module_name(path: pathlib.Path) -> str:
    parts = ("hgmviz",) + path.relative_to(PKG).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _is_module(name: str) -> bool:
    rel = pathlib.Path(*name.split(".")[1:])
    return (PKG / rel).with_suffix(".py").exists() or (PKG / rel / "__init__.py").exists()


def import_edges(path: pathlib.Path):
    """(target module, line, what the statement imports from the top package) for every
    import of an hgmviz module anywhere in ``path``, functions included."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "hgmviz" or a.name.startswith("hgmviz."):
                    yield a.name, node.lineno, a.name == "hgmviz"
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "hgmviz" or node.module.startswith("hgmviz.")):
                mod = node.module
            else:
                continue
            for a in node.names:
                sub = mod + "." + a.name
                if _is_module(sub):
                    yield sub, node.lineno, False
                else:
                    yield mod, node.lineno, mod == "hgmviz"


def import_graph() -> dict:
    graph = {}
    for path in PKG.rglob("*.py"):
        me = _module_name(path)
        graph.setdefault(me, set())
        for target, _, _ in import_edges(path):
            if target != me and _is_module(target):
                graph[me].add(target)
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_inside_the_package():
    found = cycles(import_graph())
    new = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert new == [], "import cycle(s) among hgmviz modules: %s" % new
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert gone == [], "remove from KNOWN_CYCLES, no longer a cycle: %s" % gone


def test_the_package_never_imports_hgmviz_itself():
    bad = []
    for path in PKG.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == PKG:
            continue
        for target, line, top_package in import_edges(path):
            if top_package:
                bad.append("%s:%d imports the hgmviz package (import hgmviz / from hgmviz "
                           "import ...); import the module that defines the name"
                           % (path.relative_to(PKG), line))
    assert bad == []


MAX_MODULE_LINES = 800


def test_no_module_is_longer_than_800_lines():
    """Issue 12: no module of hgmviz/ longer than 800 lines (the cross-check's data table
    was the one exception; it now has the table alone in kernelcheck/scenarios.py)."""
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}, "modules over %d lines: %s" % (MAX_MODULE_LINES, long)
