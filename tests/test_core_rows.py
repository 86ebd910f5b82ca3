"""Canonical rows (issue 16): full leaf tables of one content read one row; every walk, the
digest, checkpoints and rollback see exactly the tables they see without sharing."""
import warnings

import numpy as np
import pytest

import hgmviz as hv
from hgmviz import core
from hgmviz.mm.checkpoint import state_digest

pytestmark = pytest.mark.nojit

MB2 = 2 << 20
PAGE = 4096


def _machine(share=True, folios=2):
    m = hv.Machine(nr_hugepages={MB2: folios}, scheme="per_piece", kernel="6.2")
    m.pt.share = share
    f = m.memfd_create(size=folios * MB2)
    f.fallocate(0, folios * MB2)
    return m, f


def _map(m, p, f, size):
    a = p.mmap(f, size)
    p.madvise(a, size, hv.MADV_SPLIT)
    p.uffdio_register(a, size, mode="minor")
    p.uffdio_continue_batch(a, size, PAGE)
    return a


def _run(share):
    """Three VMAs of two 2 MiB folios at 4 KiB, one unmapped in part, one fork, one exit."""
    m, f = _machine(share)
    p, q = m.spawn(), m.spawn()
    a = _map(m, p, f, 2 * MB2)
    b = _map(m, q, f, 2 * MB2)
    c = _map(m, p, f, 2 * MB2)
    q.munmap(b, MB2)                          # a whole table emptied
    p.madvise(c + MB2, 16 * PAGE, hv.MADV_DONTNEED)   # part of one: copy-on-write
    child = p.fork()
    child.exit()
    return m, (a, b, c)


def _leaf_tables(m):
    pt = m.pt
    return np.flatnonzero((pt.tlevel == core.LEVEL_PTE) & (pt.tcount == pt.ptrs))


def test_sharing_changes_no_table_and_no_digest():
    m1, _ = _run(share=True)
    m0, _ = _run(share=False)
    assert m1.pt.nr_canonical > 0 and m0.pt.nr_canonical == 0
    assert (m1.pt.rmap < 0).any() and not (m0.pt.rmap < 0).any()
    assert np.array_equal(np.asarray(m1.pt.ent), np.asarray(m0.pt.ent))
    assert state_digest(m1) == state_digest(m0)
    # fewer rows: the shared tables hold none of their own
    assert m1.pt.nr_rows < m0.pt.nr_rows


def test_third_mapping_of_a_content_reads_its_canonical_row():
    m, f = _machine()
    p = m.spawn()
    _map(m, p, f, 2 * MB2)
    _map(m, p, f, 2 * MB2)                   # the second sighting makes the rows
    rows0 = m.pt.nr_rows
    c = _map(m, p, f, 2 * MB2)
    assert m.pt.nr_canonical == 2 and m.pt.nr_rows <= rows0 + 1     # + its PMD page at most
    t, i, lvl = core.hugetlb_full_walk(m.pt.P, m._g, m._mm(p).pgd, c + 5 * PAGE, 1)
    assert lvl == 1 and m.pt.rmap[t] < 0 and m.pt.tcount[t] == m.pt.ptrs
    assert m.pt.ent[t, i] == core.mk_leaf(int(m._folio_pfn[f.folio_at(0).id]) + 5)


def test_a_write_into_a_shared_table_copies_it_and_changes_no_other():
    m, f = _machine()
    p = m.spawn()
    va = [_map(m, p, f, MB2 * 2) for _ in range(3)]
    shared = _leaf_tables(m)
    shared = shared[m.pt.rmap[shared] < 0]
    assert shared.size >= 2
    before = np.asarray(m.pt.ent)
    # zap 7 of the table's 512 leaves (the core kernel: hugetlb madvise works in hugepages)
    mm = m._mm(p)
    m._kcall(core.zap_range, m._g, m._fl, mm.pgd, mm.pid, va[2], va[2] + 7 * PAGE,
             core.LEVEL_PMD, m._res)
    assert m._res[core.RES_COUNT] == 7
    after = np.asarray(m.pt.ent)
    t, i, lvl = core.hugetlb_full_walk(m.pt.P, m._g, m._mm(p).pgd, va[2] + 7 * PAGE, 1)
    assert m.pt.rmap[t] > 0 and m.pt.tcount[t] == m.pt.ptrs - 7
    assert not after[t, :7].any() and np.array_equal(after[t, 7:], before[t, 7:])
    changed = np.flatnonzero((before != after).any(axis=1))
    assert list(changed) == [t]
    # the canonical row itself is untouched: the other tables still read every leaf
    for u in shared:
        if u != t:
            assert np.array_equal(after[u], before[u])
    # a raw write (tests, tools) also copies first
    u = int(shared[0]) if shared[0] != t else int(shared[1])
    m.pt.ent[u, 3] = 0
    assert m.pt.rmap[u] > 0 and m.pt.ent[u, 3] == 0
    assert all(np.array_equal(m.pt.ent[w], before[w]) for w in shared if w not in (t, u))


def test_rollback_after_sharing_restores_exactly():
    m, f = _machine()
    p = m.spawn()
    _map(m, p, f, 2 * MB2)
    _map(m, p, f, 2 * MB2)
    digest = state_digest(m)
    ent = np.asarray(m.pt.ent)
    tcount = m.pt.tcount.copy()
    nfree = m.pt.nr_free
    jm = int(m.pt.meta[core.M_JLEN])
    a = p.mmap(f, 2 * MB2)
    p.madvise(a, 2 * MB2, hv.MADV_SPLIT)
    p.uffdio_register(a, 2 * MB2, mode="minor")
    digest_mapped = state_digest(m)
    pgd = m._mm(p).pgd
    res = np.zeros(4, np.int64)
    vma = next(v for v in m._mm(p).vmas if v.start == a)
    st = m.pt.run(core.install_range, m._g, pgd, p.pid, vma.start, vma.pgoff, 21, 2, 12,
                  m._files[f.id].pc, m._folio_pfn, a, a + 2 * MB2, core.MODE_FIXED, 12, -1, 0,
                  np.zeros(0, np.int32), 0, res)
    assert st == 0 and res[core.RES_LEAVES] == 1024
    assert (m.pt.rmap < 0).sum() >= 2            # the new tables read canonical rows
    core.rollback(m.pt.P, jm)
    m.pt.meta[core.M_NEV] = m._accounted
    assert state_digest(m) == digest_mapped
    p.munmap(a, 2 * MB2)
    assert state_digest(m) == digest
    assert np.array_equal(np.asarray(m.pt.ent), ent) and np.array_equal(m.pt.tcount, tcount)
    assert m.pt.nr_free == nfree


def test_a_refused_operation_after_sharing_changes_nothing():
    # the INT_MAX/2 guard at the toy geometry refuses a batch in its middle: the machine
    # rolls the shared tables back and re-runs up to the admitted pieces
    m1 = hv.Machine(geometry="toy", nr_hugepages={1 << 18: 1}, scheme="per_piece",
                    guard="int_max_half")
    m0 = hv.Machine(geometry="toy", nr_hugepages={1 << 18: 1}, scheme="per_piece",
                    guard="int_max_half")
    m0.pt.share = False
    for m in (m1, m0):
        f = m.memfd_create(size=1 << 18, hstate=1 << 18)
        f.fallocate(0, 1 << 18)
        p = m.spawn()
        for _ in range(12):
            a = p.mmap(f, 1 << 18)
            p.madvise(a, 1 << 18, hv.MADV_SPLIT)
            p.uffdio_register(a, 1 << 18, mode="minor")
            try:
                p.uffdio_continue_batch(a, 1 << 18, PAGE)
            except (hv.PartialProgress, OSError):
                break
    assert m1.pt.nr_canonical > 0
    assert state_digest(m1) == state_digest(m0)


def test_checkpoint_round_trip_with_shared_tables():
    m, f = _machine()
    p = m.spawn()
    for _ in range(3):
        _map(m, p, f, 2 * MB2)
    ck = m.checkpoint()
    digest = state_digest(m)
    p.exit()
    assert state_digest(m) != digest
    m.restore(ck)
    assert state_digest(m) == digest
    q = m.spawn()
    _map(m, q, f, 2 * MB2)                   # and it goes on
    m.restore(ck)
    assert state_digest(m) == digest


def test_growth_copies_only_rows_in_use():
    pt = core.PageTablePool(512, tables=64)
    pt.grow_tables(1 << 20)
    # the tables grew; the rows did not (no row per table is reserved)
    assert pt.capacity > 1 << 20 and pt.rows.shape[0] == 64
    assert pt.ent.shape == (pt.capacity, 512) and pt.ent[pt.capacity - 1, 511] == 0


# ---- a property over operation sequences: sharing on and off give the same machine ---------
from hypothesis import example, given  # noqa: E402
import hypothesis.strategies as st  # noqa: E402

import hypothesis_profiles  # noqa: E402

TOY_HS = 1 << 18          # the toy geometry's 256 KiB hstate: 8 PTE tables of 8 x 4 KiB
# mostly whole hugepages at 4 KiB (what shares), sometimes part of one or 32 KiB pieces
MAP = st.tuples(st.just("map"), st.integers(0, 2), st.sampled_from([0, 0, 0, 1]),
                st.sampled_from([0, 0, 0, 0, 5, 17]), st.sampled_from([64, 64, 64, 64, 3, 40]),
                st.sampled_from([PAGE, PAGE, PAGE, 8 * PAGE]))
OPS = st.lists(st.one_of(
    MAP, MAP, MAP, MAP,
    st.tuples(st.just("dontneed"), st.integers(0, 2), st.integers(0, 1)),
    st.tuples(st.just("munmap"), st.integers(0, 2)),
    st.tuples(st.just("mremap"), st.integers(0, 2)),
    st.tuples(st.just("fork"), st.integers(0, 1)),
    st.tuples(st.just("exit"), st.integers(1, 3)),
), min_size=4, max_size=hypothesis_profiles.steps(14))


def _toy(share, guard="int_max_half"):
    m = hv.Machine(geometry="toy", nr_hugepages={TOY_HS: 2}, scheme="per_piece", guard=guard)
    m.pt.share = share
    f = m.memfd_create(size=2 * TOY_HS, hstate=TOY_HS)
    f.fallocate(0, 2 * TOY_HS)
    return m, f


def _step(m, f, procs, vmas, op):
    """One operation; returns what it did (the value or the error), for comparison."""
    kind = op[0]
    try:
        if kind == "map":
            _, slot, h, first, n, piece = op
            p = procs[0] if slot < 2 else procs[-1]
            if slot not in vmas:
                a = p.mmap(f, 2 * TOY_HS)
                p.madvise(a, 2 * TOY_HS, hv.MADV_SPLIT)
                p.uffdio_register(a, 2 * TOY_HS, mode="minor")
                vmas[slot] = (p, a)
            p, a = vmas[slot]
            lo = h * TOY_HS + (first * PAGE // piece) * piece
            hi = min(lo + n * piece, (h + 1) * TOY_HS)
            return p.uffdio_continue_batch(a + lo, hi - lo, piece)
        if kind == "dontneed" and op[1] in vmas:
            p, a = vmas[op[1]]
            return p.madvise(a + op[2] * TOY_HS, TOY_HS, hv.MADV_DONTNEED)
        if kind == "munmap" and op[1] in vmas:
            p, a = vmas.pop(op[1])
            return p.munmap(a, 2 * TOY_HS)
        if kind == "mremap" and op[1] in vmas:
            p, a = vmas[op[1]]
            b = p.mremap(a, 2 * TOY_HS, 2 * TOY_HS, hv.MREMAP_MAYMOVE)
            vmas[op[1]] = (p, b)
            return b - a != 0
        if kind == "fork" and len(procs) < 4:
            procs.append(procs[op[1] % len(procs)].fork())
            return len(procs)
        if kind == "exit" and len(procs) > op[1]:
            q = procs.pop(op[1])
            for k in [k for k, (p, _a) in vmas.items() if p is q]:
                del vmas[k]
            return q.exit()
    except (OSError, hv.PartialProgress) as e:
        return (type(e).__name__, getattr(e, "errno", None), str(e))
    return None


@hypothesis_profiles.for_test(60)
@given(OPS, st.sampled_from([None, "int_max_half"]))
@example([("map", 0, 0, 0, 64, PAGE), ("map", 1, 0, 0, 64, PAGE), ("map", 2, 0, 0, 64, PAGE),
          ("fork", 0), ("mremap", 2), ("dontneed", 1, 0), ("exit", 2), ("munmap", 2),
          ("map", 1, 0, 0, 64, PAGE), ("exit", 1)], None)
def test_sharing_never_changes_the_machine(ops, guard):
    # the toy geometry's 8-bit refcount: the INT_MAX/2 guard refuses the second whole map
    # in its middle (rollback, then the admitted pieces again); no guard wraps it instead
    (m1, f1), (m0, f0) = _toy(True, guard), _toy(False, guard)
    s1 = ([m1.spawn(), m1.spawn()], {})
    s0 = ([m0.spawn(), m0.spawn()], {})
    for op in ops:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)    # the wraps, on both machines
            r1 = _step(m1, f1, *s1, op)
            r0 = _step(m0, f0, *s0, op)
        assert r1 == r0, op
        assert state_digest(m1) == state_digest(m0), op
        assert m0.pt.nr_canonical == 0
    if guard is None and ops[:3] == [("map", k, 0, 0, 64, PAGE) for k in range(3)]:
        assert m1.pt.nr_canonical == 8          # the explicit example shares
