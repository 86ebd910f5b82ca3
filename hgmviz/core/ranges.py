"""Layer 1: the ranged kernels — install, zap, unshare, free_pgtables, fork's copy.

Each descends with the shared walk (:func:`~hgmviz.core.walk.hugetlb_hgm_walk`, allocating
with :func:`~hgmviz.core.walk.hugetlb_walk_step`) and then runs over the leaves of one
page-table page in a tight loop: the descent is written once, the per-leaf loops stay
inline, because they are where the time goes (2^30 leaves in the scale run).
"""
from __future__ import annotations

import numpy as np

from .._jit import njit
from .pool import (
    EEXIST, EFAULT, EINVAL, EV_CLEAR, EV_HSTATE_CLEARED, EV_HSTATE_POPULATED, EV_PMD_SHARE,
    EV_PMD_UNSHARE, EV_SET, EV_TABLE_FREE, F_NO_HSTATE_EVENTS, FL_FOLIO0, FL_NH, FL_NR,
    FL_ORDER, FL_PFN0, FL_STRIDE, G_BITS, G_LEVELS, G_PAGE_SHIFT, INJECT_AFTER_ALLOC,
    INJECT_AT_LOOKUP, J_FILL_COUNT, J_FILL_HEAD, LEVEL_PMD, LEVEL_PTE, LEVEL_PUD, M_JLEN,
    M_NEV, M_NFREE, M_SHARE, MODE_FAULT, MODE_FIXED, MODE_LARGEST, NEED_ROWS, NEED_TABLES, OK,
    P_ENT, P_JI, P_JO, P_JT, P_META, P_RMAP, P_TCOUNT, P_TFOLIO, P_TSHARE, RES_BYTES, RES_COUNT,
    RES_FAIL_ADDR, RES_LAST_SHIFT, RES_LEAVES, ROOM_PIECE_E, ROOM_PIECE_J, ROOM_ROWS, _jpush,
    _room, canon_row, emit, mk_leaf, mk_table, own_row, rollback, rows_avail, set_entry,
    set_share, share_row, table_free, unshare_row,
)
from .walk import (
    _largest_shift, entry_end, hugetlb_full_walk, hugetlb_hgm_walk, hugetlb_walk_step,
    level_shift, pfn_to_folio, pte_index,
)

_SCAN = 16      # entries the fast path checks for none in one step

__all__ = ["install_range", "zap_range", "unshare_range", "free_empty_tables", "copy_range"]


# =========================================================================================
# Install: hugetlb_mfill_atomic_pte (UFFDIO_CONTINUE), the batched form, hugetlb_no_page
# =========================================================================================
@njit
def install_range(P, E, g, pgd, mm, vstart, vpgoff, hs, hl, min_shift, pc, fpfn,
                  a, b, mode, fixed_shift, max_leaves, share_base, share_cand, flags, res,
                  inject=0):
    """Install leaves over ``[a, b)`` of one VMA, piece by piece, stopping at the first error.

    Models the loop of ``mfill_atomic_hugetlb`` with ``hugetlb_alloc_largest_pte`` (HGM v2
    33/46) and ``hugetlb_mfill_atomic_pte(MFILL_ATOMIC_CONTINUE)``; in ``MODE_FAULT`` the
    one-address walk of ``hugetlb_fault`` → ``hugetlb_full_walk_alloc(target 0)`` →
    ``hugetlb_no_page`` (v2 24/46).  The page-cache lookup comes before the walk (James's
    remedy, T14), so a piece that fails changes nothing; pieces before it stay.

    A leaf set at the hstate level (a whole hugepage) makes the hstate-level entry go none →
    present: ``EV_HSTATE_POPULATED`` precedes its ``EV_SET`` on both paths (unless
    ``F_NO_HSTATE_EVENTS``).

    ``inject`` (error injection, the first piece only): ``INJECT_AFTER_ALLOC`` fails the piece
    with -EFAULT after its page tables were allocated and before its entry is set, leaving
    the tables as the kernel would (Mike Kravetz's concern, T13; v2's order: walk, then
    page-cache lookup); ``INJECT_AT_LOOKUP`` fails it at the lookup before the walk (James's
    remedy, T14: nothing is allocated).

    ``res`` (int64[4]) receives bytes done (``RES_BYTES``), leaves installed
    (``RES_LEAVES``), the failing address (``RES_FAIL_ADDR``) and the shift of the last leaf
    (``RES_LAST_SHIFT``).  Returns OK, -EEXIST, -EFAULT, -EINVAL (no allowed size fits), or a
    NEED_* code (nothing done since the last completed piece is kept; the caller rolls back
    and retries).
    """
    ent = P[P_ENT]
    tcount = P[P_TCOUNT]
    meta = P[P_META]
    page_shift = g[G_PAGE_SHIFT]
    bits = g[G_BITS]
    levels = g[G_LEVELS]
    pmask = (1 << bits) - 1
    hstate_events = (flags & F_NO_HSTATE_EVENTS) == 0
    addr = a
    done = 0
    cur_t = 0
    cur_level = 0
    cur_lo = 0
    cur_hi = 0
    res[RES_BYTES] = 0
    res[RES_LEAVES] = 0
    res[RES_FAIL_ADDR] = -1
    hsize = 1 << hs
    while addr < b:
        if max_leaves >= 0 and done >= max_leaves:
            break
        if mode == MODE_FIXED:
            ts = fixed_shift
        elif mode == MODE_LARGEST:
            ts = _largest_shift(g, addr, b, hs, min_shift)
            if ts < 0:
                res[RES_FAIL_ADDR] = addr
                return -EINVAL
        else:
            ts = -1
        hidx = (((addr - vstart) >> page_shift) + vpgoff) >> (hs - page_shift)
        folio = -1
        if hidx < pc.shape[0]:
            folio = pc[hidx]
        if folio < 0 or (inject == INJECT_AT_LOOKUP and done == 0):
            res[RES_FAIL_ADDR] = addr
            return -EFAULT
        hbase = addr & ~(hsize - 1)
        pfn_at = fpfn[folio] + ((addr - hbase) >> page_shift)
        # ---- fast path: the next pieces land in the leaf table used last -------------
        # (kept inline, not through the walk: this loop is the 1 GiB-at-4 KiB hot path)
        if mode != MODE_FAULT and cur_t != 0 and ts == level_shift(g, cur_level) \
                and addr >= cur_lo and addr < cur_hi:
            run_end = cur_hi
            if b < run_end:
                run_end = b
            if ts == hs and hbase + hsize < run_end:
                run_end = hbase + hsize
            if mode == MODE_LARGEST:
                fit = addr + (((b - addr) >> ts) << ts)
                if fit < run_end:
                    run_end = fit
                big = ts + bits
                if big <= hs:
                    nxt = (addr + (1 << big) - 1) & ~((1 << big) - 1)
                    if nxt + (1 << big) <= b and nxt < run_end:
                        run_end = nxt
            n = (run_end - addr) >> ts
            if max_leaves >= 0 and n > max_leaves - done:
                n = max_leaves - done
            if n <= 0:
                cur_t = 0
                continue
            st = _room(P, E, 2, 2)
            if st != OK:
                return st
            i0 = (addr >> ts) & pmask
            # a view of the n entries (i0 + n <= the table's width: run_end <= cur_hi), so
            # the loops index from 0 and numba's negative-index check drops out
            row = ent[P[P_RMAP][cur_t], i0:i0 + n]     # its own row (set_entry gave it)
            k = 0
            while k + _SCAN <= n:       # none entries, _SCAN at a time (vectorised OR)
                acc = np.int32(0)
                for q in range(_SCAN):
                    acc |= row[k + q]
                if acc != 0:
                    break
                k += _SCAN
            while k < n and row[k] == 0:
                k += 1
            if k > 0:
                step = 1 << (ts - page_shift)
                for j in range(k):
                    row[j] = np.int32(((pfn_at + j * step) << 1) | 1)
                tcount[cur_t] += k
                _jpush(P, cur_t, J_FILL_HEAD, i0)
                _jpush(P, k, J_FILL_COUNT, 0)
                if ts == hs and hstate_events:
                    # a whole-hugepage leaf (run_end stops at the hugepage's end, so k == 1):
                    # its hstate-level entry went none -> present, as on the slow path
                    emit(E, meta, g, EV_HSTATE_POPULATED, mm, hbase, hs, 1, fpfn[folio], folio)
                emit(E, meta, g, EV_SET, mm, addr, ts, k, pfn_at, folio)
                addr += k << ts
                done += k
                res[RES_BYTES] = addr - a
                res[RES_LEAVES] = done
                res[RES_LAST_SHIFT] = ts
            if k < n:
                res[RES_FAIL_ADDR] = addr
                return -EEXIST
            continue
        # ---- slow path: walk from the top, allocating on the way ---------------------
        st = _room(P, E, ROOM_PIECE_J, ROOM_PIECE_E)
        if st != OK:
            return st
        if meta[M_NFREE] < levels:
            return NEED_TABLES
        if rows_avail(P) < ROOM_ROWS:
            return NEED_ROWS
        jmark = meta[M_JLEN]
        emark = meta[M_NEV]
        t = pgd
        lvl = levels
        tl = 0                      # the target level (MODE_FAULT: found by the walk)
        if ts > 0:
            tl = (ts - page_shift) // bits + 1
        stop = tl
        if mode == MODE_FAULT:
            stop = LEVEL_PTE
        failed = 0
        present = False
        while True:
            t, idx, lvl, v = hugetlb_hgm_walk(P, g, t, lvl, addr, stop, False)
            if mode == MODE_FAULT and lvl <= hl:
                # hugetlb_full_walk_alloc(target 0): as far as the tables go
                ts = level_shift(g, lvl)
                if v == 0:
                    tl = lvl
                else:
                    present = True
                break
            if lvl == tl:
                if v != 0:
                    failed = -EEXIST
                break
            if v != 0:
                failed = -EEXIST    # a leaf larger than the piece
                break
            # a none entry above the target: attach a shared PMD page or allocate
            if lvl == LEVEL_PUD and hl == LEVEL_PMD and share_cand.shape[0] > 0:
                si = (addr - share_base) >> level_shift(g, LEVEL_PUD)
                if si >= 0 and si < share_cand.shape[0] and share_cand[si] > 0:
                    c = share_cand[si]
                    set_entry(P, t, idx, mk_table(c))
                    set_share(P, c, P[P_TSHARE][c] + 1)
                    emit(E, meta, g, EV_PMD_SHARE, mm,
                         addr & ~((1 << level_shift(g, LEVEL_PUD)) - 1), LEVEL_PMD, 1, c, -1)
                    t = c
                    lvl = LEVEL_PMD
                    continue
            tf = -1
            if lvl - 1 < hl:
                tf = folio
            t = hugetlb_walk_step(P, E, g, mm, t, idx, lvl, addr, tf)
            if lvl == hl and hstate_events:
                emit(E, meta, g, EV_HSTATE_POPULATED, mm, hbase, hs, 1, fpfn[folio], folio)
            lvl -= 1
        if present:
            # A fault that found the page already mapped (possibly through a PMD page
            # huge_pmd_share just attached): nothing more to do.
            res[RES_LAST_SHIFT] = ts
            break
        if failed != 0:
            rollback(P, jmark)
            meta[M_NEV] = emark
            res[RES_FAIL_ADDR] = addr
            return failed
        if inject == INJECT_AFTER_ALLOC and done == 0:
            res[RES_FAIL_ADDR] = addr
            return -EFAULT      # the tables allocated on the way stay, as in the kernel
        pfn_at = fpfn[folio] + ((addr & ~((1 << ts) - 1)) - hbase >> page_shift)
        if mode == MODE_FIXED and idx == 0 and lvl < hl and tcount[t] == 0 \
                and meta[M_SHARE] != 0 and ts == level_shift(g, lvl):
            # A whole empty leaf table below the hstate level about to be filled with
            # consecutive leaves of one folio: it may map the canonical row of that content
            # instead (issue 16; a simulator-memory technique, see core/pool.py "Rows").  The
            # same leaves, events and counts as the per-leaf path.
            span = 1 << level_shift(g, lvl + 1)
            ptrs = pmask + 1
            if ((addr & (span - 1)) == 0 and addr + span <= b
                    and (max_leaves < 0 or max_leaves - done >= ptrs)):
                c = canon_row(P, pfn_at, lvl, 1 << (ts - page_shift))
                if c > 0:
                    share_row(P, t, c)
                    emit(E, meta, g, EV_SET, mm, addr, ts, ptrs, pfn_at, folio)
                    done += ptrs
                    addr += span
                    cur_t = 0
                    res[RES_BYTES] = addr - a
                    res[RES_LEAVES] = done
                    res[RES_LAST_SHIFT] = ts
                    continue
        if lvl == hl and hstate_events:
            emit(E, meta, g, EV_HSTATE_POPULATED, mm, hbase, hs, 1, fpfn[folio], folio)
        leaf_addr = addr & ~((1 << ts) - 1)
        set_entry(P, t, idx, mk_leaf(pfn_at))
        emit(E, meta, g, EV_SET, mm, leaf_addr, ts, 1, pfn_at, folio)
        done += 1
        span = 1 << level_shift(g, lvl + 1)
        cur_t = t
        cur_level = lvl
        cur_lo = leaf_addr & ~(span - 1)
        cur_hi = cur_lo + span
        addr = leaf_addr + (1 << ts)
        res[RES_BYTES] = addr - a
        res[RES_LEAVES] = done
        res[RES_LAST_SHIFT] = ts
        if mode == MODE_FAULT:
            break
    return OK


# =========================================================================================
# Zap: __unmap_hugepage_range (with huge_pmd_unshare)
# =========================================================================================
@njit
def zap_range(P, E, g, fl, pgd, mm, a, b, hl, res):
    """``__unmap_hugepage_range`` (mm/hugetlb.c v6.2; HGM v2 18/46): clear every leaf in
    ``[a, b)`` of one mm.

    A shared hugetlb PMD page met on the way is not zapped but unshared
    (``huge_pmd_unshare``): this mm's PUD entry is cleared and the whole PUD range skipped,
    as the kernel does (``address |= last_addr_mask``).  Page tables stay (freeing them is
    ``free_pgtables``' job).  ``res[RES_COUNT]`` = leaves cleared.
    """
    ent = P[P_ENT]
    tshare = P[P_TSHARE]
    meta = P[P_META]
    page_shift = g[G_PAGE_SHIFT]
    ptrs = 1 << g[G_BITS]
    addr = a
    cleared = 0
    while addr < b:
        st = _room(P, E, 8, 4)
        if st != OK:
            return st
        t = pgd
        lvl = g[G_LEVELS]
        while True:
            t, idx, lvl, v = hugetlb_hgm_walk(P, g, t, lvl, addr, LEVEL_PTE, True)
            sh = level_shift(g, lvl)
            if v == 0:
                addr = entry_end(addr, sh)
                break
            if (v & 1) == 1:
                # a run over this table's leaves: room for the whole table checked once,
                # the journal written inline, consecutive leaves of one folio merged
                st = _room(P, E, ptrs + 3, 2 * ptrs + 2)
                if st != OK:
                    return st
                tcount = P[P_TCOUNT]
                r = P[P_RMAP][t]
                whole = False
                if r < 0:
                    # a canonical row (issue 16): emptied whole, the table just lets it go;
                    # in part, the table gets a copy of it first
                    last = (addr & ~((np.int64(ptrs) << sh) - 1)) + (np.int64(ptrs - 1) << sh)
                    if idx == 0 and last < b:
                        whole = True
                        r = -r
                    else:
                        if rows_avail(P) < 1:
                            return NEED_ROWS
                        r = own_row(P, t)
                jt = P[P_JT]
                ji = P[P_JI]
                jo = P[P_JO]
                size = np.int64(1) << sh
                pstep = np.int64(1) << (sh - page_shift)
                run_addr = np.int64(-1)
                run_pfn = np.int64(0)
                run_n = np.int64(0)
                run_folio = -1
                f_lo = np.int64(0)
                f_hi = np.int64(0)
                folio = -1
                i = idx
                while i < ptrs and addr < b:
                    v = ent[r, i]
                    if v != 0 and (v & 1) == 0:
                        break  # a lower table: the outer loop descends into it
                    if v != 0:
                        pfn = np.int64(v >> 1)
                        if pfn < f_lo or pfn >= f_hi:
                            # the folio and its pfn range, looked up once per folio
                            folio = pfn_to_folio(fl, pfn)
                            f_lo = pfn
                            f_hi = pfn + 1
                            for h in range(fl[FL_NH]):
                                base = FL_STRIDE * h
                                f0 = fl[base + FL_FOLIO0]
                                if folio >= f0 and folio < f0 + fl[base + FL_NR]:
                                    f_lo = fl[base + FL_PFN0] + ((folio - f0) << fl[base + FL_ORDER])
                                    f_hi = f_lo + (np.int64(1) << fl[base + FL_ORDER])
                        if not whole:
                            n = meta[M_JLEN]
                            jt[n] = t
                            ji[n] = i
                            jo[n] = v
                            meta[M_JLEN] = n + 1
                            ent[r, i] = 0
                            tcount[t] -= 1
                        leaf_addr = addr & ~(size - 1)
                        if (run_n > 0 and folio == run_folio and leaf_addr == run_addr + run_n * size
                                and pfn == run_pfn + run_n * pstep):
                            run_n += 1
                        else:
                            if run_n > 0:
                                emit(E, meta, g, EV_CLEAR, mm, run_addr, sh, run_n, run_pfn, run_folio)
                            run_addr = leaf_addr
                            run_pfn = pfn
                            run_n = 1
                            run_folio = folio
                        if lvl == hl:
                            emit(E, meta, g, EV_CLEAR, mm, run_addr, sh, run_n, run_pfn, run_folio)
                            run_n = 0
                            emit(E, meta, g, EV_HSTATE_CLEARED, mm, leaf_addr, sh, 1, pfn, folio)
                        cleared += 1
                    addr = entry_end(addr, sh)
                    i += 1
                if run_n > 0:
                    emit(E, meta, g, EV_CLEAR, mm, run_addr, sh, run_n, run_pfn, run_folio)
                if whole:
                    unshare_row(P, t)
                break
            child = v >> 1          # a shared PMD page
            if lvl == LEVEL_PUD and hl == LEVEL_PMD:
                set_entry(P, t, idx, 0)
                set_share(P, child, tshare[child] - 1)
                emit(E, meta, g, EV_PMD_UNSHARE, mm, addr & ~((1 << sh) - 1), LEVEL_PMD, 1,
                     child, -1)
                addr = entry_end(addr, sh)
                break
            t = child
            lvl -= 1
    res[RES_COUNT] = cleared
    return OK


@njit
def unshare_range(P, E, g, pgd, mm, a, b, res):
    """``hugetlb_unshare_all_pmds`` over ``[a, b)``: drop this mm's shared PMD pages only.
    ``res[RES_COUNT]`` = PMD pages unshared."""
    ent = P[P_ENT]
    tshare = P[P_TSHARE]
    meta = P[P_META]
    pud_sh = level_shift(g, LEVEL_PUD)
    addr = a & ~((1 << pud_sh) - 1)
    n = 0
    while addr < b:
        st = _room(P, E, 4, 2)
        if st != OK:
            return st
        t, idx, lvl = hugetlb_full_walk(P, g, pgd, addr, LEVEL_PUD)
        if lvl == LEVEL_PUD:
            v = ent[abs(P[P_RMAP][t]), idx]
            if v != 0 and (v & 1) == 0 and tshare[v >> 1] > 0:
                child = v >> 1
                set_entry(P, t, idx, 0)
                set_share(P, child, tshare[child] - 1)
                emit(E, meta, g, EV_PMD_UNSHARE, mm, addr, LEVEL_PMD, 1, child, -1)
                n += 1
        addr += 1 << pud_sh
    res[RES_COUNT] = n
    return OK


# =========================================================================================
# free_pgtables: hugetlb_free_pgd_range
# =========================================================================================
@njit
def free_empty_tables(P, E, g, pgd, mm, a, b, hl, max_level, flags, res):
    """``hugetlb_free_pgd_range``: free the page-table pages left empty under ``[a, b)``.

    Bottom-up, tables of level 1 .. ``max_level``; a freed table's parent entry is cleared.
    Freeing the table under an hstate-level entry makes that entry none
    (``EV_HSTATE_CLEARED``, unless ``F_NO_HSTATE_EVENTS``).  ``res[RES_COUNT]`` = tables freed.
    """
    ent = P[P_ENT]
    tcount = P[P_TCOUNT]
    tshare = P[P_TSHARE]
    tfolio = P[P_TFOLIO]
    meta = P[P_META]
    freed = 0
    for L in range(LEVEL_PTE, max_level + 1):
        parent = L + 1
        cov_sh = level_shift(g, parent)
        addr = a & ~((1 << cov_sh) - 1)
        while addr < b:
            t, idx, lvl, v = hugetlb_hgm_walk(P, g, pgd, g[G_LEVELS], addr, parent, False)
            if lvl > parent:
                addr = entry_end(addr, level_shift(g, lvl))
                continue
            if v != 0 and (v & 1) == 0:
                c = v >> 1
                if tcount[c] == 0 and tshare[c] == 0:
                    st = _room(P, E, 6, 3)
                    if st != OK:
                        return st
                    f = tfolio[c]
                    set_entry(P, t, idx, 0)
                    emit(E, meta, g, EV_TABLE_FREE, mm, addr, L, 1, c, f)
                    table_free(P, c)
                    freed += 1
                    if parent == hl and (flags & F_NO_HSTATE_EVENTS) == 0:
                        emit(E, meta, g, EV_HSTATE_CLEARED, mm, addr, cov_sh, 1, -1, f)
            addr += 1 << cov_sh
    res[RES_COUNT] = freed
    return OK


# =========================================================================================
# Fork: copy_hugetlb_page_range
# =========================================================================================
@njit
def copy_range(P, E, g, fl, src_pgd, dst_pgd, dst_mm, a, b, hl, hs, res):
    """``copy_hugetlb_page_range`` (mm/hugetlb.c v6.2): copy every present leaf of ``[a, b)``
    into the child.

    Each copied leaf is a ``set_huge_pte_at`` in the child (its references and mapcounts
    are the schemes' business: mainline ``folio_get`` + ``hugetlb_add_file_rmap`` per entry).
    High-granularity subtrees are copied leaf by leaf (HGM v2 22/46), the child's tables
    allocated with ``hugetlb_walk_step``.  ``res[RES_COUNT]`` = leaves copied.
    """
    ent = P[P_ENT]
    meta = P[P_META]
    page_shift = g[G_PAGE_SHIFT]
    levels = g[G_LEVELS]
    ptrs = 1 << g[G_BITS]
    addr = a
    copied = 0
    while addr < b:
        t, idx, lvl, v = hugetlb_hgm_walk(P, g, src_pgd, levels, addr, LEVEL_PTE, False)
        sh = level_shift(g, lvl)
        if v == 0:
            addr = entry_end(addr, sh)
            continue
        i = idx
        r = abs(P[P_RMAP][t])
        while i < ptrs and addr < b:
            v = ent[r, i]
            if v != 0 and (v & 1) == 0:
                break
            if v != 0:
                st = _room(P, E, ROOM_PIECE_J, ROOM_PIECE_E)
                if st != OK:
                    return st
                if meta[M_NFREE] < levels:
                    return NEED_TABLES
                if rows_avail(P) < ROOM_ROWS:
                    return NEED_ROWS
                pfn = v >> 1
                folio = pfn_to_folio(fl, pfn)
                leaf_addr = addr & ~((1 << sh) - 1)
                hbase = leaf_addr & ~((1 << hs) - 1)
                # walk the child, allocating down to this level
                dt = dst_pgd
                dl = levels
                while True:
                    dt, didx, dl, dv = hugetlb_hgm_walk(P, g, dt, dl, leaf_addr, lvl, False)
                    if dl == lvl:
                        break
                    tf = -1
                    if dl - 1 < hl:
                        tf = folio
                    dt = hugetlb_walk_step(P, E, g, dst_mm, dt, didx, dl, leaf_addr, tf)
                    if dl == hl:
                        emit(E, meta, g, EV_HSTATE_POPULATED, dst_mm, hbase, hs, 1,
                             pfn - ((leaf_addr - hbase) >> page_shift), folio)
                    dl -= 1
                if lvl == hl:
                    emit(E, meta, g, EV_HSTATE_POPULATED, dst_mm, hbase, hs, 1, pfn, folio)
                set_entry(P, dt, didx, np.int32(v))
                emit(E, meta, g, EV_SET, dst_mm, leaf_addr, sh, 1, pfn, folio)
                copied += 1
            addr = entry_end(addr, sh)
            i += 1
    res[RES_COUNT] = copied
    return OK
