"""Layer 1: jitted kernels over plain arrays — the page-table pool, walks, ranged
install / zap / copy / free, the undo journal and the event buffer.

Nothing here knows about accounting, processes or files: kernels take arrays and integers,
change page tables, append *events* named after the kernel primitive that made the change,
and journal every write so that a failed operation can be rolled back byte for byte.

Entry encoding (4 bytes, ``int32``), one word per page-table entry::

    0                 none (pte_none)
    (table << 1)      a pointer to page-table page ``table`` (a non-leaf pXd)
    (pfn << 1) | 1    a present leaf mapping ``pfn`` (its size is its level's size)

Page-table pages live in one pool ``ent[table, index]``; page 0 is never used.  Per page:
``tlevel`` (0 = free), ``tcount`` (non-none entries), ``tshare`` (extra sharers of a hugetlb
PMD page, ``ptdesc->pt_share_count``), ``tfolio`` (the folio a table below the hstate level
maps, -1 above).  Free pages sit on a stack ``fstack[:meta[M_NFREE]]`` and are all-zero.

Walk names follow HGM v1 13/46 (``hugetlb_walk_step``, ``hugetlb_hgm_walk``,
``hugetlb_full_walk``); the ranged kernels follow ``__unmap_hugepage_range``,
``copy_hugetlb_page_range``, ``hugetlb_mfill_atomic_pte`` + ``hugetlb_alloc_largest_pte``
(HGM v2 33/46), ``hugetlb_no_page`` (v2 24/46), ``hugetlb_free_pgd_range`` and
``huge_pmd_share`` / ``huge_pmd_unshare`` (mm/hugetlb.c, v6.2).
"""
from __future__ import annotations

import numpy as np

from ._jit import njit

# ---- meta slots ------------------------------------------------------------------------
M_NFREE = 0
M_JLEN = 1
M_NEV = 2

# ---- status codes (negative values are -errno) ------------------------------------------
OK = 0
NEED_TABLES = 1001
NEED_JOURNAL = 1002
NEED_EVENTS = 1003
EEXIST = 17
EFAULT = 14

# ---- install modes ----------------------------------------------------------------------
MODE_LARGEST = 0   # hugetlb_alloc_largest_pte: largest allowed aligned piece that fits
MODE_FIXED = 1     # every piece has one given size (the batched UFFDIO_CONTINUE)
MODE_FAULT = 2     # hugetlb_fault: the size of the first none entry found

F_NO_HSTATE_EVENTS = 1  # collapse: the hstate-level entry never becomes none

INJECT_AFTER_ALLOC = 1  # fail after the page tables are allocated, before the entry is set
INJECT_AT_LOOKUP = 2    # fail at the page-cache lookup, before the walk

# ---- event kinds --------------------------------------------------------------------------
EV_SET = 1                 # set_huge_pte_at: count leaves of 1 << shift from addr, pfns from pfn
EV_CLEAR = 2               # huge_ptep_get_and_clear: same fields
EV_HSTATE_POPULATED = 3    # the hstate-level entry went none -> present (leaf or table)
EV_HSTATE_CLEARED = 4      # the hstate-level entry went present -> none
EV_TABLE_ALLOC = 5         # a page-table page of level `shift` was allocated, covering addr
EV_TABLE_FREE = 6          # ... freed
EV_PMD_SHARE = 7           # huge_pmd_share: this mm's PUD entry now points at a shared PMD page
EV_PMD_UNSHARE = 8         # huge_pmd_unshare
EV_PAGECACHE_ADD = 9       # __filemap_add_folio: +count references
EV_PAGECACHE_DEL = 10      # filemap_remove_folio / truncate: -count references
EV_FOLIO_ALLOC = 11        # alloc_hugetlb_folio (from the pool)
EV_FOLIO_FREE = 12         # free_huge_folio (back to the pool)

EVENT_NAMES = {
    EV_SET: "set_huge_pte_at", EV_CLEAR: "huge_ptep_get_and_clear",
    EV_HSTATE_POPULATED: "hstate_populated", EV_HSTATE_CLEARED: "hstate_cleared",
    EV_TABLE_ALLOC: "pgtable_alloc", EV_TABLE_FREE: "pgtable_free",
    EV_PMD_SHARE: "huge_pmd_share", EV_PMD_UNSHARE: "huge_pmd_unshare",
    EV_PAGECACHE_ADD: "filemap_add_folio", EV_PAGECACHE_DEL: "filemap_remove_folio",
    EV_FOLIO_ALLOC: "alloc_hugetlb_folio", EV_FOLIO_FREE: "free_huge_folio",
}

# journal record kinds (ji < 0); ji >= 0 is an entry write ent[jt, ji] = jo (old value)
J_ALLOC = -1
J_FREE_LEVEL = -2
J_SHARE = -3
J_FREE_FOLIO = -4
J_FILL_HEAD = -5
J_FILL_COUNT = -6

ROOM_PIECE_J = 64     # journal records one slow-path piece may need at most
ROOM_PIECE_E = 16     # events one slow-path piece may need at most


# =========================================================================================
# Pool container (plain Python; arrays are what kernels see)
# =========================================================================================
def _no_transparent_hugepages(a: np.ndarray):
    """Ask Linux not to back a large array with THP (MADV_NOHUGEPAGE).

    The pool is written once, table by table; on the machines measured, faulting it in
    2 MiB THP pieces was twice as slow as 4 KiB pages.  A hint only: any failure is ignored.
    """
    if a.nbytes < (64 << 20):
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        start = (a.ctypes.data + 4095) & ~4095
        end = (a.ctypes.data + a.nbytes) & ~4095
        libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 15)
    except (OSError, AttributeError, TypeError):
        pass


class PageTablePool:
    """The page-table page pool, the undo journal and the event buffer, as numpy arrays."""

    def __init__(self, ptrs: int, tables: int = 64, journal: int = 4096, events: int = 1024):
        self.ptrs = ptrs
        self.ent = np.zeros((tables, ptrs), dtype=np.int32)
        self.tlevel = np.zeros(tables, dtype=np.int8)
        self.tcount = np.zeros(tables, dtype=np.int32)
        self.tshare = np.zeros(tables, dtype=np.int32)
        self.tfolio = np.full(tables, -1, dtype=np.int32)
        self.fstack = np.zeros(tables, dtype=np.int32)
        free = np.arange(tables - 1, 0, -1, dtype=np.int32)   # pops give 1, 2, 3, ...
        self.fstack[: free.size] = free
        self.meta = np.zeros(4, dtype=np.int64)
        self.meta[M_NFREE] = free.size
        self.jt = np.zeros(journal, dtype=np.int32)
        self.ji = np.zeros(journal, dtype=np.int32)
        self.jo = np.zeros(journal, dtype=np.int32)
        self.ek = np.zeros(events, dtype=np.int8)
        self.emm = np.zeros(events, dtype=np.int32)
        self.eaddr = np.zeros(events, dtype=np.int64)
        self.eshift = np.zeros(events, dtype=np.int8)
        self.ecount = np.zeros(events, dtype=np.int64)
        self.epfn = np.zeros(events, dtype=np.int64)
        self.efolio = np.zeros(events, dtype=np.int32)

    # the tuples the kernels take -------------------------------------------------------
    @property
    def P(self):
        return (self.ent, self.tlevel, self.tcount, self.tshare, self.tfolio, self.fstack,
                self.meta, self.jt, self.ji, self.jo)

    @property
    def E(self):
        return (self.ek, self.emm, self.eaddr, self.eshift, self.ecount, self.epfn, self.efolio)

    @property
    def capacity(self) -> int:
        return self.ent.shape[0]

    @property
    def nr_free(self) -> int:
        return int(self.meta[M_NFREE])

    @property
    def nr_used(self) -> int:
        return self.capacity - 1 - self.nr_free

    # growth (never during a kernel call; callers roll back first) ---------------------
    def grow_tables(self, need: int = 0):
        old = self.capacity
        new = max(old * 2, old + need + 64) if need <= old else old + need + 64
        ent = np.zeros((new, self.ptrs), dtype=np.int32)
        _no_transparent_hugepages(ent)
        ent[:old] = self.ent
        self.ent = ent
        self.tlevel = np.concatenate([self.tlevel, np.zeros(new - old, np.int8)])
        self.tcount = np.concatenate([self.tcount, np.zeros(new - old, np.int32)])
        self.tshare = np.concatenate([self.tshare, np.zeros(new - old, np.int32)])
        self.tfolio = np.concatenate([self.tfolio, np.full(new - old, -1, np.int32)])
        nfree = int(self.meta[M_NFREE])
        added = np.arange(new - 1, old - 1, -1, dtype=np.int32)
        fstack = np.zeros(new, dtype=np.int32)
        # new pages go under the existing stack so the existing pop order is unchanged
        fstack[: added.size] = added
        fstack[added.size: added.size + nfree] = self.fstack[:nfree]
        self.fstack = fstack
        self.meta[M_NFREE] = nfree + added.size

    def grow_journal(self):
        n = self.jt.size * 2
        for name in ("jt", "ji", "jo"):
            a = getattr(self, name)
            b = np.zeros(n, dtype=a.dtype)
            b[: a.size] = a
            setattr(self, name, b)

    def grow_events(self):
        n = self.ek.size * 2
        for name in ("ek", "emm", "eaddr", "eshift", "ecount", "epfn", "efolio"):
            a = getattr(self, name)
            b = np.zeros(n, dtype=a.dtype)
            b[: a.size] = a
            setattr(self, name, b)

    def run(self, kernel, *args, levels: int = 5) -> int:
        """Call a kernel taking ``(P, E, *args)``; on a NEED_* status roll back what that call
        did, grow the pool, journal or event buffer, and call again."""
        meta = self.meta
        while True:
            jm = int(meta[M_JLEN])
            em = int(meta[M_NEV])
            st = int(kernel(self.P, self.E, *args))
            if st not in (NEED_TABLES, NEED_JOURNAL, NEED_EVENTS):
                return st
            rollback(self.P, jm)
            meta[M_NEV] = em
            if st == NEED_TABLES:
                self.grow_tables(levels)
            elif st == NEED_JOURNAL:
                self.grow_journal()
            else:
                self.grow_events()

    def reserve_tables(self, n: int):
        """Make room for ``n`` more pages up front (a large pool is lazily zeroed memory:
        only pages written to become resident)."""
        if self.nr_free < n:
            self.grow_tables(n - self.nr_free)

    def ensure_free_tables(self, n: int):
        while self.nr_free < n:
            self.grow_tables(n)

    # snapshots --------------------------------------------------------------------------
    _STATE = ("ent", "tlevel", "tcount", "tshare", "tfolio", "fstack")

    def state_arrays(self):
        """The arrays that make up the page-table state (journal and events excluded)."""
        return {k: getattr(self, k) for k in self._STATE} | {"nfree": self.meta[M_NFREE:M_NFREE + 1]}

    def snapshot(self):
        return {k: v.copy() for k, v in self.state_arrays().items()}

    def restore(self, snap):
        for k in self._STATE:
            setattr(self, k, snap[k].copy())
        self.meta[M_NFREE] = snap["nfree"][0]
        self.meta[M_JLEN] = 0
        self.meta[M_NEV] = 0

    def events(self, start: int = 0):
        """The events from ``start`` on, as a dict of array copies."""
        n = int(self.meta[M_NEV])
        return {"kind": self.ek[start:n].copy(), "mm": self.emm[start:n].copy(),
                "addr": self.eaddr[start:n].copy(), "shift": self.eshift[start:n].copy(),
                "count": self.ecount[start:n].copy(), "pfn": self.epfn[start:n].copy(),
                "folio": self.efolio[start:n].copy()}


# =========================================================================================
# Small jitted helpers
# =========================================================================================
@njit
def level_shift(g, level):
    """``page_shift + (level - 1) * bits``: the size shift of an entry at ``level``."""
    return g[0] + (level - 1) * g[1]


@njit
def pte_index(g, addr, level):
    """``pte_index()/pmd_index()/pud_index()/pgd_index()`` for ``level``."""
    return (addr >> level_shift(g, level)) & ((1 << g[1]) - 1)


@njit
def mk_leaf(pfn):
    return np.int32((pfn << 1) | 1)


@njit
def mk_table(t):
    return np.int32(t << 1)


@njit
def _jpush(P, t, i, o):
    jt = P[7]
    ji = P[8]
    jo = P[9]
    meta = P[6]
    n = meta[M_JLEN]
    jt[n] = t
    ji[n] = i
    jo[n] = o
    meta[M_JLEN] = n + 1


@njit
def _room(P, E, nj, ne):
    meta = P[6]
    if meta[M_JLEN] + nj > P[7].shape[0]:
        return NEED_JOURNAL
    if meta[M_NEV] + ne > E[0].shape[0]:
        return NEED_EVENTS
    return OK


@njit
def set_entry(P, t, i, v):
    """Write one entry, journalled, keeping ``tcount`` right."""
    ent = P[0]
    tcount = P[2]
    old = ent[t, i]
    _jpush(P, t, i, old)
    ent[t, i] = v
    if old == 0 and v != 0:
        tcount[t] += 1
    elif old != 0 and v == 0:
        tcount[t] -= 1


@njit
def table_alloc(P, level, folio):
    """``pte_alloc_one()``/``pmd_alloc_one()``: pop a zeroed page; 0 when the pool is empty."""
    meta = P[6]
    n = meta[M_NFREE]
    if n == 0:
        return 0
    fstack = P[5]
    t = fstack[n - 1]
    meta[M_NFREE] = n - 1
    _jpush(P, t, J_ALLOC, 0)
    P[1][t] = level
    P[4][t] = folio
    return t


@njit
def table_free(P, t):
    """``pte_free()``/``pmd_free()``: the page must be empty and unshared."""
    _jpush(P, t, J_FREE_LEVEL, P[1][t])
    _jpush(P, t, J_FREE_FOLIO, P[4][t])
    P[1][t] = 0
    P[4][t] = -1
    meta = P[6]
    n = meta[M_NFREE]
    P[5][n] = t
    meta[M_NFREE] = n + 1


@njit
def set_share(P, t, value):
    _jpush(P, t, J_SHARE, P[3][t])
    P[3][t] = value


@njit
def rollback(P, upto):
    """Undo journal records ``[upto, len)`` in reverse order: the state is byte-identical."""
    ent = P[0]
    tlevel = P[1]
    tcount = P[2]
    tshare = P[3]
    tfolio = P[4]
    fstack = P[5]
    meta = P[6]
    jt = P[7]
    ji = P[8]
    jo = P[9]
    k = meta[M_JLEN] - 1
    while k >= upto:
        t = jt[k]
        i = ji[k]
        o = jo[k]
        if i >= 0:
            cur = ent[t, i]
            ent[t, i] = o
            if cur != 0 and o == 0:
                tcount[t] -= 1
            elif cur == 0 and o != 0:
                tcount[t] += 1
        elif i == J_FILL_COUNT:
            count = t
            tt = jt[k - 1]
            i0 = jo[k - 1]
            for j in range(count):
                ent[tt, i0 + j] = 0
            tcount[tt] -= count
            k -= 1
        elif i == J_ALLOC:
            n = meta[M_NFREE]
            fstack[n] = t
            meta[M_NFREE] = n + 1
            tlevel[t] = 0
            tfolio[t] = -1
        elif i == J_FREE_FOLIO:
            tfolio[t] = o
        elif i == J_FREE_LEVEL:
            meta[M_NFREE] -= 1
            tlevel[t] = o
        elif i == J_SHARE:
            tshare[t] = o
        k -= 1
    meta[M_JLEN] = upto


@njit
def emit(E, meta, g, kind, mm, addr, shift, count, pfn, folio):
    """Append an event; consecutive leaves of one size and folio merge into one ranged event."""
    n = meta[M_NEV]
    ek = E[0]
    if (kind == EV_SET or kind == EV_CLEAR) and n > 0:
        p = n - 1
        if (ek[p] == kind and E[1][p] == mm and E[3][p] == shift and E[6][p] == folio
                and E[2][p] + (E[4][p] << shift) == addr
                and E[5][p] + (E[4][p] << (shift - g[0])) == pfn):
            E[4][p] += count
            return
    ek[n] = kind
    E[1][n] = mm
    E[2][n] = addr
    E[3][n] = shift
    E[4][n] = count
    E[5][n] = pfn
    E[6][n] = folio
    meta[M_NEV] = n + 1


@njit
def pfn_to_folio(fl, pfn):
    """The folio holding ``pfn`` (``page_folio(pfn_to_page(pfn))``).

    ``fl`` is an int64 array ``[nh, (pfn0, order, folio0, nr) * nh]`` describing each hstate's
    contiguous pfn region.
    """
    nh = fl[0]
    for h in range(nh):
        pfn0 = fl[1 + 4 * h]
        order = fl[2 + 4 * h]
        folio0 = fl[3 + 4 * h]
        nr = fl[4 + 4 * h]
        if pfn >= pfn0 and pfn < pfn0 + (nr << order):
            return folio0 + ((pfn - pfn0) >> order)
    return -1


# =========================================================================================
# Walks
# =========================================================================================
@njit
def hugetlb_full_walk(P, g, pgd, addr, stop_level):
    """HGM v1 13/46 ``hugetlb_full_walk``: descend without allocating.

    Returns ``(table, index, level)`` of the entry where the walk stopped: a none entry, a
    present leaf, or the entry at ``stop_level``.  ``table == 0`` when ``pgd`` is 0.
    """
    ent = P[0]
    t = pgd
    lvl = g[2]
    while True:
        idx = pte_index(g, addr, lvl)
        if lvl == stop_level:
            return t, idx, lvl
        v = ent[t, idx]
        if v == 0 or (v & 1) == 1:
            return t, idx, lvl
        t = v >> 1
        lvl -= 1


@njit
def probe(P, g, pgd, addr, hl, share_table):
    """Where would a fault at ``addr`` land?  Read-only.

    Returns ``(kind, level, value)``: kind 0 = a none entry at ``level`` (the fault installs a
    leaf of that size, or an hstate leaf when level > hl), kind 1 = a present leaf at ``level``.
    ``share_table`` (> 0) is what ``huge_pmd_share`` would attach for a none PUD entry.
    """
    ent = P[0]
    t = pgd
    lvl = g[2]
    while True:
        idx = pte_index(g, addr, lvl)
        v = ent[t, idx]
        if v == 0:
            if lvl == 3 and hl == 2 and share_table > 0:
                t = share_table
                lvl = 2
                continue
            if lvl > hl:
                return 0, hl, 0
            return 0, lvl, 0
        if (v & 1) == 1:
            return 1, lvl, v
        t = v >> 1
        lvl -= 1


# =========================================================================================
# Install: hugetlb_mfill_atomic_pte (UFFDIO_CONTINUE), the batched form, hugetlb_no_page
# =========================================================================================
@njit
def _largest_shift(g, addr, b, hs, min_shift):
    """``hugetlb_alloc_largest_pte``: the largest allowed size aligned at addr fitting [addr, b)."""
    s = hs
    while s >= min_shift:
        if (addr & ((1 << s) - 1)) == 0 and addr + (1 << s) <= b:
            return s
        s -= g[1]
    return -1


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

    ``inject`` (error injection, the first piece only): ``INJECT_AFTER_ALLOC`` fails the piece
    with -EFAULT after its page tables were allocated and before its entry is set, leaving
    the tables as the kernel would (Mike Kravetz's concern, T13; v2's order: walk, then
    page-cache lookup); ``INJECT_AT_LOOKUP`` fails it at the lookup before the walk (James's
    remedy, T14: nothing is allocated).

    ``res`` (int64[4]) receives bytes done, leaves installed, the failing address, and the
    shift of the last leaf.  Returns OK, -EEXIST, -EFAULT, or a NEED_* code (nothing done
    since the last completed piece is kept; the caller rolls back and retries).
    """
    ent = P[0]
    tcount = P[2]
    meta = P[6]
    page_shift = g[0]
    bits = g[1]
    levels = g[2]
    pmask = (1 << bits) - 1
    addr = a
    done = 0
    cur_t = 0
    cur_level = 0
    cur_lo = 0
    cur_hi = 0
    res[0] = 0
    res[1] = 0
    res[2] = -1
    hsize = 1 << hs
    while addr < b:
        if max_leaves >= 0 and done >= max_leaves:
            break
        if mode == MODE_FIXED:
            ts = fixed_shift
        elif mode == MODE_LARGEST:
            ts = _largest_shift(g, addr, b, hs, min_shift)
            if ts < 0:
                res[2] = addr
                return -22
        else:
            ts = -1
        hidx = (((addr - vstart) >> page_shift) + vpgoff) >> (hs - page_shift)
        folio = -1
        if hidx < pc.shape[0]:
            folio = pc[hidx]
        if folio < 0 or (inject == INJECT_AT_LOOKUP and done == 0):
            res[2] = addr
            return -EFAULT
        hbase = addr & ~(hsize - 1)
        pfn_at = fpfn[folio] + ((addr - hbase) >> page_shift)
        # ---- fast path: the next pieces land in the leaf table used last -------------
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
            st = _room(P, E, 2, 1)
            if st != OK:
                return st
            i0 = (addr >> ts) & pmask
            k = 0
            while k < n and ent[cur_t, i0 + k] == 0:
                k += 1
            if k > 0:
                step = 1 << (ts - page_shift)
                for j in range(k):
                    ent[cur_t, i0 + j] = np.int32(((pfn_at + j * step) << 1) | 1)
                tcount[cur_t] += k
                _jpush(P, cur_t, J_FILL_HEAD, i0)
                _jpush(P, k, J_FILL_COUNT, 0)
                emit(E, meta, g, EV_SET, mm, addr, ts, k, pfn_at, folio)
                addr += k << ts
                done += k
                res[0] = addr - a
                res[1] = done
                res[3] = ts
            if k < n:
                res[2] = addr
                return -EEXIST
            continue
        # ---- slow path: walk from the top, allocating on the way ---------------------
        st = _room(P, E, ROOM_PIECE_J, ROOM_PIECE_E)
        if st != OK:
            return st
        if meta[M_NFREE] < levels:
            return NEED_TABLES
        jmark = meta[M_JLEN]
        emark = meta[M_NEV]
        t = pgd
        lvl = levels
        tl = 0
        if ts > 0:
            tl = (ts - page_shift) // bits + 1
        failed = 0
        present = False
        while True:
            idx = pte_index(g, addr, lvl)
            v = ent[t, idx]
            if mode == MODE_FAULT and lvl <= hl:
                if v == 0:
                    tl = lvl
                    ts = level_shift(g, lvl)
                    break
                if (v & 1) == 1:
                    present = True
                    ts = level_shift(g, lvl)
                    break
                t = v >> 1
                lvl -= 1
                continue
            if lvl == tl:
                if v != 0:
                    failed = -EEXIST
                break
            if v == 0:
                if lvl == 3 and hl == 2 and share_cand.shape[0] > 0:
                    si = (addr - share_base) >> level_shift(g, 3)
                    if si >= 0 and si < share_cand.shape[0] and share_cand[si] > 0:
                        c = share_cand[si]
                        set_entry(P, t, idx, mk_table(c))
                        set_share(P, c, P[3][c] + 1)
                        emit(E, meta, g, EV_PMD_SHARE, mm, addr & ~((1 << level_shift(g, 3)) - 1),
                             2, 1, c, -1)
                        t = c
                        lvl = 2
                        continue
                tf = -1
                if lvl - 1 < hl:
                    tf = folio
                nt = table_alloc(P, lvl - 1, tf)
                set_entry(P, t, idx, mk_table(nt))
                span = 1 << level_shift(g, lvl)
                emit(E, meta, g, EV_TABLE_ALLOC, mm, addr & ~(span - 1), lvl - 1, 1, nt, tf)
                if lvl == hl and (flags & F_NO_HSTATE_EVENTS) == 0:
                    emit(E, meta, g, EV_HSTATE_POPULATED, mm, hbase, hs, 1, fpfn[folio], folio)
                t = nt
                lvl -= 1
                continue
            if (v & 1) == 1:
                failed = -EEXIST
                break
            t = v >> 1
            lvl -= 1
        if present:
            # A fault that found the page already mapped (possibly through a PMD page
            # huge_pmd_share just attached): nothing more to do.
            res[3] = ts
            break
        if failed != 0:
            rollback(P, jmark)
            meta[M_NEV] = emark
            res[2] = addr
            return failed
        if inject == INJECT_AFTER_ALLOC and done == 0:
            res[2] = addr
            return -EFAULT      # the tables allocated on the way stay, as in the kernel
        pfn_at = fpfn[folio] + ((addr & ~((1 << ts) - 1)) - hbase >> page_shift)
        if lvl == hl and (flags & F_NO_HSTATE_EVENTS) == 0:
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
        res[0] = addr - a
        res[1] = done
        res[3] = ts
        if mode == MODE_FAULT:
            break
    return OK


# =========================================================================================
# Zap: __unmap_hugepage_range (with huge_pmd_unshare)
# =========================================================================================
@njit
def zap_range(P, E, g, fl, pgd, mm, a, b, hl, res):
    """``__unmap_hugepage_range``: clear every leaf in ``[a, b)`` of one mm.

    A shared hugetlb PMD page met on the way is not zapped but unshared
    (``huge_pmd_unshare``): this mm's PUD entry is cleared and the whole PUD range skipped,
    as the kernel does (``address |= last_addr_mask``).  Page tables stay (freeing them is
    ``free_pgtables``' job).  ``res[0]`` = leaves cleared.
    """
    ent = P[0]
    tshare = P[3]
    meta = P[6]
    levels = g[2]
    ptrs = 1 << g[1]
    addr = a
    cleared = 0
    while addr < b:
        st = _room(P, E, 8, 4)
        if st != OK:
            return st
        t = pgd
        lvl = levels
        while True:
            sh = level_shift(g, lvl)
            idx = pte_index(g, addr, lvl)
            v = ent[t, idx]
            if v == 0:
                addr = ((addr >> sh) + 1) << sh
                break
            if (v & 1) == 1:
                # a run over this table's leaves: room for the whole table checked once,
                # the journal written inline, consecutive leaves of one folio merged
                st = _room(P, E, ptrs + 2, 2 * ptrs + 2)
                if st != OK:
                    return st
                tcount = P[2]
                jt = P[7]
                ji = P[8]
                jo = P[9]
                size = np.int64(1) << sh
                pstep = np.int64(1) << (sh - g[0])
                run_addr = np.int64(-1)
                run_pfn = np.int64(0)
                run_n = np.int64(0)
                run_folio = -1
                f_lo = np.int64(0)
                f_hi = np.int64(0)
                folio = -1
                i = idx
                while i < ptrs and addr < b:
                    v = ent[t, i]
                    if v != 0 and (v & 1) == 0:
                        break  # a lower table: the outer loop descends into it
                    if v != 0:
                        pfn = np.int64(v >> 1)
                        if pfn < f_lo or pfn >= f_hi:
                            folio = pfn_to_folio(fl, pfn)
                            f_lo = pfn
                            f_hi = pfn + 1
                            for h in range(fl[0]):
                                if folio >= fl[3 + 4 * h] and folio < fl[3 + 4 * h] + fl[4 + 4 * h]:
                                    f_lo = fl[1 + 4 * h] + ((folio - fl[3 + 4 * h]) << fl[2 + 4 * h])
                                    f_hi = f_lo + (np.int64(1) << fl[2 + 4 * h])
                        n = meta[M_JLEN]
                        jt[n] = t
                        ji[n] = i
                        jo[n] = v
                        meta[M_JLEN] = n + 1
                        ent[t, i] = 0
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
                    addr = ((addr >> sh) + 1) << sh
                    i += 1
                if run_n > 0:
                    emit(E, meta, g, EV_CLEAR, mm, run_addr, sh, run_n, run_pfn, run_folio)
                break
            child = v >> 1
            if lvl == 3 and hl == 2 and tshare[child] > 0:
                set_entry(P, t, idx, 0)
                set_share(P, child, tshare[child] - 1)
                emit(E, meta, g, EV_PMD_UNSHARE, mm, addr & ~((1 << sh) - 1), 2, 1, child, -1)
                addr = ((addr >> sh) + 1) << sh
                break
            t = child
            lvl -= 1
    res[0] = cleared
    return OK


@njit
def unshare_range(P, E, g, pgd, mm, a, b, res):
    """``hugetlb_unshare_all_pmds`` over ``[a, b)``: drop this mm's shared PMD pages only."""
    ent = P[0]
    tshare = P[3]
    meta = P[6]
    pud_sh = level_shift(g, 3)
    addr = a & ~((1 << pud_sh) - 1)
    n = 0
    while addr < b:
        st = _room(P, E, 4, 2)
        if st != OK:
            return st
        t, idx, lvl = hugetlb_full_walk(P, g, pgd, addr, 3)
        if lvl == 3:
            v = ent[t, idx]
            if v != 0 and (v & 1) == 0 and tshare[v >> 1] > 0:
                child = v >> 1
                set_entry(P, t, idx, 0)
                set_share(P, child, tshare[child] - 1)
                emit(E, meta, g, EV_PMD_UNSHARE, mm, addr, 2, 1, child, -1)
                n += 1
        addr += 1 << pud_sh
    res[0] = n
    return OK


# =========================================================================================
# free_pgtables: hugetlb_free_pgd_range
# =========================================================================================
@njit
def free_empty_tables(P, E, g, pgd, mm, a, b, hl, max_level, flags, res):
    """``hugetlb_free_pgd_range``: free the page-table pages left empty under ``[a, b)``.

    Bottom-up, tables of level 1 .. ``max_level``; a freed table's parent entry is cleared.
    Freeing the table under an hstate-level entry makes that entry none
    (``EV_HSTATE_CLEARED``, unless ``F_NO_HSTATE_EVENTS``).  ``res[0]`` = tables freed.
    """
    ent = P[0]
    tcount = P[2]
    tshare = P[3]
    tfolio = P[4]
    meta = P[6]
    levels = g[2]
    freed = 0
    for L in range(1, max_level + 1):
        cov_sh = level_shift(g, L + 1)
        addr = a & ~((1 << cov_sh) - 1)
        while addr < b:
            t = pgd
            lvl = levels
            ok = True
            while lvl > L + 1:
                sh = level_shift(g, lvl)
                idx = pte_index(g, addr, lvl)
                v = ent[t, idx]
                if v == 0 or (v & 1) == 1:
                    addr = ((addr >> sh) + 1) << sh
                    ok = False
                    break
                t = v >> 1
                lvl -= 1
            if not ok:
                continue
            idx = pte_index(g, addr, L + 1)
            v = ent[t, idx]
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
                    if L + 1 == hl and (flags & F_NO_HSTATE_EVENTS) == 0:
                        emit(E, meta, g, EV_HSTATE_CLEARED, mm, addr, cov_sh, 1, -1, f)
            addr += 1 << cov_sh
    res[0] = freed
    return OK


# =========================================================================================
# Fork: copy_hugetlb_page_range
# =========================================================================================
@njit
def copy_range(P, E, g, fl, src_pgd, dst_pgd, dst_mm, a, b, hl, hs, res):
    """``copy_hugetlb_page_range``: copy every present leaf of ``[a, b)`` into the child.

    Each copied leaf is a ``set_huge_pte_at`` in the child (its references and mapcounts
    are the schemes' business: mainline ``folio_get`` + ``hugetlb_add_file_rmap`` per entry).
    High-granularity subtrees are copied leaf by leaf (HGM v2 22/46).  ``res[0]`` = leaves.
    """
    ent = P[0]
    meta = P[6]
    levels = g[2]
    ptrs = 1 << g[1]
    addr = a
    copied = 0
    while addr < b:
        t = src_pgd
        lvl = levels
        while True:
            sh = level_shift(g, lvl)
            idx = pte_index(g, addr, lvl)
            v = ent[t, idx]
            if v == 0:
                addr = ((addr >> sh) + 1) << sh
                break
            if (v & 1) == 1:
                i = idx
                while i < ptrs and addr < b:
                    v = ent[t, i]
                    if v != 0 and (v & 1) == 0:
                        break
                    if v != 0:
                        st = _room(P, E, ROOM_PIECE_J, ROOM_PIECE_E)
                        if st != OK:
                            return st
                        if meta[M_NFREE] < levels:
                            return NEED_TABLES
                        pfn = v >> 1
                        folio = pfn_to_folio(fl, pfn)
                        leaf_addr = addr & ~((1 << sh) - 1)
                        # walk the child, allocating down to this level
                        dt = dst_pgd
                        dl = levels
                        hbase = leaf_addr & ~((1 << hs) - 1)
                        while dl > lvl:
                            didx = pte_index(g, leaf_addr, dl)
                            dv = ent[dt, didx]
                            if dv == 0:
                                tf = -1
                                if dl - 1 < hl:
                                    tf = folio
                                nt = table_alloc(P, dl - 1, tf)
                                set_entry(P, dt, didx, mk_table(nt))
                                span = 1 << level_shift(g, dl)
                                emit(E, meta, g, EV_TABLE_ALLOC, dst_mm, leaf_addr & ~(span - 1),
                                     dl - 1, 1, nt, tf)
                                if dl == hl:
                                    emit(E, meta, g, EV_HSTATE_POPULATED, dst_mm, hbase, hs, 1,
                                         pfn - ((leaf_addr - hbase) >> g[0]), folio)
                                dt = nt
                            else:
                                dt = dv >> 1
                            dl -= 1
                        didx = pte_index(g, leaf_addr, lvl)
                        if lvl == hl:
                            emit(E, meta, g, EV_HSTATE_POPULATED, dst_mm, hbase, hs, 1, pfn, folio)
                        set_entry(P, dt, didx, np.int32(v))
                        emit(E, meta, g, EV_SET, dst_mm, leaf_addr, sh, 1, pfn, folio)
                        copied += 1
                    addr = ((addr >> sh) + 1) << sh
                    i += 1
                break
            t = v >> 1
            lvl -= 1
    res[0] = copied
    return OK


# =========================================================================================
# Read-only views
# =========================================================================================
@njit
def collect_leaves(P, g, pgd, a, b, seen, walker, out_addr, out_shift, out_pfn, out_table):
    """Every present leaf of ``[a, b)`` in one mm.

    A shared hugetlb PMD page is reported only for the first walker that reaches it
    (``seen[table]`` holds that walker's id), so counting the leaves counts page-table
    entries, as the kernel's mapcount does.  Returns the number of leaves written, or -1
    when the output arrays are too small.
    """
    ent = P[0]
    tshare = P[3]
    levels = g[2]
    ptrs = 1 << g[1]
    n = 0
    cap = out_addr.shape[0]
    addr = a
    while addr < b:
        t = pgd
        lvl = levels
        while True:
            sh = level_shift(g, lvl)
            idx = pte_index(g, addr, lvl)
            v = ent[t, idx]
            if v == 0:
                addr = ((addr >> sh) + 1) << sh
                break
            if (v & 1) == 1:
                i = idx
                while i < ptrs and addr < b:
                    v = ent[t, i]
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
                    addr = ((addr >> sh) + 1) << sh
                    i += 1
                break
            child = v >> 1
            if tshare[child] > 0:
                if seen[child] != 0 and seen[child] != walker:
                    addr = ((addr >> sh) + 1) << sh
                    break
                seen[child] = walker
            t = child
            lvl -= 1
    return n


@njit
def count_entries(P, g, pgd, a, b, level):
    """Number of non-none entries at ``level`` under ``[a, b)`` (tables or leaves)."""
    ent = P[0]
    levels = g[2]
    n = 0
    sh_l = level_shift(g, level)
    addr = a & ~((1 << sh_l) - 1)
    while addr < b:
        t = pgd
        lvl = levels
        ok = True
        while lvl > level:
            sh = level_shift(g, lvl)
            idx = pte_index(g, addr, lvl)
            v = ent[t, idx]
            if v == 0 or (v & 1) == 1:
                addr = ((addr >> sh) + 1) << sh
                ok = False
                break
            t = v >> 1
            lvl -= 1
        if not ok:
            continue
        if ent[t, pte_index(g, addr, level)] != 0:
            n += 1
        addr += 1 << sh_l
    return n
