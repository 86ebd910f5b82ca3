"""Diagrams (issue 4): the collapsing rule, node bounds, PMD sharing, change highlighting,
read-only rendering, text width, SVG through the real ``dot``, themes, missing ``dot``.

Golden DOT/text files: tests/test_render_golden.py.  Random states: tests/test_render_property.py.
"""
import os
import re
import shutil
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import hgmviz as hv
from hgmviz.render import (DARK, LIGHT, Diagram, DotNotFound, build_scene, contrast_ratio, draw,
                           draw_compare, named_leaves)
from hgmviz.render.examples import EXAMPLES, example_args, render_example
from hgmviz.render.scene import downsample
from hgmviz.render.text import strip_text

GIB = 1 << 30
MIB2 = 2 << 20
KIB4 = 4096
T32 = 32 << 10
T256 = 256 << 10
HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT and os.environ.get("CI") != "true",
                               reason="Graphviz's dot is not installed")


def rows_of(scene, title_prefix):
    out = []
    for n in scene.nodes:
        if n.title.startswith(title_prefix):
            out += [r.text for r in n.rows]
    return out


def node(scene, title):
    hits = [n for n in scene.nodes if n.title == title]
    assert len(hits) == 1, [n.title for n in scene.nodes]
    return hits[0]


def actual_leaves(m, pid, a, b):
    """Every present leaf of process pid in [a, b) from the page tables: (pid, va, shift,
    folio, page)."""
    from hgmviz import core
    st = m.state()
    pgd = st.mms[pid].pgd
    n = max(16, (b - a) >> m.geometry.page_shift)
    oa, osh, op, ot = (np.zeros(n, np.int64) for _ in range(4))
    seen = np.zeros(m.pt.capacity, np.int32)
    k = core.collect_leaves(m.pt.P, m.core_geometry, pgd, a, b, seen, 1, oa, osh, op, ot)
    assert k >= 0
    out = set()
    for j in range(k):
        pfn = int(op[j])
        f = int(core.pfn_to_folio(st.fl, pfn))
        out.add((pid, int(oa[j]), int(osh[j]), f, pfn - int(st.folio_pfn[f])))
    return out


def hgm_1g_4k():
    """The issue's setup: a 1 GiB folio fully 4K-mapped in one HGM VMA."""
    m = hv.Machine(nr_hugepages={1 << 30: 1}, scheme="per_piece")
    f = m.memfd_create(size=1 << 30, hstate=1 << 30)
    f.fallocate(0, 1 << 30)
    p = m.spawn()
    a = p.mmap(f, 1 << 30)
    p.madvise(a, 1 << 30, hv.MADV_SPLIT)
    p.uffdio_register(a, 1 << 30, mode="minor")
    p.uffdio_continue_batch(a, 1 << 30, 4096)
    return m, p, a


def toy_hgm(scheme="per_piece", hstate=T256, n=1):
    m = hv.Machine(nr_hugepages={hstate: n}, geometry="toy", scheme=scheme)
    f = m.memfd_create(size=n * hstate, hstate=hstate)
    f.fallocate(0, n * hstate)
    p = m.spawn()
    a = p.mmap(f, n * hstate)
    p.madvise(a, n * hstate, hv.MADV_SPLIT)
    p.uffdio_register(a, n * hstate, mode="minor")
    return m, f, p, a


# =========================================================================================
# The collapsing rule
# =========================================================================================
def test_runs_of_leaves_none_and_sizes():
    m, f, p, a = toy_hgm()
    p.uffdio_continue(a, 4 * KIB4)
    p.uffdio_continue(a + T32, 2 * T32)
    s = build_scene(m)
    assert rows_of(s, "PTE table") == ["PTE[0..3] 4 KiB → folio 0, pages 0..3", "PTE[4..7] none"]
    pmd = [r for r in rows_of(s, "PMD table")]
    assert pmd[1:] == ["PMD[1..2] 32 KiB → folio 0, pages 8..23", "PMD[3..7] none"]
    assert pmd[0].startswith("PMD[0] → PTE table ")
    leaf = [r for n in s.nodes for r in n.rows if r.kind == "leaf" and r.level == 2][0]
    assert (leaf.lo, leaf.hi, leaf.folio, leaf.page, leaf.page_step, leaf.shift) == (1, 2, 0, 8, 8, 15)


def test_runs_break_where_pages_are_not_consecutive():
    m, f, p, a = toy_hgm()
    p.uffdio_continue(a, KIB4)                  # page 0
    p.uffdio_continue(a + 2 * KIB4, 2 * KIB4)   # pages 2..3
    p.uffdio_continue(a + 5 * KIB4, KIB4)       # page 5
    assert rows_of(build_scene(m), "PTE table") == [
        "PTE[0] 4 KiB → folio 0, page 0", "PTE[1] none", "PTE[2..3] 4 KiB → folio 0, pages 2..3",
        "PTE[4] none", "PTE[5] 4 KiB → folio 0, page 5", "PTE[6..7] none"]


def test_runs_of_whole_consecutive_folios_and_folio_groups():
    s = build_scene(example_args("x86_2m_full")["m"])
    assert rows_of(s, "PMD table") == ["PMD[0..511] 2 MiB → folios 0..511, each whole"]
    fn = node(s, "folios 0..511")
    assert fn.count == 512 and "memfd#0 [0..511]" in fn.subtitle
    assert [ln.text for ln in fn.lines][:2] == ["each:", "refcount 2"]
    assert s.node_count == 5


def test_identical_pte_tables_collapse_into_one_group():
    m, p, a = hgm_1g_4k()
    s = build_scene(m)
    g = node(s, "512 PTE tables, each:")
    assert g.kind == "group" and g.count == 512 and len(g.tables) == 512
    assert [r.text for r in g.rows] == ["PTE[0..511] 4 KiB → folio 0, pages k*512..k*512+511"]
    r = g.rows[0]
    assert (r.k_folio_step, r.k_page_step, r.page_step) == (0, 512, 1)
    assert rows_of(s, "PMD table") == ["PMD[0..511] → 512 PTE tables"]


def test_tables_of_consecutive_folios_group_with_a_folio_stride():
    m, f, p, a = toy_hgm(hstate=T32, n=4)
    p.uffdio_continue_batch(a, 4 * T32, KIB4)
    s = build_scene(m)
    g = node(s, "4 PTE tables, each:")
    assert [r.text for r in g.rows] == ["PTE[0..7] 4 KiB → folio k, pages 0..7"]
    assert node(s, "folios 0..3").count == 4


def test_groups_keep_their_change_marks():
    m, f, p, a = toy_hgm(hstate=T32, n=4)
    snap = m.snapshot()
    p.uffdio_continue_batch(a, 2 * T32, KIB4)
    s = build_scene(m, before=snap)
    g = node(s, "2 PTE tables, each:")
    assert g.mark == "new" and [(r.text, r.mark) for r in g.rows] == [
        ("PTE[0..7] 4 KiB → folio k, pages 0..7", "new")]
    snap = m.snapshot()
    p.uffdio_continue_batch(a + 2 * T32, 2 * T32, KIB4)
    s = build_scene(m, before=snap)
    assert [(n.title, n.mark) for n in s.nodes if n.kind == "group"] == [
        ("2 PTE tables, each:", ""), ("2 PTE tables, each:", "new")]
    leaves, _ = named_leaves(s)
    assert leaves == actual_leaves(m, p.pid, a, a + 4 * T32)


def test_tables_that_differ_do_not_group():
    m, f, p, a = toy_hgm(hstate=T32, n=2)
    p.uffdio_continue(a, 2 * KIB4)
    p.uffdio_continue(a + T32, 3 * KIB4)
    s = build_scene(m)
    assert s.count("group") == 0
    assert sorted(rows_of(s, "PTE table")) == sorted([
        "PTE[0..1] 4 KiB → folio 0, pages 0..1", "PTE[2..7] none",
        "PTE[0..2] 4 KiB → folio 1, pages 0..2", "PTE[3..7] none"])


def test_row_cap_summarises_the_rest_and_names_its_folios():
    m, f, p, a = toy_hgm()
    for i in range(0, 8, 2):
        p.uffdio_continue(a + i * KIB4, KIB4)
    s = build_scene(m, max_rows=3)
    rows = [r for n in s.nodes if n.title.startswith("PTE table") for r in n.rows]
    assert [r.kind for r in rows] == ["leaf", "none", "more"]
    assert rows[2].text == "PTE[2..7]: more runs, not drawn: 3 leaves (3 × 4 KiB) → folio 0"
    assert rows[2].folios == (0,)
    pte = [n for n in s.nodes if n.title.startswith("PTE table")][0]
    assert any(e.src == pte.id and e.port == rows[2].port for e in s.edges if e.kind == "leaf")


def test_fold_keeps_the_scene_under_the_node_budget():
    m, f, p, a = toy_hgm(hstate=T32, n=4)
    for i in range(4):
        p.uffdio_continue(a + i * T32 + i * KIB4, KIB4)     # four different PTE tables
    full = build_scene(m)
    assert full.fold_level == 0 and full.count("table") == 7
    s = build_scene(m, max_nodes=5)
    assert s.node_count <= 5 and s.fold_level == 1 and not s.over_budget
    fold = [r for n in s.nodes for r in n.rows if r.kind == "fold"]
    assert len(fold) == 1
    assert fold[0].text == ("PMD[4..7] → 4 PTE tables: 4 leaves (4 × 4 KiB) → folios 0..3 "
                            "(not drawn)")
    leaves, summaries = named_leaves(s)
    assert leaves == set() and summaries[0][3] == (0, 1, 2, 3)
    assert "summarised in their parent's row" in " ".join(s.legend)


def test_downsampling_rule_max_and_mixed():
    v = np.array([0, 0, 1, 0, 2, 2, 5, 11, 1, 1, 1, -1])
    mx, mixed, per = downsample(v, 4)
    assert per == 3
    assert mx.tolist() == [1, 2, 11, 1] and mixed.tolist() == [True, True, True, True]
    mx, mixed, per = downsample(np.ones(262144, int), 32)
    assert (per, mx.size, mixed.any()) == (8192, 32, False)
    mx, mixed, per = downsample(np.arange(8), 32)           # fewer pages than buckets
    assert per == 1 and mx.tolist() == list(range(8))


def test_thp_like_strip_is_downsampled_with_the_rule_stated():
    a = example_args("toy_thp_like")
    s = build_scene(a["m"], before=a["before"])
    fnode = node(s, "folio 0")
    st = fnode.strip
    assert (st.nr_pages, st.pages_per_bucket, len(st.values)) == (64, 2, 32)
    sub = a["m"].scheme.subpage_mapcounts(0)
    assert list(st.values) == [int(sub[i:i + 2].max()) for i in range(0, 64, 2)]
    assert list(st.mixed) == [bool(sub[i] != sub[i + 1]) for i in range(0, 64, 2)]
    assert st.changed[0] and not any(st.changed[1:])
    assert any("maximum" in ln for ln in s.legend)
    cells, marks, per = strip_text(st, 8)                  # re-bucketed for a narrow terminal
    assert per == 8 and len(cells) == 8 and cells[0] == "2" and marks[0] == "~"


def test_thp_like_1g_strip_has_32_buckets():
    m = hv.Machine(nr_hugepages={GIB: 1}, scheme="thp_like")
    f = m.memfd_create(size=GIB, hstate=GIB)
    f.fallocate(0, GIB)
    p = m.spawn()
    a = p.mmap(f, GIB)
    p.madvise(a, GIB, hv.MADV_SPLIT)
    p.uffdio_register(a, GIB, mode="minor")
    p.uffdio_continue_batch(a, GIB // 2, KIB4)
    st = node(build_scene(m), "folio 0").strip
    assert (st.pages_per_bucket, st.values) == (8192, (1,) * 16 + (0,) * 16)


# =========================================================================================
# Node counts, coverage, sharing
# =========================================================================================
def test_1g_folio_mapped_at_4k_draws_in_a_handful_of_nodes():
    m, p, a = hgm_1g_4k()
    s = build_scene(m)
    assert s.node_count <= 150
    assert s.node_count == 6       # process, PGD, PUD, PMD, 512-PTE-table group, folio
    leaves, summaries = named_leaves(s)
    assert summaries == []
    assert leaves == actual_leaves(m, p.pid, a, a + GIB)
    assert len(leaves) == 262144


def test_1g_folio_in_two_processes():
    s = build_scene(example_args("x86_1g_4k_two_procs")["m"])
    assert s.node_count == 11 and s.count("group") == 2 and s.count("folio") == 1


def test_pmd_sharing_drawn_once_with_two_parents():
    m = hv.Machine(nr_hugepages={MIB2: 512})
    f = m.memfd_create(size=GIB, hstate=MIB2)
    p1, p2 = m.spawn(), m.spawn()
    a1 = p1.mmap(f, GIB, addr=4 << 30)
    a2 = p2.mmap(f, GIB, addr=8 << 30)
    p1.touch(a1 + 5 * MIB2)
    p2.touch(a2 + 5 * MIB2)
    s = build_scene(m)
    shared = [n for n in s.nodes if n.shared]
    assert len(shared) == 1
    pmd = shared[0]
    assert pmd.cluster == "m" and "2 mms map it" in pmd.lines[0].text
    parents = [e for e in s.edges if e.dst == pmd.id]
    assert len(parents) == 2
    owners = {s.node(e.src).cluster for e in parents}
    assert owners == {"p%d" % p1.pid, "p%d" % p2.pid}
    assert [r.text for r in pmd.rows] == ["PMD[0..4] none", "PMD[5] 2 MiB → folio 0 (whole)",
                                          "PMD[6..511] none"]
    leaves, _ = named_leaves(s)
    assert leaves == actual_leaves(m, p1.pid, a1, a1 + GIB) | actual_leaves(m, p2.pid, a2, a2 + GIB)
    t = draw(m).text()
    assert t.count("PMD table %d  PMD[0..511]" % pmd.tables[0]) == 1
    assert "(PMD table %d: shown under process %d)" % (pmd.tables[0], p1.pid) in t


def test_range_and_pids_select_what_is_drawn():
    a = example_args("toy_pmd_share")
    m = a["m"]
    s = build_scene(m, pids=[2])
    assert [n.title for n in s.nodes if n.kind == "process"] == ["process 2"]
    p1 = m.processes[0]
    s = build_scene(m, pids=p1, start=1 << 20, end=(1 << 20) + T32)
    assert [r.text for r in node(s, "PMD table 4").rows] == ["PMD[0] 32 KiB → folio 0 (whole)"]
    with pytest.raises(ValueError, match="no process 9"):
        build_scene(m, pids=[9])
    with pytest.raises(ValueError, match="end"):
        build_scene(m, start=10, end=5)
    with pytest.raises(TypeError):
        build_scene(m, start="0x10")


# =========================================================================================
# Highlights
# =========================================================================================
def test_highlights_after_a_fault():
    a = example_args("toy_fault")
    m = a["m"]
    s = build_scene(m, before=a["before"])
    assert s.caption[0].text == "call path: " + " → ".join(m.call_path)
    assert "hugetlb_fault → hugetlb_no_page → " in s.caption[0].text
    assert s.caption[0].text.endswith(" → hugetlb_add_file_rmap")
    pmd = [n for n in s.nodes if n.title.startswith("PMD table")][0]
    assert [(r.text, r.mark) for r in pmd.rows] == [
        ("PMD[4] 32 KiB → folio 0 (whole)", ""),
        ("PMD[5] 32 KiB → folio 1 (whole)", "new"),
        ("PMD[6..7] none", "")]
    f1 = node(s, "folio 1")
    assert f1.mark == "new"
    assert ("refcount 2 (was 0)", "changed") in [(ln.text, ln.mark) for ln in f1.lines]
    assert node(s, "folio 0").mark == ""
    new_edges = [e for e in s.edges if e.mark == "new"]
    assert [(e.kind, e.dst) for e in new_edges] == [("leaf", f1.id)]
    d = Diagram(s)
    assert 'style=bold' in d.dot and 'BORDER="2"' in d.dot     # greyscale cues, not colour only
    assert re.search(r"^\+ +PMD\[5\] 32 KiB → folio 1 \(whole\)$", d.text(), re.M)


def test_highlights_removed_entries_and_tables():
    a = example_args("toy_dontneed")
    s = build_scene(a["m"], before=a["before"])
    rows = [(r.text, r.mark, r.present) for n in s.nodes for r in n.rows if r.mark]
    assert rows == [("PMD[5] none — was 32 KiB → folio 1 (whole)", "removed", False)]
    assert node(s, "folio 1").mark == "changed"
    removed_edges = [e for e in s.edges if e.mark == "removed"]
    assert len(removed_edges) == 1 and removed_edges[0].dst == node(s, "folio 1").id
    dot = Diagram(s).dot
    assert "style=dashed" in dot and 'STYLE="dashed"' in dot
    # munmap frees the tables: the parent rows say what was there
    m = hv.Machine(nr_hugepages={T32: 4}, geometry="toy")
    f = m.memfd_create(size=2 * T32, hstate=T32)
    p = m.spawn()
    a0 = p.mmap(f, 2 * T32)
    p.touch(a0)
    snap = m.snapshot()
    p.munmap(a0, 2 * T32)
    s = build_scene(m, before=snap)
    pgd = node(s, "PGD table 1")
    assert [(r.text, r.mark) for r in pgd.rows] == [
        ("PGD[2] none — was → 1 PUD table, 1 PMD table: 1 leaf (1 × 32 KiB) → folio 0", "removed")]
    proc = node(s, "process 1")
    assert [ln.mark for ln in proc.lines if ln.text.startswith("VMA")] == ["removed"]


def test_highlights_after_collapse_show_replaced_entries():
    m, f, p, a = toy_hgm()
    p.uffdio_continue_batch(a, T256, KIB4)
    snap = m.snapshot()
    p.madvise(a, T256, hv.MADV_COLLAPSE)
    s = build_scene(m, before=snap)
    pud = [n for n in s.nodes if n.title.startswith("PUD table")][0]
    r = [r for r in pud.rows if r.mark][0]
    assert r.text == ("PUD[7] 256 KiB → folio 0 (whole) (replaced: was 64 leaves (64 × 4 KiB) "
                      "→ folio 0)")
    assert r.mark == "new"
    assert node(s, "folio 0").mark == "changed"


def test_highlights_exited_process_and_fork():
    a = example_args("toy_fork")
    s = build_scene(a["m"], before=a["before"])
    assert node(s, "process 2").mark == ""
    assert [n.mark for n in s.nodes if n.title.startswith("PUD table")] == ["", "new"]
    m = a["m"]
    snap = m.snapshot()
    m.processes[1].exit()
    s = build_scene(m, before=snap)
    p2 = node(s, "process 2")
    assert p2.mark == "removed" and p2.lines[0].text == "exited"


def test_before_must_come_from_the_same_machine():
    a = example_args("toy_fault")
    other = hv.Machine(nr_hugepages={T32: 2}, geometry="toy")
    with pytest.raises(ValueError, match="another machine"):
        build_scene(a["m"], before=other.snapshot())
    with pytest.raises(TypeError, match="snapshot"):
        build_scene(a["m"], before={"pt": 1})


def test_wrapped_and_guarded_counters_are_marked():
    s = build_scene(example_args("toy_overflow")["m"])
    lines = node(s, "folio 0").lines
    alert = [ln.text for ln in lines if ln.style == "alert"]
    assert alert == ["WRAPPED: a counter overflowed past INT_MAX (127)"]
    assert "! " in render_example("toy_overflow").text()
    m = hv.Machine(nr_hugepages={T256: 1}, geometry="toy", scheme="per_piece", guard="int_max_half")
    f = m.memfd_create(size=T256, hstate=T256)
    f.fallocate(0, T256)
    p = m.spawn()
    a = p.mmap(f, T256)
    p.madvise(a, T256, hv.MADV_SPLIT)
    p.uffdio_register(a, T256, mode="minor")
    with pytest.raises(hv.PartialProgress), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p.uffdio_continue_batch(a, T256, KIB4)      # refused at refcount 64 > INT_MAX/2 = 63
    lines = node(build_scene(m), "folio 0").lines
    assert [ln.text for ln in lines if ln.style == "alert"] == [
        "GUARDED: refcount > INT_MAX/2, new references refused"]
    assert "to INT_MAX/2: past it by 1 · to INT_MAX: 63" in [ln.text for ln in lines]


# =========================================================================================
# Read-only, text width, back ends
# =========================================================================================
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_rendering_never_changes_the_machine(name):
    a = example_args(name)
    ms = a.get("machines") or [a["m"]]
    digests = [m.state_digest() for m in ms]
    versions = [m.version for m in ms]
    d = render_example(name, args=a)
    d.text(40)
    _ = d.dot
    if HAVE_DOT:
        d.svg()
    render_example(name, theme="dark", args=a).text()
    assert [m.state_digest() for m in ms] == digests
    assert [m.version for m in ms] == versions
    assert all(m.audit() == [] for m in ms)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("width", [20, 33, 60, 80, 132])
def test_text_never_exceeds_the_width(name, width):
    a = example_args(name)
    txt = render_example(name, args=a).text(width)
    assert max(len(line) for line in txt.splitlines()) <= width
    assert txt.endswith("\n")


def test_text_default_is_80_columns_and_rejects_bad_widths():
    d = render_example("x86_1g_4k")
    assert max(len(x) for x in d.text().splitlines()) <= 80
    for bad in (0, 19, "80", True):
        with pytest.raises(ValueError):
            d.text(bad)


@needs_dot
@pytest.mark.parametrize("name", ["toy_hgm_runs", "toy_compare", "x86_1g_4k", "x86_pmd_share"])
def test_svg_renders_every_node_and_edge(name):
    d = render_example(name)
    svg = d.svg()
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    nodes = root.findall(".//s:g[@class='node']", ns)
    edges = root.findall(".//s:g[@class='edge']", ns)
    assert len(nodes) == d.scene.node_count
    assert len(edges) == len(d.scene.edges)
    assert d._repr_svg_() == svg
    titles = {n.find("s:title", ns).text for n in nodes}
    assert titles == {n.id for n in d.scene.nodes}


@needs_dot
def test_dark_theme_renders():
    d = render_example("toy_thp_like", theme="dark")
    assert 'bgcolor="%s"' % DARK.bg in d.dot
    assert "<svg" in d.svg()


def test_diagram_repr_and_pretty():
    d = render_example("toy_fault")
    assert repr(d).startswith("<Diagram 'toy · scheme mainline")

    class P:
        out = ""

        def text(self, s):
            P.out += s
    d._repr_pretty_(P(), False)
    assert P.out == d.text()


def test_compare_lays_machines_side_by_side():
    a = example_args("toy_compare")
    d = draw_compare(a["machines"], before=a["before"])
    s = d.scene
    cols = [c for c in s.clusters if c.kind == "machine"]
    assert [c.title for c in cols] == ["per_piece", "thp_like", "hstate_present", "subtree_counted"]
    assert s.columns == 4 and {n.column for n in s.nodes} == {0, 1, 2, 3}
    assert len({n.id for n in s.nodes}) == s.node_count
    assert s.caption[0].text.startswith("call path: UFFDIO_CONTINUE")
    for c in cols:
        assert 'subgraph "cluster_%s"' % c.id in d.dot or "subgraph cluster_%s" % c.id in d.dot
    txt = d.text()
    for c in cols:
        assert "== %s ==" % c.title in txt
    # folio 0 under thp_like has a strip, the others do not
    strips = [n.column for n in s.nodes if n.strip is not None]
    assert strips == [1]
    with pytest.raises(ValueError):
        draw_compare(a["machines"], before=a["before"][:1])
    with pytest.raises(ValueError):
        draw_compare([])


# =========================================================================================
# Theme: WCAG AA
# =========================================================================================
@pytest.mark.parametrize("theme", [LIGHT, DARK], ids=["light", "dark"])
def test_theme_passes_wcag_aa(theme):
    bad = [(name, round(contrast_ratio(fg, bg), 2)) for name, fg, bg in theme.text_pairs()
           if contrast_ratio(fg, bg) < 4.5]
    assert bad == []
    bad = [(name, round(contrast_ratio(fg, bg), 2)) for name, fg, bg in theme.graphic_pairs()
           if contrast_ratio(fg, bg) < 3.0]
    assert bad == []


def test_contrast_ratio_reference_values():
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)


@pytest.mark.parametrize("theme", [LIGHT, DARK], ids=["light", "dark"])
def test_dot_uses_only_theme_colours(theme):
    """Every colour in the DOT source is one whose pairs the contrast test checked."""
    known = {theme.bg, theme.fg, theme.muted, theme.border, theme.edge, theme.leaf_edge,
             theme.cluster, theme.alert}
    known |= {c for _, a, b in theme.fills for c in (a, b)}
    known |= {c for _, a, b in theme.marks for c in (a, b)}
    known |= {c for pair in theme.heat for c in pair}
    for name in ("toy_thp_like", "toy_dontneed", "toy_overflow", "toy_pmd_share", "toy_compare"):
        dot = render_example(name, theme=theme).dot
        used = set(re.findall(r"#[0-9a-fA-F]{6}", dot))
        assert used <= known, used - known


# =========================================================================================
# dot missing
# =========================================================================================
def test_missing_dot_says_how_to_install_it(monkeypatch, tmp_path):
    d = render_example("toy_fault")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("dot") is None
    with pytest.raises(DotNotFound) as info:
        d.svg()
    msg = str(info.value)
    for cmd in ("apt-get install graphviz", "conda install -c conda-forge graphviz",
                "brew install graphviz", "diagram.text()"):
        assert cmd in msg
    assert "PMD[5] 32 KiB → folio 1 (whole)" in d.text()       # the text back end still works
    assert d.dot.startswith("digraph hgmviz {")                  # and so does the DOT source
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert d._repr_svg_() is None
    assert "apt-get install graphviz" in str(w[0].message)


def test_missing_dot_when_graphviz_itself_reports_it(monkeypatch):
    import graphviz

    def boom(*a, **k):
        raise graphviz.ExecutableNotFound(("dot",))
    monkeypatch.setattr(graphviz.Source, "pipe", boom)
    from hgmviz.render import dot as dotmod
    monkeypatch.setattr(dotmod, "dot_available", lambda: True)
    with pytest.raises(DotNotFound, match="brew install graphviz"):
        render_example("toy_fault").svg()
