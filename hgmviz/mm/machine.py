"""The :class:`Machine`: it holds the state (the pool, files, mms, the page-table pool, one
scheme) and runs each operation under the transaction protocol; the work is done by free
functions in the modules named after the kernel's files (:mod:`.hugetlb`, :mod:`.hugetlbfs`,
:mod:`.mmap`, :mod:`.fork`, :mod:`.madvise`, :mod:`.userfaultfd`, :mod:`.procfs`), which
the machine exposes as methods under their historical names.
"""
from __future__ import annotations

import errno
import warnings

import numpy as np

from .. import core
from ..core import PageTablePool
from ..errors import PartialProgress, ProcessExited, SigBus, StateKept, syscall_error
from ..geometry import get_geometry, get_kernel_profile
from ..schemes import SchemeRefusal, get_scheme_class
from ..schemes.base import UPDATE_KINDS
from . import checkpoint as _checkpoint
from .checkpoint import Checkpoint
from . import fork, hugetlb, hugetlbfs, madvise, mmap, mprotect, mremap, procfs, userfaultfd
from .structs import (_PFN_BASE, File, Folio, MachineState, Process, Vma, _check_int, _FileState,
                      _file_state, _fmt, _mm_state, _MmState, _read_only)


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
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
                raise TypeError("nr_hugepages maps a hugepage size in bytes (an int) to a count; "
                                "%r is not an int; allowed sizes: %s"
                                % (size, ", ".join(str(h.size) for h in g.hstates)))
            h = g.hstate(int(size))
            counts[h.index] = _check_int("nr_hugepages[%s]" % _fmt(int(size)), n)
        # ---- the pool: folios laid out per hstate in contiguous pfn regions ----------
        # sized first, so that a pool too large is refused before anything is allocated
        pfn = _PFN_BASE
        starts = []
        for h in g.hstates:
            pfn = (pfn + (1 << h.order) - 1) & ~((1 << h.order) - 1)
            starts.append(pfn)
            pfn += counts[h.index] << h.order
        if pfn >= 1 << 30:
            raise ValueError("the pool is too large for the simulator: at most 2**30 base pages "
                             "(4 TiB of 4 KiB pages) in all, not %d" % (pfn - _PFN_BASE))
        fl = [len(g.hstates)]
        first = 0
        for h, start in zip(g.hstates, starts):
            fl += [start, h.order, first, counts[h.index]]
            first += counts[h.index]
        shifts = np.concatenate([np.full(counts[h.index], h.shift, dtype=np.int64)
                                 for h in g.hstates])
        pfns = np.concatenate([start + (np.arange(counts[h.index], dtype=np.int64) << h.order)
                               for h, start in zip(g.hstates, starts)])
        self._fl = np.array(fl, dtype=np.int64)
        self._folio_pfn = pfns
        self._folio_hstate = np.concatenate([np.full(counts[h.index], h.index, dtype=np.int8)
                                             for h in g.hstates])
        nf = pfns.size
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
        self.scheme = scheme_cls(g, shifts, self._folio_pfn, guard=guard,
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
        self._keep_on_error = False       # an error path that leaves its state (sign_posted)

    def _save(self):
        """The transaction protocol's save: a :class:`~hgmviz.mm.checkpoint.Checkpoint` without the
        page tables (journalled by the core) and the counters (saved by ``_op``)."""
        return _checkpoint.capture(self, tables=False)

    def _restore(self, saved):
        _checkpoint.put_back(self, saved, copy=False)

    # =================================================================================
    # Checkpoints and the state view (public)
    # =================================================================================
    def checkpoint(self) -> "Checkpoint":
        """A compact :class:`~hgmviz.mm.checkpoint.Checkpoint` of the whole state (page
        tables in use, counters, files, processes, the pool), for :meth:`restore` and
        :meth:`state`."""
        return _checkpoint.capture(self)

    def snapshot(self) -> "Checkpoint":
        """The same as :meth:`checkpoint` (the older name)."""
        return _checkpoint.capture(self)

    def restore(self, ckpt) -> None:
        """Put the machine back exactly as it was at ``ckpt`` (from :meth:`checkpoint` of
        this machine or of one configured alike).  A checkpoint of a machine configured
        otherwise raises :class:`~hgmviz.mm.checkpoint.CheckpointMismatch` (anything else
        ``TypeError``), and nothing changes."""
        _checkpoint.restore(self, ckpt)

    def state(self, ckpt=None) -> "MachineState":
        """A read-only view of the live state (``ckpt=None``) or of checkpoint ``ckpt``
        (:class:`~hgmviz.mm.structs.MachineState`), what a renderer reads."""
        return _checkpoint.machine_state(self, ckpt)

    @property
    def armed_injection(self):
        """The error injection armed by :meth:`inject` for the next UFFDIO_CONTINUE, or None."""
        return self._inject

    @property
    def warned_sign(self) -> bool:
        """Whether the sign guard's ``WARN_ON_ONCE`` has fired on this machine."""
        return self._warned_sign

    @property
    def core_geometry(self) -> np.ndarray:
        """The geometry as the jitted core takes it (``page_shift, bits_per_level, levels,
        0``), read-only: for tests and tools that call :mod:`hgmviz.core` walks directly."""
        return _read_only(self._g)

    @property
    def in_operation(self) -> bool:
        """True while an operation runs (or after one was interrupted without unwinding;
        :meth:`restore` clears it)."""
        return self._in_op

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
        self._keep_on_error = False
        try:
            result = fn(*args)
        except (PartialProgress, StateKept):
            # the kernel keeps what it mapped before the failing piece / its error path left
            self._commit(counters)
            raise
        except SigBus:
            if not self._keep_on_error:      # v2 35/46's fault error path: the leak stays
                self._rollback(saved, counters)
                raise
            self._commit(counters)
            raise
        except BaseException:
            self._rollback(saved, counters)
            raise
        self._commit(counters)
        return result

    def _rollback(self, saved, counters):
        meta = self.pt.meta
        core.rollback(self.pt.P, 0)
        meta[core.M_NEV] = 0
        self._restore(saved)
        self.scheme.restore(counters)
        self.last_events = self.pt.events()
        self.last_counter_updates = dict.fromkeys(UPDATE_KINDS, 0)
        self._in_op = False

    def _commit(self, counters_before):
        self.pt.meta[core.M_JLEN] = 0
        self.last_events = self.pt.events()
        self.version += 1
        self._in_op = False
        newly = np.flatnonzero(self.scheme.counters["wrapped"] & ~counters_before["wrapped"])
        self.last_wrapped = tuple(int(f) for f in newly)
        if newly.size:
            warnings.warn("refcount overflow: the refcount of folio(s) %s wrapped past INT_MAX "
                          "(%d) and is negative: more references than a signed count holds; "
                          "it reaches 0 after 2^%d references in all, and a folio whose count "
                          "drops to 0 while still mapped is freed — a use-after-free"
                          % (", ".join(str(int(f)) for f in newly), self.geometry.INT_MAX,
                             self.geometry.counter_bits),
                          RuntimeWarning, stacklevel=4)

    def _kcall(self, kernel, *args):
        """Call a core kernel that takes (P, E, ...); the pool grows and retries on NEED_*."""
        return self.pt.run(kernel, *args, levels=self.geometry.levels)

    def _account(self, guarded: bool = True, lookup: bool = True):
        """Feed the operation's events not yet accounted to the scheme (admit, then commit).
        ``lookup=False``: a path that takes its references without the page-cache lookup of
        HGM v2 35/46 (fork, UFFDIO_COPY; see :meth:`hgmviz.schemes.Scheme.admit`)."""
        ev = self.pt.events(self._accounted)
        scratch = self.scheme.admit(ev, guarded, lookup)
        self.scheme.commit(scratch)
        for kind, n in self.scheme.updates().items():
            self.last_counter_updates[kind] += n
        self._accounted = int(self.pt.meta[core.M_NEV])
        return ev

    def _finish(self):
        hugetlb.free_unmapped_anon_folios(self)

    def _emit(self, kind, mm, addr, shift, count, pfn, folio):
        pt = self.pt
        if pt.meta[core.M_NEV] + 1 > pt.ek.size:
            pt.grow_events()
        core.emit(pt.E, pt.meta, self._g, kind, mm, addr, shift, count, pfn, folio)

    def _guarded(self, run, what):
        """Run ``run(limit)`` (an install that emits events), account it, honour guards.

        On a guard refusal the work is rolled back and re-run up to the admitted leaves,
        so the kernel's piece-by-piece semantics hold.  Returns ``run``'s result and the
        refusal (or None).  ``what``: "fault" and "continue" look the folio up with
        ``hugetlb_try_find_lock_folio`` (HGM v2 35/46); anything else (UFFDIO_COPY) does not.
        Under the ``"sign_posted"`` guard a refused lookup leaves its reference and the folio
        lock behind (:meth:`~hgmviz.schemes.Scheme.leak_lookup_reference`), the refusal's
        ``refcount`` is the count the posted check saw (after that reference) and the
        operation keeps that state when it fails (``_keep_on_error``).
        """
        meta = self.pt.meta
        jm = int(meta[core.M_JLEN])
        em = int(meta[core.M_NEV])
        saved = self._save()
        lookup = what in ("fault", "continue")
        result = run(-1)
        try:
            self._account(lookup=lookup)
            return result, None
        except SchemeRefusal as refusal:
            core.rollback(self.pt.P, jm)
            meta[core.M_NEV] = em
            self._restore(saved)
            if refusal.admitted:
                result = run(refusal.admitted)
                self._account(lookup=lookup)
            else:
                result = None
            if lookup and refusal.guard == "sign_posted":
                refusal.refcount = self.scheme.leak_lookup_reference(refusal.folio)
                refusal.leaked = True
                self._keep_on_error = True
            self._warn_guard(refusal)
            self.last_refusal = refusal
            return result, refusal

    def _warn_guard(self, refusal):
        if refusal.guard in ("sign", "sign_posted") and not self._warned_sign:
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

        ``None`` disarms an injection not used yet.
        """
        if point is None:
            self._inject = None
            return
        if point not in ("pagecache_vanish", "after_pte_alloc"):
            raise ValueError("unknown injection point %r; allowed: 'pagecache_vanish', "
                             "'after_pte_alloc'" % (point,))
        self._inject = point

    def _mm(self, proc) -> _MmState:
        if not isinstance(proc, Process) or proc._m is not self:
            raise TypeError("expected a Process of this machine, not %r" % (proc,))
        st = _mm_state(self, proc.pid)
        if not st.alive:
            raise ProcessExited(errno.ESRCH, "ESRCH: process %d has exited" % proc.pid)
        return st

    def _file(self, f, *, must_be_open=True) -> _FileState:
        if not isinstance(f, File) or f._m is not self:
            raise TypeError("expected a File of this machine (from memfd_create), not %r" % (f,))
        st = _file_state(self, f.id)
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

    def memfd_create(self, size=0, hstate=None, name="memfd"):
        """``memfd_create(name, MFD_HUGETLB | MFD_HUGE_<size>)`` then ``ftruncate(size)``."""
        return self._op("memfd_create", hugetlbfs.memfd_create, self, size, hstate, name)

    def spawn(self) -> Process:
        """A new process with an empty address space (its own PGD)."""
        return self._op("spawn", fork.spawn, self)

    def audit(self) -> list:
        """Recompute every counter from the page tables and page cache; list differences."""
        from ..audit import audit
        return audit(self)

    # ---- the kernel functions, as methods (each module documents its own) ----------
    _free_folios = hugetlb.free_folios
    _pool_free = hugetlb.free_huge_pages
    alloc_hugetlb_folio = hugetlb.alloc_hugetlb_folio
    hugetlb_reserve_pages = hugetlb.hugetlb_reserve_pages
    _unshare = hugetlb.hugetlb_unshare_pmds
    want_pmd_share = hugetlb.want_pmd_share
    huge_pmd_share_candidate = hugetlb.huge_pmd_share
    _sys_touch = hugetlb.handle_mm_fault
    hugetlb_fault = hugetlb.hugetlb_fault
    _grow_file = hugetlbfs.grow_file
    _sys_memfd_create = hugetlbfs.memfd_create
    _sys_fallocate = hugetlbfs.hugetlbfs_fallocate
    _sys_close = hugetlbfs.close_fd
    _sys_ftruncate = hugetlbfs.hugetlbfs_setattr
    _sys_mprotect = mprotect.do_mprotect_pkey
    _sys_mremap = mremap.do_mremap
    _maybe_release = hugetlbfs.hugetlbfs_evict_inode
    _new_mm = fork.mm_alloc
    _sys_spawn = fork.spawn
    vma_needs_copy = staticmethod(fork.vma_needs_copy)
    _sys_fork = fork.dup_mmap
    _get_unmapped_area = mmap.hugetlb_get_unmapped_area
    _sys_mmap = mmap.do_mmap
    _check_page_range = mmap.check_page_range
    _check_split = mmap.check_split
    _split_vmas = mmap.split_vmas
    _do_munmap = mmap.do_vmi_munmap
    _sys_munmap = mmap.munmap
    _sys_exit = mmap.exit_mmap
    _sys_madvise = madvise.do_madvise
    _holes = staticmethod(madvise.has_holes)
    _madvise_dontneed = madvise.madvise_dontneed
    _madvise_split = madvise.madvise_split
    _madvise_collapse = madvise.hugetlb_collapse
    _parse_modes = userfaultfd.parse_modes
    _uffd_range = userfaultfd.uffd_range
    _sys_uffdio_register = userfaultfd.userfaultfd_register
    _sys_uffdio_unregister = userfaultfd.userfaultfd_unregister
    _sys_uffdio_copy = userfaultfd.uffdio_copy
    _sys_uffdio_wake = userfaultfd.uffdio_wake
    _continue_target = userfaultfd.continue_target
    _continue = userfaultfd.mfill_atomic_hugetlb
    _continue_result = staticmethod(userfaultfd.continue_result)
    _sys_uffdio_continue = userfaultfd.uffdio_continue
    _sys_uffdio_continue_batch = userfaultfd.uffdio_continue_batch
    meminfo = procfs.hugetlb_report_meminfo
    _pagemap = procfs.pagemap_read
    _smaps_hugetlb = procfs.smaps_hugetlb_range
    state_digest = _checkpoint.state_digest
