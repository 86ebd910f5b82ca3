"""Golden DOT source and plain text for the small named examples (toy geometry).

The files live in tests/data/render/: ``<example>.dot`` and ``<example>.txt`` (light theme,
80 columns), plus ``toy_thp_like.dark.dot``.  DOT source is snapshotted, never SVG bytes
(SVG differs between Graphviz versions).

Regenerate after an intended change, then review the diff and look at the pictures::

    HGMVIZ_REGEN_GOLDEN=1 NUMBA_CACHE_DIR=/tmp/nbc python -m pytest -q tests/test_render_golden.py -p no:cacheprovider
    python -m hgmviz.render.examples /tmp/render-examples     # .svg/.dot/.txt of every example
"""
import os
import pathlib

import pytest

from hgmviz.render.examples import SMALL, render_example

DATA = pathlib.Path(__file__).resolve().parent / "data" / "render"
REGEN = os.environ.get("HGMVIZ_REGEN_GOLDEN") == "1"

CASES = [(name, "light", "dot") for name in SMALL] + [(name, "light", "txt") for name in SMALL] + \
        [("toy_thp_like", "dark", "dot")]


@pytest.mark.parametrize("name,theme,kind", CASES)
def test_golden(name, theme, kind):
    d = render_example(name, theme=theme)
    got = d.dot if kind == "dot" else d.text(80)
    if kind == "dot" and not got.endswith("\n"):
        got += "\n"
    path = DATA / ("%s%s.%s" % (name, "" if theme == "light" else "." + theme, kind))
    if REGEN:
        DATA.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert path.exists(), "missing %s: regenerate with HGMVIZ_REGEN_GOLDEN=1" % path
    want = path.read_text(encoding="utf-8")
    assert got == want, ("%s differs from the golden file; if the change is intended, "
                         "regenerate (see this module's docstring) and review the diff" % path.name)


def test_every_golden_file_has_a_case():
    names = {"%s%s.%s" % (n, "" if t == "light" else "." + t, k) for n, t, k in CASES}
    on_disk = {p.name for p in DATA.glob("*") if p.suffix in (".dot", ".txt")}
    assert on_disk <= names, on_disk - names
