"""Layer 1: read-only summaries of page-table rows for the diagrams (no kernel counterpart:
nothing here models the kernel; it only reads entries in the encoding of :mod:`.pool`).

``table_pair_steps`` decides, for pairs of page-table pages at consecutive entries of a
parent, whether the second is a *translate* of the first (the collapsing rule of
:mod:`hgmviz.render.scene`): same kinds and change marks at every index, and every leaf
of the second maps folio ``f + dF`` page ``p + dG`` where the first maps ``f``, ``p``, with
one ``(dF, dG)`` for the whole page.  The renderer asked this of numpy over whole
``tables x entries`` arrays (a 1 GiB folio mapped at 4 KiB is 512 x 512 entries per
state, ~30 passes); here one pass stops at a pair's first difference.

``scan_leaves`` counts the leaves under whole page-table pages and marks their folios (the
"262,144 leaves (262,144 x 4 KiB) -> folio 0" summaries) without building per-leaf arrays.
"""
from __future__ import annotations

import numpy as np

from .._jit import njit
from .pool import FL_FOLIO0, FL_NH, FL_NR, FL_ORDER, FL_PFN0, FL_STRIDE

__all__ = ["table_pair_steps", "scan_leaves", "STEP_NONE", "STEP_NO_LEAVES", "STEP_SAME_FOLIO",
           "STEP_STRIDE"]

#: codes returned per pair: not translates; translates holding no leaf; the same folio
#: continues (dF = 0, dG = the pages one table spans); the same pages of folios dF apart
#: (dG = 0, returned as ``STEP_STRIDE + dF``)
STEP_NONE, STEP_NO_LEAVES, STEP_SAME_FOLIO, STEP_STRIDE = -1, 0, 1, 2

# entry kinds and change marks as hgmviz.render.model numbers them
_NONE, _LEAF, _TABLE = 0, 1, 2
_SAME, _NEW, _REMOVED, _REPLACED = 0, 1, 2, 3


@njit
def _kind(v):
    if v == 0:
        return _NONE
    if v & 1:
        return _LEAF
    return _TABLE


@njit
def _folio_page(fl, pfn, hint):
    """(folio, page in the folio, region) of ``pfn``, trying hstate region ``hint`` first;
    (-1, -1, hint) in no folio."""
    base = FL_STRIDE * hint
    pfn0 = fl[base + FL_PFN0]
    order = fl[base + FL_ORDER]
    if pfn >= pfn0 and pfn < pfn0 + (fl[base + FL_NR] << order):
        rel = pfn - pfn0
        return fl[base + FL_FOLIO0] + (rel >> order), rel & ((1 << order) - 1), hint
    for h in range(fl[FL_NH]):
        base = FL_STRIDE * h
        pfn0 = fl[base + FL_PFN0]
        order = fl[base + FL_ORDER]
        if pfn >= pfn0 and pfn < pfn0 + (fl[base + FL_NR] << order):
            rel = pfn - pfn0
            return fl[base + FL_FOLIO0] + (rel >> order), rel & ((1 << order) - 1), h
    return -1, -1, hint


@njit
def _mark(n, b, has_bef):
    """(effective kind, change mark, effective entry) of now-entry ``n`` / before-entry ``b``."""
    kn = _kind(n)
    if not has_bef:
        return kn, _SAME, n
    kb = _kind(b)
    if kn != _NONE and kb == _NONE:
        return kn, _NEW, n
    if kn == _NONE and kb != _NONE:
        return kb, _REMOVED, b
    if kn != _NONE and (kn != kb or (kn == _LEAF and n != b)):
        return kn, _REPLACED, n
    return kn, _SAME, n


@njit
def _decode(N, B, has_bef, fl, r, K, F, P, s):
    """Row ``r`` into slot ``s`` of ``K`` (kind * 4 + mark), ``F``, ``P`` (folio and page of
    leaves, 0 elsewhere); False when the row holds a pointer to a deeper table (now or
    before) or a replaced entry (it then groups with nothing)."""
    hint = 0
    for j in range(N.shape[1]):
        n = N[r, j]
        if _kind(n) == _TABLE:
            return False
        b = B[r, j]
        if has_bef and _kind(b) == _TABLE:
            return False
        k, mk, e = _mark(n, b, has_bef)
        if mk == _REPLACED:
            return False
        K[s, j] = k * 4 + mk
        if k == _LEAF:
            F[s, j], P[s, j], hint = _folio_page(fl, e >> 1, hint)
        else:
            F[s, j] = 0
            P[s, j] = 0
    return True


@njit
def table_pair_steps(N, B, has_bef, ok, fl, span, ia, ib):
    """For each pair ``(ia[i], ib[i])`` of rows of ``N`` (now) and ``B`` (before, all-zero
    rows where there was no table; ignored unless ``has_bef``): :data:`STEP_NONE` unless
    both rows are ``ok`` (the caller's checks: whole, not shared), hold no pointer to a
    deeper table, no replaced entry, and the same kind and change mark at every index;
    else :data:`STEP_NO_LEAVES` without leaves, :data:`STEP_SAME_FOLIO` when every leaf of
    row ``ib`` maps the same folio ``span`` pages on, ``STEP_STRIDE + dF`` when it maps the
    same page of the folio ``dF >= 0`` on, :data:`STEP_NONE` otherwise.  Removed entries
    count with what they were.

    Each row is decoded once per run of pairs that use it (two slots: pairs of neighbours
    decode every row once)."""
    w = N.shape[1]
    K = np.empty((2, w), np.int64)
    F = np.empty((2, w), np.int64)
    P = np.empty((2, w), np.int64)
    row = np.full(2, -1, np.int64)       # the row each slot holds
    good = np.zeros(2, np.bool_)         # that row's _decode answer
    out = np.full(ia.size, STEP_NONE, np.int64)
    for i in range(ia.size):
        a = ia[i]
        b = ib[i]
        if not (ok[a] and ok[b]):
            continue
        if row[0] == a:
            sa = 0
        elif row[1] == a:
            sa = 1
        else:
            sa = 1 if row[0] == b else 0
            good[sa] = _decode(N, B, has_bef, fl, a, K, F, P, sa)
            row[sa] = a
        if not good[sa]:
            continue
        sb = 1 - sa
        if row[sb] != b:
            if a == b:
                sb = sa
            else:
                good[sb] = _decode(N, B, has_bef, fl, b, K, F, P, sb)
                row[sb] = b
        if not good[sb]:
            continue
        has = False
        same = True
        f0 = 0
        g0 = 0
        for j in range(w):
            k = K[sa, j]
            if k != K[sb, j]:
                same = False
                break
            if k >> 2 != _LEAF:
                continue
            df = F[sb, j] - F[sa, j]
            dg = P[sb, j] - P[sa, j]
            if not has:
                has = True
                f0 = df
                g0 = dg
            elif df != f0 or dg != g0:
                same = False
                break
        if not same:
            continue
        if not has:
            out[i] = STEP_NO_LEAVES
        elif f0 == 0 and g0 == span:
            out[i] = STEP_SAME_FOLIO
        elif g0 == 0 and f0 >= 0:
            out[i] = STEP_STRIDE + f0
    return out


@njit
def scan_leaves(V, fl, seen):
    """Count the present leaves among the entries of ``V`` (a 2-D array of rows), set
    ``seen[folio]`` for the folio of each (pfns in no folio, or past ``seen``, are counted
    but mark nothing) and return ``(leaves, tables)``: their number and the page-table
    pages the other non-none entries point at, in row order."""
    kids = np.empty(V.size, np.int64)
    nk = 0
    n = 0
    hint = 0
    nf = seen.size
    for r in range(V.shape[0]):
        for j in range(V.shape[1]):
            v = V[r, j]
            if v == 0:
                continue
            if v & 1:
                n += 1
                f, _, hint = _folio_page(fl, v >> 1, hint)
                if f >= 0 and f < nf:
                    seen[f] = True
            else:
                kids[nk] = v >> 1
                nk += 1
    return n, kids[:nk]
