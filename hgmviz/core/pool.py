"""Layer 1: the page-table pool, its record layouts, the undo journal and the event buffer.

Kernels see the pool as two tuples of numpy arrays, ``P`` (page tables + journal) and ``E``
(events), and the geometry as an int64 array ``g``.  Their slots have names here (``P_ENT``,
``E_KIND``, ``G_LEVELS``, ...); numba folds a global constant index into a static tuple
access, so a named slot costs what ``P[0]`` cost.
"""
from __future__ import annotations

import errno as _errno

import numpy as np

from .._jit import njit
from ..geometry import HugetlbLevel
from .entries import Entries

__all__ = [
    "LEVEL_PTE", "LEVEL_PMD", "LEVEL_PUD", "P_ENT", "P_TLEVEL", "P_TCOUNT", "P_TSHARE",
    "P_TFOLIO", "P_FSTACK", "P_META", "P_JT", "P_JI", "P_JO", "E_KIND", "E_MM", "E_ADDR",
    "E_SHIFT", "E_COUNT", "E_PFN", "E_FOLIO", "G_PAGE_SHIFT", "G_BITS", "G_LEVELS", "FL_NH",
    "FL_PFN0", "FL_ORDER", "FL_FOLIO0", "FL_NR", "FL_STRIDE", "RES_COUNT", "RES_BYTES",
    "RES_LEAVES", "RES_FAIL_ADDR", "RES_LAST_SHIFT", "M_NFREE", "M_JLEN", "M_NEV", "OK",
    "NEED_TABLES", "NEED_JOURNAL", "NEED_EVENTS", "EEXIST", "EFAULT", "EINVAL",
    "MODE_LARGEST", "MODE_FIXED", "MODE_FAULT", "F_NO_HSTATE_EVENTS", "INJECT_AFTER_ALLOC",
    "INJECT_AT_LOOKUP", "EV_SET", "EV_CLEAR", "EV_HSTATE_POPULATED", "EV_HSTATE_CLEARED",
    "EV_TABLE_ALLOC", "EV_TABLE_FREE", "EV_PMD_SHARE", "EV_PMD_UNSHARE", "EV_PAGECACHE_ADD",
    "EV_PAGECACHE_DEL", "EV_FOLIO_ALLOC", "EV_FOLIO_FREE", "EVENT_NAMES", "J_ALLOC",
    "J_FREE_LEVEL", "J_SHARE", "J_FREE_FOLIO", "J_FILL_HEAD", "J_FILL_COUNT",
    "ROOM_PIECE_J", "ROOM_PIECE_E", "P_RMAP", "M_NROWS", "M_RFREE", "M_NRFREE", "M_SHARE",
    "M_NCANON", "NEED_ROWS", "J_ROW_ALLOC", "J_ROW_COW", "J_ROW_SHARE", "J_ROW_UNSHARE",
    "CANON_MAX", "CANON_SLOTS", "ROOM_ROWS", "rows_avail", "own_row", "canon_row", "share_row",
    "unshare_row", "mk_leaf", "mk_table", "is_leaf", "is_table",
    "set_entry", "table_alloc", "table_free", "set_share", "rollback", "emit",
    "PageTablePool",
]


# ---- page-table levels (enum hugetlb_level, HGM v1 11/46) as plain ints for the kernels --
LEVEL_PTE = int(HugetlbLevel.PTE)
LEVEL_PMD = int(HugetlbLevel.PMD)
LEVEL_PUD = int(HugetlbLevel.PUD)

# ---- slots of the P tuple (PageTablePool.P) ---------------------------------------------
P_ENT = 0        # rows[row, index]: the entries; table t's are rows[|rmap[t]|] (issue 16)
P_TLEVEL = 1     # tlevel[table]: the level of a page (0 = free)
P_TCOUNT = 2     # tcount[table]: non-none entries
P_TSHARE = 3     # tshare[table]: extra sharers of a hugetlb PMD page (ptdesc->pt_share_count)
P_TFOLIO = 4     # tfolio[table]: the folio a table below the hstate level maps (-1 above)
P_FSTACK = 5     # fstack[:meta[M_NFREE]]: free pages
P_META = 6       # meta[M_*]
P_JT = 7         # journal: table (or a count for J_FILL_COUNT)
P_JI = 8         # journal: index (>= 0) or a J_* record kind (< 0)
P_JO = 9         # journal: old value
P_RMAP = 10      # rmap[table]: its own row (> 0), none yet (0: the zero row), or a canonical
                 # row shared with other tables (-row); see "Rows" below

# ---- slots of the E tuple (PageTablePool.E): one event per index --------------------------
E_KIND = 0
E_MM = 1
E_ADDR = 2
E_SHIFT = 3
E_COUNT = 4
E_PFN = 5
E_FOLIO = 6

# ---- slots of the geometry array g (Machine._g) ------------------------------------------
G_PAGE_SHIFT = 0
G_BITS = 1       # bits per level: log2(PTRS_PER_TABLE)
G_LEVELS = 2

# ---- the folio layout array fl: [nh, (pfn0, order, folio0, nr) * nh] ---------------------
FL_NH = 0
FL_PFN0 = 1
FL_ORDER = 2
FL_FOLIO0 = 3
FL_NR = 4
FL_STRIDE = 4

# ---- the result array res (int64[4]) of the ranged kernels -------------------------------
RES_COUNT = 0       # zap/unshare/free/copy: what was done (leaves, tables)
RES_BYTES = 0       # install_range: bytes done
RES_LEAVES = 1      # install_range: leaves installed
RES_FAIL_ADDR = 2   # install_range: the failing address (-1: none)
RES_LAST_SHIFT = 3  # install_range: the shift of the last leaf (or of the present one)

# ---- meta slots ------------------------------------------------------------------------
M_NFREE = 0
M_JLEN = 1
M_NEV = 2
M_NROWS = 3      # rows[:meta[M_NROWS]] have been handed out (row 0, the zero row, included)
M_RFREE = 4      # the first free row (0: none); a free row's entry 0 links the next one
M_NRFREE = 5     # free rows on that list
M_SHARE = 6      # 1: full leaf tables share canonical rows (the default); 0: never
M_NCANON = 7     # canonical rows made
M_NKEYS = 8      # keys in the canonical-row table
M_HASH = 16      # meta[M_HASH + 2 s], meta[M_HASH + 2 s + 1]: slot s of that table (key, row)
CANON_SLOTS = 16384   # slots of the canonical-row table (a power of two)
CANON_MAX = 8192      # canonical rows at most (16 MiB of 512-entry rows)

# ---- status codes (negative values are -errno) ------------------------------------------
OK = 0
NEED_TABLES = 1001
NEED_JOURNAL = 1002
NEED_EVENTS = 1003
NEED_ROWS = 1004
EEXIST = _errno.EEXIST
EFAULT = _errno.EFAULT
EINVAL = _errno.EINVAL

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
J_FILL_HEAD = -5     # (table, J_FILL_HEAD, first index) ...
J_FILL_COUNT = -6    # ... then (count, J_FILL_COUNT, 0): count none entries were filled
J_ROW_ALLOC = -7     # (table, J_ROW_ALLOC, 0): the table, rowless, got a zero row
J_ROW_COW = -8       # (table, J_ROW_COW, canonical): it got a copy of its canonical row
J_ROW_SHARE = -9     # (table, J_ROW_SHARE, 0): the empty table now maps a canonical row
J_ROW_UNSHARE = -10  # (table, J_ROW_UNSHARE, canonical): the table mapping it was emptied whole

ROOM_PIECE_J = 64     # journal records one slow-path piece may need at most
ROOM_PIECE_E = 16     # events one slow-path piece may need at most
ROOM_ROWS = 8         # free rows one slow-path piece may need at most (levels + a canonical)


# =========================================================================================
# Entry encoding, journalled writes, events
# =========================================================================================
@njit
def mk_leaf(pfn):
    """A present leaf mapping ``pfn``: ``(pfn << 1) | 1``."""
    return np.int32((pfn << 1) | 1)


@njit
def mk_table(t):
    """A non-leaf entry pointing at page-table page ``t``: ``t << 1``."""
    return np.int32(t << 1)


@njit
def is_leaf(v):
    """``hugetlb_pte_present_leaf``: a present leaf (any level)."""
    return (v & 1) == 1


@njit
def is_table(v):
    """A non-none entry that points at a lower page-table page."""
    return v != 0 and (v & 1) == 0


@njit
def _jpush(P, t, i, o):
    meta = P[P_META]
    n = meta[M_JLEN]
    P[P_JT][n] = t
    P[P_JI][n] = i
    P[P_JO][n] = o
    meta[M_JLEN] = n + 1


@njit
def _room(P, E, nj, ne):
    """OK when ``nj`` more journal records and ``ne`` more events fit, else a NEED_* code."""
    meta = P[P_META]
    if meta[M_JLEN] + nj > P[P_JT].shape[0]:
        return NEED_JOURNAL
    if meta[M_NEV] + ne > E[E_KIND].shape[0]:
        return NEED_EVENTS
    return OK


# ---- Rows (issue 16) ------------------------------------------------------------------------
# A simulator-memory technique, not a kernel one: the kernel really allocates every page-table
# page (pte_alloc_one), and so does the pool (tlevel, tcount, ... per table).  Only the entries
# are stored apart, in rows: table t's entries are rows[|rmap[t]|].  A table gets a row of its
# own at its first write (own_row); until then it reads the zero row 0 (never written).  A PTE
# table about to be filled whole with consecutive leaves of one folio (install_range) may map
# a canonical row instead (rmap[t] = -row): a row that holds exactly those leaves, made on the
# second sighting of its content and never written after; a write into such a table copies
# the canonical row into a row of its own first (copy-on-write).  The scale run's 4,095 VMAs
# map one folio at the same offsets: their 2 million PTE tables read 512 canonical rows.
# Every change of rmap is journalled, so rollback restores rmap, tcount and the free rows
# exactly; canonical rows are not (they are content-addressed and immutable).
@njit(inline="always")
def rows_avail(P):
    """Rows that can still be handed out without growing ``rows``."""
    meta = P[P_META]
    return meta[M_NRFREE] + P[P_ENT].shape[0] - meta[M_NROWS]


@njit
def _row_take(P):
    """A zero row: the head of the free list, else the next never-used row."""
    meta = P[P_META]
    rows = P[P_ENT]
    r = meta[M_RFREE]
    if r != 0:
        meta[M_RFREE] = rows[r, 0]
        rows[r, 0] = 0
        meta[M_NRFREE] -= 1
        return r
    r = meta[M_NROWS]
    meta[M_NROWS] = r + 1
    return r


@njit
def _row_put(P, r):
    """Give back an all-zero row (its entry 0 links the free list).  Which row a table
    holds is invisible (the entries are what count), so rollback gives rows back here
    rather than restoring the free list's order."""
    meta = P[P_META]
    P[P_ENT][r, 0] = meta[M_RFREE]
    meta[M_RFREE] = r
    meta[M_NRFREE] += 1


@njit
def own_row(P, t):
    """Give table ``t`` (rowless, or mapping a canonical row) a row of its own: a zero row,
    or a copy of its canonical row (copy-on-write).  Journalled; the caller has checked
    room (``rows_avail``).  Returns the row."""
    rmap = P[P_RMAP]
    c = rmap[t]
    r = _row_take(P)
    if c < 0:
        rows = P[P_ENT]
        for j in range(rows.shape[1]):
            rows[r, j] = rows[-c, j]
        _jpush(P, t, J_ROW_COW, -c)
    else:
        _jpush(P, t, J_ROW_ALLOC, 0)
    rmap[t] = r
    return r


@njit
def canon_row(P, pfn0, level, step):
    """The canonical row of a full table of leaves ``pfn0, pfn0 + step, ...`` at ``level``,
    or 0: none yet.  The first sighting of a content only records its key; the second
    makes the row (one fill), later ones find it."""
    meta = P[P_META]
    if meta[M_SHARE] == 0:
        return 0
    key = pfn0 * 8 + level
    mask = CANON_SLOTS - 1
    s = ((pfn0 >> 5) * 40503 + level * 7919) & mask
    while True:
        k = meta[M_HASH + 2 * s]
        if k == key:
            r = meta[M_HASH + 2 * s + 1]
            if r > 0:
                return r
            if meta[M_NCANON] >= CANON_MAX or rows_avail(P) < 1:
                return 0
            r = _row_take(P)
            rows = P[P_ENT]
            for j in range(rows.shape[1]):
                rows[r, j] = np.int32(((pfn0 + j * step) << 1) | 1)
            meta[M_HASH + 2 * s + 1] = r
            meta[M_NCANON] += 1
            return r
        if k == 0:
            if meta[M_NKEYS] < CANON_SLOTS // 2:
                meta[M_HASH + 2 * s] = key
                meta[M_NKEYS] += 1
            return 0
        s = (s + 1) & mask


@njit(inline="always")
def share_row(P, t, c):
    """Empty table ``t`` maps canonical row ``c`` (full: ``tcount`` = the table's width); its
    own row, if any (all zero), goes to the free list.  Journalled (``J_ROW_SHARE``)."""
    rmap = P[P_RMAP]
    r = rmap[t]
    if r > 0:
        _row_put(P, r)
    rmap[t] = -c
    P[P_TCOUNT][t] += P[P_ENT].shape[1]
    _jpush(P, t, J_ROW_SHARE, 0)


@njit
def unshare_row(P, t):
    """Table ``t``, mapping a canonical row, is emptied whole: it maps the zero row again
    (``tcount`` 0).  Journalled (``J_ROW_UNSHARE``)."""
    rmap = P[P_RMAP]
    _jpush(P, t, J_ROW_UNSHARE, -rmap[t])
    rmap[t] = 0
    P[P_TCOUNT][t] = 0


@njit(inline="always")
def set_entry(P, t, i, v):
    """Write one entry, journalled, keeping ``tcount`` right.  A table without a row of its
    own gets one first (``own_row``: a zero row, or a copy of the canonical row it shares);
    the caller has checked room for it (``ROOM_ROWS``)."""
    ent = P[P_ENT]
    tcount = P[P_TCOUNT]
    r = P[P_RMAP][t]
    if r <= 0:
        r = own_row(P, t)
    old = ent[r, i]
    _jpush(P, t, i, old)
    ent[r, i] = v
    if old == 0 and v != 0:
        tcount[t] += 1
    elif old != 0 and v == 0:
        tcount[t] -= 1


@njit
def table_alloc(P, level, folio):
    """``pte_alloc_one()``/``pmd_alloc_one()``: pop a zeroed page; 0 when the pool is empty."""
    meta = P[P_META]
    n = meta[M_NFREE]
    if n == 0:
        return 0
    t = P[P_FSTACK][n - 1]
    meta[M_NFREE] = n - 1
    _jpush(P, t, J_ALLOC, 0)
    P[P_TLEVEL][t] = level
    P[P_TFOLIO][t] = folio
    return t


@njit
def table_free(P, t):
    """``pte_free()``/``pmd_free()``: the page must be empty and unshared."""
    _jpush(P, t, J_FREE_LEVEL, P[P_TLEVEL][t])
    _jpush(P, t, J_FREE_FOLIO, P[P_TFOLIO][t])
    P[P_TLEVEL][t] = 0
    P[P_TFOLIO][t] = -1
    meta = P[P_META]
    n = meta[M_NFREE]
    P[P_FSTACK][n] = t
    meta[M_NFREE] = n + 1


@njit
def set_share(P, t, value):
    """Set ``tshare[t]`` (``ptdesc->pt_share_count``), journalled."""
    _jpush(P, t, J_SHARE, P[P_TSHARE][t])
    P[P_TSHARE][t] = value


@njit
def rollback(P, upto):
    """Undo journal records ``[upto, len)`` in reverse order: the state is byte-identical."""
    ent = P[P_ENT]
    tlevel = P[P_TLEVEL]
    tcount = P[P_TCOUNT]
    tshare = P[P_TSHARE]
    tfolio = P[P_TFOLIO]
    fstack = P[P_FSTACK]
    meta = P[P_META]
    jt = P[P_JT]
    ji = P[P_JI]
    jo = P[P_JO]
    rmap = P[P_RMAP]
    ptrs = ent.shape[1]
    k = meta[M_JLEN] - 1
    while k >= upto:
        t = jt[k]
        i = ji[k]
        o = jo[k]
        if i >= 0:
            r = rmap[t]               # its own row: the write came after any own_row
            cur = ent[r, i]
            ent[r, i] = o
            if cur != 0 and o == 0:
                tcount[t] -= 1
            elif cur == 0 and o != 0:
                tcount[t] += 1
        elif i == J_FILL_COUNT:
            count = t
            tt = jt[k - 1]
            i0 = jo[k - 1]
            r = rmap[tt]
            for j in range(count):
                ent[r, i0 + j] = 0
            tcount[tt] -= count
            k -= 1
        elif i == J_ROW_ALLOC:
            r = rmap[t]
            rmap[t] = 0
            _row_put(P, r)
        elif i == J_ROW_COW:
            r = rmap[t]
            for j in range(ptrs):
                ent[r, j] = 0
            rmap[t] = -o
            _row_put(P, r)
        elif i == J_ROW_SHARE:
            rmap[t] = 0               # empty again, rowless (its old row stays free)
            tcount[t] -= ptrs
        elif i == J_ROW_UNSHARE:
            rmap[t] = -o
            tcount[t] = ptrs
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


@njit(inline="always")
def emit(E, meta, g, kind, mm, addr, shift, count, pfn, folio):
    """Append an event; consecutive leaves of one size and folio merge into one ranged event."""
    n = meta[M_NEV]
    ek = E[E_KIND]
    if (kind == EV_SET or kind == EV_CLEAR) and n > 0:
        p = n - 1
        if (ek[p] == kind and E[E_MM][p] == mm and E[E_SHIFT][p] == shift
                and E[E_FOLIO][p] == folio
                and E[E_ADDR][p] + (E[E_COUNT][p] << shift) == addr
                and E[E_PFN][p] + (E[E_COUNT][p] << (shift - g[G_PAGE_SHIFT])) == pfn):
            E[E_COUNT][p] += count
            return
    ek[n] = kind
    E[E_MM][n] = mm
    E[E_ADDR][n] = addr
    E[E_SHIFT][n] = shift
    E[E_COUNT][n] = count
    E[E_PFN][n] = pfn
    E[E_FOLIO][n] = folio
    meta[M_NEV] = n + 1


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

    def __init__(self, ptrs: int, tables: int = 64, journal: int = 4096, events: int = 1024,
                 share: bool = True):
        self.ptrs = ptrs
        self.rows = np.zeros((tables, ptrs), dtype=np.int32)
        self.rmap = np.zeros(tables, dtype=np.int32)
        self.tlevel = np.zeros(tables, dtype=np.int8)
        self.tcount = np.zeros(tables, dtype=np.int32)
        self.tshare = np.zeros(tables, dtype=np.int32)
        self.tfolio = np.full(tables, -1, dtype=np.int32)
        self.fstack = np.zeros(tables, dtype=np.int32)
        free = np.arange(tables - 1, 0, -1, dtype=np.int32)   # pops give 1, 2, 3, ...
        self.fstack[: free.size] = free
        self.meta = np.zeros(M_HASH + 2 * CANON_SLOTS, dtype=np.int64)
        self.meta[M_NFREE] = free.size
        self.meta[M_NROWS] = 1
        self.meta[M_SHARE] = int(bool(share))
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
        """The page-table tuple the kernels take; slots ``P_ENT`` .. ``P_JO``."""
        return (self.rows, self.tlevel, self.tcount, self.tshare, self.tfolio, self.fstack,
                self.meta, self.jt, self.ji, self.jo, self.rmap)

    @property
    def E(self):
        """The event tuple the kernels take; slots ``E_KIND`` .. ``E_FOLIO``."""
        return (self.ek, self.emm, self.eaddr, self.eshift, self.ecount, self.epfn, self.efolio)

    @property
    def capacity(self) -> int:
        return self.tlevel.shape[0]

    # the entries as code outside the kernels reads them ----------------------------------
    @property
    def ent(self) -> Entries:
        """``ent[table, index]``: the entries, table by table (:class:`Entries`, a live view
        that resolves each table to the row holding it)."""
        return Entries(self)

    def row_of(self, tables):
        """The row(s) of :attr:`rows` holding table(s) ``tables`` (an int, an index array, a
        mask or a slice of tables): its own, the zero row 0, or a canonical row."""
        r = self.rmap[tables]
        return abs(int(r)) if np.ndim(r) == 0 else np.abs(r)

    @property
    def share(self) -> bool:
        """Whether full leaf tables share canonical rows (issue 16; on by default)."""
        return bool(self.meta[M_SHARE])

    @share.setter
    def share(self, on: bool):
        self.meta[M_SHARE] = int(bool(on))

    @property
    def nr_rows(self) -> int:
        """Rows in use: tables' own rows and canonical rows (row 0 and free rows excluded)."""
        return int(self.meta[M_NROWS]) - 1 - int(self.meta[M_NRFREE])

    @property
    def nr_canonical(self) -> int:
        return int(self.meta[M_NCANON])

    def _take_row(self) -> int:
        meta = self.meta
        r = int(meta[M_RFREE])
        if r:
            meta[M_RFREE] = self.rows[r, 0]
            self.rows[r, 0] = 0
            meta[M_NRFREE] -= 1
            return r
        if meta[M_NROWS] >= self.rows.shape[0]:
            self.grow_rows()
        r = int(meta[M_NROWS])
        meta[M_NROWS] = r + 1
        return r

    def private_row(self, t: int) -> int:
        """The row of table ``t``, made its own (for a raw write; not journalled)."""
        r = int(self.rmap[t])
        if r > 0:
            return r
        nr = self._take_row()
        if r < 0:
            self.rows[nr] = self.rows[-r]
        self.rmap[t] = nr
        return nr

    def put_tables(self, clear, used, rows):
        """Checkpoint restore: tables ``clear`` become zero, tables ``used`` get ``rows``
        (one row of entries each), each in a row of its own.  Not journalled."""
        clear = np.asarray(clear)
        rm = self.rmap[clear]
        self.rows[rm[rm > 0]] = 0
        self.rmap[clear[rm < 0]] = 0
        used = np.asarray(used)
        rowless = used[self.rmap[used] <= 0]      # 0 after the clear above: no canonical row
        while self.meta[M_RFREE] and rowless.size:
            self.rmap[rowless[0]] = self._take_row()
            rowless = rowless[1:]
        if rowless.size:
            n0 = int(self.meta[M_NROWS])
            if n0 + rowless.size > self.rows.shape[0]:
                self.grow_rows(n0 + rowless.size - self.rows.shape[0])
            self.rmap[rowless] = np.arange(n0, n0 + rowless.size, dtype=np.int32)
            self.meta[M_NROWS] = n0 + rowless.size
        self.rows[self.rmap[used]] = rows

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
        self.rmap = np.concatenate([self.rmap, np.zeros(new - old, np.int32)])
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

    def grow_rows(self, need: int = 0):
        """More rows (never during a kernel call): only the rows handed out are copied."""
        old = self.rows.shape[0]
        new = max(old * 2, old + need + 64)
        ent = np.zeros((new, self.ptrs), dtype=np.int32)
        _no_transparent_hugepages(ent)
        n = int(self.meta[M_NROWS])
        ent[:n] = self.rows[:n]
        self.rows = ent

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
            if st not in (NEED_TABLES, NEED_JOURNAL, NEED_EVENTS, NEED_ROWS):
                return st
            rollback(self.P, jm)
            meta[M_NEV] = em
            if st == NEED_TABLES:
                self.grow_tables(levels)
            elif st == NEED_ROWS:
                self.grow_rows(4 * ROOM_ROWS)
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
    _STATE = ("tlevel", "tcount", "tshare", "tfolio", "fstack")

    def state_arrays(self):
        """The arrays that make up the page-table state (journal and events excluded);
        ``ent`` one row per table."""
        return ({"ent": np.asarray(self.ent)} | {k: getattr(self, k) for k in self._STATE}
                | {"nfree": self.meta[M_NFREE:M_NFREE + 1]})

    def snapshot(self):
        return {k: v.copy() for k, v in self.state_arrays().items()}

    def restore(self, snap):
        for k in self._STATE:
            setattr(self, k, snap[k].copy())
        # every table in use gets a row of its own again; canonical rows are dropped
        ent = snap["ent"]
        used = np.flatnonzero(snap["tlevel"])
        self.rows = np.zeros((max(64, used.size + 1), self.ptrs), dtype=np.int32)
        self.rows[1:used.size + 1] = ent[used]
        self.rmap = np.zeros(ent.shape[0], dtype=np.int32)
        self.rmap[used] = np.arange(1, used.size + 1, dtype=np.int32)
        self.meta[M_NROWS] = used.size + 1
        self.meta[M_RFREE] = 0
        self.meta[M_NRFREE] = 0
        self.meta[M_NCANON] = 0
        self.meta[M_NKEYS] = 0
        self.meta[M_HASH:] = 0
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
