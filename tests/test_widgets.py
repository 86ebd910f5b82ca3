"""The explorer without a browser: build it, click its buttons from Python (ipywidgets 8 works
with no kernel) and check that the diagram, the counters and the log changed exactly as the
machine did — and that input the kernel refuses, or no kernel would see, changes nothing.
"""
import asyncio
import html
import re

import ipywidgets as W
import pytest

import hgmviz as hv
from hgmviz import ops as O
from hgmviz.widgets import ScaleRun, compare, drill_step_ops, explore, legal_granularities
from hgmviz.widgets import views
from hgmviz.widgets.explorer import OPERATION_BUTTONS

KIB4 = 4096
TOY_HP = 1 << 18


def text(markup: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", markup)))


def svg_body(ex) -> str:
    """The diagram without its version stamp (the same state draws the same SVG)."""
    return re.sub(r'data-version="\d+"', "", ex.diagram.value)


def version_of(ex) -> int:
    return int(re.search(r'data-version="(\d+)"', ex.diagram.value).group(1))


def folio(ex, scheme=None):
    s = ex.session
    return s.worlds[scheme or s.schemes[0]].files["f"].folio_at(0)


def refcount_cell(ex) -> list:
    """The numbers in the counters table's folio_ref_count() row, one per scheme."""
    row = re.search(r"folio_ref_count\(\)</code></th>(.*?)</tr>", ex.counters.value).group(1)
    return [int(re.sub(r"\(was.*", "", text(t)).replace("~", "").replace("!", "").split()[0])
            for t in re.findall(r"<td[^>]*>(.*?)</td>", row)]


@pytest.fixture
def ex():
    return explore(geometry="toy", scheme="per_piece")


def hgm_ready(ex):
    """MADV_SPLIT + UFFDIO_REGISTER over the whole mapping, granularity 4 KiB."""
    ex.buttons["split"].click()
    ex.buttons["register"].click()
    ex.w_gran.value = KIB4
    assert ex.session.last.ok


# ------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------
def test_explorer_opens_on_the_set_up(ex):
    s = ex.session
    assert s.position == ex.base == 4
    assert [type(st.op).__name__ for st in s.steps] == ["Spawn", "MemfdCreate", "Fallocate",
                                                        "Mmap"]
    assert ex.w_proc.value == "p" and ex.w_file.value == "f"
    v = ex.world.procs["p"].vmas[0]
    assert ex.w_vma.value == v.start
    assert list(ex.w_gran.options) == [("256 KiB", TOY_HP)]       # no HGM: the hstate only
    assert version_of(ex) == s.version
    assert "<svg" in ex.diagram.value and "<?xml" not in ex.diagram.value
    assert refcount_cell(ex) == [folio(ex).refcount] == [1]
    assert "mmap p f, 256 KiB → a" in text(ex.log.value)
    assert isinstance(ex._repr_mimebundle_(), dict)


def test_every_control_is_labelled():
    for e in (explore(), compare()):
        seen = 0
        for w in e._all_widgets() + [e.b_scale_run, e.b_scale_stop, e.b_scale_release,
                                     e.w_scale_progress]:
            if isinstance(w, W.Button):
                assert w.description and w.tooltip, w
                seen += 1
            elif isinstance(w, (W.Dropdown, W.SelectMultiple, W.IntSlider, W.Checkbox,
                                W.Text, W.IntProgress)):
                assert w.description and w.tooltip, w
                seen += 1
        assert seen >= 30
    assert {k for k, _, _ in OPERATION_BUTTONS} >= {
        "touch", "continue", "split", "collapse", "dontneed", "munmap", "fork", "exit", "close"}


# ------------------------------------------------------------------------------------------
# one click: the machine changes, and the diagram, counters and log with it
# ------------------------------------------------------------------------------------------
def test_touch_redraws_as_the_machine_changed(ex):
    s = ex.session
    digest, svg0, v0 = s.state_digest(), svg_body(ex), s.version
    ex.buttons["touch"].click()
    assert s.position == 5 and s.last.ok and s.state_digest() != digest
    assert version_of(ex) == s.version > v0
    assert svg_body(ex) != svg0
    f = folio(ex)
    assert (f.refcount, f.entire_mapcount) == (2, 1)
    assert refcount_cell(ex) == [2]
    assert "(was 1)" in ex.counters.value
    log = text(ex.log.value)
    assert "touch p a" in log and "hugetlb_fault" in log and "hugetlb_no_page" in log
    assert "✓ ok" in log


def test_undo_redo_reset_redraw_the_same_states(ex):
    s = ex.session
    d4, svg4 = s.state_digest(), svg_body(ex)
    ex.buttons["touch"].click()
    d5, svg5 = s.state_digest(), svg_body(ex)
    ex.b_undo.click()
    assert s.position == 4 and s.state_digest() == d4 and svg_body(ex) == svg4
    assert refcount_cell(ex) == [1]
    assert "(undone)" in ex.log.value and not ex.b_redo.disabled
    ex.b_redo.click()
    assert s.position == 5 and s.state_digest() == d5 and svg_body(ex) == svg5
    ex.buttons["fork"].click()
    assert set(ex.world.procs) == {"p", "c"}
    ex.b_reset.click()
    assert s.position == ex.base == 4 and s.state_digest() == d4 and svg_body(ex) == svg4
    # undo stops at the explorer's starting state: its set-up (spawn, memfd, fallocate,
    # mmap) is not the student's to undo (issue 15: every button but spawn went dead)
    assert ex.b_reset.disabled and ex.b_undo.disabled and ex.undo_floor == 4
    ex._nav("undo")
    assert s.position == 4 and s.state_digest() == d4
    assert "nothing to undo" in ex.w_status.value
    assert not ex.buttons["touch"].disabled


def test_undo_goes_back_through_a_scenario_the_explorer_opened():
    e = explore(scenario="tour")
    n = e.session.position
    assert n > 0 and e.undo_floor == 0 and not e.b_undo.disabled
    e.b_undo.click()
    assert e.session.position == n - 1


def test_explore_a_machine_says_what_to_pass():
    import hgmviz as hv
    m = hv.Machine(nr_hugepages={2 << 20: 1})
    with pytest.raises(TypeError, match=r"hgmviz.Session.*hv.draw\(m\)"):
        explore(m)
    with pytest.raises(TypeError, match="not Machine"):
        compare(m)


def test_hgm_pieces_follow_the_granularity(ex):
    hgm_ready(ex)
    assert [g for _, g in ex.w_gran.options] == [KIB4, 32 << 10, TOY_HP]
    assert (ex.w_addr.step, ex.w_len.value) == (KIB4, KIB4)
    ex.w_addr.value = 0x5000
    assert "a+0x5000" in ex.w_where.value
    ex.buttons["continue"].click()
    st = ex.session.last
    assert st.ok and st.op == O.UffdioContinue("p", ("a", 0x5000), KIB4)
    assert "UFFDIO_CONTINUE" in st.call_paths["per_piece"]
    p = ex.world.procs["p"]
    a = ex.world.addrs["a"]
    assert p.pagemap(a + 0x5000).size == KIB4 and p.pagemap(a) is None
    assert refcount_cell(ex) == [folio(ex).refcount] == [2]
    # a length of 3 pieces: three more leaves
    ex.w_addr.value = 0x8000
    ex.w_len.value = 3 * KIB4
    ex.buttons["continue"].click()
    assert folio(ex).refcount == 5 and refcount_cell(ex) == [5]
    # the sliders never leave the VMA
    ex.w_addr.value = TOY_HP * 4
    assert ex.w_addr.value == ex.w_addr.max == TOY_HP - KIB4
    assert ex.w_len.max == KIB4


def test_legal_granularities():
    g = hv.TOY
    h = g.hstate(TOY_HP)
    v = hv.Vma(0, TOY_HP, 0, 0)
    assert legal_granularities(g, v, h) == [TOY_HP]
    assert legal_granularities(g, hv.Vma(0, TOY_HP, 0, 0, hgm=True), h) == [4096, 32768, TOY_HP]
    h1 = hv.X86_64.hstate(1 << 30)
    assert legal_granularities(hv.X86_64, hv.Vma(0, 1 << 30, 0, 0, hgm=True), h1) == [
        4096, 2 << 20, 1 << 30]


def test_one_message_per_widget_per_click(ex, monkeypatch):
    """All display updates of one action go out together: each widget sends its state at
    most once, and diagram, counters, log and status all do."""
    sent = []
    real = W.Widget.send_state

    def spy(self, key=None):
        sent.append(self)
        return real(self, key)

    monkeypatch.setattr(W.Widget, "send_state", spy)
    for click in (ex.buttons["touch"].click, ex.b_undo.click, ex.buttons["split"].click):
        sent.clear()
        click()
        ids = [id(w) for w in sent]
        assert len(ids) == len(set(ids)), "a widget was synced twice in one action"
        for w in (ex.diagram, ex.counters, ex.log, ex.w_status):
            assert w in sent


# ------------------------------------------------------------------------------------------
# refused input: the error in the log, the state unchanged
# ------------------------------------------------------------------------------------------
def test_kernel_error_is_logged_and_changes_nothing(ex):
    s = ex.session
    ex.w_illegal.value = True
    assert ex.w_addr.layout.display == "none" and ex.w_addr_text.layout.display is None
    ex.w_addr_text.value = "a+0x1000"           # munmap inside a hugepage: EINVAL
    ex.w_len_text.value = "4 KiB"
    digest, svg0 = s.state_digest(), svg_body(ex)
    ex.buttons["munmap"].click()
    st = s.last
    assert st.op == O.Munmap("p", ("a", 0x1000), KIB4)
    assert st.outcome.status == "EINVAL" and st.kind == "failed"
    assert s.state_digest() == digest
    log = text(ex.log.value)
    assert "EINVAL" in log and "hugetlb_vm_op_split" in log
    assert "EINVAL" in text(ex.w_status.value)
    assert refcount_cell(ex) == [1]
    # the diagram is redrawn (a new step) but shows the same page tables
    assert svg_body(ex).count("<svg") == 1


def test_malformed_input_is_rejected_before_the_kernel(ex):
    s = ex.session
    ex.w_illegal.value = True
    ex.w_addr_text.value = "banana"
    ex.w_len_text.value = "4096"
    digest, pos, version, diagram = s.state_digest(), s.position, s.version, ex.diagram.value
    ex.buttons["touch"].click()
    assert (s.state_digest(), s.position, s.version) == (digest, pos, version)
    assert ex.diagram.value == diagram
    log = text(ex.log.value)
    assert "rejected before the kernel" in log and "'banana' is not a number" in log
    assert "banana" in text(ex.w_status.value)
    # a label no step defined: the session refuses it (InvalidOperation), nothing recorded
    ex.w_addr_text.value = "zz+0x0"
    ex.buttons["touch"].click()
    assert (s.position, s.version) == (pos, version)
    assert "rejected" in ex.log.value
    # and a SIGSEGV: a step, with the signal in the log, the state unchanged
    ex.w_addr_text.value = "0x1000"
    ex.buttons["touch"].click()
    assert s.last.outcome.status == "SIGSEGV" and s.state_digest() == digest
    assert "SIGSEGV" in text(ex.log.value)


def test_operations_need_a_target(ex):
    ex.buttons["exit"].click()
    s = ex.session
    assert s.last.ok and not ex.world.procs["p"].alive
    assert ex.buttons["touch"].disabled and ex.buttons["fork"].disabled
    assert "exited" in ex.w_proc.options[0][0]
    ex.buttons["spawn"].click()
    assert ex.w_proc.value == "p" and "p2" in ex.world.procs  # the selection is kept
    ex.w_proc.value = "p2"
    assert ex.w_vma.options == () and ex.buttons["touch"].disabled
    ex.buttons["mmap"].click()
    assert ex.session.last.ok and ex.w_vma.value == ex.world.addrs["a2"]
    ex.buttons["close"].click()
    assert ex.session.last.ok and "(closed)" in ex.w_file.options[0][0]


# ------------------------------------------------------------------------------------------
# schemes, guards, error policies: a new session, the same trace
# ------------------------------------------------------------------------------------------
def test_scheme_change_replays_the_trace(ex):
    hgm_ready(ex)
    ex.buttons["continue"].click()
    old = ex.session
    ex.w_scheme.value = "mainline"
    s = ex.session
    assert s is not old and s.schemes == ("mainline",) and s.position == old.position
    assert [st.op for st in s.steps] == [st.op for st in old.steps]
    split = s.steps[4]
    assert split.outcome.status == "EINVAL"          # mainline has no MADV_SPLIT
    assert "EINVAL" in text(ex.log.value)
    assert refcount_cell(ex) == [1]
    assert ex.base == 4
    ex.w_scheme.value = "per_piece"
    assert refcount_cell(ex) == [2]


def test_guard_and_errors_change_the_machine(ex):
    ex.w_guard.value = "int_max_half"
    assert ex.session.config["guard"] == "int_max_half"
    assert ex.session.machine.scheme.guard == "int_max_half"
    ex.w_errors.value = "v2"
    assert ex.session.config["errors"] == "v2" and ex.session.position == 4
    ex.w_guard.value = "none"
    assert ex.session.config["guard"] is None


# ------------------------------------------------------------------------------------------
# the overflow drill
# ------------------------------------------------------------------------------------------
def test_drill_steps_one_piece_at_a_time(ex):
    ex.drill_step()                     # a new mapping: mmap + MADV_SPLIT + UFFDIO_REGISTER
    s = ex.session
    assert [type(st.op).__name__ for st in s.steps[-3:]] == ["Mmap", "Madvise",
                                                             "UffdioRegister"]
    r0 = folio(ex).refcount
    for i in range(3):
        ex.drill_step()
        assert s.last.op == O.UffdioContinue("p", ("d1", i * KIB4), KIB4)
        assert folio(ex).refcount == r0 + i + 1 == refcount_cell(ex)[0]
    ex.b_undo.click()
    ex.drill_step()                     # read from the state: the undone piece again
    assert s.last.op == O.UffdioContinue("p", ("d1", 2 * KIB4), KIB4)
    assert "refcount <b>%d</b>" % folio(ex).refcount in ex.w_drill_info.value


@pytest.mark.parametrize("guard, tag", [("int_max_half", "guard"), ("sign", "guard"),
                                        (None, "wrap")])
def test_drill_runs_to_the_guard_or_the_wrap(guard, tag):
    ex = explore(geometry="toy", scheme="per_piece", guard=guard)
    ex.drill_run()
    s = ex.session
    f = folio(ex)
    om = hv.overflow_math(hstate=TOY_HP, piece=KIB4, guard=guard, geometry="toy")
    if guard is None:
        assert f.wrapped and s.last.ok and len(s.last.outcome.warnings) == 1
        assert f.refcount == om["refcount_after_wrapping_mapping"]
    else:
        out = s.last.outcome
        assert out.status == "EAGAIN" and "refcount guard refused" in out.message
        assert f.refcount == om["refused_at_refcount"]
    assert views.classify(s.last.outcome, s.last.kind)[0] == tag
    shown = {"guard": "guard refusal", "wrap": "WRAPPED"}[tag]
    assert shown in ex.log.value
    assert refcount_cell(ex)[0] == f.refcount
    assert s.audit() == [] if hasattr(s, "audit") else s.machine.audit() == []


def test_drill_step_ops_reads_the_state():
    s = hv.Machine(nr_hugepages={TOY_HP: 1}, geometry="toy", scheme="per_piece")
    w = O.World(s)
    for op in (O.Spawn("p"), O.MemfdCreate("f", TOY_HP, TOY_HP), O.Fallocate("f", 0, TOY_HP)):
        assert O.run_step(w, op).ok
    ops = drill_step_ops(w, "p", "f", KIB4)
    assert [type(o).__name__ for o in ops] == ["Mmap", "Madvise", "UffdioRegister"]
    for op in ops:
        assert O.run_step(w, op).ok
    assert drill_step_ops(w, "p", "f", KIB4, whole=True) == [
        O.UffdioContinueBatch("p", ("d1", 0), TOY_HP, KIB4)]
    assert O.run_step(w, drill_step_ops(w, "p", "f", KIB4, whole=True)[0]).ok
    assert drill_step_ops(w, "p", "f", KIB4)[0] == O.Mmap("p", "f", TOY_HP, "d2")


# ------------------------------------------------------------------------------------------
# the scale run: chunks, stop, interrupt
# ------------------------------------------------------------------------------------------
def toy_scale(guard, chunk=1, hstate=TOY_HP):
    return ScaleRun(guard=guard, geometry="toy", hstate=hstate, procs=3, chunk=chunk)


@pytest.mark.parametrize("guard", [None, "int_max_half", "sign"])
def test_scale_run_matches_overflow_math(guard):
    sc = toy_scale(guard)
    sc.run()
    om = sc.predicted
    assert sc.done
    if guard is None:
        assert sc.outcome == "wrapped" and sc.vmas == om["wraps_during_mapping"]
    else:
        assert sc.outcome == "refused"
        assert (sc.vmas, sc.extra_pieces) == (om["full_mappings"], om["extra_pieces"])
    assert sc.machine.audit() == []


def test_scale_run_stops_between_chunks_and_continues():
    sc = ScaleRun(guard="int_max_half", geometry="toy", hstate=1 << 15, procs=2, chunk=1)
    seen = []

    def progress(run):
        seen.append(run.vmas)
        if len(seen) == 2:
            run.stop_requested = True

    assert sc.run(progress) is False and not sc.done
    assert sc.vmas == 2 and sc.machine.audit() == []
    assert sc.refcount == 1 + 2 * 8                 # 32 KiB hugepages: 8 pieces each
    sc.run()
    assert sc.done and sc.outcome == "refused" and sc.machine.audit() == []
    assert (sc.vmas, sc.extra_pieces) == (sc.predicted["full_mappings"],
                                          sc.predicted["extra_pieces"])


def test_scale_run_survives_an_interrupt(monkeypatch):
    """KeyboardInterrupt between (or inside) operations: the machine is consistent and the
    run continues from the operation that did not complete."""
    import hgmviz.widgets.drill as D
    sc = toy_scale("int_max_half", chunk=5)
    real = D.O.run_step
    calls = [0]

    def flaky(world, op):
        calls[0] += 1
        if calls[0] == 6:                  # the second VMA's MADV_SPLIT
            raise KeyboardInterrupt
        return real(world, op)

    monkeypatch.setattr(D.O, "run_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        sc.run()
    assert not sc.done and sc.vmas == 0 and sc.machine.audit() == []
    monkeypatch.setattr(D.O, "run_step", real)
    sc.run()
    om = sc.predicted
    assert (sc.vmas, sc.extra_pieces) == (om["full_mappings"], om["extra_pieces"])


def test_scale_run_at_x86_64_geometry_two_vmas():
    sc = ScaleRun(guard="int_max_half", procs=2, chunk=2)
    sc.run_chunk()
    assert sc.vmas == 2 and sc.refcount == 1 + 2 * (1 << 18) and not sc.done
    assert sc.expected_vmas == sc.predicted["full_mappings"] + 1 == 4096
    assert "2 VMAs mapped" in sc.summary()
    sc.release()
    assert sc.machine is None


def test_explorer_scale_controls_in_and_out_of_an_event_loop():
    ex = explore(geometry="toy", guard="int_max_half")
    ex._scale = toy_scale("int_max_half")
    ex._scale.scheme = ex.view_scheme
    ex.scale_start()                                 # no event loop: runs to the end
    assert ex._scale.done and ex.w_scale_progress.value == ex._scale.vmas
    assert "refused" in ex.w_scale_info.value and ex.b_scale_run.disabled

    async def in_a_loop():
        ex._scale = toy_scale("int_max_half", hstate=1 << 15)     # 8 VMAs, one a chunk
        ex._scale.scheme = ex.view_scheme
        ex.scale_start()                             # a task, chunk by chunk
        assert ex._scale_task is not None and not ex.b_scale_stop.disabled
        await asyncio.sleep(0)
        ex.scale_stop()
        await asyncio.sleep(0.05)
        return ex._scale

    sc = asyncio.run(in_a_loop())
    assert ex._scale_task is None and not sc.done and sc.machine.audit() == []
    assert ex.b_scale_stop.disabled and not ex.b_scale_run.disabled


# ------------------------------------------------------------------------------------------
# compare: one trace, several schemes
# ------------------------------------------------------------------------------------------
def test_compare_redraws_every_scheme_together():
    cx = compare(geometry="toy")
    s = cx.session
    assert s.schemes == ("per_piece", "thp_like", "hstate_present")
    for name in s.schemes:
        assert name in cx.diagram.value
    hgm_ready(cx)
    cx.w_addr.value = 0
    cx.w_len.value = 2 * KIB4
    cx.buttons["continue"].click()
    refs = [folio(cx, k).refcount for k in s.schemes]
    assert refs == [3, 3, 2]                # two leaves: per piece twice, per subtree once
    assert refcount_cell(cx) == refs
    cx.w_scheme.value = ("per_piece", "mainline")
    s2 = cx.session
    assert s2.schemes == ("per_piece", "mainline") and s2.position == s.position
    log = text(cx.log.value)
    assert "mainline: EINVAL" in log or "mainline" in log and "EINVAL" in log
    assert refcount_cell(cx) == [3, 1]
    cx.w_scheme.value = ()                  # nothing picked: refused, nothing changes
    assert cx.session is s2 and cx.w_scheme.value == ("per_piece", "mainline")


def test_explore_a_scenario_and_step_back():
    ex = explore(scenario="tour")
    s = ex.session
    n = len(s.history)
    assert s.position == ex.base == n
    ex.b_undo.click()
    assert s.position == n - 1
    ex.b_reset.click()
    assert s.position == n
    assert "Tour" in ex.w_title.value


def test_views_classify_every_outcome():
    C = views.classify
    assert C(O.Outcome("ok"))[0] == "ok"
    assert C(O.Outcome("EINVAL", message="EINVAL: x"))[1] == "EINVAL: x"
    assert C(O.Outcome("SIGBUS", message="SIGBUS at 0x0: VM_FAULT_SIGBUS: the refcount guard "
                                         "refused folio 0", refused=True))[0] == "guard"
    assert C(O.Outcome("SIGBUS", message="SIGBUS at 0x0: pool empty"))[0] == "SIGBUS"
    assert C(O.Outcome("ok", warnings=("refcount overflow: ... wrapped past INT_MAX (127)",),
                       wrapped=(0,)))[0] == "wrap"
    assert C(O.Outcome("EAGAIN", mapped=8192, cause="EFAULT", message="x"))[0] == "partial"
    assert C(O.Outcome("EAGAIN", mapped=8192, cause="ENOMEM", message="x", refused=True)
             )[0] == "guard"
    assert C(O.Outcome("skipped", message="m"), "skipped")[0] == "skipped"


def test_close_stops_following_the_session():
    ex = explore()
    s = ex.session
    ex.close()
    v = ex.diagram.value
    s.apply(O.Touch("p", "a"))
    assert ex.diagram.value == v and s.last.ok


def test_counters_without_a_watch_list_show_the_page_cache():
    from hgmviz.ops import Fallocate, MemfdCreate
    from hgmviz.widgets.views import watched
    s = hv.Session(scheme="mainline", geometry="toy", nr_hugepages={1 << 15: 4})
    s.apply(MemfdCreate("f", 2 << 15, 1 << 15))
    s.apply(Fallocate("f", 1 << 15, 1 << 15))
    assert watched(s) == (("f", 1 << 15),)


def updates_row(ex, label) -> list:
    """The numbers of one "last step: counter updates" row, one per scheme."""
    row = re.search(r"<code>%s</code></th>(.*?)</tr>" % re.escape(label), ex.counters.value).group(1)
    return [int(text(t).replace(",", "")) for t in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def test_counters_show_the_last_steps_counter_updates_and_follow_undo():
    ex = compare(geometry="toy", schemes=("per_piece", "thp_like", "hstate_present"))
    hgm_ready(ex)
    for off in (0, KIB4):                           # two 4 KiB pieces
        ex.w_addr.value = off
        ex.buttons["continue"].click()
        assert ex.session.last.ok
    assert "counter updates in this step" in ex.counters.value
    assert updates_row(ex, "_refcount") == [1, 1, 0]         # hstate_present: entry present already
    assert updates_row(ex, "subpage _mapcount") == [0, 1, 0]
    ex.w_addr.value = 0
    ex.w_len.value = TOY_HP
    ex.buttons["collapse"].click()                  # 2 leaves cleared, one 256 KiB leaf set
    assert ex.session.last.ok
    assert updates_row(ex, "_refcount") == [3, 3, 0]
    assert updates_row(ex, "_entire_mapcount") == [3, 1, 0]
    assert updates_row(ex, "subpage _mapcount") == [0, 2, 0]
    assert "metadata counts" not in ex.counters.value
    ex.b_undo.click()
    assert updates_row(ex, "_refcount") == [1, 1, 0]
    assert updates_row(ex, "subpage _mapcount") == [0, 1, 0]


def test_control_characters_in_labels_never_reach_the_explorers_html(tmp_path):
    import hgmviz as hv
    path = tmp_path / "ctl.toml"
    path.write_text('format = 1\ntitle = "t \\u001b[2J \\u0000"\ngeometry = "toy"\n'
                    'nr_hugepages = { "256 KiB" = 2 }\nschemes = ["per_piece"]\n'
                    'watch = [["f\\u0001", 0]]\n'
                    '[[step]]\nop = "Spawn"\nproc = "p\\u0007"\nnarration = "n \\u001b[1m"\n'
                    '[[step]]\nop = "MemfdCreate"\nfile = "f\\u0001"\nsize = "256 KiB"\n'
                    'hstate = "256 KiB"\n', encoding="utf-8")
    ex = explore(session=hv.load_scenario(str(path)))
    for w in (ex.w_title, ex.diagram, ex.counters, ex.log, ex.w_status):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f]", w.value), w
    assert "\\x1b[2J" in ex.w_title.value and "f\\x01" in ex.counters.value


def test_drill_under_subtree_counted_says_why_it_cannot_reach_the_guard():
    ex = explore(geometry="toy", scheme="subtree_counted", guard="int_max_half")
    out = ex.drill_run()
    assert out is not None and out.status == "ENOMEM"
    info = ex.w_drill_info.value
    assert "cannot reach the guard" in info and "subtree_counted" in info
    assert "1 reference(s)" in info and "(64)" in info
    ex2 = explore(geometry="toy", scheme="per_piece", guard="int_max_half")
    ex2.drill_run()
    assert "cannot reach" not in ex2.w_drill_info.value


def test_log_cells_reused_only_for_the_same_step(ex):
    """The log's per-step cells are kept between clicks (a step never changes); the log is
    the one built from scratch after touches, undo, a new step in the redo tail's place and a
    scheme change."""
    from hgmviz.widgets import views

    def fresh():
        views._CELLS.clear()
        return views.log_html(ex.session)

    ex.buttons["touch"].click()
    ex.buttons["dontneed"].click()
    ex.b_undo.click()
    kept = views.log_html(ex.session)
    assert "(undone)" in kept and kept == fresh()
    views.log_html(ex.session)                 # cells cached again
    ex.buttons["fork"].click()                 # replaces the undone step
    kept = views.log_html(ex.session)
    assert "(undone)" not in kept and kept == fresh()
    assert len(views._CELLS) >= ex.session.position
