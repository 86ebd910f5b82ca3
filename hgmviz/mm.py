"""Layer 2: the scripting API in kernel vocabulary.

A :class:`Machine` holds the hugetlb pool, hugetlbfs/memfd files with their page caches,
processes (``struct mm_struct``) with their VMAs, the page-table pool of the core, and one
accounting scheme.  Every syscall a user makes is a method named after the syscall; the work
is done by methods named after the kernel functions they model, each citing it.

Versions the names and rules come from: mainline v6.2 (the thread's base) for everything the
kernel has, checked against current mainline (domain.md 0.1: ML-HUGETLB, ML-MADV, ML-FORK);
the HGM series v1 (5 Jan 2023) and v2 (18 Feb 2023) for MADV_SPLIT, high-granularity
UFFDIO_CONTINUE, the HGM fault path and MADV_COLLAPSE.

Failure is atomic: an operation that fails (bad input or a kernel error) leaves the machine
byte-identical.  Page-table writes are journalled by the core and rolled back; the small
Python-side state (VMAs, page caches, the pool) is saved before each operation and restored
on failure.  The exceptions are the kernel's own partial progress: UFFDIO_CONTINUE returning
EAGAIN with ``mapped`` bytes (:class:`~hgmviz.errors.PartialProgress`), and madvise() over a
range with holes, which applies the advice to the mapped parts and then returns ENOMEM
(``madvise_walk_vmas``; :class:`~hgmviz.errors.StateKept`).

Simplifications, each stated where it matters: MAP_PRIVATE is not modelled (the thread and HGM
concern MAP_SHARED); VMAs are never merged; the kernel may leave an empty page-table page
behind when a fault or UFFDIO_CONTINUE fails after allocating it, the simulator does not (the
HGM schemes' error-injection points model that).
"""
from __future__ import annotations

import errno
import warnings
from dataclasses import dataclass, replace

import numpy as np

from . import core
from .core import PageTablePool
from .errors import (PartialProgress, ProcessExited, SigBus, SigSegv, StateKept, Unsupported,
                     UserfaultPending, syscall_error)
from .geometry import get_geometry, get_kernel_profile
from .schemes import SchemeRefusal, get_scheme_class
from .schemes.base import UPDATE_KINDS

__all__ = ["Machine", "Process", "File", "Folio", "Vma", "PagemapEntry", "MachineState",
           "MmView", "FileView", "MADV_DONTNEED", "MADV_COLLAPSE", "MADV_SPLIT"]

# include/uapi/asm-generic/mman-common.h; MADV_SPLIT from HGM v1 09/46
MADV_DONTNEED = 4
MADV_COLLAPSE = 25
MADV_SPLIT = 26
_ADVICE = {MADV_DONTNEED: "MADV_DONTNEED", MADV_COLLAPSE: "MADV_COLLAPSE", MADV_SPLIT: "MADV_SPLIT"}

UFFD_MISSING = 1   # VM_UFFD_MISSING
UFFD_WP = 2        # VM_UFFD_WP
UFFD_MINOR = 4     # VM_UFFD_MINOR
_UFFD_MODES = {"missing": UFFD_MISSING, "wp": UFFD_WP, "minor": UFFD_MINOR}

_PFN_BASE = 1 << 20           # simulated physical memory starts at 4 GiB (x86-64)


def _fmt(n: int) -> str:
    for unit, sh in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << sh and n % (1 << sh) == 0:
            return "%d %s" % (n >> sh, unit)
    return "%d bytes" % n


def _check_int(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError("%s must be an int, not %r" % (name, value))
    value = int(value)
    if value < minimum:
        raise ValueError("%s must be >= %d, not %d" % (name, minimum, value))
    return value


@dataclass(frozen=True)
class Vma:
    """``struct vm_area_struct``: ``[start, end)`` of ``file`` from byte ``pgoff << PAGE_SHIFT``.

    ``uffd`` holds VM_UFFD_MISSING/WP/MINOR bits; ``uffd_event_fork`` is the registered
    context's UFFD_FEATURE_EVENT_FORK; ``hgm`` is VM_HUGETLB_HGM (set by MADV_SPLIT).
    """

    start: int
    end: int
    file: int
    pgoff: int
    shared: bool = True
    noreserve: bool = False
    uffd: int = 0
    uffd_event_fork: bool = False
    hgm: bool = False

    @property
    def uffd_modes(self) -> tuple:
        return tuple(name for name, bit in _UFFD_MODES.items() if self.uffd & bit)

    def flags_key(self):
        """The vm_flags page_table_shareable() compares."""
        return (self.shared, self.noreserve, self.uffd, self.hgm)


@dataclass
class _FileState:
    id: int
    name: str
    hstate: int              # index into geometry.hstates
    size: int                # i_size in bytes
    pc: np.ndarray           # page cache: folio id per hugepage index (-1: none)
    resv: np.ndarray         # resv_map: 0 none, 1 reserved, 2 instantiated
    fd_open: bool = True
    nr_vmas: int = 0
    released: bool = False


@dataclass
class _MmState:
    pid: int
    pgd: int
    vmas: list
    alive: bool = True


@dataclass(frozen=True)
class PagemapEntry:
    """What ``/proc/pid/pagemap`` (plus ``page_folio()``) tells about one 4 KiB page."""

    pfn: int
    folio: "Folio"
    index: int          # the page's index inside the folio (folio_page_idx)
    shift: int          # size of the leaf that maps it (hugetlb_pte_size)

    @property
    def size(self) -> int:
        return 1 << self.shift


class Folio:
    """A read-only view of one hugetlb folio: its counters under the machine's scheme."""

    __slots__ = ("_m", "id")

    def __init__(self, machine: "Machine", fid: int):
        self._m = machine
        self.id = fid

    def __eq__(self, other):
        return isinstance(other, Folio) and other._m is self._m and other.id == self.id

    def __hash__(self):
        return hash((id(self._m), self.id))

    def __repr__(self):
        return "<Folio %d pfn %#x %s refcount %d entire_mapcount %d>" % (
            self.id, self.pfn, _fmt(self.size), self.refcount, self.entire_mapcount)

    @property
    def pfn(self) -> int:
        """``folio_pfn()``: the head page's pfn."""
        return int(self._m._folio_pfn[self.id])

    @property
    def hstate(self):
        return self._m.geometry.hstates[int(self._m._folio_hstate[self.id])]

    @property
    def size(self) -> int:
        return self.hstate.size

    def folio_nr_pages(self) -> int:
        return self.hstate.pages_per_huge_page()

    @property
    def nr_pages(self) -> int:
        return self.folio_nr_pages()

    @property
    def refcount(self) -> int:
        """``folio_ref_count()`` under the machine's scheme."""
        return self._m.scheme.folio_ref_count(self.id)

    def folio_ref_count(self) -> int:
        return self.refcount

    @property
    def entire_mapcount(self) -> int:
        """``folio_entire_mapcount()``: ``_entire_mapcount + 1``."""
        return self._m.scheme.folio_entire_mapcount(self.id)

    def folio_entire_mapcount(self) -> int:
        return self.entire_mapcount

    @property
    def mapcount(self) -> int:
        """``folio_mapcount()``."""
        return self._m.scheme.folio_mapcount(self.id)

    def page_mapcount(self, index: int) -> int:
        """What ``/proc/kpagecount`` shows for page ``index`` (0 = head) of this folio."""
        index = _check_int("index", index)
        if index >= self.nr_pages:
            raise IndexError("page index %d out of range: a %s folio has pages 0..%d"
                             % (index, _fmt(self.size), self.nr_pages - 1))
        return self._m.scheme.page_mapcount(self.id, index)

    @property
    def wrapped(self) -> bool:
        """A counter of this folio overflowed (the refcount wrapped past INT_MAX)."""
        return self._m.scheme.wrapped(self.id)

    @property
    def file(self):
        fid = int(self._m._folio_file[self.id])
        return None if fid < 0 else self._m._file_handles[fid]

    @property
    def index(self):
        """The folio's index in its file, in hugepages (None if not in a page cache)."""
        fid = int(self._m._folio_file[self.id])
        return None if fid < 0 else int(self._m._folio_index[self.id])

    @property
    def in_use(self) -> bool:
        return bool(self._m._folio_used[self.id])


class File:
    """A hugetlbfs file opened with ``memfd_create(MFD_HUGETLB)``."""

    __slots__ = ("_m", "id")

    def __init__(self, machine, fid):
        self._m = machine
        self.id = fid

    def __repr__(self):
        st = self._st
        return "<File %d %r %s size %s%s>" % (self.id, st.name, _fmt(self.hstate.size),
                                               _fmt(st.size) if st.size else "0",
                                               "" if st.fd_open else " closed")

    @property
    def _st(self) -> _FileState:
        return self._m._files[self.id]

    @property
    def hstate(self):
        return self._m.geometry.hstates[self._st.hstate]

    @property
    def size(self) -> int:
        return self._st.size

    @property
    def name(self) -> str:
        return self._st.name

    @property
    def closed(self) -> bool:
        return not self._st.fd_open

    def folio_at(self, offset: int):
        """The folio holding byte ``offset`` of the file, or None if not in the page cache."""
        offset = _check_int("offset", offset)
        st = self._st
        idx = offset >> self.hstate.shift
        if idx >= st.pc.size or st.pc[idx] < 0:
            return None
        return Folio(self._m, int(st.pc[idx]))

    def page_cache(self) -> dict:
        """``{hugepage index: Folio}`` for every folio in the page cache."""
        st = self._st
        return {int(i): Folio(self._m, int(st.pc[i])) for i in np.flatnonzero(st.pc >= 0)}

    def close(self):
        """``close(fd)``: drop the file descriptor (the VMAs keep the file open)."""
        return self._m._op("close", self._m._sys_close, self)

    def fallocate(self, offset: int, length: int):
        """``fallocate(fd, 0, offset, length)``: instantiate hugepages in the page cache."""
        return self._m._op("fallocate", self._m._sys_fallocate, self, offset, length)


class Process:
    """A process (its ``mm_struct``): the handle scripts use to make syscalls."""

    __slots__ = ("_m", "pid")

    def __init__(self, machine, pid):
        self._m = machine
        self.pid = pid

    def __repr__(self):
        st = self._m._mms[self.pid]
        return "<Process %d%s, %d VMAs>" % (self.pid, "" if st.alive else " exited", len(st.vmas))

    def __eq__(self, other):
        return isinstance(other, Process) and other._m is self._m and other.pid == self.pid

    def __hash__(self):
        return hash((id(self._m), self.pid))

    @property
    def alive(self) -> bool:
        return self._m._mms[self.pid].alive

    @property
    def vmas(self) -> tuple:
        return tuple(self._m._mms[self.pid].vmas)

    def find_vma(self, addr: int):
        return self._m._find_vma(self._m._mms[self.pid], addr)

    # syscalls -------------------------------------------------------------------------
    def mmap(self, file, length, offset=0, shared=True, addr=None, noreserve=False):
        """``mmap(addr, length, PROT_READ|PROT_WRITE, MAP_SHARED[|MAP_FIXED][|MAP_NORESERVE],
        fd, offset)``; returns the start address."""
        return self._m._op("mmap", self._m._sys_mmap, self, file, length, offset, shared,
                           addr, noreserve)

    def munmap(self, addr, length):
        return self._m._op("munmap", self._m._sys_munmap, self, addr, length)

    def madvise(self, addr, length, advice):
        return self._m._op("madvise", self._m._sys_madvise, self, addr, length, advice)

    def touch(self, addr, write=True):
        """Access one byte: a page fault if the page is not mapped (``hugetlb_fault``)."""
        return self._m._op("touch", self._m._sys_touch, self, addr, write)

    def fork(self):
        return self._m._op("fork", self._m._sys_fork, self)

    def exit(self):
        return self._m._op("exit", self._m._sys_exit, self)

    def uffdio_register(self, addr, length, mode="missing", event_fork=False):
        """``userfaultfd()`` + ``UFFDIO_API`` (EVENT_FORK if asked) + ``UFFDIO_REGISTER``.

        ``mode``: "missing", "minor", "wp", or several joined by "|" or in a tuple."""
        return self._m._op("uffdio_register", self._m._sys_uffdio_register, self, addr, length,
                           mode, event_fork)

    def uffdio_unregister(self, addr, length):
        return self._m._op("uffdio_unregister", self._m._sys_uffdio_unregister, self, addr,
                           length)

    def uffdio_continue(self, addr, length):
        """``UFFDIO_CONTINUE``: map page-cache pages into a minor-registered range.

        Returns the bytes mapped.  Raises ``PartialProgress`` (EAGAIN, ``.mapped``) when the
        kernel maps part of the range and then fails."""
        return self._m._op("uffdio_continue", self._m._sys_uffdio_continue, self, addr, length)

    def uffdio_continue_batch(self, addr, length, piece):
        """Exactly ``for a in range(addr, addr + length, piece): uffdio_continue(a, piece)``,
        stopping at the first failure, in one call to the core (the scale path)."""
        return self._m._op("uffdio_continue_batch", self._m._sys_uffdio_continue_batch, self,
                           addr, length, piece)

    def pagemap(self, addr):
        """``/proc/pid/pagemap`` for the page at ``addr``: None if not present."""
        return self._m._pagemap(self, addr)

    def smaps_hugetlb(self, addr) -> dict:
        """The hugetlb lines of ``/proc/pid/smaps`` for the VMA holding ``addr``.

        ``smaps_hugetlb_range`` as HGM v1 21/46 changed it: once per leaf of any size,
        ``if (mapcount >= 2) shared_hugetlb += hugetlb_pte_size(hpte); else private_hugetlb
        += ...`` with ``mapcount = page_mapcount(page)`` of the leaf's first page."""
        return self._m._smaps_hugetlb(self, addr)


def _read_only(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.setflags(write=False)
    return v


@dataclass(frozen=True)
class MmView:
    """One mm as :meth:`Machine.state` shows it: ``mm->pgd`` (a page-table page), its VMAs,
    and whether the process is alive."""
    pid: int
    pgd: int
    vmas: tuple
    alive: bool


@dataclass(frozen=True)
class FileView:
    """One hugetlbfs file as :meth:`Machine.state` shows it: its page cache (folio id per
    hugepage index, -1 for none) and whether its inode was released."""
    id: int
    name: str
    hstate: int
    size: int
    pc: np.ndarray
    released: bool


@dataclass(frozen=True)
class MachineState:
    """A read-only view of one machine state (:meth:`Machine.state`).

    ``fl`` is the folio layout ``[nh, (pfn0, order, folio0, nr) * nh]``; ``ent``/``tlevel``/
    ``tshare`` the page-table pool (entries: 0 none, table << 1, pfn << 1 | 1); ``folio_used``,
    ``folio_file``, ``folio_index`` which folios are allocated and where they sit in the page
    cache; ``scheme`` answers the kernel's accessors (``folio_ref_count()``, ...)."""
    geometry: object
    fl: np.ndarray
    folio_pfn: np.ndarray
    folio_hstate: np.ndarray
    ent: np.ndarray
    tlevel: np.ndarray
    tshare: np.ndarray
    folio_used: np.ndarray
    folio_file: np.ndarray
    folio_index: np.ndarray
    scheme: object
    version: int
    mms: dict
    files: dict


class Machine:
    """A simulated machine: hugetlb pool, files, processes, page tables, one scheme.

    ``nr_hugepages`` maps a hugepage size in bytes to the pool size
    (``/sys/kernel/mm/hugepages/hugepages-*/nr_hugepages``).  ``geometry`` is "x86_64",
    "x86_64-5level" or "toy".  ``scheme`` picks the accounting ("mainline", "per_piece").
    ``kernel`` picks the version profile ("6.2", the thread's era, by default; "6.18";
    "running").

    After each operation: ``call_path`` (the kernel functions it went through),
    ``last_events`` (the core's page-table events), ``last_counter_updates`` (how many
    atomic updates the scheme made to ``_refcount``, the head's ``_entire_mapcount``,
    subpages' ``_mapcount`` and its own metadata: the work behind the net change, e.g. the
    262,144 subpage decrements of a 1 GiB collapse under ``thp_like``, T19/T20),
    ``last_refusal`` (the guard's refusal, or None) and ``last_wrapped`` (the folios whose
    refcount wrapped past INT_MAX in it).
    """

    def __init__(self, nr_hugepages=None, geometry="x86_64", scheme="mainline", guard=None,
                 errors="proposed", kernel="6.2", hvo=False, count_at="alloc", lookup_first=True):
        self.geometry = g = get_geometry(geometry)
        self.kernel = get_kernel_profile(kernel)
        scheme_cls = get_scheme_class(scheme)
        if errors not in ("proposed", "v2"):
            raise ValueError("errors must be 'proposed' or 'v2', not %r" % (errors,))
        self.errors = errors
        if not isinstance(hvo, bool):
            raise TypeError("hvo must be True or False, not %r" % (hvo,))
        self.hvo = hvo
        if nr_hugepages is None:
            nr_hugepages = {}
        if not isinstance(nr_hugepages, dict):
            raise TypeError("nr_hugepages must be a dict {hugepage size in bytes: count}, not %r"
                            % (nr_hugepages,))
        counts = [0] * len(g.hstates)
        for size, n in nr_hugepages.items():
            h = g.hstate(size)
            counts[h.index] = _check_int("nr_hugepages[%s]" % _fmt(size), n)
        # ---- the pool: folios laid out per hstate in contiguous pfn regions ----------
        pfn = _PFN_BASE
        fl = [len(g.hstates)]
        shifts, pfns, hs_idx = [], [], []
        for h in g.hstates:
            pfn = (pfn + (1 << h.order) - 1) & ~((1 << h.order) - 1)
            fl += [pfn, h.order, len(shifts), counts[h.index]]
            for i in range(counts[h.index]):
                shifts.append(h.shift)
                pfns.append(pfn + (i << h.order))
                hs_idx.append(h.index)
            pfn += counts[h.index] << h.order
        if pfn >= 1 << 30:
            raise ValueError("the pool is too large for the simulator: at most 2**30 base pages")
        self._fl = np.array(fl, dtype=np.int64)
        self._folio_pfn = np.array(pfns, dtype=np.int64)
        self._folio_hstate = np.array(hs_idx, dtype=np.int8)
        nf = len(pfns)
        self._folio_used = np.zeros(nf, dtype=np.int8)
        self._folio_file = np.full(nf, -1, dtype=np.int32)
        self._folio_index = np.full(nf, -1, dtype=np.int64)
        self._nr_hugepages = counts
        self._resv = [0] * len(g.hstates)
        self._g = np.array([g.page_shift, g.bits_per_level, g.levels, 0], dtype=np.int64)
        if count_at not in ("alloc", "set"):
            raise ValueError("count_at must be 'alloc' or 'set', not %r" % (count_at,))
        if not isinstance(lookup_first, bool):
            raise TypeError("lookup_first must be True or False, not %r" % (lookup_first,))
        self.count_at = count_at
        self.lookup_first = lookup_first
        self._inject = None
        self.scheme = scheme_cls(g, np.array(shifts, dtype=np.int64), self._folio_pfn, guard=guard,
                                 **({"count_at": count_at} if scheme_cls.has_count_at else {}))
        self.pt = PageTablePool(g.PTRS_PER_TABLE)
        self._files = {}
        self._file_handles = {}
        self._mms = {}
        self._next_pid = 1
        self._next_file = 0
        self._res = np.zeros(4, dtype=np.int64)
        self._empty_share = np.zeros(0, dtype=np.int32)
        self.last_events = self.pt.events()
        self.last_counter_updates = dict.fromkeys(UPDATE_KINDS, 0)
        self.last_refusal = None          # the SchemeRefusal of the last operation, if a guard refused
        self.last_wrapped = ()            # folios whose refcount wrapped in the last operation
        self.call_path = []
        self.version = 0
        self._warned_sign = False
        self._in_op = False
        self._accounted = 0

    # =================================================================================
    # Operation protocol: validate, journal, account, commit — or restore
    # =================================================================================
    def _save(self):
        return ({k: replace(v, pc=v.pc.copy(), resv=v.resv.copy()) for k, v in self._files.items()},
                {k: _MmState(v.pid, v.pgd, v.vmas, v.alive) for k, v in self._mms.items()},
                self._folio_used.copy(), self._folio_file.copy(), self._folio_index.copy(),
                list(self._resv), self._next_pid, self._next_file, dict(self._file_handles))

    def _restore(self, s):
        (self._files, self._mms, self._folio_used, self._folio_file, self._folio_index,
         self._resv, self._next_pid, self._next_file, self._file_handles) = s

    def _op(self, name, fn, *args):
        if self._in_op:
            raise RuntimeError("operations do not nest")
        self._in_op = True
        saved = self._save()
        counters = self.scheme.snapshot()
        meta = self.pt.meta
        meta[core.M_JLEN] = 0
        meta[core.M_NEV] = 0
        self._accounted = 0
        self.call_path = []
        self.last_counter_updates = dict.fromkeys(UPDATE_KINDS, 0)
        self.last_refusal = None
        self.last_wrapped = ()
        try:
            result = fn(*args)
        except (PartialProgress, StateKept):
            # the kernel keeps what it mapped before the failing piece / its error path left
            self._commit(counters)
            raise
        except BaseException:
            core.rollback(self.pt.P, 0)
            meta[core.M_NEV] = 0
            self._restore(saved)
            self.scheme.restore(counters)
            self.last_events = self.pt.events()
            self.last_counter_updates = dict.fromkeys(UPDATE_KINDS, 0)
            self._in_op = False
            raise
        self._commit(counters)
        return result

    def _commit(self, counters_before):
        self.pt.meta[core.M_JLEN] = 0
        self.last_events = self.pt.events()
        self.version += 1
        self._in_op = False
        newly = np.flatnonzero(self.scheme.counters["wrapped"] & ~counters_before["wrapped"])
        self.last_wrapped = tuple(int(f) for f in newly)
        if newly.size:
            warnings.warn("refcount overflow: the refcount of folio(s) %s wrapped past INT_MAX "
                          "(%d); a folio whose refcount wrapped can be freed while it is still "
                          "mapped — a use-after-free" % (", ".join(str(int(f)) for f in newly),
                                                          self.geometry.INT_MAX),
                          RuntimeWarning, stacklevel=4)

    def _kcall(self, kernel, *args):
        """Call a core kernel that takes (P, E, ...); the pool grows and retries on NEED_*."""
        return self.pt.run(kernel, *args, levels=self.geometry.levels)

    def _account(self, guarded: bool = True):
        """Feed the operation's events not yet accounted to the scheme (admit, then commit)."""
        ev = self.pt.events(self._accounted)
        scratch = self.scheme.admit(ev, guarded)
        self.scheme.commit(scratch)
        for kind, n in self.scheme.updates().items():
            self.last_counter_updates[kind] += n
        self._accounted = int(self.pt.meta[core.M_NEV])
        return ev

    def _finish(self):
        pass

    def _emit(self, kind, mm, addr, shift, count, pfn, folio):
        pt = self.pt
        if pt.meta[core.M_NEV] + 1 > pt.ek.size:
            pt.grow_events()
        core.emit(pt.E, pt.meta, self._g, kind, mm, addr, shift, count, pfn, folio)

    def _guarded(self, run, what):
        """Run ``run(limit)`` (an install that emits events), account it, honour guards.

        On a guard refusal the work is rolled back and re-run up to the admitted leaves,
        so the kernel's piece-by-piece semantics hold.  Returns ``run``'s result and the
        refusal (or None).
        """
        meta = self.pt.meta
        jm = int(meta[core.M_JLEN])
        em = int(meta[core.M_NEV])
        saved = self._save()
        result = run(-1)
        try:
            self._account()
            return result, None
        except SchemeRefusal as refusal:
            core.rollback(self.pt.P, jm)
            meta[core.M_NEV] = em
            self._restore(saved)
            if refusal.admitted:
                result = run(refusal.admitted)
                self._account()
            else:
                result = None
            self._warn_guard(refusal)
            self.last_refusal = refusal
            return result, refusal

    def _warn_guard(self, refusal):
        if refusal.guard == "sign" and not self._warned_sign:
            self._warned_sign = True
            warnings.warn("WARN_ON_ONCE(folio_ref_count(folio) <= 0): folio %d has refcount %d"
                          % (refusal.folio, refusal.refcount), RuntimeWarning, stacklevel=5)

    def inject(self, point="pagecache_vanish"):
        """Arm a one-shot error for the next UFFDIO_CONTINUE's first piece.

        ``"after_pte_alloc"``: the operation errors out after its page tables were allocated
        and before the entry is set, whatever the order of the lookup (Mike Kravetz's
        concern, T13: "all the places where we could 'error out' after allocating the PTE,
        but before initializing it"); it raises :class:`~hgmviz.errors.StateKept`.

        ``"pagecache_vanish"``: the page leaves the page cache while UFFDIO_CONTINUE runs
        (T13/T14).  With ``lookup_first=False`` (v2's order: walk and allocate, then look the
        page up) the error comes after the page tables were allocated, and they stay — the
        operation raises :class:`~hgmviz.errors.StateKept`.  With ``lookup_first=True``
        (James's remedy) the lookup fails before the walk and nothing changes (EFAULT).
        """
        if point not in ("pagecache_vanish", "after_pte_alloc"):
            raise ValueError("unknown injection point %r; allowed: 'pagecache_vanish', "
                             "'after_pte_alloc'" % (point,))
        self._inject = point

    # =================================================================================
    # Lookups
    # =================================================================================
    def _mm(self, proc) -> _MmState:
        if not isinstance(proc, Process) or proc._m is not self:
            raise TypeError("expected a Process of this machine, not %r" % (proc,))
        st = self._mms[proc.pid]
        if not st.alive:
            raise ProcessExited(errno.ESRCH, "ESRCH: process %d has exited" % proc.pid)
        return st

    def _file(self, f, *, must_be_open=True) -> _FileState:
        if not isinstance(f, File) or f._m is not self:
            raise TypeError("expected a File of this machine (from memfd_create), not %r" % (f,))
        st = self._files[f.id]
        if must_be_open and not st.fd_open:
            raise syscall_error(errno.EBADF, "file %d (%s) is closed" % (f.id, st.name))
        return st

    @staticmethod
    def _find_vma(mm: _MmState, addr: int):
        for v in mm.vmas:
            if v.start <= addr < v.end:
                return v
        return None

    def _hstate_of(self, vma: Vma):
        return self.geometry.hstates[self._files[vma.file].hstate]

    @property
    def processes(self) -> tuple:
        return tuple(Process(self, pid) for pid, st in self._mms.items() if st.alive)

    @property
    def files(self) -> tuple:
        return tuple(self._file_handles[i] for i, st in self._files.items() if not st.released)

    def folio(self, fid: int) -> Folio:
        fid = _check_int("folio", fid)
        if fid >= self._folio_pfn.size:
            raise IndexError("no folio %d: the pool has %d" % (fid, self._folio_pfn.size))
        return Folio(self, fid)

    @property
    def folios(self) -> tuple:
        return tuple(Folio(self, i) for i in range(self._folio_pfn.size))

    # =================================================================================
    # Files and the pool
    # =================================================================================
    def memfd_create(self, size=0, hstate=None, name="memfd"):
        """``memfd_create(name, MFD_HUGETLB | MFD_HUGE_<size>)`` then ``ftruncate(size)``."""
        return self._op("memfd_create", self._sys_memfd_create, size, hstate, name)

    def _sys_memfd_create(self, size, hstate, name):
        g = self.geometry
        if hstate is None:
            hstate = g.hstates[0].size
        try:
            h = g.hstate(hstate)
        except ValueError as e:
            raise syscall_error(errno.EINVAL, "memfd_create(MFD_HUGETLB): %s" % e) from None
        size = _check_int("size", size)
        if size & (h.size - 1):
            raise syscall_error(errno.EINVAL, "ftruncate: the size of a hugetlbfs file must be a "
                                "multiple of the hugepage size %s (hugetlbfs_setattr), not %d"
                                % (_fmt(h.size), size))
        fid = self._next_file
        self._next_file += 1
        n = size >> h.shift
        self._files[fid] = _FileState(fid, str(name), h.index, size, np.full(n, -1, np.int32),
                                      np.zeros(n, np.int8))
        self._file_handles[fid] = File(self, fid)
        self.call_path = ["memfd_create", "hugetlb_file_setup", "hugetlbfs_setattr"]
        self._finish()
        return self._file_handles[fid]

    def _grow_file(self, st: _FileState, size: int):
        h = self.geometry.hstates[st.hstate]
        n = (size + h.size - 1) >> h.shift
        if n > st.pc.size:
            st.pc = np.concatenate([st.pc, np.full(n - st.pc.size, -1, np.int32)])
            st.resv = np.concatenate([st.resv, np.zeros(n - st.resv.size, np.int8)])
        st.size = max(st.size, size)

    def _free_folios(self, h) -> np.ndarray:
        lo = int(self._fl[3 + 4 * h.index])
        n = self._nr_hugepages[h.index]
        return lo + np.flatnonzero(self._folio_used[lo:lo + n] == 0)

    def _pool_free(self, h) -> int:
        return int(self._free_folios(h).size)

    def alloc_hugetlb_folio(self, st: _FileState, idx: int):
        """``alloc_hugetlb_folio`` + ``hugetlb_add_to_page_cache`` for index ``idx``.

        A reservation for ``idx`` (``resv_map`` entry) is consumed if there is one; otherwise
        a page is available only if ``free_huge_pages - resv_huge_pages > 0``.  Returns the
        folio id or raises ``LookupError`` with the reason (the caller maps it to
        VM_FAULT_SIGBUS or ENOSPC).
        """
        h = self.geometry.hstates[st.hstate]
        free = self._free_folios(h)
        if st.resv[idx] == 1:
            self._resv[h.index] -= 1
        elif free.size - self._resv[h.index] <= 0:
            raise LookupError("no free %s hugepage: HugePages_Free %d, HugePages_Rsvd %d"
                              % (_fmt(h.size), free.size, self._resv[h.index]))
        st.resv[idx] = 2
        fid = int(free[0])
        self._folio_used[fid] = 1
        self._folio_file[fid] = st.id
        self._folio_index[fid] = idx
        st.pc[idx] = fid
        self._emit(core.EV_FOLIO_ALLOC, -1, 0, h.shift, 1, int(self._folio_pfn[fid]), fid)
        self._emit(core.EV_PAGECACHE_ADD, -1, 0, h.shift,
                   self.kernel.pagecache_refs(h.pages_per_huge_page()), int(self._folio_pfn[fid]), fid)
        self.call_path += ["alloc_hugetlb_folio", "hugetlb_add_to_page_cache"]
        return fid

    def _sys_fallocate(self, f, offset, length):
        st = self._file(f)
        h = self.geometry.hstates[st.hstate]
        offset = _check_int("offset", offset, -(1 << 62))
        length = _check_int("length", length, -(1 << 62))
        if offset < 0 or length <= 0:
            raise syscall_error(errno.EINVAL, "fallocate: offset must be >= 0 and length > 0 "
                                "(vfs_fallocate), not offset %d length %d" % (offset, length))
        start = offset >> h.shift
        end = (offset + length + h.size - 1) >> h.shift
        self._grow_file(st, offset + length)   # i_size = offset + len, not rounded
        self.call_path = ["fallocate", "hugetlbfs_fallocate"]
        for idx in range(start, end):
            if st.pc[idx] >= 0:
                continue
            try:
                self.alloc_hugetlb_folio(st, idx)
            except LookupError as e:
                raise syscall_error(errno.ENOSPC, "fallocate: %s" % e) from None
        self._account()
        self._finish()

    def _sys_close(self, f):
        st = self._file(f)
        st.fd_open = False
        self.call_path = ["close", "fput"]
        self._maybe_release(st)
        self._account()
        self._finish()

    def _maybe_release(self, st: _FileState):
        """The last reference to the file is gone: ``hugetlbfs_evict_inode`` →
        ``remove_inode_hugepages`` (page cache lets go, folios return to the pool) and
        ``hugetlb_unreserve_pages`` (unused reservations are released)."""
        if st.fd_open or st.nr_vmas > 0 or st.released:
            return
        st.released = True
        h = self.geometry.hstates[st.hstate]
        self.call_path += ["hugetlbfs_evict_inode", "remove_inode_hugepages", "hugetlb_unreserve_pages"]
        for idx in np.flatnonzero(st.pc >= 0):
            fid = int(st.pc[idx])
            pfn = int(self._folio_pfn[fid])
            self._emit(core.EV_PAGECACHE_DEL, -1, 0, h.shift,
                       self.kernel.pagecache_refs(h.pages_per_huge_page()), pfn, fid)
            self._emit(core.EV_FOLIO_FREE, -1, 0, h.shift, 1, pfn, fid)
            self._folio_used[fid] = 0
            self._folio_file[fid] = -1
            self._folio_index[fid] = -1
            st.pc[idx] = -1
        self._resv[h.index] -= int(np.count_nonzero(st.resv == 1))
        st.resv[:] = 0

    def meminfo(self) -> dict:
        """``/proc/meminfo`` hugetlb lines per hstate: ``{size: {"HugePages_Total": ..}}``."""
        out = {}
        for h in self.geometry.hstates:
            out[h.size] = {"HugePages_Total": self._nr_hugepages[h.index],
                           "HugePages_Free": self._pool_free(h),
                           "HugePages_Rsvd": self._resv[h.index],
                           "HugePages_Surp": 0,
                           "Hugepagesize": h.size >> 10}
        return out

    # =================================================================================
    # Processes
    # =================================================================================
    def spawn(self) -> Process:
        """A new process with an empty address space (its own PGD)."""
        return self._op("spawn", self._sys_spawn)

    def _new_mm(self) -> _MmState:
        pt = self.pt
        pt.ensure_free_tables(1)
        pgd = core.table_alloc(pt.P, self.geometry.levels, -1)
        pid = self._next_pid
        self._next_pid += 1
        st = _MmState(pid, int(pgd), [])
        self._mms[pid] = st
        return st

    def _sys_spawn(self):
        st = self._new_mm()
        self.call_path = ["mm_alloc", "pgd_alloc"]
        self._finish()
        return Process(self, st.pid)

    # ---- mmap ----------------------------------------------------------------------
    def _get_unmapped_area(self, mm: _MmState, length: int, align: int) -> int:
        """``hugetlb_get_unmapped_area``: top-down from mmap_base, aligned to the hugepage."""
        top = self.geometry.mmap_base
        for v in sorted(mm.vmas, key=lambda v: -v.start):
            cand = (top - length) & ~(align - 1)
            if cand >= v.end:
                return cand
            top = min(top, v.start)
        cand = (top - length) & ~(align - 1)
        if cand < align:
            raise syscall_error(errno.ENOMEM, "mmap: no room for %s in the address space"
                                % _fmt(length))
        return cand

    def _sys_mmap(self, proc, f, length, offset, shared, addr, noreserve):
        mm = self._mm(proc)
        st = self._file(f)
        h = self.geometry.hstates[st.hstate]
        length = _check_int("length", length)
        offset = _check_int("offset", offset)
        if not isinstance(shared, bool) or not isinstance(noreserve, bool):
            raise TypeError("shared and noreserve must be True or False")
        if not shared:
            raise Unsupported("MAP_PRIVATE hugetlb mappings are not modelled: the thread and HGM "
                              "concern MAP_SHARED; use shared=True")
        if length == 0:
            raise syscall_error(errno.EINVAL, "mmap: length must be > 0")
        if offset & (h.size - 1):
            raise syscall_error(errno.EINVAL, "mmap: the offset of a hugetlbfs mapping must be a "
                                "multiple of the hugepage size %s (hugetlbfs_file_mmap), not %#x"
                                % (_fmt(h.size), offset))
        length = (length + h.size - 1) & ~(h.size - 1)    # ksys_mmap_pgoff: ALIGN(len, huge)
        if addr is None:
            start = self._get_unmapped_area(mm, length, h.size)
        else:
            start = _check_int("addr", addr)
            if start & (h.size - 1):
                raise syscall_error(errno.EINVAL, "mmap(MAP_FIXED): the address of a hugetlb "
                                    "mapping must be aligned to %s (prepare_hugepage_range), not %#x"
                                    % (_fmt(h.size), start))
            if start + length > self.geometry.TASK_SIZE or start < h.size:
                raise syscall_error(errno.ENOMEM, "mmap(MAP_FIXED): %#x-%#x is outside the user "
                                    "address space" % (start, start + length))
            if any(v.start < start + length and start < v.end for v in mm.vmas):
                self._do_munmap(mm, start, start + length)   # MAP_FIXED replaces
        pgoff = offset >> self.geometry.page_shift
        first = offset >> h.shift
        n = length >> h.shift
        self._grow_file(st, offset + length)   # hugetlbfs_file_mmap extends i_size (VM_WRITE)
        self.call_path = ["do_mmap", "hugetlbfs_file_mmap"]
        if not noreserve:
            self.hugetlb_reserve_pages(st, first, first + n)
        vma = Vma(start, start + length, st.id, pgoff, True, noreserve)
        mm.vmas = sorted(mm.vmas + [vma], key=lambda v: v.start)
        st.nr_vmas += 1
        self._account()
        self._finish()
        return start

    def hugetlb_reserve_pages(self, st: _FileState, frm: int, to: int):
        """``hugetlb_reserve_pages`` for a shared mapping: reserve every index of
        ``[frm, to)`` not yet in the inode's ``resv_map``; ENOMEM if the pool cannot cover it
        (``hugetlb_acct_memory``: resv + chg must not exceed free)."""
        h = self.geometry.hstates[st.hstate]
        chg = int(np.count_nonzero(st.resv[frm:to] == 0))
        free = self._pool_free(h)
        if self._resv[h.index] + chg > free:
            raise syscall_error(errno.ENOMEM, "mmap: cannot reserve %d %s hugepage(s): "
                                "HugePages_Free %d, HugePages_Rsvd %d (hugetlb_acct_memory); "
                                "use noreserve=True or raise nr_hugepages"
                                % (chg, _fmt(h.size), free, self._resv[h.index]))
        st.resv[frm:to][st.resv[frm:to] == 0] = 1
        self._resv[h.index] += chg
        self.call_path.append("hugetlb_reserve_pages")

    # ---- munmap / exit ---------------------------------------------------------------
    def _check_page_range(self, what, addr, length, task_size=True):
        addr = _check_int("addr", addr)
        length = _check_int("length", length)
        ps = self.geometry.PAGE_SIZE
        if addr & (ps - 1):
            raise syscall_error(errno.EINVAL, "%s: addr %#x is not page aligned" % (what, addr))
        end = addr + ((length + ps - 1) & ~(ps - 1))
        if task_size and end > self.geometry.TASK_SIZE:
            raise syscall_error(errno.EINVAL, "%s: %#x-%#x is outside the user address space"
                                % (what, addr, end))
        return addr, length, end

    def _check_split(self, what, mm, start, end):
        """``hugetlb_vm_op_split``: a hugetlb VMA can only be split at a hugepage boundary."""
        for v in mm.vmas:
            hs = self._hstate_of(v).size
            for point in (start, end):
                if v.start < point < v.end and point & (hs - 1):
                    raise syscall_error(errno.EINVAL, "%s: %#x would split a %s hugetlb VMA "
                                        "%#x-%#x off a hugepage boundary (hugetlb_vm_op_split)"
                                        % (what, point, _fmt(hs), v.start, v.end))

    def _split_vmas(self, mm, start, end):
        """Split VMAs so that ``start`` and ``end`` are VMA boundaries; unshare PMDs whose
        PUD range a piece no longer covers whole (``hugetlb_split``)."""
        out = []
        for v in mm.vmas:
            pieces = [v]
            for point in (start, end):
                nxt = []
                for p in pieces:
                    if p.start < point < p.end:
                        delta = (point - p.start) >> self.geometry.page_shift
                        nxt += [replace(p, end=point), replace(p, start=point, pgoff=p.pgoff + delta)]
                        if point & (self.geometry.level_size(3) - 1):
                            self._unshare(mm, point - 1, point + 1)
                    else:
                        nxt.append(p)
                pieces = nxt
            self._files[v.file].nr_vmas += len(pieces) - 1    # __split_vma: get_file()
            out += pieces
        mm.vmas = sorted(out, key=lambda v: v.start)

    def _unshare(self, mm, a, b):
        pud = self.geometry.level_size(3)
        a &= ~(pud - 1)
        b = (b + pud - 1) & ~(pud - 1)
        self._kcall(core.unshare_range, self._g, mm.pgd, mm.pid, a, b, self._res)

    def _do_munmap(self, mm, start, end):
        """``do_vmi_munmap``: split, ``unmap_vmas`` → ``__unmap_hugepage_range``, then
        ``free_pgtables`` → ``hugetlb_free_pgd_range``; the VMAs drop their file."""
        self._check_split("munmap", mm, start, end)
        self._split_vmas(mm, start, end)
        gone = [v for v in mm.vmas if start <= v.start and v.end <= end]
        if not gone:
            return
        self.call_path += ["__unmap_hugepage_range", "hugetlb_free_pgd_range"]
        for v in gone:
            hl = self._hstate_of(v).level
            self._kcall(core.zap_range, self._g, self._fl, mm.pgd, mm.pid, v.start, v.end, hl, self._res)
        for v in gone:
            hl = self._hstate_of(v).level
            self._kcall(core.free_empty_tables, self._g, mm.pgd, mm.pid, v.start, v.end, hl,
                        self.geometry.levels - 1, 0, self._res)
        mm.vmas = [v for v in mm.vmas if v not in gone]
        for v in gone:
            st = self._files[v.file]
            st.nr_vmas -= 1
            self._maybe_release(st)

    def _sys_munmap(self, proc, addr, length):
        mm = self._mm(proc)
        addr, length, end = self._check_page_range("munmap", addr, length)
        if length == 0:
            raise syscall_error(errno.EINVAL, "munmap: length must be > 0")
        self.call_path = ["munmap", "do_vmi_munmap"]
        self._do_munmap(mm, addr, end)
        self._account()
        self._finish()

    def _sys_exit(self, proc):
        mm = self._mm(proc)
        self.call_path = ["do_exit", "exit_mmap", "unmap_vmas", "__unmap_hugepage_range",
                          "free_pgtables"]
        for v in list(mm.vmas):
            hl = self._hstate_of(v).level
            self._kcall(core.zap_range, self._g, self._fl, mm.pgd, mm.pid, v.start, v.end, hl, self._res)
        for v in list(mm.vmas):
            hl = self._hstate_of(v).level
            self._kcall(core.free_empty_tables, self._g, mm.pgd, mm.pid, v.start, v.end, hl,
                        self.geometry.levels - 1, 0, self._res)
        vmas, mm.vmas = mm.vmas, []
        for v in vmas:
            st = self._files[v.file]
            st.nr_vmas -= 1
            self._maybe_release(st)
        self._kcall(_free_pgd, self._g, mm.pgd)
        mm.alive = False
        mm.pgd = 0
        self._account()
        self._finish()

    # ---- fork ------------------------------------------------------------------------
    @staticmethod
    def vma_needs_copy(dst: Vma, src: Vma) -> bool:
        """``vma_needs_copy`` (mm/memory.c): page tables are copied at fork only when the
        child VMA is uffd-wp (``userfaultfd_wp(dst_vma)``), or for PFNMAP/MIXEDMAP/anon VMAs,
        none of which a shared hugetlb VMA is (lazy copy since bcd51a3c679d)."""
        return bool(dst.uffd & UFFD_WP)

    def _sys_fork(self, proc):
        """``copy_process`` → ``dup_mmap``: VMAs are duplicated (``dup_userfaultfd`` drops the
        uffd flags unless the context has EVENT_FORK), and ``copy_hugetlb_page_range`` copies
        the page tables where ``vma_needs_copy`` says so, each copied leaf taking a reference.

        The copy is guarded like a fault: a refused reference fails the whole fork (ENOMEM
        under the thread's error policy, EFAULT under v2's).  HGM v2 35/46 as posted wrote
        ``if (try_get_page(hpage)) { ret = -EFAULT; break; }`` — the test is the wrong way
        round (``try_get_page()`` returns true on success, so every successful copy would fail
        the fork); the simulator models the intended ``!try_get_page()``."""
        parent = self._mm(proc)
        child = self._new_mm()
        self.call_path = ["copy_process", "dup_mmap", "dup_userfaultfd"]
        copied = False
        child_vmas = []
        for v in parent.vmas:
            if v.uffd and not v.uffd_event_fork:
                c = replace(v, uffd=0, uffd_event_fork=False)    # userfaultfd_reset_ctx
            else:
                c = v
            child_vmas.append(c)
            self._files[v.file].nr_vmas += 1
            if self.vma_needs_copy(c, v):
                if not copied:
                    self.call_path += ["copy_page_range", "copy_hugetlb_page_range"]
                    copied = True
                h = self._hstate_of(v)
                self._kcall(core.copy_range, self._g, self._fl, parent.pgd, child.pgd, child.pid,
                            v.start, v.end, h.level, h.shift, self._res)
        child.vmas = child_vmas
        try:
            self._account()
        except SchemeRefusal as refusal:
            self._warn_guard(refusal)
            code = errno.ENOMEM if self.errors == "proposed" else errno.EFAULT
            raise syscall_error(code, "fork: copy_hugetlb_page_range: the refcount guard refused "
                                "folio %d at refcount %d; the whole fork fails"
                                % (refusal.folio, refusal.refcount)) from None
        self._finish()
        return Process(self, child.pid)

    # ---- page faults -------------------------------------------------------------------
    def want_pmd_share(self, vma: Vma, addr: int) -> bool:
        """``want_pmd_share``: 2 MiB-hstate shared VMA covering the whole PUD-aligned range
        around ``addr``, not uffd minor/wp (``uffd_disable_huge_pmd_share``), not HGM."""
        h = self._hstate_of(vma)
        if h.level != 2 or not vma.shared or vma.uffd & (UFFD_WP | UFFD_MINOR) or vma.hgm:
            return False
        pud = self.geometry.level_size(3)
        base = addr & ~(pud - 1)
        return vma.start <= base and base + pud <= vma.end

    def huge_pmd_share_candidate(self, mm: _MmState, vma: Vma, addr: int) -> int:
        """``huge_pmd_share``: another VMA mapping the same file pages at the same PUD offset,
        with the same flags, covering its PUD range, whose mm has the PMD page: that page."""
        if not self.want_pmd_share(vma, addr):
            return 0
        g = self.geometry
        pud = g.level_size(3)
        idx = ((addr - vma.start) >> g.page_shift) + vma.pgoff
        for pid, other in self._mms.items():
            if not other.alive:
                continue
            for s in other.vmas:
                if (other is mm and s == vma) or s.file != vma.file:
                    continue
                if not (s.pgoff <= idx < s.pgoff + ((s.end - s.start) >> g.page_shift)):
                    continue
                saddr = s.start + ((idx - s.pgoff) << g.page_shift)
                sbase = saddr & ~(pud - 1)
                if ((saddr >> g.PMD_SHIFT) & (g.PTRS_PER_TABLE - 1)) != \
                        ((addr >> g.PMD_SHIFT) & (g.PTRS_PER_TABLE - 1)):
                    continue
                if s.flags_key() != vma.flags_key() or not (s.start <= sbase and sbase + pud <= s.end):
                    continue
                t, i, lvl = core.hugetlb_full_walk(self.pt.P, self._g, other.pgd, saddr, 3)
                if lvl == 3:
                    v = int(self.pt.ent[t, i])
                    if v != 0 and not v & 1:
                        return v >> 1
        return 0

    def _sys_touch(self, proc, addr, write):
        mm = self._mm(proc)
        addr = _check_int("addr", addr)
        vma = self._find_vma(mm, addr)
        if vma is None:
            raise SigSegv(addr)
        self.hugetlb_fault(mm, vma, addr)
        self._finish()

    def hugetlb_fault(self, mm: _MmState, vma: Vma, addr: int):
        """``hugetlb_fault`` → (``huge_pte_alloc`` / ``huge_pmd_share``) → ``hugetlb_no_page``.

        On an HGM VMA the walk allocates only the hstate level and the fault installs a leaf of
        the size of the first none entry it meets (HGM v2 24/46).  A fault on a page that is
        present does nothing; a fault the userfaultfd wants is handed to it
        (``hugetlb_handle_userfault``); a page that cannot be allocated is VM_FAULT_SIGBUS.
        """
        g = self.geometry
        h = self._hstate_of(vma)
        st = self._files[vma.file]
        self.call_path = ["handle_mm_fault", "hugetlb_fault"]
        share = self.huge_pmd_share_candidate(mm, vma, addr)
        kind, lvl, _ = core.probe(self.pt.P, self._g, mm.pgd, addr, h.level, share)
        idx = (((addr - vma.start) >> g.page_shift) + vma.pgoff) >> h.order
        if kind == 0:
            self.call_path.append("hugetlb_no_page")
            fid = int(st.pc[idx]) if idx < st.pc.size else -1
            if fid < 0 and idx >= (st.size >> h.shift):
                raise SigBus(addr, "beyond the end of the file (i_size %#x)" % st.size)
            if fid < 0:
                if vma.uffd & UFFD_MISSING:
                    raise UserfaultPending(addr, "missing")
                try:
                    self.alloc_hugetlb_folio(st, idx)
                except LookupError as e:
                    raise SigBus(addr, "VM_FAULT_SIGBUS from alloc_hugetlb_folio: %s" % e) from None
            elif vma.uffd & UFFD_MINOR:
                raise UserfaultPending(addr, "minor")
        elif share:
            self.call_path.append("huge_pmd_share")
        else:
            return   # already mapped: no fault
        share_arr = np.array([share], dtype=np.int32)
        share_base = addr & ~(g.level_size(3) - 1)
        min_shift = g.page_shift if vma.hgm else h.shift

        def run(limit):
            self._kcall(core.install_range, self._g, mm.pgd, mm.pid, vma.start, vma.pgoff,
                        h.shift, h.level, min_shift, st.pc, self._folio_pfn, addr, addr + 1,
                        core.MODE_FAULT, 0, limit, share_base, share_arr, 0, self._res)
            return int(self._res[1])

        if kind == 0:
            self.call_path.append("hugetlb_add_file_rmap")
        _, refusal = self._guarded(run, "fault")
        if refusal is not None:
            raise SigBus(addr, "VM_FAULT_SIGBUS: the refcount guard refused folio %d at refcount "
                         "%d (not VM_FAULT_OOM: that would invoke the OOM killer on an unrelated "
                         "process although memory is not short)" % (refusal.folio, refusal.refcount))

    # ---- madvise -------------------------------------------------------------------------
    def _sys_madvise(self, proc, addr, length, advice):
        mm = self._mm(proc)
        if advice not in _ADVICE:
            raise syscall_error(errno.EINVAL, "madvise: unknown advice %r; modelled: %s" % (
                advice, ", ".join("%s (%d)" % (n, a) for a, n in _ADVICE.items())))
        name = _ADVICE[advice]
        if advice == MADV_SPLIT and not self.scheme.supports_hgm:
            # madvise_behavior_valid(): checked before anything else
            raise syscall_error(errno.EINVAL, "madvise: MADV_SPLIT (26) is unknown advice on a "
                                "mainline kernel: HGM was never merged; use scheme='per_piece' "
                                "or another HGM scheme")
        # do_madvise() checks no TASK_SIZE: a range past it meets no VMA (ENOMEM below)
        addr, length, end = self._check_page_range("madvise(%s)" % name, addr, length,
                                                   task_size=False)
        if length == 0:
            return 0                     # do_madvise: "if (end == start) return 0;"
        if advice == MADV_SPLIT and self.scheme.writes_tail_pages and self.hvo:
            raise syscall_error(errno.EINVAL, "madvise(MADV_SPLIT): the %s scheme writes tail "
                                "struct pages, which HVO (hugetlb_optimize_vmemmap) maps read-only: "
                                "HGM and HVO exclude each other (HGM v2 cover letter); "
                                "use hvo=False" % self.scheme.name)
        if advice == MADV_COLLAPSE and not self.scheme.supports_hgm:
            vs = [v for v in mm.vmas if v.start < end and addr < v.end]
            if not vs:
                raise syscall_error(errno.ENOMEM, "madvise(MADV_COLLAPSE): no VMA in %#x-%#x"
                                    % (addr, end))
            raise syscall_error(errno.EINVAL, "madvise(MADV_COLLAPSE): mainline refuses hugetlb "
                                "VMAs (thp_vma_allowable_order); %d VMA(s) in range" % len(vs))
        # madvise_walk_vmas(): visit every VMA of the range in turn; a hole only sets
        # unmapped_error = -ENOMEM, returned once the mapped parts have had the advice
        vs = [v for v in mm.vmas if v.start < end and addr < v.end]
        if not vs:
            raise syscall_error(errno.ENOMEM, "madvise(%s): no VMA in %#x-%#x" % (name, addr, end))
        if advice == MADV_DONTNEED:
            self._madvise_dontneed(mm, vs, addr, end)
        elif advice == MADV_SPLIT:
            self._madvise_split(mm, addr, end)
        else:
            self._madvise_collapse(mm, vs, addr, end)
        self._account(guarded=advice != MADV_COLLAPSE)
        self._finish()
        if self._holes(vs, addr, end):
            raise StateKept(errno.ENOMEM, "ENOMEM: madvise(%s): %#x-%#x is not fully mapped; "
                            "the advice was applied to the mapped parts (madvise_walk_vmas: "
                            "unmapped_error)" % (name, addr, end))
        return 0

    @staticmethod
    def _holes(vs, start, end) -> bool:
        """Whether the sorted VMAs ``vs`` leave part of ``[start, end)`` unmapped."""
        pos = start
        for v in vs:
            if v.start > pos:
                return True
            pos = max(pos, v.end)
        return pos < end

    def _madvise_dontneed(self, mm, vs, addr, end):
        """``madvise_dontneed_free_valid_vma``: the start must be hugepage aligned (EINVAL)
        and the end is rounded *down* (Rik van Riel's fix); then ``zap_page_range_single``."""
        plan = []
        for v in vs:
            hs = self._hstate_of(v).size
            s = max(addr, v.start)
            e = min(end, v.end)
            if s & (hs - 1):
                raise syscall_error(errno.EINVAL, "madvise(MADV_DONTNEED): the start %#x of a "
                                    "range in a %s hugetlb VMA must be hugepage aligned "
                                    "(madvise_dontneed_free_valid_vma)" % (s, _fmt(hs)))
            e &= ~(hs - 1)
            if s < e:
                plan.append((v, s, e))
        self.call_path = ["madvise", "madvise_dontneed_free", "zap_page_range_single",
                          "__unmap_hugepage_range"]
        for v, s, e in plan:
            self._kcall(core.zap_range, self._g, self._fl, mm.pgd, mm.pid, s, e,
                        self._hstate_of(v).level, self._res)

    def _madvise_split(self, mm, addr, end):
        """HGM v1 09/46 ``MADV_SPLIT``: set VM_HUGETLB_HGM, unshare PMDs; maps nothing."""
        self._check_split("madvise(MADV_SPLIT)", mm, addr, end)
        self._split_vmas(mm, addr, end)
        self.call_path = ["madvise", "madvise_split", "hugetlb_unshare_all_pmds"]
        new = []
        for v in mm.vmas:
            if addr <= v.start and v.end <= end and not v.hgm:
                v = replace(v, hgm=True)
                self._unshare(mm, v.start, v.end)
            new.append(v)
        mm.vmas = new

    def _madvise_collapse(self, mm, vs, addr, end):
        """HGM v2 34/46 ``hugetlb_collapse``: for each largest aligned piece, replace a subtree
        of smaller leaves by one leaf (dropping every leaf's counts first), and fill holes
        whose page is in the page cache ("Any holes in the mapping will be filled").  The new
        leaf's reference comes from ``filemap_get_folio()``, which no refcount guard covers
        (neither v2 35/46 nor the thread's proposal), so collapse is never refused."""
        g = self.geometry
        self.call_path = ["madvise", "madvise_collapse", "hugetlb_collapse"]
        for v in vs:
            if not v.hgm:
                continue
            h = self._hstate_of(v)
            st = self._files[v.file]
            s = max(addr, v.start)
            e = min(end, v.end)
            pos = s
            while pos < e:
                ts = int(core._largest_shift(self._g, pos, e, h.shift, g.page_shift))
                if ts < 0:
                    break
                size = 1 << ts
                tl = (ts - g.page_shift) // g.bits_per_level + 1
                idx = (((pos - v.start) >> g.page_shift) + v.pgoff) >> h.order
                if idx < st.pc.size and st.pc[idx] >= 0:
                    t, i, lvl = core.hugetlb_full_walk(self.pt.P, self._g, mm.pgd, pos, tl)
                    val = int(self.pt.ent[t, i])
                    is_table = lvl == tl and val != 0 and not val & 1
                    if is_table:
                        self._kcall(core.zap_range, self._g, self._fl, mm.pgd, mm.pid, pos,
                                    pos + size, h.level, self._res)
                        self._kcall(core.free_empty_tables, self._g, mm.pgd, mm.pid, pos, pos + size,
                                    h.level, tl - 1, core.F_NO_HSTATE_EVENTS, self._res)
                    if is_table or val == 0:
                        flags = core.F_NO_HSTATE_EVENTS if is_table else 0
                        self._kcall(core.install_range, self._g, mm.pgd, mm.pid, v.start, v.pgoff,
                                    h.shift, h.level, g.page_shift, st.pc, self._folio_pfn, pos,
                                    pos + size, core.MODE_FIXED, ts, -1, 0, self._empty_share,
                                    flags, self._res)
                pos += size
        self.call_path += ["__unmap_hugepage_range", "hugetlb_free_pgd_range", "hugetlb_add_file_rmap"]

    # ---- userfaultfd -----------------------------------------------------------------------
    def _parse_modes(self, mode):
        if isinstance(mode, str):
            parts = [p.strip() for p in mode.split("|")]
        elif isinstance(mode, (tuple, list, set, frozenset)):
            parts = list(mode)
        else:
            raise TypeError("mode must be 'missing', 'minor', 'wp' or a combination, not %r" % (mode,))
        bits = 0
        for p in parts:
            if p not in _UFFD_MODES:
                raise syscall_error(errno.EINVAL, "UFFDIO_REGISTER: unknown mode %r; allowed: "
                                    "missing, minor, wp" % (p,))
            bits |= _UFFD_MODES[p]
        if not bits:
            raise syscall_error(errno.EINVAL, "UFFDIO_REGISTER: no mode given")
        return bits

    def _uffd_range(self, what, mm, addr, length, check_end=True):
        """The checks ``userfaultfd_register``/``_unregister`` make before changing anything:
        at least one VMA meets the range (``vma_find``), ``start`` is aligned to the first
        VMA's hugepage size, and (register) the end to that of the VMA holding it.  Holes
        between VMAs are allowed; each VMA in the range is handled."""
        addr, length, end = self._check_page_range(what, addr, length)
        if length == 0 or length & (self.geometry.PAGE_SIZE - 1):
            raise syscall_error(errno.EINVAL, "%s: the length must be a positive multiple of the "
                                "page size (validate_unaligned_range), not %d" % (what, length))
        vs = [v for v in mm.vmas if v.start < end and addr < v.end]
        if not vs:
            raise syscall_error(errno.EINVAL, "%s: no VMA in %#x-%#x" % (what, addr, end))
        hs = self._hstate_of(vs[0]).size
        if addr & (hs - 1):
            raise syscall_error(errno.EINVAL, "%s: the start %#x must be aligned to the first "
                                "VMA's hugepage size %s (vma_kernel_pagesize)" % (what, addr, _fmt(hs)))
        if check_end:
            # one loop over the VMAs in address order: the end alignment (for the VMA that
            # holds the end), then ownership by another userfaultfd
            for v in vs:
                hs = self._hstate_of(v).size
                if v.start < end <= v.end and end & (hs - 1):
                    raise syscall_error(errno.EINVAL, "%s: the end %#x must be aligned to the "
                                        "hugepage size %s of the VMA holding it" % (what, end, _fmt(hs)))
                if v.uffd:
                    raise syscall_error(errno.EBUSY, "%s: the VMA %#x-%#x is already registered "
                                        "with another userfaultfd" % (what, v.start, v.end))
        return addr, end, vs

    def _sys_uffdio_register(self, proc, addr, length, mode, event_fork):
        """``userfaultfd()`` + ``UFFDIO_API`` + ``UFFDIO_REGISTER`` (fs/userfaultfd.c
        ``userfaultfd_register``): a new userfaultfd each call, so a VMA another call already
        registered is EBUSY ("We can't allow more than one userfaultfd to own a single vma")."""
        mm = self._mm(proc)
        bits = self._parse_modes(mode)
        if not isinstance(event_fork, bool):
            raise TypeError("event_fork must be True or False")
        addr, end, vs = self._uffd_range("UFFDIO_REGISTER", mm, addr, length)
        self._split_vmas(mm, addr, end)
        self.call_path = ["userfaultfd", "UFFDIO_API", "UFFDIO_REGISTER", "userfaultfd_register"]
        new = []
        for v in mm.vmas:
            if addr <= v.start and v.end <= end:
                v = replace(v, uffd=bits, uffd_event_fork=event_fork)
                if bits & (UFFD_WP | UFFD_MINOR):
                    self._unshare(mm, v.start, v.end)   # uffd_disable_huge_pmd_share
            new.append(v)
        mm.vmas = new
        self._account()
        self._finish()
        return 0

    def _sys_uffdio_unregister(self, proc, addr, length):
        """``UFFDIO_UNREGISTER``: VMAs that are not registered are skipped (neither split nor
        checked); a registered one is split at the range's ends (hugetlb_vm_op_split)."""
        mm = self._mm(proc)
        addr, end, vs = self._uffd_range("UFFDIO_UNREGISTER", mm, addr, length, check_end=False)
        for v in vs:
            if not v.uffd:
                continue
            hs = self._hstate_of(v).size
            for point in (addr, end):
                if v.start < point < v.end and point & (hs - 1):
                    raise syscall_error(errno.EINVAL, "UFFDIO_UNREGISTER: %#x would split a %s "
                                        "hugetlb VMA off a hugepage boundary (hugetlb_vm_op_split)"
                                        % (point, _fmt(hs)))
        self.call_path = ["UFFDIO_UNREGISTER", "userfaultfd_unregister"]
        for v in vs:
            if v.uffd:
                self._split_vmas(mm, max(addr, v.start), min(end, v.end))
        mm.vmas = [replace(v, uffd=0, uffd_event_fork=False) if addr <= v.start and v.end <= end
                   else v for v in mm.vmas]
        self._finish()
        return 0

    def _continue_target(self, what, mm, addr, length):
        """``validate_range`` + ``find_dst_vma`` + the hugetlb alignment check of
        ``mfill_atomic_hugetlb`` (PAGE_SIZE on an HGM VMA, HGM v2 33/46)."""
        addr, length, end = self._check_page_range(what, addr, length)
        if length == 0 or length & (self.geometry.PAGE_SIZE - 1):
            raise syscall_error(errno.EINVAL, "%s: length must be a positive multiple of %d"
                                % (what, self.geometry.PAGE_SIZE))
        vma = self._find_vma(mm, addr)
        if vma is None or end > vma.end or not vma.uffd:
            raise syscall_error(errno.ENOENT, "%s: %#x-%#x is not inside one VMA registered with "
                                "userfaultfd (find_dst_vma)" % (what, addr, end))
        h = self._hstate_of(vma)
        gran = self.geometry.PAGE_SIZE if vma.hgm else h.size
        if addr & (gran - 1) or length & (gran - 1):
            raise syscall_error(errno.EINVAL, "%s: on a %s hugetlb VMA%s the range must be aligned "
                                "to %s (mfill_atomic_hugetlb); MADV_SPLIT enables 4 KiB"
                                % (what, _fmt(h.size), " with HGM" if vma.hgm else "",
                                   _fmt(gran)))
        return vma, h, addr, end

    def _continue(self, mm, vma, h, addr, end, mode, piece_shift):
        """One ``mfill_atomic_hugetlb`` loop over ``[addr, end)`` of one VMA: returns the bytes
        mapped and the error that stopped it (None when it finished)."""
        st = self._files[vma.file]
        g = self.geometry
        min_shift = g.page_shift if vma.hgm else h.shift
        self.call_path = ["UFFDIO_CONTINUE", "mfill_atomic_hugetlb"]
        if vma.hgm:
            self.call_path.append("hugetlb_alloc_largest_pte")
        self.call_path += ["hugetlb_mfill_atomic_pte", "filemap_lock_hugetlb_folio",
                           "hugetlb_add_file_rmap"]
        status = [0, 0, 0]

        share_base, share = 0, self._empty_share
        if h.level == 2:
            # huge_pte_alloc() → huge_pmd_share(), as for a fault
            pud = g.level_size(3)
            share_base = addr & ~(pud - 1)
            cands = [self.huge_pmd_share_candidate(mm, vma, b)
                     for b in range(share_base, end, pud)]
            if any(cands):
                share = np.array(cands, dtype=np.int32)
        inject = 0
        if self._inject is not None:
            if self._inject == "after_pte_alloc" or not self.lookup_first:
                inject = core.INJECT_AFTER_ALLOC
            else:
                inject = core.INJECT_AT_LOOKUP
            self._inject = None

        def run(limit):
            code = self._kcall(core.install_range, self._g, mm.pgd, mm.pid, vma.start, vma.pgoff,
                               h.shift, h.level, min_shift, st.pc, self._folio_pfn, addr, end,
                               mode, piece_shift, limit, share_base, share, 0, self._res,
                               inject)
            status[:] = [code, int(self._res[0]), int(self._res[2])]
            return status[1]

        mapped, refusal = self._guarded(run, "continue")
        code, mapped, fail_at = status
        if refusal is not None and not refusal.admitted:
            mapped = 0
        if refusal is not None:
            ecode = errno.ENOMEM if self.errors == "proposed" else errno.EFAULT
            cause = syscall_error(ecode, "UFFDIO_CONTINUE: the refcount guard refused folio %d at "
                                  "refcount %d" % (refusal.folio, refusal.refcount))
        elif code == -core.EEXIST:
            cause = syscall_error(errno.EEXIST, "UFFDIO_CONTINUE: %#x is already mapped (or mapped "
                                  "by a larger or smaller entry at that level)" % fail_at)
        elif code == -core.EFAULT and inject == core.INJECT_AFTER_ALLOC:
            raise StateKept(errno.EFAULT, "EFAULT: UFFDIO_CONTINUE: injected: an error at %#x "
                            "after the page tables were allocated and before the entry was set; "
                            "the tables stay, as in the kernel's error path" % fail_at)
        elif code == -core.EFAULT:
            cause = syscall_error(errno.EFAULT, "UFFDIO_CONTINUE: the page for %#x is not in the "
                                  "page cache (filemap_lock_hugetlb_folio failed)%s"
                                  % (fail_at, " [injected]" if inject else ""))
        elif code != 0:
            cause = syscall_error(-code, "UFFDIO_CONTINUE failed at %#x" % fail_at)
        else:
            cause = None
        return mapped, cause

    @staticmethod
    def _continue_result(mapped, cause):
        if cause is None:
            return mapped
        if mapped:
            raise PartialProgress(mapped, cause)
        raise cause

    def _sys_uffdio_continue(self, proc, addr, length):
        mm = self._mm(proc)
        vma, h, addr, end = self._continue_target("UFFDIO_CONTINUE", mm, addr, length)
        return self._continue_result(*self._continue(mm, vma, h, addr, end, core.MODE_LARGEST, 0))

    def _sys_uffdio_continue_batch(self, proc, addr, length, piece):
        mm = self._mm(proc)
        piece = _check_int("piece", piece, 1)
        length = _check_int("length", length, 1)
        g = self.geometry
        allowed = [g.level_size(l) for l in range(1, g.levels)]
        if piece not in allowed:
            raise ValueError("piece must be a page-table leaf size (%s), not %d"
                             % (", ".join(_fmt(s) for s in allowed[:3]), piece))
        if length % piece:
            raise ValueError("length %d is not a multiple of piece %d" % (length, piece))
        # run the calls VMA by VMA; each VMA's first call is validated as
        # uffdio_continue(a, piece) would be, and every call in it then passes the same checks
        total = 0
        pos, end = addr, addr + length
        while pos < end:
            try:
                vma, h, a0, _ = self._continue_target("UFFDIO_CONTINUE", mm, pos, piece)
            except OSError as e:
                return self._continue_result(total, e)
            seg = pos + ((min(end, vma.end) - pos) // piece) * piece
            if pos % piece == 0 and piece <= h.size and (vma.hgm or piece == h.size):
                # each call's range is one aligned piece: one fixed-size install loop
                mapped, cause = self._continue(mm, vma, h, a0, seg, core.MODE_FIXED,
                                               piece.bit_length() - 1)
                total += mapped
                if cause is not None:
                    return self._continue_result(total, cause)
            else:
                # each call maps the largest aligned pieces of its own range
                while pos < seg:
                    mapped, cause = self._continue(mm, vma, h, pos, pos + piece,
                                                   core.MODE_LARGEST, 0)
                    total += mapped
                    if cause is not None:
                        return self._continue_result(total, cause)
                    pos += piece
            pos = seg
        return total

    # =================================================================================
    # Read-only views
    # =================================================================================
    def _pagemap(self, proc, addr):
        if not isinstance(proc, Process) or proc._m is not self:
            raise TypeError("expected a Process of this machine, not %r" % (proc,))
        mm = self._mms[proc.pid]
        addr = _check_int("addr", addr)
        if not mm.alive or addr >= self.geometry.TASK_SIZE:
            return None
        t, i, lvl = core.hugetlb_full_walk(self.pt.P, self._g, mm.pgd, addr, 1)
        v = int(self.pt.ent[t, i])
        if v == 0 or not v & 1:
            return None
        sh = self.geometry.level_shift(lvl)
        pfn = (v >> 1) + ((addr & ((1 << sh) - 1)) >> self.geometry.page_shift)
        fid = int(core.pfn_to_folio(self._fl, pfn))
        return PagemapEntry(pfn, Folio(self, fid), pfn - int(self._folio_pfn[fid]), sh)

    def _smaps_hugetlb(self, proc, addr):
        mm = self._mm(proc)
        vma = self._find_vma(mm, _check_int("addr", addr))
        if vma is None:
            raise ValueError("no VMA at %#x" % addr)
        n = max(16, (vma.end - vma.start) >> self.geometry.page_shift)
        oa, osh, op, ot = (np.zeros(n, np.int64) for _ in range(4))
        seen = np.zeros(self.pt.capacity, np.int32)
        k = core.collect_leaves(self.pt.P, self._g, mm.pgd, vma.start, vma.end, seen, 1, oa, osh, op, ot)
        shared = private = 0
        for j in range(k):
            pfn = int(op[j])
            fid = int(core.pfn_to_folio(self._fl, pfn))
            mc = self.scheme.page_mapcount(fid, pfn - int(self._folio_pfn[fid]))
            if mc >= 2:
                shared += 1 << int(osh[j])
            else:
                private += 1 << int(osh[j])
        return {"Shared_Hugetlb": shared >> 10, "Private_Hugetlb": private >> 10}

    def state(self, snap=None) -> "MachineState":
        """A read-only view of the live state (``snap=None``) or of ``snap`` (from
        :meth:`snapshot`): what a renderer reads — page-table arrays, every mm (exited ones
        too) and file (released ones too), the folio layout and use, and the counters through
        the scheme's accessors.  Arrays are read-only views; a snapshot's counters are read
        through a fresh scheme object, so nothing here can change the machine."""
        if snap is None:
            pt = self.pt
            ent, tlevel, tshare = pt.ent, pt.tlevel, pt.tshare
            files, mms = self._files, self._mms
            used, ffile, findex = self._folio_used, self._folio_file, self._folio_index
            scheme, version = self.scheme, self.version
        else:
            self._check_snapshot(snap)
            p, py = snap["pt"], snap["py"]
            ent, tlevel, tshare = p["ent"], p["tlevel"], p["tshare"]
            files, mms = py[0], py[1]
            used, ffile, findex = py[2], py[3], py[4]
            scheme = self.scheme.fresh(guard=self.scheme.guard)
            scheme.restore(snap["scheme"])          # a private copy: the machine's is untouched
            version = snap["version"]
        ro = _read_only
        return MachineState(
            geometry=self.geometry, fl=ro(self._fl), folio_pfn=ro(self._folio_pfn),
            folio_hstate=ro(self._folio_hstate), ent=ro(ent), tlevel=ro(tlevel),
            tshare=ro(tshare), folio_used=ro(used), folio_file=ro(ffile),
            folio_index=ro(findex), scheme=scheme, version=version,
            mms={pid: MmView(pid, int(st.pgd), tuple(st.vmas), bool(st.alive))
                 for pid, st in mms.items()},
            files={fid: FileView(fid, st.name, int(st.hstate), int(st.size), ro(st.pc),
                                 bool(st.released)) for fid, st in files.items()})

    def _check_snapshot(self, snap):
        if not isinstance(snap, dict) or not {"pt", "scheme", "py", "version"} <= set(snap):
            raise TypeError("before must be a snapshot of this machine (m.snapshot()), not %r"
                            % (type(snap).__name__,))
        ref = snap["scheme"].get("refcount")
        if ref is None or np.asarray(ref).size != self._folio_pfn.size or \
                snap["pt"]["ent"].shape[1] != self.pt.ent.shape[1]:
            raise ValueError("before is a snapshot of another machine (its folio pool or table "
                             "width differs); take it with m.snapshot() on the machine you draw")

    def snapshot(self):
        """A complete copy of the state (page tables, counters, files, processes)."""
        return {"pt": self.pt.snapshot(), "scheme": self.scheme.snapshot(), "py": self._save(),
                "version": self.version, "warned": self._warned_sign, "inject": self._inject}

    def restore(self, snap):
        """Put the machine back exactly as it was when ``snapshot()`` was taken."""
        self.pt.restore(snap["pt"])
        self.scheme.restore(snap["scheme"])
        s = snap["py"]
        self._restore(({k: replace(v, pc=v.pc.copy(), resv=v.resv.copy()) for k, v in s[0].items()},
                       {k: _MmState(v.pid, v.pgd, list(v.vmas), v.alive)
                                              for k, v in s[1].items()},
                       s[2].copy(), s[3].copy(), s[4].copy(), list(s[5]), s[6], s[7], dict(s[8])))
        self.version = snap["version"]
        self._warned_sign = snap["warned"]
        self._inject = snap.get("inject")

    def audit(self) -> list:
        """Recompute every counter from the page tables and page cache; list differences."""
        from .audit import audit
        return audit(self)

    def state_digest(self) -> str:
        """A hash of the simulated state (page tables, counters, files, processes, the pool):
        equal digests mean byte-identical machines.

        Not included, though ``snapshot()`` keeps them: an armed error injection (a test
        harness's setting, used up by the operation it fires in, even one that fails) and the
        ``WARN_ON_ONCE`` flag (the kernel sets it on the very path that fails)."""
        import hashlib
        hsh = hashlib.sha256()
        pt = self.pt
        used = np.flatnonzero(pt.tlevel != 0)
        hsh.update(used.tobytes())
        for a in (pt.ent[used], pt.tlevel[used], pt.tcount[used], pt.tshare[used], pt.tfolio[used]):
            hsh.update(np.ascontiguousarray(a).tobytes())
        nfree = int(pt.meta[core.M_NFREE])
        # the free stack's pop order, ignoring pages added by growth (they pop last)
        top = pt.fstack[:nfree]
        hsh.update(top[top < (used.max() + 1 if used.size else 1)].tobytes())
        for k in sorted(self.scheme.counters):
            v = self.scheme.counters[k]
            hsh.update(k.encode())
            hsh.update(v.tobytes() if isinstance(v, np.ndarray) else repr(sorted(v.items()) if
                                                                           isinstance(v, dict) else v).encode())
        for a in (self._folio_used, self._folio_file, self._folio_index):
            hsh.update(a.tobytes())
        for fid in sorted(self._files):
            st = self._files[fid]
            hsh.update(repr((st.id, st.name, st.hstate, st.size, st.fd_open, st.nr_vmas,
                             st.released)).encode())
            hsh.update(st.pc.tobytes())
            hsh.update(st.resv.tobytes())
        for pid in sorted(self._mms):
            st = self._mms[pid]
            hsh.update(repr((st.pid, st.pgd, st.alive, st.vmas)).encode())
        hsh.update(repr((self._resv, self._next_pid, self._next_file)).encode())
        return hsh.hexdigest()


from ._jit import njit  # noqa: E402


@njit
def _free_pgd(P, E, g, pgd):
    """``pgd_free``."""
    core.table_free(P, pgd)
    return 0
