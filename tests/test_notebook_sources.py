"""The notebooks' generated parts are what ``notebooks/nav.py`` writes, and every cell follows the
notebook rules of DESIGN.md: short, no definitions, no outputs, one import cell, numbers computed by the
package rather than typed into the prose, navigation generated.

The chapters are MyST Markdown notebooks read with jupytext. These checks read files only (no kernel is
started); ``tests/test_notebooks.py`` runs them.
"""
from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
MAX_CELL_LINES = 12


def _load_nav():
    spec = importlib.util.spec_from_file_location("hgmviz_notebook_nav", NOTEBOOK_DIR / "nav.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up while it loads
    spec.loader.exec_module(mod)
    return mod


NAV = _load_nav()
CHAPTERS = NAV.chapters()
COMMITTED = sorted(str(p.relative_to(NOTEBOOK_DIR)) for p in
                   [*NOTEBOOK_DIR.rglob("*.md"), *NOTEBOOK_DIR.rglob("*.ipynb")]
                   if ".ipynb_checkpoints" not in p.parts)
AUTHORS = ("James Houghton", "David Hildenbrand", "Peter Xu", "Mike Kravetz", "Linus Torvalds")


def _read(rel):
    return NAV.read(rel)


# ------------------------------------------------------------------------------------------
# the generated parts are up to date; every notebook is one nav.py knows
# ------------------------------------------------------------------------------------------
def test_every_notebook_is_listed():
    assert sorted(NAV.expected_navs(CHAPTERS)) == COMMITTED, (
        "a notebook nav.py does not know (chapters are NN-slug.md, solutions "
        "solutions/NN-slug-solutions.md)")
    assert [c.number for c in CHAPTERS] == list(range(1, len(CHAPTERS) + 1))


def test_generated_parts_are_current():
    assert NAV.stale_files(write=False) == [], "run python notebooks/nav.py"


@pytest.mark.parametrize("rel", [r for r in COMMITTED if r.endswith(".md")])
def test_text_notebook_round_trips(rel):
    """What jupytext reads from the file it writes back byte for byte (so a save in JupyterLab that
    changes nothing changes no byte, whatever jupytext version: the header leaves it out)."""
    text = (NOTEBOOK_DIR / rel).read_text(encoding="utf-8")
    assert "jupytext_version" not in text
    assert NAV.render(_read(rel), rel) == text


# ------------------------------------------------------------------------------------------
# cell rules, on the committed files
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", COMMITTED)
def test_cells_are_short_and_output_free(rel):
    problems = []
    for i, cell in enumerate(_read(rel).cells):
        n = len(cell.source.splitlines())
        if n > MAX_CELL_LINES:
            problems.append("cell %d has %d lines (at most %d)" % (i, n, MAX_CELL_LINES))
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            problems.append("cell %d has outputs or an execution count" % i)
    assert not problems, "%s:\n%s" % (rel, "\n".join(problems))


@pytest.mark.parametrize("rel", COMMITTED)
def test_code_defines_nothing_and_imports_once(rel):
    problems = []
    code_cells = [(i, c) for i, c in enumerate(_read(rel).cells) if c.cell_type == "code"]
    for k, (i, cell) in enumerate(code_cells):
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as e:
            problems.append("cell %d does not parse: %s" % (i, e))
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                problems.append("cell %d defines %s (logic belongs in the package)"
                                % (i, type(node).__name__))
            if isinstance(node, (ast.Import, ast.ImportFrom)) and k != 0:
                problems.append("cell %d imports (only the first code cell may)" % i)
    assert code_cells, "%s has no code" % rel
    first = ast.parse(code_cells[0][1].source)
    if not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in first.body):
        problems.append("the first code cell must be the import cell")
    assert not problems, "%s:\n%s" % (rel, "\n".join(problems))


_MONTHS = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*"


def typed_numbers(markdown: str) -> list:
    """Numbers of four or more digits typed into prose: outside thread quotes (blockquotes),
    ``<details>`` answers, code, link targets and dates — there, a number shown to a reader
    must be printed by a code cell, i.e. computed by the package."""
    text = re.sub(r"<details>.*?</details>", " ", markdown, flags=re.S)
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"\b\d{1,2} %s \d{4}\b|\b%s \d{4}\b" % (_MONTHS, _MONTHS), " ", text)
    found = re.findall(r"\d[\d,._]*\d|\d", text)
    return [n for n in found if sum(ch.isdigit() for ch in n) >= 4
            and not re.fullmatch(r"19[89]\d|20[0-3]\d", n)]       # a year is not a result


def test_typed_numbers_detector():
    assert typed_numbers("needs 8,192 mappings") == ["8,192"]
    assert typed_numbers("refcount 2147483647") == ["2147483647"]
    assert typed_numbers("> “8192 (2^13) VMAs” — James, 17 Jan 2023") == []
    assert typed_numbers("<details>8,192</details> `0x5000` [x](y-2023.html), 5 Jan 2023") == []
    assert typed_numbers("2^30 and INT_MAX/2 and 512 entries, in 2019") == []
    assert typed_numbers("a 4096-entry table") == ["4096"]


@pytest.mark.parametrize("rel", COMMITTED)
def test_no_numbers_typed_into_markdown(rel):
    problems = []
    for i, cell in enumerate(_read(rel).cells):
        if cell.cell_type == "markdown":
            nums = typed_numbers(cell.source)
            if nums:
                problems.append("cell %d types %s: print it from the package instead" % (i, nums))
    assert not problems, "%s:\n%s" % (rel, "\n".join(problems))


# ------------------------------------------------------------------------------------------
# structure: navigation, links, chapter anatomy
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", COMMITTED)
def test_navigation_top_and_bottom(rel):
    cells = _read(rel).cells
    for where, cell in (("first", cells[0]), ("last", cells[-1])):
        assert "nav" in cell.metadata.get("tags", []), "%s: the %s cell is not a nav cell" % (rel, where)
        assert "Contents" in cell.source, "%s: the %s nav cell has no Contents link" % (rel, where)


@pytest.mark.parametrize("rel", COMMITTED)
def test_relative_links_resolve(rel):
    base = (NOTEBOOK_DIR / rel).parent
    problems = []
    for cell in _read(rel).cells:
        if cell.cell_type != "markdown":
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", cell.source):
            if "://" in target or target.startswith("#"):
                continue
            path = target.split("#")[0]
            if not (base / path).exists():
                problems.append(target)
    assert not problems, "%s links to missing files: %s" % (rel, problems)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.file for c in CHAPTERS])
def test_chapter_anatomy(chapter):
    """A promise, 2-4 learning goals, a worked example, predict-run-check answers in <details>, a
    quote of the thread with its author and date, a summary, exercises, and a solutions notebook."""
    text = "\n".join(c.source for c in _read(chapter.file).cells if c.cell_type == "markdown")
    assert "*Promise:" in text
    assert "Learning goals" in text
    goals = re.search(r"Learning goals:\n((?:\d\. .*\n?)+)", text)
    assert goals and 2 <= len(goals.group(1).strip().splitlines()) <= 4, "2 to 4 learning goals"
    assert "## Worked example" in text, "no worked example by hand"
    assert "**Predict" in text and "<details>" in text
    assert "## Summary" in text and "## Exercises" in text
    assert re.search(r"^> — (%s), \d{1,2} \w{3} 20\d\d" % "|".join(AUTHORS), text, flags=re.M), \
        "no quote of the thread with author and date"
    assert (NOTEBOOK_DIR / chapter.solutions_file).exists()


def test_tour_lists_every_chapter():
    text = "\n".join(c.source for c in _read(NAV.TOUR).cells)
    for ch in CHAPTERS:
        assert "](%s)" % ch.file in text, "the tour's contents miss %s" % ch.file


# ------------------------------------------------------------------------------------------
# the README's list of notebooks, with Binder links
# ------------------------------------------------------------------------------------------
def test_readme_lists_every_notebook_as_nav_py_generates_it():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(NAV.README_START) == 1 and readme.count(NAV.README_END) == 1
    assert NAV.readme_text(readme, CHAPTERS) == readme, (
        "README.md's generated parts differ from the chapters: run python notebooks/nav.py")
    table = readme[readme.index(NAV.README_START):readme.index(NAV.README_END)]
    for ch in CHAPTERS:
        assert "](notebooks/%s)" % ch.file in table
        assert "](notebooks/%s)" % ch.solutions_file in table


def test_readme_links_resolve_and_binder_links_open_existing_notebooks():
    from urllib.parse import parse_qs, unquote, urlparse
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [t for t in links if "://" not in t and not t.startswith("#")]
    assert [t for t in local if not (ROOT / t.split("#")[0]).exists()] == []
    binder = [t for t in links if t.startswith("https://mybinder.org/v2/")]
    assert len(binder) == len(CHAPTERS) + 3          # badge, tour, chapters, explorer
    launched = set()
    for url in binder:
        u = urlparse(url)
        assert u.path == "/v2/gh/%s/%s" % (NAV.BINDER_REPO, NAV.BINDER_REF), url
        (labpath,) = parse_qs(u.query)["labpath"]
        assert (ROOT / unquote(labpath)).is_file(), url
        launched.add(unquote(labpath))
    assert {"notebooks/" + ch.file for ch in CHAPTERS} <= launched


def test_glossary_links_resolve_and_names_every_scheme():
    from hgmviz.schemes import SCHEMES
    path = ROOT / "docs" / "glossary.md"
    text = path.read_text(encoding="utf-8")
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    assert targets and all((path.parent / t.split("#")[0]).exists() for t in targets)
    schemes = text[text.index("## The schemes"):]
    assert set(re.findall(r"^\*\*(\w+)\*\* —", schemes, flags=re.M)) == set(SCHEMES)
    tour = "\n".join(c.source for c in _read(NAV.TOUR).cells)
    assert "](%s)" % NAV.GLOSSARY in tour
