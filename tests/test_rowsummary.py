"""``core.rowsummary``: the jitted summaries the diagrams use agree with the slow obvious
versions, written from the collapsing rule (hgmviz/render/scene.py) entry by entry, over
random tables (hypothesis), and the builder's pair types with the numpy code they replaced."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hgmviz.core.rowsummary import (STEP_NO_LEAVES, STEP_NONE, STEP_SAME_FOLIO, STEP_STRIDE,
                                    table_pair_steps)
from hypothesis_profiles import for_test

# two hstates: folios 0..3 of 4 pages at pfn 0..15, folios 4..11 of 1 page at pfn 16..23;
# pfns from 24 on are in no folio
FL = np.array([2, 0, 2, 0, 4, 16, 0, 4, 8], np.int64)
PTRS = 4


def folio_page(pfn):
    if 0 <= pfn < 16:
        return pfn >> 2, pfn & 3
    if 16 <= pfn < 24:
        return 4 + (pfn - 16), 0
    return -1, -1


def kind(v):
    return 0 if v == 0 else (1 if v & 1 else 2)


def mark(n, b, has_bef):
    """(kind, mark, entry) as the scene's rule reads it: a removed entry counts as it was."""
    kn, kb = kind(n), kind(b)
    if not has_bef or (kn == 0 and kb == 0):
        return kn, 0, n
    if kb == 0:
        return kn, 1, n                           # new
    if kn == 0:
        return kb, 2, b                           # removed
    if kn != kb or (kn == 1 and n != b):
        return kn, 3, n                           # replaced
    return kn, 0, n


def obvious_step(N, B, has_bef, ok, span, a, b):
    """The rule, written out: STEP_NONE unless ``b`` is a translate of ``a``."""
    if not (ok[a] and ok[b]):
        return STEP_NONE
    ma = [mark(N[a][j], B[a][j], has_bef) for j in range(PTRS)]
    mb = [mark(N[b][j], B[b][j], has_bef) for j in range(PTRS)]
    for r, ms in ((a, ma), (b, mb)):
        if any(kind(N[r][j]) == 2 for j in range(PTRS)):
            return STEP_NONE
        if has_bef and any(kind(B[r][j]) == 2 for j in range(PTRS)):
            return STEP_NONE
        if any(m[1] == 3 for m in ms):
            return STEP_NONE
    if [m[:2] for m in ma] != [m[:2] for m in mb]:
        return STEP_NONE
    steps = set()
    for x, y in zip(ma, mb):
        if x[0] == 1:
            fa, pa = folio_page(x[2] >> 1)
            fb, pb = folio_page(y[2] >> 1)
            steps.add((fb - fa, pb - pa))
    if not steps:
        return STEP_NO_LEAVES
    if len(steps) > 1:
        return STEP_NONE
    (dF, dG), = steps
    if dF == 0 and dG == span:
        return STEP_SAME_FOLIO
    if dG == 0 and dF >= 0:
        return STEP_STRIDE + dF
    return STEP_NONE


leaf = st.integers(0, 27).map(lambda pfn: (pfn << 1) | 1)
entry = st.one_of(st.just(0), st.just(0), leaf, leaf, st.integers(1, 9).map(lambda t: t << 1))


@st.composite
def tables(draw):
    """Rows of PTRS entries, each row often a translate of the one before (so that every
    step code occurs), now and before."""
    m = draw(st.integers(1, 6))
    span = draw(st.sampled_from([1, 2, 4]))
    if draw(st.integers(0, 2)) == 0:
        rows = [draw(st.lists(entry, min_size=PTRS, max_size=PTRS))]
    else:       # pages of one small folio, or the first pages of 1-page folios
        p0 = draw(st.sampled_from([0, 0, 16]))
        width = draw(st.sampled_from([span, PTRS]))
        rows = [[((p0 + j) << 1) | 1 if j < width and draw(st.integers(0, 3)) else 0
                 for j in range(PTRS)]]
    for _ in range(m - 1):
        prev = rows[-1]
        how = draw(st.sampled_from(["random", "same", "page", "page", "folio"]))
        if how == "random":
            rows.append(draw(st.lists(entry, min_size=PTRS, max_size=PTRS)))
            continue
        d = {"same": 0, "page": span, "folio": draw(st.sampled_from([1, 4]))}[how]
        row = [v + (d << 1) if v & 1 else v for v in prev]
        if draw(st.integers(0, 3)) == 0:
            j = draw(st.integers(0, PTRS - 1))
            row[j] = draw(entry)
        rows.append(row)
    has_bef = draw(st.booleans())
    bef = [[0] * PTRS for _ in rows]
    if has_bef:
        hows = st.sampled_from(["same", "same", "same", "new", "removed", "mixed", "replaced"])
        every = draw(st.one_of(st.none(), hows))     # one change for every row, or per row
        for i, row in enumerate(rows):
            how = every or draw(hows)
            if how == "same":
                bef[i] = list(row)
            elif how == "replaced":     # every leaf mapped the next pfn
                bef[i] = [v + 2 if v & 1 else v for v in row]
            elif how == "removed":
                bef[i], rows[i] = list(row), [0] * PTRS
            elif how == "mixed":
                bef[i] = [draw(st.sampled_from([v, 0, (v + 2) if v & 1 else v, draw(entry)]))
                          for v in row]
    ok = draw(st.lists(st.sampled_from([True, True, True, False]), min_size=m, max_size=m))
    return rows, bef, has_bef, ok, span


@pytest.mark.nojit
@for_test(300)
@given(tables())
def test_table_pair_steps_matches_the_rule(t):
    rows, bef, has_bef, ok, span = t
    m = len(rows)
    N = np.array(rows, np.int32)
    B = np.array(bef, np.int32)
    ia = np.arange(m - 1, dtype=np.int64)
    ib = ia + 1
    got = table_pair_steps(N, B if has_bef else N, has_bef, np.array(ok, bool), FL, span, ia, ib)
    want = [obvious_step(rows, bef, has_bef, ok, span, a, a + 1) for a in range(m - 1)]
    assert got.tolist() == want
    # any pairs, not only neighbours, in any order
    if m > 2:
        ia2 = np.array([m - 1, 0], np.int64)
        ib2 = np.array([0, m - 1], np.int64)
        got2 = table_pair_steps(N, B if has_bef else N, has_bef, np.array(ok, bool), FL, span,
                                ia2, ib2)
        assert got2.tolist() == [obvious_step(rows, bef, has_bef, ok, span, m - 1, 0),
                                 obvious_step(rows, bef, has_bef, ok, span, 0, m - 1)]


@pytest.mark.nojit
def test_table_pair_steps_examples():
    """One example per code: a folio continued, folios a stride apart, no leaves, and the
    differences that break a group."""
    N = np.array([[1, 3, 0, 0],            # pfn 0, 1 (folio 0 pages 0, 1)
                  [5, 7, 0, 0],            # pfn 2, 3: the same folio 2 pages on
                  [13, 15, 0, 0],          # pfn 6, 7: folio 1 pages 2, 3 (stride 1 folio)
                  [0, 0, 0, 0],
                  [0, 0, 0, 0],
                  [0, 0, 0, 4]],           # a pointer to a deeper table
                 np.int32)
    ok = np.ones(6, bool)
    got = table_pair_steps(N, N, False, ok, FL, 2, np.arange(5), np.arange(1, 6)).tolist()
    assert got == [STEP_SAME_FOLIO, STEP_STRIDE + 1, STEP_NONE, STEP_NO_LEAVES, STEP_NONE]
    assert table_pair_steps(N, N, False, np.zeros(6, bool), FL, 2, np.arange(5),
                            np.arange(1, 6)).tolist() == [STEP_NONE] * 5
    # with a before: a new entry in one row and not the other breaks the pair
    B = N.copy()
    B[1, 1] = 0
    got = table_pair_steps(N, B, True, ok, FL, 2, np.array([0]), np.array([1])).tolist()
    assert got == [STEP_NONE]
    # removed rows count with what they were: folio 0 pages 0, 1 then pages 2, 3
    Z = np.zeros_like(N)
    got = table_pair_steps(Z, N, True, ok, FL, 2, np.array([0, 1]), np.array([1, 2])).tolist()
    assert got == [STEP_SAME_FOLIO, STEP_STRIDE + 1]
    # a pointer to a deeper table before, in both rows alike, still breaks the pair
    B = Z.copy()
    B[0, 3] = B[1, 3] = 4
    assert table_pair_steps(Z, B, True, ok, FL, 2, np.array([0]), np.array([1])).tolist() == \
        [STEP_NONE]
    B[0, 3] = B[1, 3] = 0
    assert table_pair_steps(Z, B, True, ok, FL, 2, np.array([0]), np.array([1])).tolist() == \
        [STEP_NO_LEAVES]


@pytest.mark.parametrize("name", ["x86_1g_4k", "x86_1g_4k_two_procs", "x86_collapse_diff",
                                  "toy_hgm_runs", "toy_compare", "x86_2m_full"])
def test_group_types_as_the_numpy_code_it_replaced(name, monkeypatch):
    """Every pair type the builder computes is the one the former numpy ``group_types``
    (kept here) computes, on the shipped examples."""
    from hgmviz.render import builder
    from hgmviz.render.examples import example_args, render_example

    calls = []
    fast = builder._Builder.group_types

    def both(self, E, right, level, base, i0):
        got = fast(self, E, right, level, base, i0)
        want = numpy_group_types(self, E, right, level, base, i0)
        calls.append(right.size)
        assert got.tolist() == want.tolist()
        return got

    monkeypatch.setattr(builder._Builder, "group_types", both)
    d = render_example(name, args=example_args(name))
    assert d.scene.node_count > 0
    if name.startswith("x86_1g"):
        assert calls and max(calls) == 511


def numpy_group_types(self, E, right, level, base, i0):
    """The builder's group_types before core.rowsummary (main at 36ba3bc), verbatim."""
    from hgmviz.render.model import _P_GROUP, LEAF, REPLACED, TABLE, _kind
    out = np.zeros(right.size, np.int64)
    pos = np.union1d(right - 1, right)
    cn = E["cn"][pos]
    cb = E["cb"][pos]
    S = 1 << self.g.level_shift(level)
    va = base + (i0 + pos) * S
    full = (va >= self.start) & (va + S <= self.end)
    now = self.now
    N = now.ent[cn]
    kN = _kind(N)
    ok = full & (now.tshare[cn] == 0) & ~(kN == TABLE).any(axis=1)
    if self.bef is not None:
        B = np.where(cb[:, None] > 0, self.bef.ent[cb], 0).astype(N.dtype)
        ok &= ~(_kind(B) == TABLE).any(axis=1)
        ok &= (cb == 0) | (self.bef.tshare[cb] == 0)
    else:
        B = None
    C = self.entry_states(N.ravel(), None if B is None else B.ravel())
    shp = N.shape
    K, ST, F, G = (C[x].reshape(shp) for x in ("k", "st", "f", "p"))
    if B is not None:
        ok &= ~(ST == REPLACED).any(axis=1)
        K = K * 4 + ST
    if right.size == pos.size - 1:
        ia, ib = slice(0, -1), slice(1, None)
    else:
        ia, ib = np.searchsorted(pos, right - 1), np.searchsorted(pos, right)
    Ka = K[ia]
    eq = ok[ia] & ok[ib] & (Ka == K[ib]).all(axis=1)
    leafm = (Ka >> 2) == LEAF if B is not None else Ka == LEAF
    has = leafm.any(axis=1)
    first = np.argmax(leafm, axis=1)
    dF = F[ib] - F[ia]
    dG = G[ib] - G[ia]
    r = np.arange(right.size)
    f0 = dF[r, first]
    g0 = dG[r, first]
    constF = ((dF == f0[:, None]) | ~leafm).all(axis=1)
    constG = ((dG == g0[:, None]) | ~leafm).all(axis=1)
    span = S >> self.ps
    out[eq & ~has] = _P_GROUP
    sel = eq & has & constF & constG
    out[sel & (f0 == 0) & (g0 == span)] = _P_GROUP + 1
    stride = sel & (g0 == 0) & (f0 >= 0)
    out[stride] = _P_GROUP + 2 + f0[stride]
    return out


@pytest.mark.nojit
@for_test(200)
@given(st.lists(st.lists(entry, min_size=PTRS, max_size=PTRS), max_size=5),
       st.integers(0, 12))
def test_scan_leaves_matches_a_loop(rows, nr_folios):
    from hgmviz.core.rowsummary import scan_leaves
    V = np.array(rows, np.int32).reshape(len(rows), PTRS)
    seen = np.zeros(nr_folios, bool)
    n, kids = scan_leaves(V, FL, seen)
    want_seen = set()
    leaves = [v for row in rows for v in row if kind(v) == 1]
    for v in leaves:
        f, _ = folio_page(v >> 1)
        if 0 <= f < nr_folios:
            want_seen.add(f)
    assert n == len(leaves)
    assert kids.tolist() == [v >> 1 for row in rows for v in row if kind(v) == 2]
    assert set(np.flatnonzero(seen).tolist()) == want_seen


@pytest.mark.parametrize("name", ["x86_collapse_diff", "toy_hgm_runs", "toy_compare",
                                  "x86_pmd_share", "x86_2m_full"])
def test_summaries_as_the_array_code(name):
    """subtree_summary / entries_summary say what summary_text says of the per-leaf arrays,
    for every table of both states of the shipped examples, whole and in pieces."""
    from hgmviz.render.builder import _Builder
    from hgmviz.render.examples import example_args
    from hgmviz.render.view import StateView
    args = example_args(name)
    ms = args["machines"] if "machines" in args else [args["m"]]
    bs = args.get("before")
    bs = bs if isinstance(bs, (list, tuple)) else [bs] * len(ms)
    views = [(m, StateView(m)) for m in ms] + [(m, StateView(m, b))
                                               for m, b in zip(ms, bs) if b is not None]
    checked = 0
    for m, view in views:
        b = _Builder(m, view, None, "", 0, 0, 8, None)
        for t in np.flatnonzero(view.tlevel):
            level = int(view.tlevel[t])
            want = b.summary_text(*b.subtree(view, [t], level, [0]))
            assert b.subtree_summary(view, [t, 0], level) == want
            for lo, hi in ((0, b.ptrs - 1), (1, 3), (b.ptrs // 2, b.ptrs // 2)):
                want = b.summary_text(*b.leaves_of_entries(view, t, level, 0, lo, hi, False)[:3])
                assert b.entries_summary(view, t, level, lo, hi) == want
            checked += 1
    assert checked >= 3


def test_group_answers_reused_within_one_drawing(monkeypatch):
    """The columns of a comparison (and forked processes) with equal page-table pages ask
    the kernel once per drawing; the scene is the one computed without reuse."""
    from hgmviz.render import builder, draw_compare
    from hgmviz.render.examples import example_args
    args = example_args("x86_1g_4k_two_procs")
    m = args["m"]
    calls = []
    kernel = builder.table_pair_steps

    def counted(*a):
        calls.append(1)
        return kernel(*a)

    monkeypatch.setattr(builder, "table_pair_steps", counted)
    shared = draw_compare([m, m, m]).scene
    n_shared = len(calls)
    assert n_shared >= 1

    class NoMemo(dict):              # every lookup misses
        def get(self, key, default=None):
            return default

    real_init = builder._Builder.__init__

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        self.memo = NoMemo()

    # machines and before states that differ: an answer is reused only for equal inputs
    args = example_args("x86_collapse_diff")
    mixed = [args["m"], m, args["m"]], [args["before"], None, None]
    shared_mixed = draw_compare(mixed[0], before=mixed[1]).scene

    monkeypatch.setattr(builder._Builder, "__init__", init)
    del calls[:]
    alone = draw_compare([m, m, m]).scene
    assert alone == shared
    assert len(calls) >= 3 * n_shared
    assert draw_compare(mixed[0], before=mixed[1]).scene == shared_mixed
