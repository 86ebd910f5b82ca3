"""hgmviz explain / hgmviz scenarios (issue 8): reviewer explainers.

* Golden text: ``tests/data/explain/<scenario>.txt`` is ``hgmviz explain <scenario> --format
  text`` for every shipped scenario, byte for byte.  Regenerate after an intended change (to a
  scenario, the renderer, the machine), then review the diff::

      HGMVIZ_REGEN_GOLDEN=1 NUMBA_CACHE_DIR=/tmp/nbc python -m pytest -q tests/test_explain.py -p no:cacheprovider
      git diff tests/data/explain/

* Every text line fits 80 columns; the HTML parses with html5lib in strict mode, has exactly
  one SVG per step, no script, no event handler attribute and no external URL.
* Malformed scenario files of several kinds: exit 3 and ``FILE:LINE: what is wrong``; the other
  documented exit codes (2 usage, 4 no Graphviz, 5 cannot write); ``--format svg`` writes one
  file per step; a live session explained is not changed.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

import hgmviz as hv
from hgmviz import explain as E
from hgmviz.explain import text as explain_text
from hgmviz.cli import main as cli_main
from hgmviz.ops import MemfdCreate, Mmap, Spawn, Touch
from hgmviz.scenarios import list_scenarios, read_scenario

DATA = pathlib.Path(__file__).resolve().parent / "data" / "explain"
REGEN = os.environ.get("HGMVIZ_REGEN_GOLDEN") == "1"
SHIPPED = [i.name for i in list_scenarios()]
HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT and os.environ.get("CI") != "true",
                               reason="Graphviz's dot is missing (CI fails instead)")
SVG_NS = "{http://www.w3.org/2000/svg}"


@functools.lru_cache(maxsize=None)
def explainer(name: str, schemes=None) -> E.Explainer:
    """Built once per module run (the text and HTML tests share it)."""
    return E.build_explainer(name, schemes)


def unwrap(text: str) -> str:
    """Shell commands continued with backslashes, on one line."""
    return re.sub(r" \\\n +", " ", text)


def cols(line: str) -> int:
    return explain_text._cols(line)


# =========================================================================================
# Text: golden files, 80 columns
# =========================================================================================
@pytest.mark.parametrize("name", SHIPPED)
def test_text_matches_the_golden_file(name):
    got = E.to_text(explainer(name))
    path = DATA / (name + ".txt")
    if REGEN:
        DATA.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8", newline="\n")
    assert path.exists(), "missing %s: regenerate with HGMVIZ_REGEN_GOLDEN=1" % path
    want = path.read_text(encoding="utf-8")
    assert got == want, ("%s differs from the golden file; if the change is intended, "
                         "regenerate (see this module's docstring) and review the diff"
                         % path.name)


def test_every_golden_file_is_a_shipped_scenario():
    on_disk = {p.stem for p in DATA.glob("*.txt")}
    assert on_disk <= set(SHIPPED), "stale golden files: %s" % sorted(on_disk - set(SHIPPED))


@pytest.mark.parametrize("name", SHIPPED)
def test_text_fits_80_columns_and_tells_every_step(name):
    ex = explainer(name)
    text = E.to_text(ex)
    for no, line in enumerate(text.split("\n"), 1):
        assert cols(line) <= 80, "line %d is %d columns: %r" % (no, cols(line), line)
        assert "\t" not in line and line == line.rstrip(), "line %d: %r" % (no, line)
    sc = read_scenario(list_scenarios()[SHIPPED.index(name)].path)
    assert len(ex.steps) == len(sc.steps) == ex.total
    headers = re.findall(r"^Step (\d+) of (\d+): ", text, re.M)
    assert [int(a) for a, _ in headers] == list(range(1, len(sc.steps) + 1))
    assert {int(b) for _, b in headers} == {len(sc.steps)}
    assert text.count("\ncall path  ") >= len(sc.steps)
    assert text.count("\ncounters ") >= len(sc.steps)
    for st in sc.steps:                               # every narration is told
        if st.narration:
            assert " ".join(st.narration.split()[:6]) in " ".join(text.split())


def test_text_of_a_comparison_has_one_column_per_scheme():
    text = E.explain("overflow_toy_sign", format="text",
                     schemes="per_piece,hstate_present,subtree_counted")
    heads = [ln for ln in text.split("\n") if re.match(r"counters {2,}\w", ln)]
    assert heads and all(ln.split()[1:] == ["per_piece", "hstate_present", "subtree_counted"]
                         for ln in heads)
    assert "its expectations not checked" in text
    assert "--schemes per_piece,hstate_present,subtree_counted" in unwrap(text)
    # the wrap of the refcount under the per-piece scheme is marked "!" in the table
    step11 = text.split("Step 11 of 14")[1].split("Step 12 of 14")[0]
    row = next(ln for ln in step11.split("\n") if ln.startswith("  folio_ref_count()"))
    assert row.split()[1:] == ["!-128", "~3", "~3"]
    assert all(cols(ln) <= 80 for ln in text.split("\n"))


def test_wide_tables_split_instead_of_passing_80_columns():
    text = E.explain("collapse_cost", format="text",
                     schemes=["mainline", "per_piece", "thp_like", "hstate_present",
                              "subtree_counted"])
    assert max(cols(ln) for ln in text.split("\n")) <= 80
    assert "subtree_counted" in text


def test_steps_selects_what_is_shown():
    text = E.explain("overflow_toy_sign", format="text", steps="11")
    assert re.findall(r"^Step (\d+) of 14", text, re.M) == ["11"]
    assert "steps      14 (shown here: 11)" in text
    assert "--steps 11" in text
    # the marks still compare with the step before: the refcount changed in step 11
    assert re.search(r"^  folio_ref_count\(\) +!-128 +!-128 +~3$", text, re.M)
    with pytest.raises(ValueError, match="steps 1..14"):
        E.explain("overflow_toy_sign", format="text", steps="15")
    assert E.parse_steps("3, 5-7,3", 9) == (3, 5, 6, 7)


# =========================================================================================
# HTML: parses, one SVG per step, self-contained
# =========================================================================================
def parse_html(doc: str):
    import html5lib
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    tree = parser.parse(doc)          # strict: raises on any parse error
    assert not parser.errors
    return tree


def assert_self_contained(tree, doc: str):
    tags = {el.tag for el in tree.iter() if isinstance(el.tag, str)}
    for bad in ("script", "link", "iframe", "img", "object", "embed", "base", "frame",
                "audio", "video", "source"):
        assert not any(t == bad or t.endswith("}" + bad) for t in tags), bad
    assert "<script" not in doc.lower()
    ids = []
    for el in tree.iter():
        for k, v in el.attrib.items():
            name = k.split("}")[-1].lower() if isinstance(k, str) else str(k)
            assert not name.startswith("on"), "event handler attribute %s" % k
            if name in ("href", "src", "srcset", "action", "formaction", "poster", "data"):
                assert v.startswith("#"), "%s=%r is not a fragment" % (k, v)
            if name == "id":
                ids.append(v)
            assert "javascript:" not in v.lower()
            assert not re.search(r"url\(\s*['\"]?(?!#)", v), "%s=%r" % (k, v)
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert not re.search(r"https?://|\bftp://|@import|url\(\s*['\"]?(?!#)", doc, re.I)


@needs_dot
@pytest.mark.parametrize("name", SHIPPED)
def test_html_parses_and_has_one_drawing_per_scheme_per_step(name):
    ex = explainer(name)
    doc = E.to_html(ex)
    tree = parse_html(doc)
    sections = [el for el in tree.iter("section") if "step" in el.get("class", "").split()]
    assert len(sections) == ex.total
    for i, sec in enumerate(sections, 1):
        assert sec.get("id") == "step-%d" % i
        figs = [f for f in sec.iter("figure")]
        caps = ["".join(f.find("figcaption").itertext()) for f in figs]
        for f in figs:
            assert len([el for el in f.iter() if el.tag in ("svg", SVG_NS + "svg")]) == 1
        # the schemes stacked, one figure each (several when split by process)
        for sc in ex.schemes:
            assert len(ex.schemes) == 1 or any(("under %s" % sc) in c for c in caps), (i, sc)
        assert len(figs) >= len(ex.schemes)
        assert list(sec.iter("table")), "step %d has no counters table" % i
        for f in figs:                  # no drawing wider than a printed page keeps legible
            svg = next(el for el in f.iter() if el.tag in ("svg", SVG_NS + "svg"))
            w = float(svg.get("width").rstrip("pt"))
            one_process = sum(1 for c in caps if "process" in c) == 0 or "process" in \
                "".join(f.find("figcaption").itertext())
            assert w <= E.html.MAX_PT or one_process, (name, i, w)
    assert_self_contained(tree, doc)
    # one column per scheme in every counters table
    for table in tree.iter("table"):
        head = [th.text for th in table.find("thead").iter("th")]
        assert head == ["counter"] + list(ex.schemes)
    # every narration and call path is in the page
    flat = " ".join(doc.split())
    for st in ex.steps:
        for _, path in st.call_paths:
            assert " → ".join(path) in flat


@needs_dot
def test_html_cli_writes_one_file(tmp_path, capsys):
    out = tmp_path / "tour.html"
    assert E.main(["tour", "-o", str(out)]) == E.EXIT_OK
    doc = out.read_text(encoding="utf-8")
    tree = parse_html(doc)
    assert len([el for el in tree.iter() if el.tag in ("svg", SVG_NS + "svg")]) >= 12      # a step drawn wider than a page: one drawing per process
    assert capsys.readouterr().out == ""
    # -o FILE.txt means text without --format
    txt = tmp_path / "tour.txt"
    assert E.main(["tour", "-o", str(txt)]) == 0
    assert txt.read_text(encoding="utf-8") == (DATA / "tour.txt").read_text(encoding="utf-8")


# =========================================================================================
# SVG: one file per step
# =========================================================================================
@needs_dot
def test_svg_format_writes_one_file_per_step(tmp_path, capsys):
    out = tmp_path / "steps"
    assert E.main(["pmd_sharing", "--format", "svg", "-o", str(out)]) == 0
    n = len(read_scenario(list_scenarios()[SHIPPED.index("pmd_sharing")].path).steps)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["step-%02d.svg" % i for i in range(1, n + 1)]
    for p in out.iterdir():
        root = ET.parse(p).getroot()
        assert root.tag == SVG_NS + "svg"
    assert "wrote %d SVG files" % n in capsys.readouterr().err
    paths = E.explain("tour", tmp_path / "api", format="svg", schemes="per_piece")
    assert [os.path.basename(p) for p in paths] == ["step-%02d.svg" % i for i in range(1, 13)]
    assert all(os.path.exists(p) for p in paths)


# =========================================================================================
# Malformed scenario files and the other exit codes
# =========================================================================================
HEAD = 'format = 1\ntitle = "bad"\nnr_hugepages = { "2 MiB" = 2 }\n'
SPAWN = '\n[[step]]\nop = "Spawn"\nproc = "p"\n'

MALFORMED = {
    # kind: (file text, line reported, fragment of the message)
    "toml_syntax": ('format = 1\ntitle = "bad\n', 2, "TOML syntax error"),
    "missing_title": ("format = 1\n", 1, "title is missing"),
    "unknown_header_key": (HEAD + "colour = 1\n", 4, "unknown header key 'colour'"),
    "unknown_scheme": (HEAD + 'schemes = ["per_piece", "nope"]\n', 4,
                       "schemes = 'nope' is not allowed"),
    "unknown_op": (HEAD + SPAWN + '\n[[step]]\nop = "Teleport"\n', 10, "unknown op 'Teleport'"),
    "unknown_field": (HEAD + SPAWN + '\n[[step]]\nop = "Touch"\nproc = "p"\nadr = 0\n', 12,
                      "unknown field 'adr'"),
    "missing_field": (HEAD + SPAWN + '\n[[step]]\nop = "Touch"\nproc = "p"\n', 9,
                      "field 'addr' is missing"),
    "wrong_type": (HEAD + SPAWN + '\n[[step]]\nop = "MemfdCreate"\nfile = "f"\nsize = true\n'
                   'hstate = "2 MiB"\n', 12, "field 'size'"),
    "unknown_label": (HEAD + SPAWN + '\n[[step]]\nop = "Touch"\nproc = "q"\naddr = 0\n', 11,
                      "unknown process label 'q'"),
    "bad_size": (HEAD + SPAWN + '\n[[step]]\nop = "MemfdCreate"\nfile = "f"\nsize = "2 XB"\n'
                 'hstate = "2 MiB"\n', 12, "is not a size"),
    "expect_contradicted": (HEAD + SPAWN + '\n[[step]]\nop = "MemfdCreate"\nfile = "f"\n'
                            'size = "2 MiB"\nhstate = "2 MiB"\nexpect = "EINVAL"\n', 14,
                            "expected EINVAL under mainline, got ok"),
    "not_utf8": (b'title = "\xff"\n', 1, "not UTF-8"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
@pytest.mark.parametrize("fmt", ["text", "html"])
def test_malformed_scenario_gives_file_line_and_exit_3(kind, fmt, tmp_path, capsys):
    text, line, fragment = MALFORMED[kind]
    path = tmp_path / ("%s.toml" % kind)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    rc = E.main([str(path), "--format", fmt, "-o", str(out)])
    err = capsys.readouterr()
    assert rc == E.EXIT_SCENARIO == 3
    first = err.err.splitlines()[0]
    assert first.startswith("%s:%d: " % (path, line)), first
    assert fragment in first, first
    assert err.out == ""
    assert not out.exists(), "nothing is written for a malformed file"
    # the Python API raises the same error
    with pytest.raises(hv.scenarios.ScenarioError) as info:
        E.explain(str(path), format="text")
    assert info.value.line == line and str(info.value) == first


def test_missing_file_is_exit_3(tmp_path, capsys):
    path = tmp_path / "nope.toml"
    assert E.main([str(path), "--format", "text"]) == 3
    assert capsys.readouterr().err.startswith("%s:?: cannot read: " % path)


def test_usage_errors_are_exit_2(capsys, tmp_path):
    assert E.main(["no_such_scenario", "--format", "text"]) == E.EXIT_USAGE == 2
    assert "no shipped scenario 'no_such_scenario'; shipped: " in capsys.readouterr().err
    assert E.main(["tour", "--schemes", "per_piece,nope", "--format", "text"]) == 2
    assert "unknown scheme 'nope'; allowed: mainline" in capsys.readouterr().err
    assert E.main(["tour", "--schemes", "per_piece,per_piece", "--format", "text"]) == 2
    assert E.main(["tour", "--format", "svg"]) == 2
    assert "-o DIR" in capsys.readouterr().err
    assert E.main(["tour", "--format", "text", "--steps", "0"]) == 2
    assert E.main(["tour", "--format", "pdf"]) == 2
    assert E.main([]) == 2
    capsys.readouterr()


def test_no_graphviz_is_exit_4_and_text_still_works(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))          # no `dot` on PATH
    assert E.main(["tour", "-o", str(tmp_path / "t.html")]) == E.EXIT_NO_DOT == 4
    assert "Graphviz" in capsys.readouterr().err
    assert not (tmp_path / "t.html").exists()
    assert E.main(["tour", "--format", "svg", "-o", str(tmp_path / "d")]) == 4
    assert E.main(["tour", "--format", "text", "-o", str(tmp_path / "t.txt")]) == 0
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == \
        (DATA / "tour.txt").read_text(encoding="utf-8")


def test_unwritable_output_is_exit_5(tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir" / "t.txt"
    assert E.main(["tour", "--format", "text", "-o", str(target)]) == E.EXIT_WRITE == 5
    assert "cannot write" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys):
    assert E.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit status:" in out
    for code, words in ((0, "written"), (2, "usage error"), (3, "malformed scenario file"),
                        (4, "Graphviz"), (5, "could not be written")):
        assert re.search(r"^  %d  .*%s" % (code, words), out, re.M), (code, out)
    assert all(cols(ln) <= 80 for ln in out.split("\n"))


def test_exit_code_through_the_console_command(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MALFORMED["unknown_field"][0], encoding="utf-8")
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    r = subprocess.run([sys.executable, "-m", "hgmviz", "explain", str(bad), "--format",
                        "text"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 3, r
    assert r.stderr.startswith("%s:12: step 2 (Touch): unknown field 'adr'" % bad), r.stderr
    assert r.stdout == ""


# =========================================================================================
# hgmviz scenarios, the dispatcher, the Python API
# =========================================================================================
def test_scenarios_lists_every_shipped_one(capsys):
    assert cli_main(["scenarios"]) == 0
    out = capsys.readouterr().out
    lines = out.rstrip("\n").split("\n")
    assert lines[0].split() == ["name", "title"]
    names = [ln.split()[0] for ln in lines[1:] if not ln.startswith(" ")]
    assert names == SHIPPED
    for info in list_scenarios():
        assert " ".join(info.title.split()) in " ".join(out.split())
    assert all(cols(ln) <= 80 for ln in lines)


def test_cli_dispatches_explain(capsys):
    assert cli_main(["explain", "tour", "--format", "text"]) == 0
    assert capsys.readouterr().out == (DATA / "tour.txt").read_text(encoding="utf-8")
    assert cli_main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert "explain" in usage and "scenarios" in usage


def live_session():
    s = hv.Session(nr_hugepages={2 << 20: 2}, watch=[("f", 0)], title="A live lesson",
                   description="Built in a notebook.")
    s.apply(Spawn("p"))
    s.apply(MemfdCreate("f", 4 << 20, 2 << 20), narration="A hugetlbfs file.")
    s.apply(Mmap("p", "f", 4 << 20, "a"))
    s.apply(Touch("p", ("a", 0x5000)), narration="The first fault.")
    s.apply(Touch("p", ("a", 2 << 20)))
    s.undo()                                  # what is shown is up to the current position
    return s


def body(text: str) -> str:
    return text[text.index("\nEach step: "):]


def test_a_live_session_is_explained_as_its_saved_file_and_not_changed(tmp_path):
    s = live_session()
    seen = []
    s.subscribe(seen.append)
    digest, version, pos = s.state_digest(), s.version, s.position
    text = E.explain(s, format="text")
    assert (s.state_digest(), s.version, s.position, seen) == (digest, version, pos, [])
    assert text.startswith("A live lesson\n")
    assert len(re.findall(r"^Step \d+ of 4: ", text, re.M)) == 4
    assert "The first fault." in text
    path = tmp_path / "lesson.toml"
    s.save(path)
    from_file = E.explain(str(path), format="text")
    assert body(from_file) == body(text)
    assert "command    hgmviz explain %s --format text" % path in unwrap(from_file)


@needs_dot
def test_a_live_session_gives_a_handout(tmp_path):
    s = live_session()
    out = tmp_path / "handout.html"
    doc = E.explain(s, out)
    assert out.read_text(encoding="utf-8") == doc
    tree = parse_html(doc)
    assert len([el for el in tree.iter() if el.tag in ("svg", SVG_NS + "svg")]) == 4
    assert_self_contained(tree, doc)


def test_a_session_watching_nothing_shows_the_folios_in_its_page_cache():
    s = hv.Session(nr_hugepages={2 << 20: 2})            # no watch=
    for op in (Spawn("p"), MemfdCreate("f", 4 << 20, 2 << 20), Mmap("p", "f", 4 << 20, "a"),
               Touch("p", ("a", 2 << 20))):
        s.apply(op)
    text = E.explain(s, format="text")
    last = text.split("Step 4 of 4")[1]
    assert "f@0x200000 · folio 0" in last
    assert re.search(r"^  folio_ref_count\(\) +~2$", last, re.M)
    assert s.watch == ()


def test_api_rejects_unknown_format_and_schemes():
    with pytest.raises(ValueError, match="format must be one of html, text, svg"):
        E.explain("tour", format="pdf")
    with pytest.raises(ValueError, match="unknown scheme 'nope'"):
        E.explain("tour", format="text", schemes=["nope"])
    with pytest.raises(ValueError, match="no shipped scenario"):
        E.explain("nope", format="text")


def test_a_scenario_under_other_schemes_is_not_held_to_its_expect(tmp_path):
    # overflow_toy_sign expects EAGAIN/SIGBUS under per_piece; mainline refuses MADV_SPLIT
    text = E.explain("overflow_toy_sign", format="text", schemes="mainline")
    assert re.search(r"^result +.*EINVAL", text, re.M)
    bad = tmp_path / "bad.toml"
    bad.write_text(MALFORMED["expect_contradicted"][0], encoding="utf-8")
    text = E.explain(str(bad), format="text", schemes="per_piece")   # shown as it comes
    assert "Step 2 of 2: memfd_create" in text
    with pytest.raises(hv.scenarios.ScenarioError, match="expected EINVAL"):
        E.explain(str(bad), format="text")


def test_explain_module_is_thin():
    """Layer 6: no simulation here — it imports no core, mm or scheme internals."""
    files = sorted(pathlib.Path(E.__file__).parent.glob("*.py"))
    assert len(files) >= 5                          # the package: model, text, html, cli
    for path in files:
        src = path.read_text()
        assert not re.search(r"from \.+(core|mm|audit|schemes\.\w+) import", src), path
        assert not re.search(r"\.(apply_events|set_huge_pte_at|folio_ref_add)\(", src), path
        assert re.match(r'"""Layer 6', src), path


# =========================================================================================
# Hostile labels (issue 17 items 7 and 10)
# =========================================================================================
HOSTILE = r'''
format = 1
title = "ctl \u0000 nul \u001b[31mred\u001b[0m bell\u0007 del\u007f c1\u0085 rlo\u202e"
description = "desc \u001b]0;pwned\u0007 end"
geometry = "toy"
nr_hugepages = { "256 KiB" = 2 }
schemes = ["per_piece", "thp_like"]
watch = [["f\u0001x", 0]]

[[step]]
op = "Spawn"
proc = "p\u001b[2J"
narration = "spawn \u0000 \u001b[1mbold"

[[step]]
op = "MemfdCreate"
file = "f\u0001x"
size = "256 KiB"
hstate = "256 KiB"

[[step]]
op = "Mmap"
proc = "p\u001b[2J"
file = "f\u0001x"
length = "256 KiB"
label = "a\u0002"

[[step]]
op = "Touch"
proc = "p\u001b[2J"
addr = "a\u0002"
'''
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e]")


def test_control_characters_in_labels_are_made_visible_in_every_format(tmp_path, capsys):
    path = tmp_path / "ctl.toml"
    path.write_text(HOSTILE, encoding="utf-8")
    text = E.explain(str(path), format="text")
    assert not _CONTROL.search(text), "raw control characters in the text format"
    assert "\\x1b[31mred" in text and "p\\x1b[2J" in text and "\\u202e" in text
    if HAVE_DOT:
        doc = E.explain(str(path), format="html")
        assert not _CONTROL.search(doc)
        assert_self_contained(parse_html(doc), doc)          # html5lib strict parse passes
        assert "\\x00 nul" in doc
        assert cli_main(["explain", str(path), "--format", "svg", "-o",
                         str(tmp_path / "svg")]) == 0
        for f in (tmp_path / "svg").iterdir():
            ET.fromstring(f.read_bytes())                     # dot drew every step
        s = hv.load_scenario(str(path))
        assert "<svg" in hv.draw(s.machine).svg()
    assert cli_main(["explain", str(path), "--format", "text"]) == 0
    assert not _CONTROL.search(capsys.readouterr().out)


def test_a_lone_surrogate_in_a_title_does_not_break_save_or_explain(tmp_path):
    s = hv.Session(scheme="per_piece", geometry="toy", nr_hugepages={1 << 18: 2},
                   title="bad \ud800 title", watch=[("f", 0)])
    s.apply(Spawn("p"))
    s.apply(MemfdCreate("f", 1 << 18, 1 << 18))
    s.save(tmp_path / "s.toml")
    back = read_scenario(str(tmp_path / "s.toml"))
    assert back.title == "bad \\ud800 title"          # kept visible, as text
    text = E.explain(s, format="text")
    assert "bad \\ud800 title" in text
    text.encode("utf-8")
    if HAVE_DOT:
        doc = E.explain(s, tmp_path / "s.html")
        parse_html(doc)
        assert (tmp_path / "s.html").read_text(encoding="utf-8") == doc


@needs_dot
def test_svg_output_replaces_a_symlink_in_the_folder_instead_of_following_it(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    out = tmp_path / "steps"
    out.mkdir()
    (out / "step-01.svg").symlink_to(target)
    assert cli_main(["explain", "tour", "--format", "svg", "-o", str(out)]) == 0
    assert target.read_text() == "keep me\n"
    assert not (out / "step-01.svg").is_symlink()
    assert (out / "step-01.svg").read_text().lstrip().startswith("<?xml")
    (out / "step-02.svg").unlink()
    (out / "step-02.svg").symlink_to(target)
    E.explain("tour", out, format="svg")                        # the Python API alike
    assert target.read_text() == "keep me\n" and not (out / "step-02.svg").is_symlink()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no temporary left


def test_hv_explain_stays_callable_after_the_package_is_imported():
    assert callable(hv.explain)
    a = hv.explain("tour", format="text")
    assert hv.explain("tour", format="text") == a


def test_text_shows_what_changed_then_a_summary_and_full_on_request(capsys):
    ex = explainer("one_logical_mapping")
    short, full = E.to_text(ex), E.to_text(ex, full=True)
    assert len(short.splitlines()) < 0.7 * len(full.splitlines())
    assert "Summary: the counters after step %d" % ex.total in short
    assert "Summary:" not in full
    # every value of the last step's full table is in the summary
    last = E.to_text(dataclasses.replace(ex, steps=ex.steps[-1:]), full=True)
    table = [ln for ln in last.split("Page tables")[0].splitlines() if "folio_ref_count" in ln]
    assert table and table[0] in short
    assert E.main(["one_logical_mapping", "--format", "text", "--full"]) == 0
    assert capsys.readouterr().out == full


def test_ascii_text_has_no_other_character(capsys):
    assert E.main(["tour", "--format", "text", "--ascii"]) == 0
    out = capsys.readouterr().out
    assert out.isascii() and "->" in out and "hugetlb_fault" in out
    assert E.to_text(explainer("tour"), ascii=True) == out
