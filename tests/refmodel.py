"""A slow, obviously-correct reference model of hgmviz's hugetlb simulator (tests only).

This is a second, independent implementation of the rules in ``shared/domain.md`` (sections 1, 2,
3(a), 4.5) and of the kernel code they cite, written for reading rather than speed: page tables
are trees of dicts, every counter is *recomputed* from the page tables and page caches whenever
it is read, and every operation runs on a deep copy that is thrown away if the operation fails.
It imports nothing from hgmviz but the geometry constants and the exception types, so that the
property test in ``test_model_equivalence.py`` compares two implementations, not one with itself.

The public API mirrors ``hgmviz.Machine`` / ``Process`` / ``File`` / ``Folio`` for the
operations the equivalence test drives.

The rules, each stated once (D = domain.md, K = the kernel function named):

Counters (D 2.1, 2.2, 3(a), 1.4)
  * L(folio) = the number of present leaf entries mapping the folio, over the page tables of
    every live process, a page-table page shared by several processes (PMD sharing) counted
    once.  ``mainline`` only ever has hstate-level leaves; ``per_piece`` (HGM v1) counts a leaf
    of any size once ("each new PT mapping increments the compound_mapcount by 1", T2).
  * refcount = page-cache references + L, the page cache holding 1 reference before v6.7 and
    folio_nr_pages() since (a08c7193e4f1).  entire_mapcount = L; page_mapcount(i) = entire
    mapcount for every page i (the per-page _mapcount of hugetlb is never touched).
  * The counters are atomic_t of the geometry's width: they wrap as two's-complement signed
    integers.  Mapcounts are stored biased by -1 ("mapcounts start at -1"), so
    entire_mapcount = wrap(L - 1) + 1.

Pool and reservations (hugetlb_reserve_pages, alloc_hugetlb_folio, hugetlbfs_evict_inode)
  * A shared mapping reserves every index of its file range not yet in the inode's reserve map
    (MAP_NORESERVE skips it); ENOMEM if HugePages_Rsvd + new > HugePages_Free.
  * HugePages_Rsvd = the number of (file, index) in reserve maps without a page in the page cache
    (a reservation is consumed when its page is allocated).  An allocation for an index without a
    reservation needs HugePages_Free - HugePages_Rsvd > 0; the allocated index joins the reserve
    map (vma_commit_reservation).  Fault: SIGBUS when nothing can be allocated; fallocate: ENOSPC.
  * When the fd is closed and no VMA maps the file, every page-cache folio returns to the pool
    and the reserve map is emptied.
  * The simulator's allocation policy (lowest free folio of the hstate) and pfn layout are
    copied so that pfns compare; they are policy, not kernel rules.

Page tables
  * One tree per process; a leaf maps 1 << level_shift(level) bytes of one folio.  Tables are
    only allocated by faults, UFFDIO_CONTINUE, MADV_COLLAPSE and fork copies, never by zaps.
  * Zap (munmap, exit, MADV_DONTNEED: __unmap_hugepage_range) clears leaves and keeps tables;
    munmap then frees each table whose whole range lies between the neighbouring VMAs that stay
    (free_pgtables floor/ceiling); exit frees everything.
  * PMD sharing (want_pmd_share / huge_pmd_share) for the hstate whose leaves sit at the PMD
    level: on a fault or UFFDIO_CONTINUE whose PUD entry is none, in a VMA with no uffd minor/wp
    and no HGM that covers the whole PUD-aligned range, the PUD entry is pointed at the PMD
    table of another VMA of the same file at the same offset modulo PUD size, same flags,
    covering its PUD range.  Zapping a range of a shared table only detaches this process
    (huge_pmd_unshare); a VMA split off a PUD boundary detaches that table (hugetlb_split);
    uffd minor/wp registration and MADV_SPLIT detach every shared table of the VMA.
  * fork copies page tables only for VMAs that are uffd-wp in the child (vma_needs_copy), i.e.
    registered with EVENT_FORK; the copy mirrors the tables (hugetlb_walk / huge_pte_alloc,
    v2 22/46) and adds one leaf per leaf.  Without EVENT_FORK the child's VMAs lose their uffd
    registration (dup_userfaultfd).

Syscall rules
  * munmap / splits: EINVAL when a hugetlb VMA would be split off a hugepage boundary
    (hugetlb_vm_op_split).
  * MADV_DONTNEED: start must be hugepage aligned (EINVAL), end rounded down; MADV_SPLIT is
    EINVAL on mainline; MADV_COLLAPSE on mainline is EINVAL for hugetlb VMAs; madvise with
    length 0 returns 0 after the advice and alignment checks, and a range past TASK_SIZE
    meets no VMA: ENOMEM (do_madvise).
  * userfaultfd registration (userfaultfd_register): each call is a new userfaultfd; the range
    may contain holes (EINVAL when no VMA intersects it), start aligned to the first VMA's
    hugepage, end aligned for the VMA containing it, EBUSY when a VMA is registered with
    another userfaultfd, each VMA checked in turn.  Unregister skips VMAs that are not
    registered and splits only registered ones.
  * UFFDIO_CONTINUE (mfill_atomic_hugetlb / hugetlb_mfill_atomic_pte, HGM v2 33/46): EINVAL for
    an unaligned range, ENOENT unless [addr, addr+len) is inside one registered VMA, EINVAL
    unless aligned to the hugepage (PAGE_SIZE on an HGM VMA, where each piece is the largest
    aligned leaf that fits), EEXIST on a present entry / a larger leaf / a table at the target
    level, EFAULT when the page is not in the page cache; partial progress is EAGAIN with
    ``mapped``.
  * Faults (hugetlb_fault / hugetlb_no_page, HGM v2 24/46): the leaf installed has the size of
    the first none entry met below the hstate level; userfaultfd MISSING (page not cached) and
    MINOR (page cached) faults are handed to user space.
  * MADV_SPLIT (HGM v1 09/46): splits the VMAs at the range (EINVAL off a hugepage boundary),
    sets VM_HUGETLB_HGM, unshares PMDs, maps nothing.  MADV_COLLAPSE (HGM v2 34/46, HGM VMAs
    only): for each largest aligned piece, a subtree of tables becomes one leaf (every leaf
    below dropped first) and a hole whose page is in the page cache is filled.
  * mmap: offset hugepage aligned (EINVAL), length rounded up to the hugepage, MAP_FIXED address
    hugepage aligned (EINVAL) and inside the address space (ENOMEM), replacing what it covers;
    i_size grows to offset + length.  fallocate (hugetlbfs_fallocate, vfs_fallocate): len 0
    is EINVAL, whole hugepages are allocated, i_size becomes offset + len (not rounded).

MAP_PRIVATE (hugetlb_reserve_pages, hugetlb_no_page, hugetlb_wp, unmap_ref_private,
copy_hugetlb_page_range): see the MAP_PRIVATE section of RefMachine.

Simplifications shared with hgmviz.mm (its module docstring): VMAs are never merged; every failure leaves the state unchanged except UFFDIO_CONTINUE's
partial progress and madvise over a range with holes (madvise_walk_vmas: the advice is
applied to every VMA of the range, then ENOMEM),
including page-table pages a failing fault or UFFDIO_CONTINUE piece had allocated;
``uffdio_continue_batch(addr, len, piece)`` is exactly a loop of ``uffdio_continue(a, piece)``.
"""
from __future__ import annotations

import copy
import errno
from collections import namedtuple

from hgmviz.errors import (PartialProgress, ProcessExited, SigBus, SigSegv, StateKept,
                           TaskHung, Unsupported, UserfaultPending)
from hgmviz.geometry import get_geometry

__all__ = ["RefMachine", "MADV_DONTNEED", "MADV_COLLAPSE", "MADV_SPLIT"]

MADV_DONTNEED = 4
MADV_COLLAPSE = 25
MADV_SPLIT = 26
MADV_REMOVE = 9
_ADVICE = (MADV_DONTNEED, MADV_REMOVE, MADV_COLLAPSE, MADV_SPLIT)
_MODES = ("missing", "wp", "minor")   # the order hgmviz.Vma.uffd_modes reports them in
_PFN_BASE = 1 << 20                   # hgmviz's simulated physical memory starts here


def _err(code, msg):
    return OSError(code, "%s: %s" % (errno.errorcode[code], msg))


def _int(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, not %r" % (name, value))
    if value < minimum:
        raise ValueError("%s must be >= %d, not %d" % (name, minimum, value))
    return value


def _parse_version(text):
    if not isinstance(text, str):
        raise TypeError("kernel must be a string like '6.2'")
    major, minor = text.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()))


# ----------------------------------------------------------------------------- state ---
class Table:
    """A page-table page: ``slots`` maps an index to a ``Table`` (present non-leaf entry) or a
    ``Leaf``; a missing key is a none entry.  ``level`` is the level of its entries.
    ``folio``: for the table right below an hstate-level entry, the page-cache folio it was
    allocated for (what an hstate-level entry's reference is taken on, see ``tables_hold``)."""

    __slots__ = ("level", "slots", "folio")

    def __init__(self, level, folio=None):
        self.level = level
        self.slots = {}
        self.folio = folio


# a present leaf: maps 1 << level_shift(level) bytes of folio ``folio`` from page ``index``
Leaf = namedtuple("Leaf", "folio index level")


class Vma:
    """``resv`` (private VMAs of the mapping process): the set of file indexes whose
    reservation was consumed — one set object shared by the pieces of a split VMA, as the
    kernel's private resv_map is (None: no reservations).  ``anon_vma``: an anonymous page was
    faulted in; ``resv_unmapped``: HPAGE_RESV_UNMAPPED."""
    __slots__ = ("start", "end", "file", "pgoff", "noreserve", "modes", "ctx", "event_fork", "hgm",
                 "shared", "resv", "anon_vma", "resv_unmapped", "prot")

    def __init__(self, start, end, file, pgoff, noreserve, modes=frozenset(), ctx=None,
                 event_fork=False, hgm=False, shared=True, resv=None, anon_vma=False,
                 resv_unmapped=False):
        self.start, self.end, self.file, self.pgoff = start, end, file, pgoff
        self.noreserve, self.modes, self.ctx, self.event_fork, self.hgm = \
            noreserve, frozenset(modes), ctx, event_fork, hgm
        self.shared, self.resv, self.anon_vma, self.resv_unmapped = \
            shared, resv, anon_vma, resv_unmapped
        self.prot = 3

    def copy(self, **kw):
        v = Vma(self.start, self.end, self.file, self.pgoff, self.noreserve, self.modes,
                self.ctx, self.event_fork, self.hgm, self.shared, self.resv, self.anon_vma,
                self.resv_unmapped)
        v.prot = self.prot
        for k, x in kw.items():
            setattr(v, k, x)
        return v

    def vm_flags(self):
        """What page_table_shareable() compares."""
        return (self.shared, self.noreserve, self.modes, self.hgm, self.prot)

    def key(self):
        """Comparable with hgmviz.Vma: (start, end, file, pgoff, noreserve, modes, event_fork, hgm,
        shared, owns a reserve map, anon_vma, resv_unmapped)."""
        return (self.start, self.end, self.file, self.pgoff, self.noreserve,
                tuple(m for m in _MODES if m in self.modes), self.event_fork, self.hgm,
                self.shared, self.resv is not None, self.anon_vma, self.resv_unmapped, self.prot)


class _File:
    def __init__(self, fid, hstate, size):
        self.id = fid
        self.hstate = hstate            # an hgmviz.geometry.Hstate
        self.i_size = size
        self.pc = {}                    # page cache: hugepage index -> folio id
        self.resv_map = set()           # the inode's reserve map (hugepage indices)
        self.fd_open = True
        self.released = False


class _Mm:
    def __init__(self, pid, levels):
        self.pid = pid
        self.alive = True
        self.root = Table(levels)
        self.vmas = []                  # sorted by start


class _State:
    def __init__(self):
        self.files = {}
        self.mms = {}
        self.folio_owner = {}           # folio id -> (file id, index) while in a page cache
        self.leaked = {}                # folio id -> references an error path never put
        self.locked = set()             # folios an error path left locked
        self.next_pid = 1
        self.next_file = 0
        self.next_ctx = 1


# ------------------------------------------------------------------------- handles ---
class RefFolio:
    def __init__(self, m, fid):
        self._m, self.id = m, fid

    def __eq__(self, other):
        return isinstance(other, RefFolio) and other._m is self._m and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return "<RefFolio %d refcount %d entire_mapcount %d>" % (self.id, self.refcount,
                                                                  self.entire_mapcount)

    @property
    def pfn(self):
        return self._m._folio_pfn[self.id]

    @property
    def hstate(self):
        return self._m._folio_hstate[self.id]

    @property
    def nr_pages(self):
        return self.hstate.pages_per_huge_page()

    @property
    def in_use(self):
        return self._m._in_use(self.id)

    @property
    def index(self):
        owner = self._m._s.folio_owner.get(self.id)
        return None if owner is None else owner[1]

    @property
    def refcount(self):
        return self._m._refcount(self.id)

    @property
    def entire_mapcount(self):
        return self._m._entire_mapcount(self.id)

    @property
    def locked(self):
        return self.id in self._m._s.locked

    @property
    def leaked_refs(self):
        return self._m._s.leaked.get(self.id, 0)

    def page_mapcount(self, index):
        index = _int("index", index)
        if index >= self.nr_pages:
            raise IndexError("page index %d out of range" % index)
        return self.entire_mapcount


class RefPagemapEntry(namedtuple("RefPagemapEntry", "pfn folio index shift")):
    @property
    def size(self):
        return 1 << self.shift


class RefFile:
    def __init__(self, m, fid):
        self._m, self.id = m, fid

    @property
    def _st(self):
        return self._m._s.files[self.id]

    @property
    def hstate(self):
        return self._st.hstate

    @property
    def size(self):
        return self._st.i_size

    @property
    def closed(self):
        return not self._st.fd_open

    def folio_at(self, offset):
        offset = _int("offset", offset)
        fid = self._st.pc.get(offset >> self._st.hstate.shift)
        return None if fid is None else RefFolio(self._m, fid)

    def close(self):
        return self._m._op(self._m._sys_close, self)

    def fallocate(self, offset, length, mode=0):
        return self._m._op(self._m._sys_fallocate, self, offset, length, mode)

    def ftruncate(self, size):
        return self._m._op(self._m._sys_ftruncate, self, size)


class RefProcess:
    def __init__(self, m, pid):
        self._m, self.pid = m, pid

    def __eq__(self, other):
        return isinstance(other, RefProcess) and other._m is self._m and other.pid == self.pid

    def __hash__(self):
        return hash(self.pid)

    @property
    def alive(self):
        return self._m._s.mms[self.pid].alive

    @property
    def vmas(self):
        return tuple(v.key() for v in self._m._s.mms[self.pid].vmas)

    def mmap(self, file, length, offset=0, shared=True, addr=None, noreserve=False):
        return self._m._op(self._m._sys_mmap, self, file, length, offset, shared, addr, noreserve)

    def munmap(self, addr, length):
        return self._m._op(self._m._sys_munmap, self, addr, length)

    def madvise(self, addr, length, advice):
        return self._m._op(self._m._sys_madvise, self, addr, length, advice)

    def touch(self, addr, write=True):
        return self._m._op(self._m._sys_touch, self, addr, write)

    def mprotect(self, addr, length, prot):
        return self._m._op(self._m._sys_mprotect, self, addr, length, prot)

    def uffdio_copy(self, addr, length):
        return self._m._op(self._m._sys_uffdio_copy, self, addr, length)

    def uffdio_wake(self, addr, length):
        return self._m._op(self._m._sys_uffdio_wake, self, addr, length)

    def mremap(self, old_addr, old_len, new_len, flags=0, new_addr=None):
        return self._m._op(self._m._sys_mremap, self, old_addr, old_len, new_len, flags, new_addr)

    def fork(self):
        return self._m._op(self._m._sys_fork, self)

    def exit(self):
        return self._m._op(self._m._sys_exit, self)

    def uffdio_register(self, addr, length, mode="missing", event_fork=False):
        return self._m._op(self._m._sys_uffdio_register, self, addr, length, mode, event_fork)

    def uffdio_unregister(self, addr, length):
        return self._m._op(self._m._sys_uffdio_unregister, self, addr, length)

    def uffdio_continue(self, addr, length):
        return self._m._op(self._m._sys_uffdio_continue, self, addr, length)

    def uffdio_continue_batch(self, addr, length, piece):
        return self._m._op(self._m._sys_uffdio_continue_batch, self, addr, length, piece)

    def pagemap(self, addr):
        return self._m._pagemap(self, addr)


# ------------------------------------------------------------------------- machine ---
class RefMachine:
    """The reference machine.  Same constructor arguments as ``hgmviz.Machine`` (the subset
    the equivalence test uses)."""

    def __init__(self, nr_hugepages=None, geometry="x86_64", scheme="mainline", kernel="6.2",
                 guard=None, errors="proposed", tables_hold=False):
        """``tables_hold``: an hstate-level entry that points to a table holds a reference on
        the folio that table was allocated for (the ``hstate_present`` scheme, HGM RFC v1's
        rule), so a folio the page cache lets go stays in use while such a table is live.
        ``guard``, ``errors``: as ``hgmviz.Machine``'s (see the refcount guards below)."""
        self.tables_hold = tables_hold
        self.geometry = g = get_geometry(geometry)
        if scheme not in ("mainline", "per_piece"):
            raise ValueError("the reference model knows 'mainline' and 'per_piece', not %r"
                             % (scheme,))
        if guard not in (None, "int_max_half", "sign", "sign_posted"):
            raise ValueError("unknown guard %r" % (guard,))
        self.guard = guard
        self.errors = errors
        self.scheme = scheme
        self.hgm = scheme == "per_piece"
        self.kernel_version = _parse_version(kernel)
        self.PS = g.PAGE_SIZE
        self.PTRS = g.PTRS_PER_TABLE
        self.TOP = g.levels
        self.PUD_SIZE = g.level_size(3)
        self.task_size = g.TASK_SIZE
        nr_hugepages = dict(nr_hugepages or {})
        counts = {h.index: 0 for h in g.hstates}
        for size, n in nr_hugepages.items():
            counts[g.hstate(size).index] = _int("nr_hugepages", n)
        # pool layout: per hstate, in order, a naturally aligned run of pfns; ids in that order
        self._folio_pfn, self._folio_hstate = [], []
        self._pool = {}
        pfn = _PFN_BASE
        for h in g.hstates:
            pfn = -(-pfn // (1 << h.order)) * (1 << h.order)
            ids = []
            for _ in range(counts[h.index]):
                ids.append(len(self._folio_pfn))
                self._folio_pfn.append(pfn)
                self._folio_hstate.append(h)
                pfn += 1 << h.order
            self._pool[h.index] = ids
        self._s = _State()
        self._cache = None

    # ---- operation protocol: run on the state, throw it away on failure ------------------
    def _op(self, fn, *args):
        saved = copy.deepcopy(self._s)
        self._cache = None
        try:
            return fn(*args)
        except (PartialProgress, StateKept):
            raise                      # the kernel keeps what it did before the failure
        except SigBus as e:
            if not e.kept:             # kept: the posted v2 35/46 error path's leak stays
                self._s = saved
            raise
        except BaseException:
            self._s = saved
            raise
        finally:
            self._cache = None

    # ---- geometry helpers --------------------------------------------------------------
    def _shift(self, level):
        return self.geometry.level_shift(level)

    def _size(self, level):
        return 1 << self._shift(level)

    def _idx(self, addr, level):
        return (addr >> self._shift(level)) & (self.PTRS - 1)

    def _level_of_size(self, size):
        for lvl in range(1, self.TOP):
            if self._size(lvl) == size:
                return lvl
        raise AssertionError(size)

    def _hs(self, vma):
        return self._s.files[vma.file].hstate

    def _file_index(self, vma, addr):
        """(hugepage index in the file, page index inside that hugepage) for ``addr``."""
        h = self._hs(vma)
        pidx = ((addr - vma.start) >> self.geometry.page_shift) + vma.pgoff
        return pidx >> h.order, pidx & ((1 << h.order) - 1)

    # ---- counters, recomputed from the page tables --------------------------------------
    def _live_tables(self):
        """Every page-table page reachable from a live process, once each."""
        seen, out = set(), []
        stack = [mm.root for mm in self._s.mms.values() if mm.alive]
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            out.append(t)
            stack.extend(e for e in t.slots.values() if isinstance(e, Table))
        return out

    def _leaf_counts(self):
        if self._cache is None:
            counts = {}
            for t in self._live_tables():
                for e in t.slots.values():
                    if isinstance(e, Leaf):
                        counts[e.folio] = counts.get(e.folio, 0) + 1
            self._cache = counts
        return self._cache

    def _wrap(self, x):
        half = 1 << (self.geometry.counter_bits - 1)
        return ((x + half) % (2 * half)) - half

    def _pagecache_refs(self, fid):
        if fid not in self._s.folio_owner:
            return 0
        return self._folio_hstate[fid].pages_per_huge_page() if self.kernel_version >= (6, 7) else 1

    def _refcount(self, fid):
        return self._wrap(self._pagecache_refs(fid) + self._leaf_counts().get(fid, 0)
                          + self._s.leaked.get(fid, 0))

    # ---- refcount guards (D 1.4, 5; HGM v2 35/46) ------------------------------------------
    # Each new reference is checked against the count before it: int_max_half refuses above
    # INT_MAX/2, sign at <= 0 (try_get_page).  sign_posted is v2 35/46 as posted on the lookup
    # paths (fault, UFFDIO_CONTINUE: hugetlb_try_find_lock_folio): filemap_lock_folio() takes
    # the reference first and the test sees the count after it; when it refuses, that
    # reference and the folio lock are never given back.  Elsewhere (fork) it checks as sign.
    def _refuses(self, fid, n=1, lookup=True, ref=None):
        """None when ``n`` more references on ``fid`` (whose count is ``ref``, by default the
        current one) are all admitted; "refused" or "leak" (sign_posted on a lookup path) for
        the first one that is not."""
        guard = self.guard
        if guard == "sign_posted" and not lookup:
            guard = "sign"
        int_max = (1 << (self.geometry.counter_bits - 1)) - 1
        if ref is None:
            self._cache = None              # leaves may have changed earlier in this operation
            ref = self._refcount(fid)
        for _ in range(n):
            if guard == "int_max_half" and ref > int_max // 2:
                return "refused"
            if guard == "sign" and ref <= 0:
                return "refused"
            if guard == "sign_posted" and self._wrap(ref + 1) <= 0:
                return "leak"
            ref = self._wrap(ref + 1)
        return None

    def _leak(self, fid):
        self._s.leaked[fid] = self._s.leaked.get(fid, 0) + 1
        self._s.locked.add(fid)

    def _guard_errno(self):
        return errno.ENOMEM if self.errors == "proposed" else errno.EFAULT

    def _fault_guard(self, fid, addr):
        """The guard on a fault's new reference: SIGBUS (kept, with the leak, as posted)."""
        verdict = self._refuses(fid)
        if verdict == "leak":
            self._leak(fid)
        if verdict:
            raise SigBus(addr, "refcount guard", kept=verdict == "leak")

    def _check_not_locked(self, st, first, last):
        for idx in range(first, last + 1):
            fid = st.pc.get(idx)
            if fid is not None and fid in self._s.locked:
                raise TaskHung(fid, "folio_lock() on a folio left locked")

    def _entire_mapcount(self, fid):
        return self._wrap(self._leaf_counts().get(fid, 0) - 1) + 1

    # ---- read-only views ---------------------------------------------------------------
    @property
    def folios(self):
        return tuple(RefFolio(self, i) for i in range(len(self._folio_pfn)))

    def meminfo(self):
        out = {}
        for h in self.geometry.hstates:
            out[h.size] = {"HugePages_Total": len(self._pool[h.index]),
                           "HugePages_Free": self._nr_free(h),
                           "HugePages_Rsvd": self._nr_rsvd(h),
                           "HugePages_Surp": 0,
                           "Hugepagesize": h.size >> 10}
        return out

    def _in_use(self, fid):
        """In a page cache, or an anonymous folio some leaf maps (it is freed with its last
        mapping)."""
        if fid in self._s.folio_owner or self._leaf_counts().get(fid, 0) > 0:
            return True
        return self.tables_hold and any(t.folio == fid for t in self._live_tables())

    def _nr_free(self, h):
        self._cache = None
        return sum(1 for f in self._pool[h.index] if not self._in_use(f))

    def _nr_rsvd(self, h):
        shared = sum(1 for st in self._s.files.values() if st.hstate == h
                     for idx in st.resv_map if idx not in st.pc)
        private = 0
        for mm in self._s.mms.values():
            for v in mm.vmas:
                if v.resv is not None and self._hs(v) == h:
                    first = v.pgoff >> h.order
                    private += sum(1 for i in range(first, first + ((v.end - v.start) >> h.shift))
                                   if i not in v.resv)
        return shared + private

    def _pagemap(self, proc, addr):
        mm = self._s.mms[proc.pid]
        addr = _int("addr", addr)
        if not mm.alive or addr >= self.task_size:
            return None
        t, e = self._walk(mm.root, addr)
        if not isinstance(e, Leaf):
            return None
        sh = self._shift(e.level)
        index = e.index + ((addr & ((1 << sh) - 1)) >> self.geometry.page_shift)
        return RefPagemapEntry(self._folio_pfn[e.folio] + index, RefFolio(self, e.folio), index, sh)

    # ---- page-table primitives ----------------------------------------------------------
    def _walk(self, root, addr, stop_level=1):
        """Descend through present tables towards ``stop_level``: (table, entry) where entry
        is the first entry that is not a table (None = none) or the entry at stop_level."""
        t = root
        while True:
            e = t.slots.get(self._idx(addr, t.level))
            if isinstance(e, Table) and t.level > stop_level:
                t = e
                continue
            return t, e

    def _table_at(self, root, addr, level):
        """The existing table whose entries are at ``level`` on addr's path, or None."""
        t = root
        while t.level > level:
            e = t.slots.get(self._idx(addr, t.level))
            if not isinstance(e, Table):
                return None
            t = e
        return t

    def _alloc_tables(self, mm, vma, addr, level, share=True):
        """huge_pte_alloc + hugetlb_hgm_walk(alloc): allocate tables down to the one whose
        entries are at ``level``; None if a leaf above ``level`` is in the way.  At the PUD
        entry of a PMD-level hstate, huge_pmd_share may attach another process's table."""
        t = mm.root
        hl = self._hs(vma).level
        while t.level > level:
            i = self._idx(addr, t.level)
            e = t.slots.get(i)
            if e is None:
                if share and t.level == 3 and hl == 2 and self._want_pmd_share(vma, addr):
                    e = self._huge_pmd_share(mm, vma, addr)
                if e is None:
                    e = Table(t.level - 1)
                t.slots[i] = e
            elif isinstance(e, Leaf):
                return None
            t = e
        return t

    def _clear_leaves(self, t):
        """Drop every leaf below ``t`` and keep the tables (zap does not free page tables)."""
        for i, e in list(t.slots.items()):
            if isinstance(e, Leaf):
                del t.slots[i]
            else:
                self._clear_leaves(e)

    def _clone(self, e):
        if isinstance(e, Leaf):
            return e
        t = Table(e.level, e.folio)
        t.slots = {i: self._clone(x) for i, x in e.slots.items()}
        return t

    # ---- PMD sharing --------------------------------------------------------------------
    def _want_pmd_share(self, vma, addr):
        base = addr & ~(self.PUD_SIZE - 1)
        return (self._hs(vma).level == 2 and vma.shared and not vma.hgm
                and not vma.modes & {"wp", "minor"}
                and vma.start <= base and base + self.PUD_SIZE <= vma.end)

    def _huge_pmd_share(self, mm, vma, addr):
        """The PMD table of a VMA that page_table_shareable() accepts, or None."""
        ps = self.geometry.page_shift
        pidx = ((addr - vma.start) >> ps) + vma.pgoff
        for pid in sorted(self._s.mms):
            other = self._s.mms[pid]
            if not other.alive:
                continue
            for s in other.vmas:
                if s is vma or s.file != vma.file:
                    continue
                if not s.pgoff <= pidx < s.pgoff + ((s.end - s.start) >> ps):
                    continue
                saddr = s.start + ((pidx - s.pgoff) << ps)
                sbase = saddr & ~(self.PUD_SIZE - 1)
                if self._idx(saddr, 2) != self._idx(addr, 2) or s.vm_flags() != vma.vm_flags():
                    continue
                if not (s.start <= sbase and sbase + self.PUD_SIZE <= s.end):
                    continue
                pud = self._table_at(other.root, saddr, 3)
                if pud is not None:
                    e = pud.slots.get(self._idx(saddr, 3))
                    if isinstance(e, Table):
                        return e
        return None

    def _referrers(self, table):
        """How many PUD entries of live processes point at ``table``."""
        n = 0
        for t in self._live_tables():
            if t.level == 3:
                n += sum(1 for e in t.slots.values() if e is table)
        return n

    def _unshare_at(self, mm, addr):
        """huge_pmd_unshare: detach mm from the shared PMD table covering ``addr``, if any."""
        pud = self._table_at(mm.root, addr, 3)
        if pud is None:
            return False
        i = self._idx(addr, 3)
        e = pud.slots.get(i)
        if isinstance(e, Table) and self._referrers(e) > 1:
            del pud.slots[i]
            return True
        return False

    def _unshare_range(self, mm, start, end):
        """hugetlb_unshare_all_pmds over [start, end) (PMD-level hstates only)."""
        a = start & ~(self.PUD_SIZE - 1)
        while a < end:
            self._unshare_at(mm, a)
            a += self.PUD_SIZE

    # ---- zap and free --------------------------------------------------------------------
    def _zap(self, mm, vma, s, e):
        """__unmap_hugepage_range over hugepage-aligned [s, e)."""
        h = self._hs(vma)
        a = s
        while a < e:
            if h.level == 2 and self._unshare_at(mm, a):
                a = (a | (self.PUD_SIZE - 1)) + 1
                continue
            t = self._table_at(mm.root, a, h.level)
            if t is not None:
                i = self._idx(a, h.level)
                x = t.slots.get(i)
                if isinstance(x, Leaf):
                    del t.slots[i]
                elif isinstance(x, Table):
                    self._clear_leaves(x)
            a += h.size

    def _free_pgtables(self, mm, start, end, floor, ceiling):
        """free_pgd_range: free every table under an entry whose range overlaps [start, end)
        and lies inside [floor, ceiling) (ceiling None: no limit)."""
        def visit(t, base_of_t):
            for i, x in list(t.slots.items()):
                if not isinstance(x, Table):
                    continue
                lo = base_of_t + (i << self._shift(t.level))
                hi = lo + self._size(t.level)
                if hi <= start or lo >= end:
                    continue
                if lo >= floor and (ceiling is None or hi <= ceiling):
                    del t.slots[i]
                else:
                    visit(x, lo)
        visit(mm.root, 0)

    # ---- VMAs ----------------------------------------------------------------------------
    def _find_vma(self, mm, addr):
        for v in mm.vmas:
            if v.start <= addr < v.end:
                return v
        return None

    def _check_split(self, mm, points):
        for v in mm.vmas:
            hs = self._hs(v).size
            for p in points:
                if v.start < p < v.end and p % hs:
                    raise _err(errno.EINVAL, "split of a hugetlb VMA off a hugepage boundary")

    def _split(self, mm, v, p):
        """__split_vma at p (hugepage aligned); hugetlb_split unshares the PMD table there."""
        i = mm.vmas.index(v)
        delta = (p - v.start) >> self.geometry.page_shift
        lo, hi = v.copy(end=p), v.copy(start=p, pgoff=v.pgoff + delta)
        mm.vmas[i:i + 1] = [lo, hi]
        if p % self.PUD_SIZE and self._hs(v).level == 2:
            self._unshare_at(mm, p)
        return lo, hi

    def _split_range(self, mm, start, end, which=None):
        """Split the VMAs (or only those ``which`` accepts) so that start and end are
        boundaries; return the VMAs inside [start, end) afterwards."""
        for p in (start, end):
            v = self._find_vma(mm, p)
            if v is not None and v.start < p and (which is None or which(v)):
                self._split(mm, v, p)
        return [v for v in mm.vmas if start <= v.start and v.end <= end]

    def _maybe_release(self, fid):
        """hugetlbfs_evict_inode when the last reference (fd or VMA) is gone."""
        st = self._s.files[fid]
        if st.fd_open or st.released:
            return
        if any(v.file == fid for mm in self._s.mms.values() if mm.alive for v in mm.vmas):
            return
        for idx in sorted(st.pc):                       # remove_inode_hugepages: folio_lock()
            if st.pc[idx] in self._s.locked:
                raise TaskHung(st.pc[idx], "folio_lock() on a folio left locked")
        st.released = True
        for idx, folio in st.pc.items():
            del self._s.folio_owner[folio]
        st.pc = {}
        st.resv_map = set()

    def _mm(self, proc):
        if not isinstance(proc, RefProcess) or proc._m is not self:
            raise TypeError("expected a process of this machine")
        mm = self._s.mms[proc.pid]
        if not mm.alive:
            raise ProcessExited(errno.ESRCH, "ESRCH: process %d has exited" % proc.pid)
        return mm

    def _file(self, f):
        if not isinstance(f, RefFile) or f._m is not self:
            raise TypeError("expected a file of this machine")
        st = self._s.files[f.id]
        if not st.fd_open:
            raise _err(errno.EBADF, "file is closed")
        return st

    # ---- pool ------------------------------------------------------------------------------
    def _alloc_hugetlb_folio(self, st, idx):
        """alloc_hugetlb_folio + hugetlb_add_to_page_cache; LookupError when none can be had."""
        h = st.hstate
        reserved = idx in st.resv_map          # the index has a reservation (no page yet)
        if not reserved and self._nr_free(h) - self._nr_rsvd(h) <= 0:
            raise LookupError("no free hugepage")
        fid = min(f for f in self._pool[h.index] if not self._in_use(f))
        self._s.folio_owner[fid] = (st.id, idx)
        st.pc[idx] = fid
        st.resv_map.add(idx)                   # vma_commit_reservation
        return fid

    # ======================================================================= syscalls ===
    def memfd_create(self, size=0, hstate=None, name="memfd"):
        return self._op(self._sys_memfd_create, size, hstate)

    def _sys_memfd_create(self, size, hstate):
        g = self.geometry
        if hstate is None:
            hstate = g.hstates[0].size
        try:
            h = g.hstate(hstate)
        except ValueError as e:
            raise _err(errno.EINVAL, str(e)) from None
        size = _int("size", size)
        if size % h.size:
            raise _err(errno.EINVAL, "ftruncate: size not a multiple of the hugepage size")
        fid = self._s.next_file
        self._s.next_file += 1
        self._s.files[fid] = _File(fid, h, size)
        return RefFile(self, fid)

    def spawn(self):
        return self._op(self._sys_spawn)

    def _sys_spawn(self):
        pid = self._s.next_pid
        self._s.next_pid += 1
        self._s.mms[pid] = _Mm(pid, self.TOP)
        return RefProcess(self, pid)

    # ---- close / fallocate ------------------------------------------------------------------
    def _sys_close(self, f):
        st = self._file(f)
        st.fd_open = False
        self._maybe_release(st.id)

    def _sys_fallocate(self, f, offset, length, mode=0):
        """hugetlbfs_fallocate: vfs_fallocate refuses len <= 0 with EINVAL and PUNCH_HOLE without
        KEEP_SIZE with EOPNOTSUPP; other modes are EOPNOTSUPP.  Preallocation that runs out of
        pages keeps what it added and leaves i_size alone (ENOSPC); i_size grows only without
        KEEP_SIZE, after the loop."""
        st = self._file(f)
        offset = _int("offset", offset)
        length = _int("length", length)
        mode = _int("mode", mode)
        if length == 0:
            raise _err(errno.EINVAL, "fallocate: len must be > 0 (vfs_fallocate)")
        if mode & 2 and not mode & 1:
            raise _err(errno.EOPNOTSUPP, "fallocate: PUNCH_HOLE without KEEP_SIZE")
        if mode & ~3:
            raise _err(errno.EOPNOTSUPP, "fallocate: unsupported mode")
        h = st.hstate
        if mode & 2:
            self._punch_hole(st, offset, length)
            return 0
        start = offset >> h.shift
        end = (offset + length + h.size - 1) >> h.shift
        for idx in range(start, end):
            if idx in st.pc:
                continue
            try:
                self._alloc_hugetlb_folio(st, idx)
            except LookupError:
                raise StateKept(errno.ENOSPC, "ENOSPC: fallocate: no hugepage") from None
        if not mode & 1 and offset + length > st.i_size:
            st.i_size = offset + length
        return 0

    # ---- truncation and hole punching (hugetlb_vmtruncate, hugetlbfs_punch_hole) ----------
    # Both zap the file's pages in every VMA of every process that maps them (a private VMA's
    # anonymous pages in the range too) and drop them from the page cache; truncation also
    # drops every reserve-map entry past the new end, a hole punch only the entries of the
    # pages it removed.
    def _zap_file_range(self, st, first, last):
        h = st.hstate
        for mm in self._s.mms.values():
            if not mm.alive:
                continue
            for v in mm.vmas:
                if v.file != st.id:
                    continue
                vf = v.pgoff >> h.order
                vn = (v.end - v.start) >> h.shift
                a, b = max(vf, first), min(vf + vn, last)
                if a < b:
                    self._zap(mm, v, v.start + ((a - vf) << h.shift), v.start + ((b - vf) << h.shift))
        self._cache = None

    def _drop_pages(self, st, first, last):
        for idx in sorted(i for i in st.pc if first <= i < last):
            if st.pc[idx] in self._s.locked:            # remove_inode_hugepages: folio_lock()
                raise TaskHung(st.pc[idx], "folio_lock() on a folio left locked")
        for idx in [i for i in st.pc if first <= i < last]:
            del self._s.folio_owner[st.pc.pop(idx)]
            st.resv_map.discard(idx)
        self._cache = None

    def _punch_hole(self, st, offset, length):
        h = st.hstate
        first = -(-offset // h.size)
        last = (offset + length) // h.size
        if last > first:
            self._zap_file_range(st, first, last)
            self._drop_pages(st, first, last)

    def _sys_ftruncate(self, f, size):
        st = self._file(f)
        size = _int("size", size)
        h = st.hstate
        if size % h.size:
            raise _err(errno.EINVAL, "ftruncate: not a multiple of the hugepage size")
        if size < st.i_size:
            first = size >> h.shift
            self._zap_file_range(st, first, 1 << 62)
            self._drop_pages(st, first, 1 << 62)
            st.resv_map = {i for i in st.resv_map if i < first}
        st.i_size = size
        return 0

    # ---- mmap ----------------------------------------------------------------------------
    def _get_unmapped_area(self, mm, length, align):
        """The highest hugepage-aligned gap below mmap_base that fits, at least ``align``."""
        best = None
        tops = [self.geometry.mmap_base] + [v.start for v in mm.vmas]
        for top in tops:
            cand = (min(top, self.geometry.mmap_base) - length) // align * align
            if cand < align:
                continue
            if any(v.start < cand + length and cand < v.end for v in mm.vmas):
                continue
            if best is None or cand > best:
                best = cand
        if best is None:
            raise _err(errno.ENOMEM, "mmap: no room")
        return best

    def _sys_mmap(self, proc, f, length, offset, shared, addr, noreserve):
        mm = self._mm(proc)
        st = self._file(f)
        h = st.hstate
        length = _int("length", length)
        offset = _int("offset", offset)
        if not isinstance(shared, bool) or not isinstance(noreserve, bool):
            raise TypeError("shared and noreserve must be bools")
        if length == 0:
            raise _err(errno.EINVAL, "mmap: length 0")
        if offset % self.PS:
            raise _err(errno.EINVAL, "mmap: offset not page aligned")
        length = -(-length // h.size) * h.size           # ksys_mmap_pgoff: ALIGN(len, huge)
        if addr is None:
            start = self._get_unmapped_area(mm, length, h.size)
        else:
            start = _int("addr", addr)
            if start % h.size:
                raise _err(errno.EINVAL, "mmap(MAP_FIXED): addr not hugepage aligned")
            if start + length > self.task_size or start < h.size:
                raise _err(errno.ENOMEM, "mmap(MAP_FIXED): outside the address space")
        replaced = addr is not None and any(v.start < start + length and start < v.end
                                            for v in mm.vmas)
        if replaced:
            self._do_munmap(mm, start, start + length)
        try:
            return self._mmap_region(mm, st, h, start, length, offset, shared, noreserve)
        except OSError as e:
            if replaced and not isinstance(e, StateKept):
                # the replaced mapping is gone already: MAP_FIXED leaves a hole
                raise StateKept(e.errno, "mmap failed after MAP_FIXED unmapped the old range") from None
            raise

    def _mmap_region(self, mm, st, h, start, length, offset, shared, noreserve):
        if offset % h.size:
            raise _err(errno.EINVAL, "mmap: offset not hugepage aligned (hugetlbfs_file_mmap)")
        first = offset >> h.shift
        n = length >> h.shift
        resv = None
        if not noreserve and not shared:
            # a private VMA: its own reserve map, one reservation per page (chg = to - from)
            if self._nr_rsvd(h) + n > self._nr_free(h):
                raise _err(errno.ENOMEM, "mmap(MAP_PRIVATE): cannot reserve hugepages")
            resv = set()
        elif not noreserve:
            # hugetlb_reserve_pages: reserve what the reserve map lacks (hugetlb_acct_memory)
            chg = [i for i in range(first, first + n) if i not in st.resv_map]
            if self._nr_rsvd(h) + len(chg) > self._nr_free(h):
                raise _err(errno.ENOMEM, "mmap: cannot reserve hugepages")
            st.resv_map.update(chg)
        if offset + length > st.i_size:
            st.i_size = offset + length                   # hugetlbfs_file_mmap (VM_WRITE)
        mm.vmas.append(Vma(start, start + length, st.id, offset >> self.geometry.page_shift,
                           noreserve, shared=shared, resv=resv))
        mm.vmas.sort(key=lambda v: v.start)
        return start

    # ---- munmap / exit ---------------------------------------------------------------------
    def _check_range(self, addr, length):
        addr = _int("addr", addr)
        length = _int("length", length)
        if addr % self.PS:
            raise _err(errno.EINVAL, "addr not page aligned")
        end = addr + -(-length // self.PS) * self.PS
        if end > self.task_size:
            raise _err(errno.EINVAL, "range outside the user address space")
        return addr, length, end

    def _sys_munmap(self, proc, addr, length):
        mm = self._mm(proc)
        addr, length, end = self._check_range(addr, length)
        if length == 0:
            raise _err(errno.EINVAL, "munmap: length 0")
        self._do_munmap(mm, addr, end)

    def _do_munmap(self, mm, start, end):
        # vms_gather_munmap_vmas: the split at the start is made before the one at the end is
        # tried, and is not undone when that fails
        self._check_split(mm, (start,))
        try:
            self._check_split(mm, (end,))
        except OSError as e:
            v = self._find_vma(mm, start)
            if v is None or v.start == start:
                raise
            self._split(mm, v, start)
            raise StateKept(e.errno, "munmap: the end split failed; the start split stays") from None
        gone = self._split_range(mm, start, end)
        if not gone:
            return
        for v in gone:
            self._zap(mm, v, v.start, v.end)
        keep = [v for v in mm.vmas if v not in gone]
        floor = max([v.end for v in keep if v.end <= start], default=0)
        ceiling = min([v.start for v in keep if v.start >= end], default=None)
        for k, v in enumerate(gone):
            ceil = gone[k + 1].start if k + 1 < len(gone) else ceiling
            self._free_pgtables(mm, v.start, v.end, floor, ceil)
        mm.vmas = keep
        for fid in {v.file for v in gone}:
            self._maybe_release(fid)

    def _sys_exit(self, proc):
        mm = self._mm(proc)
        for v in mm.vmas:
            self._zap(mm, v, v.start, v.end)
        files = {v.file for v in mm.vmas}
        mm.vmas = []
        mm.root = Table(self.TOP)
        mm.alive = False
        for fid in files:
            self._maybe_release(fid)

    # ---- fork ----------------------------------------------------------------------------
    def _sys_fork(self, proc):
        parent = self._mm(proc)
        before = dict(self._leaf_counts())
        before_ref = {f: self._refcount(f) for f in range(len(self._folio_pfn))}
        child = _Mm(self._s.next_pid, self.TOP)
        self._s.next_pid += 1
        self._s.mms[child.pid] = child
        new_ctx = {}
        for v in parent.vmas:
            if v.ctx is not None and not v.event_fork:
                c = v.copy(modes=frozenset(), ctx=None, event_fork=False)   # dup_userfaultfd
            elif v.ctx is not None:
                if v.ctx not in new_ctx:
                    new_ctx[v.ctx] = self._s.next_ctx
                    self._s.next_ctx += 1
                c = v.copy(ctx=new_ctx[v.ctx])
            else:
                c = v.copy()
            if not v.shared:                          # the reserve map is not the child's
                c.resv, c.resv_unmapped = None, False
            child.vmas.append(c)
            # vma_needs_copy: userfaultfd_wp(dst_vma), or an anon_vma (a private VMA that has
            # had an anonymous page)
            if "wp" in c.modes or v.anon_vma:
                self._copy_hugetlb_page_range(parent, child, v, c)
        # copy_hugetlb_page_range takes each copied leaf's reference with the intended
        # !try_get_page() test (sign_posted checks as sign here): one refusal fails the fork
        if self.guard is not None:
            self._cache = None
            after = self._leaf_counts()
            for f, n in sorted(after.items()):
                k = n - before.get(f, 0)
                if k > 0 and self._refuses(f, k, lookup=False, ref=before_ref[f]):
                    raise _err(self._guard_errno(), "fork: refcount guard")
        return RefProcess(self, child.pid)

    def _copy_hugetlb_page_range(self, src, dst, sv, dv):
        h = self._hs(sv)
        for a in range(sv.start, sv.end, h.size):
            st = self._table_at(src.root, a, h.level)
            if st is None:                           # hugetlb_walk found no table: skip
                continue
            dt = self._alloc_tables(dst, dv, a, h.level)
            e = st.slots.get(self._idx(a, h.level))
            if e is not None:
                dt.slots[self._idx(a, h.level)] = self._clone(e)

    # ---- faults ----------------------------------------------------------------------------
    def _sys_touch(self, proc, addr, write=True):
        mm = self._mm(proc)
        addr = _int("addr", addr)
        vma = self._find_vma(mm, addr)
        if vma is None:
            raise SigSegv(addr)
        if (write and not vma.prot & 2) or not vma.prot & 7:
            raise SigSegv(addr, "access_error")
        if not vma.shared:
            return self._private_fault(mm, vma, addr, bool(write))
        t, e = self._walk(mm.root, addr)
        if isinstance(e, Leaf):
            return None                              # mapped: no fault
        self._hugetlb_fault(mm, vma, addr)

    def _hugetlb_fault(self, mm, vma, addr):
        h = self._hs(vma)
        t = self._alloc_tables(mm, vma, addr, h.level)     # huge_pte_alloc (+ huge_pmd_share)
        t, e = self._walk(t, addr)                          # HGM: through tables to the first
        if isinstance(e, Leaf):                             # none entry (v2 24/46)
            return None                                     # (present via a shared table)
        self._hugetlb_no_page(vma, addr, t)

    def _hugetlb_no_page(self, vma, addr, t):
        st = self._s.files[vma.file]
        idx, _ = self._file_index(vma, addr)
        folio = st.pc.get(idx)
        if folio is None:
            if idx >= st.i_size >> st.hstate.shift:
                raise SigBus(addr, "beyond i_size")
            if "missing" in vma.modes:
                raise UserfaultPending(addr, "missing")
            try:
                folio = self._alloc_hugetlb_folio(st, idx)
            except LookupError:
                raise SigBus(addr, "no hugepage") from None
        elif "minor" in vma.modes:
            raise UserfaultPending(addr, "minor")
        else:
            self._check_not_locked(st, idx, idx)
        self._fault_guard(folio, addr)
        base = addr & ~(self._size(t.level) - 1)
        _, pindex = self._file_index(vma, base)
        t.slots[self._idx(addr, t.level)] = Leaf(folio, pindex, t.level)

    # ---- mprotect: VMA by VMA; a VMA already at the protection is not split; a failed split
    # or a hole stops the walk and keeps what was done; shared PMD pages in a changed range
    # are unshared (hugetlb_change_protection)
    def _sys_mprotect(self, proc, addr, length, prot):
        mm = self._mm(proc)
        addr, length, prot = _int("addr", addr), _int("length", length), _int("prot", prot)
        if addr % self.PS or prot & ~7:
            raise _err(errno.EINVAL, "mprotect: bad addr or prot")
        end = addr + -(-length // self.PS) * self.PS
        if end == addr:
            return 0
        if end > self.task_size:
            raise _err(errno.ENOMEM, "mprotect: outside the address space")
        vs = [v for v in mm.vmas if v.start < end and addr < v.end]
        if not vs or vs[0].start > addr:
            raise _err(errno.ENOMEM, "mprotect: no VMA at the start")
        tmp, changed, err = vs[0].start, 0, None
        for v in vs:
            if v.start != tmp:
                err = errno.ENOMEM
                break
            a, b = max(addr, v.start), min(end, v.end)
            if v.prot != prot:
                if any(v.start < x < v.end and x % self._hs(v).size for x in (a, b)):
                    err = errno.EINVAL
                    break
                for piece in self._split_range(mm, a, b, which=lambda x: x is v or
                                               (x.start < b and a < x.end and x.prot != prot)):
                    piece.prot = prot
                self._unshare_range(mm, a, b)
                changed += 1
            tmp = b
        if err is None and tmp < end:
            err = errno.ENOMEM
        if err is not None:
            if changed:
                raise StateKept(err, "mprotect: stopped; earlier VMAs changed")
            raise _err(err, "mprotect failed")
        return 0

    # ---- UFFDIO_COPY: hugepage by hugepage in one registered VMA; a page the shared file's
    # page cache holds or a present entry is EEXIST; the page takes the reservation (ENOMEM
    # without one); shared: into the page cache (EFAULT past i_size); private: anonymous; an
    # error after some pages is EAGAIN with the bytes copied.  UFFDIO_WAKE changes nothing.
    def _sys_uffdio_copy(self, proc, addr, length):
        mm = self._mm(proc)
        addr, end = self._validate_range(addr, length)
        vma = self._find_vma(mm, addr)
        if vma is None or end > vma.end or vma.ctx is None:
            raise _err(errno.ENOENT, "UFFDIO_COPY: not in one registered VMA")
        h = self._hs(vma)
        if addr % h.size or (end - addr) % h.size:
            raise _err(errno.EINVAL, "UFFDIO_COPY: not hugepage aligned")
        st = self._s.files[vma.file]
        done = 0
        for a in range(addr, end, h.size):
            try:
                self._copy_one(mm, vma, h, st, a)
            except OSError as e:
                if done:
                    raise PartialProgress(done, e) from None
                raise
            done += h.size
        return done

    def _copy_one(self, mm, vma, h, st, a):
        idx, _ = self._file_index(vma, a)
        if vma.shared and idx in st.pc:
            raise _err(errno.EEXIST, "UFFDIO_COPY: in the page cache")
        _, e = self._walk(mm.root, a)
        if isinstance(e, Leaf) or self._table_at(mm.root, a, h.level - 1) is not None:
            raise _err(errno.EEXIST, "UFFDIO_COPY: present")
        if vma.shared:
            if idx >= st.i_size >> h.shift:
                raise _err(errno.EFAULT, "UFFDIO_COPY: past i_size")
            try:
                folio = self._alloc_hugetlb_folio(st, idx)
            except LookupError:
                raise _err(errno.ENOMEM, "UFFDIO_COPY: no hugepage") from None
        else:
            try:
                folio = self._alloc_anon(vma, idx, False)
            except LookupError:
                raise _err(errno.ENOMEM, "UFFDIO_COPY: no hugepage") from None
            vma.anon_vma = True
        t = self._alloc_tables(mm, vma, a, h.level)
        t.slots[self._idx(a, h.level)] = Leaf(folio, 0, h.level)
        self._cache = None

    def _sys_uffdio_wake(self, proc, addr, length):
        self._mm(proc)
        self._validate_range(addr, length)
        return 0

    # ---- mremap (hugetlb): lengths rounded up to the hugepage, no growth, aligned addresses;
    # a shrink unmaps the tail; MREMAP_FIXED|MAYMOVE unmaps the target, shrinks the source and
    # moves the entries (a PMD page shared with another process is unshared, not moved); the
    # new VMA takes the reserve map
    def _sys_mremap(self, proc, old, old_len, new_len, flags, new_addr):
        mm = self._mm(proc)
        old, old_len, new_len, flags = (_int("old", old), _int("old_len", old_len),
                                        _int("new_len", new_len), _int("flags", flags))
        if flags & ~7 or (flags & 2 and not flags & 1):
            raise _err(errno.EINVAL, "mremap: flags")
        if flags & 2:
            new_addr = _int("new_addr", new_addr)
        if old % self.PS:
            raise _err(errno.EINVAL, "mremap: old not page aligned")
        old_len = -(-old_len // self.PS) * self.PS
        new_len = -(-new_len // self.PS) * self.PS
        if not new_len:
            raise _err(errno.EINVAL, "mremap: new_len 0")
        vma = self._find_vma(mm, old)
        if vma is None:
            raise _err(errno.EFAULT, "mremap: no VMA")
        if flags & 4:
            raise _err(errno.EINVAL, "mremap: DONTUNMAP")
        hs = self._hs(vma).size
        old_len, new_len = -(-old_len // hs) * hs, -(-new_len // hs) * hs
        if old % hs or (flags & 2 and new_addr % hs) or new_len > old_len:
            raise _err(errno.EINVAL, "mremap: hugetlb alignment or growth")
        if not flags & 2:
            if old_len > new_len:
                self._do_munmap(mm, old + new_len, old + old_len)
            return old
        if new_addr + new_len > self.task_size or (new_addr < old + old_len and
                                                   old < new_addr + new_len):
            raise _err(errno.EINVAL, "mremap: target")
        if vma.hgm:
            raise Unsupported("mremap of an HGM VMA")
        if old_len > vma.end - old:
            raise _err(errno.EFAULT, "mremap: not inside one VMA")
        if any(v.start < new_addr + new_len and new_addr < v.end for v in mm.vmas):
            self._do_munmap(mm, new_addr, new_addr + new_len)
        if old_len > new_len:
            self._do_munmap(mm, old + new_len, old + old_len)
        self._check_split(mm, (old, old + new_len))
        piece = [v for v in self._split_range(mm, old, old + new_len)][0]
        new = piece.copy(start=new_addr, end=new_addr + new_len)
        mm.vmas.append(new)
        mm.vmas.sort(key=lambda v: v.start)
        h = self._hs(piece)
        self._unshare_range(mm, old, old + new_len)
        for a in range(old, old + new_len, h.size):
            t, e = self._walk(mm.root, a)
            if isinstance(e, Leaf):
                del t.slots[self._idx(a, t.level)]
                self._set_leaf(mm, new, new_addr + (a - old), e.folio, share=False)
        piece.resv = None
        self._do_munmap(mm, old, old + new_len)
        self._cache = None
        return new_addr

    # ---- MAP_PRIVATE -----------------------------------------------------------------------
    # A private VMA maps the page cache's page read-only, or an anonymous folio of its own
    # (never in a page cache); a write to a page it does not own alone (an anonymous folio
    # mapped by one leaf) copies it.  The owner of the reserve map uses a reservation for an
    # index only once, and not for the copy of a page it shares after fork; when the owner's
    # copy cannot be had, the other private non-owner VMAs mapping that page lose it and get
    # SIGBUS on their next fault (hugetlb_no_page, hugetlb_wp, unmap_ref_private).
    def _alloc_anon(self, vma, idx, avoid_reserve):
        h = self._hs(vma)
        use_resv = not avoid_reserve and vma.resv is not None and idx not in vma.resv
        if not use_resv and self._nr_free(h) - self._nr_rsvd(h) <= 0:
            raise LookupError("no free hugepage")
        fid = min(f for f in self._pool[h.index] if not self._in_use(f))
        if vma.resv is not None:
            vma.resv.add(idx)
        return fid

    def _set_leaf(self, mm, vma, addr, folio, share=True, guarded=False):
        h = self._hs(vma)
        if guarded:
            self._fault_guard(folio, addr)
        t = self._alloc_tables(mm, vma, addr, h.level, share)
        t.slots[self._idx(addr, h.level)] = Leaf(folio, 0, h.level)
        self._cache = None

    def _private_fault(self, mm, vma, addr, write):
        h = self._hs(vma)
        st = self._s.files[vma.file]
        idx, _ = self._file_index(vma, addr)
        t, e = self._walk(mm.root, addr)
        if not isinstance(e, Leaf):
            if vma.resv_unmapped:
                raise SigBus(addr, "HPAGE_RESV_UNMAPPED")
            folio = st.pc.get(idx)
            if folio is None:
                if idx >= st.i_size >> h.shift:
                    raise SigBus(addr, "beyond i_size")
                if "missing" in vma.modes:
                    raise UserfaultPending(addr, "missing")
                try:
                    folio = self._alloc_anon(vma, idx, False)
                except LookupError:
                    raise SigBus(addr, "no hugepage") from None
                vma.anon_vma = True
                self._set_leaf(mm, vma, addr, folio, guarded=True)
                return None
            if "minor" in vma.modes:
                raise UserfaultPending(addr, "minor")
            self._set_leaf(mm, vma, addr, folio, guarded=True)
            if not write:
                return None
            old = folio
        elif not write:
            return None
        else:
            old = e.folio
        anon = old not in self._s.folio_owner
        if anon and self._leaf_counts()[old] == 1:
            return None                                   # the exclusive owner reuses it
        outside = vma.resv is not None and old != st.pc.get(idx)
        try:
            new = self._alloc_anon(vma, idx, outside)
        except LookupError:
            if outside:
                self._unmap_ref_private(mm, vma, old, addr)
                if self._leaf_counts().get(old, 0) == 1:
                    return None
            raise SigBus(addr, "no hugepage for the copy") from None
        vma.anon_vma = True
        self._set_leaf(mm, vma, addr, new, guarded=True)
        return None

    def _unmap_ref_private(self, mm, vma, old, addr):
        h = self._hs(vma)
        pgoff = (((addr & ~(h.size - 1)) - vma.start) >> self.geometry.page_shift) + vma.pgoff
        for other in self._s.mms.values():
            if not other.alive:
                continue
            for v in other.vmas:
                if v is vma or v.file != vma.file or v.shared or v.resv is not None:
                    continue
                n = (v.end - v.start) >> self.geometry.page_shift
                if not v.pgoff <= pgoff < v.pgoff + n:
                    continue
                a = v.start + ((pgoff - v.pgoff) << self.geometry.page_shift)
                t, e = self._walk(other.root, a)
                if isinstance(e, Leaf) and e.folio == old:
                    self._zap(other, v, a, a + h.size)
                    v.resv_unmapped = True
        self._cache = None

    # ---- madvise ---------------------------------------------------------------------------
    def _sys_madvise(self, proc, addr, length, advice):
        mm = self._mm(proc)
        if advice not in _ADVICE or (advice == MADV_SPLIT and not self.hgm):
            raise _err(errno.EINVAL, "madvise: unknown advice")
        # do_madvise: start page aligned, then "if (end == start) return 0;"; there is no
        # TASK_SIZE check: a range beyond it simply meets no VMA (ENOMEM below)
        addr = _int("addr", addr)
        length = _int("length", length)
        if addr % self.PS:
            raise _err(errno.EINVAL, "madvise: start not page aligned")
        # "len = PAGE_ALIGN(len_in); if (len_in && !len) return -EINVAL; end = start + len;
        # if (end < start) return -EINVAL": unsigned long arithmetic, so an aligned length or an
        # end that wraps past 2^64 is EINVAL before any VMA is looked at (issue 17 item 4)
        aligned = -(-length // self.PS) * self.PS
        if length >= 1 << 64 or aligned >= 1 << 64 or addr + aligned >= 1 << 64:
            raise _err(errno.EINVAL, "madvise: the range wraps past 2^64")
        end = addr + aligned
        if length == 0:
            return 0
        vs = [v for v in mm.vmas if v.start < end and addr < v.end]
        if not vs:
            raise _err(errno.ENOMEM, "madvise: no VMA in the range")
        if advice == MADV_COLLAPSE and not self.hgm:
            raise _err(errno.EINVAL, "MADV_COLLAPSE: hugetlb VMAs are not THP-eligible")
        covered = sum(min(end, v.end) - max(addr, v.start) for v in vs)
        if advice == MADV_DONTNEED:
            plan = []
            for v in vs:
                hs = self._hs(v).size
                s, e = max(addr, v.start), min(end, v.end)
                if s % hs:
                    raise _err(errno.EINVAL, "MADV_DONTNEED: start not hugepage aligned")
                e -= e % hs
                if s < e:
                    plan.append((v, s, e))
            for v, s, e in plan:
                self._zap(mm, v, s, e)
        elif advice == MADV_REMOVE:
            for k, v in enumerate(vs):
                if not v.shared:
                    if k:
                        raise StateKept(errno.EACCES, "EACCES: MADV_REMOVE on a private VMA")
                    raise _err(errno.EACCES, "MADV_REMOVE on a private VMA")
                s_, e_ = max(addr, v.start), min(end, v.end)
                self._punch_hole(self._s.files[v.file], (s_ - v.start) + (v.pgoff << self.geometry.page_shift), e_ - s_)
        elif advice == MADV_SPLIT:
            self._check_split(mm, (addr, end))
            for v in self._split_range(mm, addr, end):
                if not v.hgm:
                    i = mm.vmas.index(v)
                    mm.vmas[i] = v.copy(hgm=True)
                    if self._hs(v).level == 2:
                        self._unshare_range(mm, v.start, v.end)
        else:
            for v in vs:
                if v.hgm:
                    self._hugetlb_collapse(mm, v, max(addr, v.start), min(end, v.end))
        if covered < end - addr:        # a hole: the mapped parts had the advice, then ENOMEM
            raise StateKept(errno.ENOMEM, "ENOMEM: madvise: range not fully mapped")
        return 0

    def _largest_piece(self, h, pos, end):
        """hugetlb_alloc_largest_pte: the largest leaf size <= the hugepage, aligned at pos,
        that fits in [pos, end)."""
        for lvl in range(h.level, 0, -1):
            size = self._size(lvl)
            if pos % size == 0 and pos + size <= end:
                return lvl
        return None

    def _hugetlb_collapse(self, mm, vma, s, e):
        """HGM v2 34/46 __hugetlb_collapse: each largest aligned piece mapped by tables becomes
        one leaf; an entry with no table below it (a hole, or a leaf) is skipped."""
        h = self._hs(vma)
        st = self._s.files[vma.file]
        pos = s
        while pos < e:
            lvl = self._largest_piece(h, pos, e)
            size = self._size(lvl)
            idx, pindex = self._file_index(vma, pos)
            if idx in st.pc:
                t, x = self._walk(mm.root, pos, stop_level=lvl)
                if t.level == lvl and isinstance(x, Table):
                    del t.slots[self._idx(pos, lvl)]          # drop every leaf, free tables
                    t.slots[self._idx(pos, lvl)] = Leaf(st.pc[idx], pindex, lvl)
            pos += size

    # ---- userfaultfd -----------------------------------------------------------------------
    def _validate_range(self, addr, length):
        """validate_range (fs/userfaultfd.c)."""
        addr = _int("addr", addr)
        length = _int("length", length)
        if addr % self.PS or length % self.PS or length == 0 or addr >= self.task_size \
                or length > self.task_size - addr:
            raise _err(errno.EINVAL, "userfaultfd: bad range")
        return addr, addr + length

    def _parse_modes(self, mode):
        if isinstance(mode, str):
            parts = [p.strip() for p in mode.split("|")]
        elif isinstance(mode, (tuple, list, set, frozenset)):
            parts = list(mode)
        else:
            raise TypeError("bad mode %r" % (mode,))
        if not parts or any(p not in _MODES for p in parts):
            raise _err(errno.EINVAL, "UFFDIO_REGISTER: bad mode")
        return frozenset(parts)

    def _uffd_first_checks(self, mm, addr, end):
        """userfaultfd_register/unregister (current mainline): ``vma_find(&vmi, end)`` with
        ret = -EINVAL: no VMA in [start, end) is EINVAL (v6.2's ``mas_find`` version answered
        ENOMEM when no VMA ended above start); holes in the range are allowed."""
        vs = [v for v in mm.vmas if v.end > addr and v.start < end]
        if not vs:
            raise _err(errno.EINVAL, "no VMA in the range")
        if addr % self._hs(vs[0]).size:
            raise _err(errno.EINVAL, "start not aligned to the first VMA's hugepage")
        return vs

    def _sys_uffdio_register(self, proc, addr, length, mode, event_fork):
        mm = self._mm(proc)
        modes = self._parse_modes(mode)
        if not isinstance(event_fork, bool):
            raise TypeError("event_fork must be a bool")
        addr, end = self._validate_range(addr, length)
        vs = self._uffd_first_checks(mm, addr, end)
        for cur in vs:
            if cur.start < end <= cur.end and end % self._hs(cur).size:
                raise _err(errno.EINVAL, "end not hugepage aligned")
            if cur.ctx is not None:
                raise _err(errno.EBUSY, "VMA registered with another userfaultfd")
        ctx = self._s.next_ctx
        self._s.next_ctx += 1
        for v in self._split_range(mm, addr, end):
            i = mm.vmas.index(v)
            mm.vmas[i] = v.copy(modes=modes, ctx=ctx, event_fork=event_fork)
            if modes & {"wp", "minor"} and self._hs(v).level == 2:
                self._unshare_range(mm, v.start, v.end)     # uffd_disable_huge_pmd_share
        return 0

    def _sys_uffdio_unregister(self, proc, addr, length):
        mm = self._mm(proc)
        addr, end = self._validate_range(addr, length)
        vs = self._uffd_first_checks(mm, addr, end)
        # userfaultfd_unregister: VMA by VMA; a split that fails leaves the VMAs before it
        # unregistered
        done = 0
        for v in [v for v in vs if v.ctx is not None]:
            hs = self._hs(v).size
            if any(v.start < p < v.end and p % hs for p in (addr, end)):
                if done:
                    raise StateKept(errno.EINVAL, "EINVAL: UFFDIO_UNREGISTER: a later split failed")
                raise _err(errno.EINVAL, "split of a hugetlb VMA off a hugepage boundary")
            a, b = max(addr, v.start), min(end, v.end)
            for piece in self._split_range(mm, a, b, which=lambda x: x is v or x.ctx is not None):
                if piece.ctx is not None:
                    i = mm.vmas.index(piece)
                    mm.vmas[i] = piece.copy(modes=frozenset(), ctx=None, event_fork=False)
            done += 1
        return 0

    def _sys_uffdio_continue(self, proc, addr, length):
        mm = self._mm(proc)
        addr, end = self._validate_range(addr, length)
        vma = self._find_vma(mm, addr)
        if vma is None or end > vma.end or vma.ctx is None:
            raise _err(errno.ENOENT, "UFFDIO_CONTINUE: not inside one registered VMA")
        h = self._hs(vma)
        gran = self.PS if vma.hgm else h.size
        if addr % gran or (end - addr) % gran:
            raise _err(errno.EINVAL, "UFFDIO_CONTINUE: range not aligned")
        st = self._s.files[vma.file]
        self._check_not_locked(st, self._file_index(vma, addr)[0], self._file_index(vma, end - 1)[0])
        mapped = 0
        pos = addr
        while pos < end:
            saved = copy.deepcopy(self._s)
            try:
                pos += self._continue_piece(mm, vma, h, pos, end)
            except OSError as cause:
                self._s = saved                    # the failing piece leaves nothing behind
                leak = getattr(cause, "leak_folio", None)
                if leak is not None:               # ... but the posted lookup's reference
                    self._leak(leak)
                    self._cache = None
                if mapped:
                    raise PartialProgress(mapped, cause) from None
                raise
            mapped = pos - addr
        return mapped

    def _continue_piece(self, mm, vma, h, pos, end):
        """One hugetlb_mfill_atomic_pte(MFILL_ATOMIC_CONTINUE); returns the bytes mapped."""
        lvl = self._largest_piece(h, pos, end) if vma.hgm else h.level
        t = self._alloc_tables(mm, vma, pos, h.level)       # huge_pte_alloc (+ pmd share)
        st = self._s.files[vma.file]
        idx, pindex = self._file_index(vma, pos)
        # hugetlb_full_walk_alloc to the target level: EEXIST at a larger leaf
        while t.level > lvl:
            i = self._idx(pos, t.level)
            e = t.slots.get(i)
            if isinstance(e, Leaf):
                raise _err(errno.EEXIST, "UFFDIO_CONTINUE: a larger leaf maps %#x" % pos)
            if e is None:
                e = t.slots[i] = Table(t.level - 1, st.pc.get(idx) if t.level == h.level else None)
            t = e
        if idx not in st.pc:
            raise _err(errno.EFAULT, "UFFDIO_CONTINUE: page not in the page cache")
        i = self._idx(pos, lvl)
        if t.slots.get(i) is not None:
            raise _err(errno.EEXIST, "UFFDIO_CONTINUE: entry present at %#x" % pos)
        verdict = self._refuses(st.pc[idx])
        if verdict == "leak":
            e = StateKept(self._guard_errno(), "UFFDIO_CONTINUE: refused, reference leaked")
            e.leak_folio = st.pc[idx]
            raise e
        if verdict:
            raise _err(self._guard_errno(), "UFFDIO_CONTINUE: refcount guard")
        t.slots[i] = Leaf(st.pc[idx], pindex, lvl)
        return self._size(lvl)

    def _sys_uffdio_continue_batch(self, proc, addr, length, piece):
        """Exactly ``for a in range(addr, addr + length, piece): uffdio_continue(a, piece)``,
        stopping at the first failure."""
        self._mm(proc)
        piece = _int("piece", piece, 1)
        length = _int("length", length, 1)
        allowed = [self._size(lvl) for lvl in range(1, self.TOP)]
        if piece not in allowed:
            raise ValueError("piece must be a page-table leaf size")
        if length % piece:
            raise ValueError("length is not a multiple of piece")
        total = 0
        for a in range(addr, addr + length, piece):
            try:
                total += self._sys_uffdio_continue(proc, a, piece)
            except PartialProgress as e:
                raise PartialProgress(total + e.mapped, e.cause) from None
            except OSError as cause:
                if total:
                    raise PartialProgress(total, cause) from None
                raise
        return total
