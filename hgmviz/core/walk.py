"""Layer 1: the page-table walk, written once, and the read-only views built on it.

``hugetlb_hgm_walk`` is the descent every kernel shares (probe, install_range, zap_range,
copy_range, free_empty_tables, collect_leaves, count_entries, unshare_range through
``hugetlb_full_walk``); ``hugetlb_walk_step`` is its allocating step.  Both are named after
the HGM series' walk functions (v1 13/46 "hugetlb: add hugetlb_hgm_walk and
hugetlb_walk_step", kept in v2; domain.md 4.2).
"""
from __future__ import annotations

from .._jit import njit
from .pool import (
    EV_TABLE_ALLOC, FL_FOLIO0, FL_NH, FL_NR, FL_ORDER, FL_PFN0, FL_STRIDE, G_BITS,
    G_LEVELS, G_PAGE_SHIFT, LEVEL_PMD, LEVEL_PTE, LEVEL_PUD, P_ENT, P_META, P_RMAP, P_TSHARE,
    emit, mk_table, set_entry, table_alloc,
)

__all__ = ["level_shift", "pte_index", "entry_end", "pfn_to_folio", "hugetlb_hgm_walk",
           "hugetlb_walk_step", "hugetlb_full_walk", "probe", "collect_leaves", "count_entries"]


@njit
def level_shift(g, level):
    """``page_shift + (level - 1) * bits``: the size shift of an entry at ``level``."""
    return g[G_PAGE_SHIFT] + (level - 1) * g[G_BITS]


@njit
def pte_index(g, addr, level):
    """``pte_index()/pmd_index()/pud_index()/pgd_index()`` for ``level``."""
    return (addr >> level_shift(g, level)) & ((1 << g[G_BITS]) - 1)


@njit
def entry_end(addr, shift):
    """The first address after the entry of size ``1 << shift`` that covers ``addr``
    (``pmd_addr_end()`` and friends without the clamp to the range's end)."""
    return ((addr >> shift) + 1) << shift


@njit
def pfn_to_folio(fl, pfn):
    """The folio holding ``pfn`` (``page_folio(pfn_to_page(pfn))``).

    ``fl`` is an int64 array ``[nh, (pfn0, order, folio0, nr) * nh]`` describing each hstate's
    contiguous pfn region (slots ``FL_*``).
    """
    for h in range(fl[FL_NH]):
        base = FL_STRIDE * h
        pfn0 = fl[base + FL_PFN0]
        order = fl[base + FL_ORDER]
        nr = fl[base + FL_NR]
        if pfn >= pfn0 and pfn < pfn0 + (nr << order):
            return fl[base + FL_FOLIO0] + ((pfn - pfn0) >> order)
    return -1


# =========================================================================================
# The walk
# =========================================================================================
@njit
def hugetlb_hgm_walk(P, g, t, level, addr, stop_level, stop_at_shared):
    """HGM v1 13/46 ``hugetlb_hgm_walk(..., alloc=false)``: descend from the ``level`` entry
    of table ``t`` that covers ``addr`` while it points at a lower table.

    Stops at a none entry, at a present leaf, at ``stop_level`` (the target size), or — when
    ``stop_at_shared`` — at an entry that points at a shared hugetlb PMD page
    (``tshare > 0``, the page ``huge_pmd_share`` attached).  Returns ``(table, index, level,
    value)`` of that entry.  ``t == 0`` (no PGD) reads the never-used page 0: a none entry.
    """
    ent = P[P_ENT]
    rmap = P[P_RMAP]
    tshare = P[P_TSHARE]
    while True:
        idx = pte_index(g, addr, level)
        v = ent[abs(rmap[t]), idx]
        if level <= stop_level or v == 0 or (v & 1) == 1:
            return t, idx, level, v
        child = v >> 1
        if stop_at_shared and tshare[child] > 0:
            return t, idx, level, v
        t = child
        level -= 1


@njit
def hugetlb_walk_step(P, E, g, mm, t, idx, level, addr, folio):
    """HGM v1 13/46 ``hugetlb_walk_step`` for a none entry: allocate the page-table page one
    level down (``hugetlb_alloc_pmd`` / ``hugetlb_alloc_pte``: ``pmd_alloc_one`` /
    ``pte_alloc_one``), point entry ``(t, idx)`` of ``level`` at it and emit
    ``EV_TABLE_ALLOC``.  ``folio`` is the folio a table below the hstate level maps (-1
    above).  The caller has checked room for the journal, the events and one free page.
    Returns the new page.
    """
    nt = table_alloc(P, level - 1, folio)
    set_entry(P, t, idx, mk_table(nt))
    span = 1 << level_shift(g, level)
    emit(E, P[P_META], g, EV_TABLE_ALLOC, mm, addr & ~(span - 1), level - 1, 1, nt, folio)
    return nt


@njit
def hugetlb_full_walk(P, g, pgd, addr, stop_level):
    """HGM v1 13/46 ``hugetlb_full_walk``: descend from the PGD without allocating.

    Returns ``(table, index, level)`` of the entry where the walk stopped: a none entry, a
    present leaf, or the entry at ``stop_level``.  ``table == 0`` when ``pgd`` is 0.
    """
    t, idx, lvl, _v = hugetlb_hgm_walk(P, g, pgd, g[G_LEVELS], addr, stop_level, False)
    return t, idx, lvl


@njit
def probe(P, g, pgd, addr, hl, share_table):
    """Where would a fault at ``addr`` land?  Read-only.

    Returns ``(kind, level, value)``: kind 0 = a none entry at ``level`` (the fault installs a
    leaf of that size, or an hstate leaf when level > hl), kind 1 = a present leaf at ``level``.
    ``share_table`` (> 0) is what ``huge_pmd_share`` would attach for a none PUD entry
    (``hugetlb_fault`` → ``huge_pte_alloc``, mm/hugetlb.c v6.2).
    """
    t, idx, lvl, v = hugetlb_hgm_walk(P, g, pgd, g[G_LEVELS], addr, LEVEL_PTE, False)
    if v == 0 and lvl == LEVEL_PUD and hl == LEVEL_PMD and share_table > 0:
        t, idx, lvl, v = hugetlb_hgm_walk(P, g, share_table, LEVEL_PMD, addr, LEVEL_PTE, False)
    if v == 0:
        if lvl > hl:
            return 0, hl, 0
        return 0, lvl, 0
    return 1, lvl, v


@njit
def _largest_shift(g, addr, b, hs, min_shift):
    """``hugetlb_alloc_largest_pte`` (HGM v2 33/46): the largest allowed size aligned at
    ``addr`` that fits in ``[addr, b)``; -1 when none does."""
    s = hs
    while s >= min_shift:
        if (addr & ((1 << s) - 1)) == 0 and addr + (1 << s) <= b:
            return s
        s -= g[G_BITS]
    return -1


largest_shift = _largest_shift


# =========================================================================================
# Read-only views
# =========================================================================================
@njit
def collect_leaves(P, g, pgd, a, b, seen, walker, out_addr, out_shift, out_pfn, out_table):
    """Every present leaf of ``[a, b)`` in one mm (``walk_hugetlb_range`` with HGM, v1 21/46).

    A shared hugetlb PMD page is reported only for the first walker that reaches it
    (``seen[table]`` holds that walker's id), so counting the leaves counts page-table
    entries, as the kernel's mapcount does.  Returns the number of leaves written, or -1
    when the output arrays are too small.
    """
    ent = P[P_ENT]
    ptrs = 1 << g[G_BITS]
    n = 0
    cap = out_addr.shape[0]
    addr = a
    while addr < b:
        t = pgd
        lvl = g[G_LEVELS]
        while True:
            t, idx, lvl, v = hugetlb_hgm_walk(P, g, t, lvl, addr, LEVEL_PTE, True)
            sh = level_shift(g, lvl)
            if v == 0:
                addr = entry_end(addr, sh)
                break
            if (v & 1) == 1:
                # the leaves of this table, in one run
                i = idx
                r = abs(P[P_RMAP][t])
                while i < ptrs and addr < b:
                    v = ent[r, i]
                    if v != 0 and (v & 1) == 0:
                        break
                    if v != 0:
                        if n >= cap:
                            return -1
                        out_addr[n] = addr & ~((1 << sh) - 1)
                        out_shift[n] = sh
                        out_pfn[n] = v >> 1
                        out_table[n] = t
                        n += 1
                    addr = entry_end(addr, sh)
                    i += 1
                break
            child = v >> 1          # a shared PMD page
            if seen[child] != 0 and seen[child] != walker:
                addr = entry_end(addr, sh)
                break
            seen[child] = walker
            t = child
            lvl -= 1
    return n


@njit
def count_entries(P, g, pgd, a, b, level):
    """Number of non-none entries at ``level`` under ``[a, b)`` (tables or leaves)."""
    n = 0
    sh_l = level_shift(g, level)
    addr = a & ~((1 << sh_l) - 1)
    while addr < b:
        t, idx, lvl, v = hugetlb_hgm_walk(P, g, pgd, g[G_LEVELS], addr, level, False)
        if lvl > level:
            addr = entry_end(addr, level_shift(g, lvl))
            continue
        if v != 0:
            n += 1
        addr += 1 << sh_l
    return n
