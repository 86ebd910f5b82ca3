"""Machine.last_counter_updates: the atomic counter updates behind an operation's net change.

The collapse numbers are the thread's (T19/T20: "262k atomic decrements" for a 4 KiB-mapped
1 GiB page under the THP-like scheme); the others follow from each scheme's rule, and the
subpage tally is checked against the subpage array it describes.
"""
import numpy as np
import pytest

import hgmviz as hv
from hgmviz import ops
from hgmviz.session import Session

K4 = 4096
M2, G1 = (h.size for h in hv.X86_64.hstates)
N = G1 // K4          # 262,144 leaves of 4 KiB in a 1 GiB page
ZERO = {"refcount": 0, "entire_mapcount": 0, "subpage_mapcount": 0, "metadata": 0}


def hgm_1g(scheme, *, mapped=G1):
    m = hv.Machine(nr_hugepages={G1: 1}, scheme=scheme)
    f = m.memfd_create(size=G1, hstate=G1)
    f.fallocate(0, G1)
    p = m.spawn()
    a = p.mmap(f, G1)
    p.madvise(a, G1, hv.MADV_SPLIT)
    p.uffdio_register(a, G1, mode="minor")
    if mapped:
        p.uffdio_continue_batch(a, mapped, K4)
    return m, f, p, a


@pytest.mark.parametrize("scheme, expected", [
    # n leaves cleared (n refcount and n head-mapcount updates), one 1 GiB leaf set
    ("per_piece", dict(ZERO, refcount=N + 1, entire_mapcount=N + 1)),
    # n refcount updates on the head, n subpage _mapcount decrements, one entire increment
    ("thp_like", dict(ZERO, refcount=N + 1, entire_mapcount=1, subpage_mapcount=N)),
    # the PUD entry stays present throughout: nothing to count
    ("hstate_present", ZERO),
    # the (mm, hugepage) count goes n -> 0 -> 1: the folio's counters drop and retake one
    ("subtree_counted", dict(ZERO, refcount=2, entire_mapcount=2, metadata=N + 1)),
])
def test_collapse_of_a_4k_mapped_1g_page(scheme, expected):
    m, f, p, a = hgm_1g(scheme)
    before = (f.folio_at(0).refcount, f.folio_at(0).entire_mapcount)
    p.madvise(a, G1, hv.MADV_COLLAPSE)
    assert m.last_counter_updates == expected
    # the net change is small whatever the work was
    assert (f.folio_at(0).refcount, f.folio_at(0).entire_mapcount) == (2, 1)
    assert before[0] in (2, N + 1)


def test_thp_like_subpage_tally_matches_the_subpage_array():
    m, f, p, a = hgm_1g("thp_like", mapped=0)
    sub0 = m.scheme.subpage_mapcounts(0).copy()
    p.uffdio_continue(a + 5 * K4, 3 * K4)          # 3 leaves of 4 KiB
    p.uffdio_continue(a + M2, M2)                  # one 2 MiB leaf: 512 subpages
    changed = int((m.scheme.subpage_mapcounts(0) != sub0).sum())
    assert m.last_counter_updates["subpage_mapcount"] == 512
    assert changed == 3 + 512


def test_a_mainline_fault_updates_once_each():
    m = hv.Machine(nr_hugepages={M2: 1})
    f = m.memfd_create(size=M2, hstate=M2)
    p = m.spawn()
    a = p.mmap(f, M2)
    p.touch(a)
    assert m.last_counter_updates == dict(ZERO, refcount=1, entire_mapcount=1)
    p.munmap(a, M2)
    assert m.last_counter_updates == dict(ZERO, refcount=1, entire_mapcount=1)


def test_failed_operation_reports_no_updates_and_changes_nothing():
    m, f, p, a = hgm_1g("per_piece", mapped=0)
    p.uffdio_continue(a, K4)
    assert m.last_counter_updates["refcount"] == 1
    digest = m.state_digest()
    with pytest.raises(OSError):
        p.uffdio_continue(a + 1, K4)               # misaligned: EINVAL before any work
    assert m.last_counter_updates == ZERO
    assert m.state_digest() == digest


def test_guard_refusal_counts_only_the_admitted_pieces():
    small = hv.TOY.hstates[0].size
    m = hv.Machine(nr_hugepages={small: 1}, geometry="toy", scheme="per_piece",
                   guard="int_max_half")
    f = m.memfd_create(size=small, hstate=small)
    f.fallocate(0, small)
    p = m.spawn()
    o = hv.overflow_math(hstate=small, piece=K4, guard="int_max_half", geometry="toy")
    for _ in range(o["full_mappings"] + 1):
        a = p.mmap(f, small)
        p.madvise(a, small, hv.MADV_SPLIT)
        p.uffdio_register(a, small, mode="minor")
        try:
            p.uffdio_continue_batch(a, small, K4)
        except hv.errors.PartialProgress:
            pass
    assert m.last_counter_updates["refcount"] == o["extra_pieces"]
    assert f.folio_at(0).refcount == o["refused_at_refcount"]


def test_session_keeps_each_steps_updates_across_undo_and_redo():
    small = hv.TOY.hstates[0].size
    s = Session(geometry="toy", nr_hugepages={small: 1}, scheme="thp_like")
    for op in (ops.MemfdCreate("f", small, small), ops.Fallocate("f", 0, small), ops.Spawn("p"),
               ops.Mmap("p", "f", small, "a"), ops.Madvise("p", "a", small, "MADV_SPLIT"),
               ops.UffdioRegister("p", "a", small, "minor"),
               ops.UffdioContinueBatch("p", "a", small, K4),
               ops.Madvise("p", "a", small, "MADV_COLLAPSE")):
        s.apply(op)
    m = s.machine
    collapse = dict(ZERO, refcount=9, entire_mapcount=1, subpage_mapcount=8)
    assert m.last_counter_updates == collapse
    s.undo()
    assert m.last_counter_updates == dict(ZERO, refcount=8, subpage_mapcount=8)
    s.redo()
    assert m.last_counter_updates == collapse
    s.undo()
    s.undo()
    assert m.last_counter_updates == ZERO            # UFFDIO_REGISTER touches no counter
    assert np.all(m.scheme.subpage_mapcounts(0) == 0)


@pytest.mark.parametrize("guard", [None, "int_max_half", "sign"])
def test_outcomes_say_when_a_guard_refused_and_which_folios_wrapped(guard):
    small = hv.TOY.hstates[0].size
    w = ops.World(hv.Machine(nr_hugepages={small: 1}, geometry="toy", scheme="per_piece",
                             guard=guard))
    outs = [ops.run_step(w, op) for op in (ops.MemfdCreate("f", small, small),
                                           ops.Fallocate("f", 0, small), ops.Spawn("p"))]
    assert not any(o.refused or o.wrapped for o in outs)
    seen = []
    for _ in range(17):
        for op in (ops.Mmap("p", "f", small, "a"), ops.Madvise("p", "a", small, "MADV_SPLIT"),
                   ops.UffdioRegister("p", "a", small, "minor"),
                   ops.UffdioContinueBatch("p", "a", small, K4)):
            seen.append(ops.run_step(w, op))
    refused = [o for o in seen if o.refused]
    wrapped = [o for o in seen if o.wrapped]
    o = hv.overflow_math(hstate=small, piece=K4, guard=guard, geometry="toy")
    if guard is None:
        assert refused == [] and len(wrapped) == 1 and wrapped[0].wrapped == (0,)
        assert wrapped[0].ok
    else:
        # the first refusal comes after o["full_mappings"] full mappings and o["extra_pieces"]
        # pieces (EAGAIN, mapped, cause ENOMEM); every later mapping is refused at its first
        # piece, with nothing mapped: the plain error
        first, later = refused[0], refused[1:]
        assert (first.status, first.mapped, first.cause) == ("EAGAIN", o["extra_pieces"] * K4,
                                                             "ENOMEM")
        assert later and all(r.status == "ENOMEM" and r.mapped is None for r in later)
        assert bool(first.wrapped) == (guard == "sign")      # the sign check admits the wrap
        assert not any(r.wrapped for r in later)
    assert all(not (x.refused or x.wrapped) for x in seen if x.ok and not x.wrapped)
