"""Layer 1: read-only summaries of page-table rows for the diagrams (no kernel counterpart:
nothing here models the kernel; it only reads entries in the encoding of :mod:`.pool`).

``table_pair_steps`` decides, for pairs of page-table pages at consecutive entries of a
parent, whether the second is a *translate* of the first (the collapsing rule of
:mod:`hgmviz.render.scene`): same kinds and change marks at every index, and every leaf
of the second maps folio ``f + dF`` page ``p + dG`` where the first maps ``f``, ``p``, with
one ``(dF, dG)`` for the whole page.  The renderer asked this of numpy over whole
``tables x entries`` arrays (a 1 GiB folio mapped at 4 KiB is 512 x 512 entries per
state, ~30 passes); here one pass stops at a pair's first difference.
"""
from __future__ import annotations

import numpy as np

from .._jit import njit
from .pool import FL_FOLIO0, FL_NH, FL_NR, FL_ORDER, FL_PFN0, FL_STRIDE

__all__ = ["table_pair_steps", "STEP_NONE", "STEP_NO_LEAVES", "STEP_SAME_FOLIO",
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
def _folio_page(fl, pfn):
    """(folio, page in the folio) of ``pfn``; (-1, -1) in no folio."""
    for h in range(fl[FL_NH]):
        base = FL_STRIDE * h
        pfn0 = fl[base + FL_PFN0]
        order = fl[base + FL_ORDER]
        if pfn >= pfn0 and pfn < pfn0 + (fl[base + FL_NR] << order):
            rel = pfn - pfn0
            return fl[base + FL_FOLIO0] + (rel >> order), rel & ((1 << order) - 1)
    return -1, -1


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
def _row_ok(N, B, has_bef, r):
    """No pointer to a deeper table (now or before) and no replaced entry in row ``r``."""
    for j in range(N.shape[1]):
        n = N[r, j]
        if _kind(n) == _TABLE:
            return False
        if has_bef:
            b = B[r, j]
            if _kind(b) == _TABLE:
                return False
            if _mark(n, b, True)[1] == _REPLACED:
                return False
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
    count with what they were."""
    m = N.shape[0]
    rok = np.zeros(m, np.bool_)
    done = np.zeros(m, np.bool_)
    out = np.full(ia.size, STEP_NONE, np.int64)
    for i in range(ia.size):
        a = ia[i]
        b = ib[i]
        if not (ok[a] and ok[b]):
            continue
        for r in (a, b):
            if not done[r]:
                rok[r] = _row_ok(N, B, has_bef, r)
                done[r] = True
        if not (rok[a] and rok[b]):
            continue
        has = False
        good = True
        f0 = 0
        g0 = 0
        for j in range(N.shape[1]):
            ka, sa, ea = _mark(N[a, j], B[a, j], has_bef)
            kb, sb, eb = _mark(N[b, j], B[b, j], has_bef)
            if ka != kb or sa != sb:
                good = False
                break
            if ka != _LEAF:
                continue
            fa, pa = _folio_page(fl, ea >> 1)
            fb, pb = _folio_page(fl, eb >> 1)
            if not has:
                has = True
                f0 = fb - fa
                g0 = pb - pa
            elif fb - fa != f0 or pb - pa != g0:
                good = False
                break
        if not good:
            continue
        if not has:
            out[i] = STEP_NO_LEAVES
        elif f0 == 0 and g0 == span:
            out[i] = STEP_SAME_FOLIO
        elif g0 == 0 and f0 >= 0:
            out[i] = STEP_STRIDE + f0
    return out
