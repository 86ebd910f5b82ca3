"""The records and handles of the mm layer: ``struct vm_area_struct`` (:class:`Vma`), the
per-file and per-mm state, the read-only :class:`Folio`, :class:`File` and :class:`Process`
handles scripts use, and the views :meth:`Machine.state` returns.  Uapi constants from
include/uapi/asm-generic/mman-common.h (v6.2) and include/linux/userfaultfd_k.h.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass

import numpy as np

from ..errors import ProcessExited, syscall_error

__all__ = ["Process", "File", "Folio", "Vma", "PagemapEntry", "MachineState", "MmView",
           "FileView", "MADV_DONTNEED", "MADV_REMOVE", "MADV_COLLAPSE", "MADV_SPLIT",
           "PROT_NONE", "PROT_READ", "PROT_WRITE", "PROT_EXEC"]

# include/uapi/asm-generic/mman-common.h; MADV_SPLIT from HGM v1 09/46
MADV_DONTNEED = 4
MADV_REMOVE = 9
MADV_COLLAPSE = 25
MADV_SPLIT = 26
_ADVICE = {MADV_DONTNEED: "MADV_DONTNEED", MADV_REMOVE: "MADV_REMOVE",
           MADV_COLLAPSE: "MADV_COLLAPSE", MADV_SPLIT: "MADV_SPLIT"}
PROT_NONE = 0
PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4

UFFD_MISSING = 1   # VM_UFFD_MISSING
UFFD_WP = 2        # VM_UFFD_WP
UFFD_MINOR = 4     # VM_UFFD_MINOR
_UFFD_MODES = {"missing": UFFD_MISSING, "wp": UFFD_WP, "minor": UFFD_MINOR}

ULONG_LIMIT = 1 << 64          # unsigned long / size_t arguments are below this
MAX_LFS_FILESIZE = (1 << 63) - 1   # include/linux/fs.h: hugetlbfs's s_maxbytes
MFD_NAME_MAX_LEN = 249             # mm/memfd.c: NAME_MAX - strlen("memfd:")

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
    context's UFFD_FEATURE_EVENT_FORK; ``hgm`` is VM_HUGETLB_HGM (set by MADV_SPLIT);
    ``prot`` is PROT_READ/WRITE/EXEC (``mprotect``).

    A private VMA (``shared=False``) whose process made the mapping owns a reserve map
    (``HPAGE_RESV_OWNER``): ``resv`` is its id (-1: none, as in a fork child or with
    MAP_NORESERVE) and ``consumed`` the file indexes whose reservation was used (the pieces of a
    split VMA share both).  ``anon_vma`` is set by the first anonymous page
    (``anon_vma_prepare``); ``resv_unmapped`` is HPAGE_RESV_UNMAPPED (``unmap_ref_private``).
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
    resv: int = -1
    consumed: frozenset = frozenset()
    anon_vma: bool = False
    resv_unmapped: bool = False
    prot: int = PROT_READ | PROT_WRITE

    @property
    def uffd_modes(self) -> tuple:
        return tuple(name for name, bit in _UFFD_MODES.items() if self.uffd & bit)

    def flags_key(self):
        """The vm_flags page_table_shareable() compares."""
        return (self.shared, self.noreserve, self.uffd, self.hgm, self.prot)


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
        return "<Folio %d pfn %#x %s refcount %d entire_mapcount %d%s>" % (
            self.id, self.pfn, _fmt(self.size), self.refcount, self.entire_mapcount,
            " locked, %d leaked" % self.leaked_refs if self.locked else "")

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
    def locked(self) -> bool:
        """``folio_test_locked()`` after the operation: True only when an error path left the
        folio locked (HGM v2 35/46 as posted, guard ``"sign_posted"``); every later lookup of
        it would sleep in ``folio_lock()`` for ever."""
        return self._m.scheme.locked(self.id)

    @property
    def leaked_refs(self) -> int:
        """References taken and never put (HGM v2 35/46 as posted, guard ``"sign_posted"``):
        part of ``refcount``, held by no page table and no page cache."""
        return self._m.scheme.leaked_refs(self.id)

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


def _mm_state(m, pid) -> _MmState:
    """The mm of process ``pid``; a handle naming no process of ``m`` (``Process(m, 999)``)
    is ESRCH, not a KeyError."""
    st = m._mms.get(pid) if isinstance(pid, int) else None
    if st is None:
        raise ProcessExited(errno.ESRCH, "ESRCH: no process %r on this machine; processes come "
                            "from spawn() and fork() (pids %s)"
                            % (pid, ", ".join(str(p) for p in sorted(m._mms)) or "none yet"))
    return st


def _file_state(m, fid) -> _FileState:
    """The state of file ``fid``; a handle naming no file of ``m`` (``File(m, 99)``) is
    EBADF, not a KeyError."""
    st = m._files.get(fid) if isinstance(fid, int) else None
    if st is None:
        raise syscall_error(errno.EBADF, "no file %r on this machine; files come from "
                            "memfd_create() (ids %s)"
                            % (fid, ", ".join(str(f) for f in sorted(m._files)) or "none yet"))
    return st


class File:
    """A hugetlbfs file opened with ``memfd_create(MFD_HUGETLB)``."""

    __slots__ = ("_m", "id")

    def __init__(self, machine, fid):
        self._m = machine
        self.id = fid

    def __repr__(self):
        if self._m._files.get(self.id) is None:
            return "<File %r: no such file>" % (self.id,)
        st = self._st
        return "<File %d %r %s size %s%s>" % (self.id, st.name, _fmt(self.hstate.size),
                                               _fmt(st.size) if st.size else "0",
                                               "" if st.fd_open else " closed")

    @property
    def _st(self) -> _FileState:
        return _file_state(self._m, self.id)

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

    def fallocate(self, offset: int, length: int, mode: int = 0):
        """``fallocate(fd, mode, offset, length)``: mode 0 or ``FALLOC_FL_KEEP_SIZE``
        instantiate hugepages in the page cache; ``FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE``
        removes the whole hugepages of the range from every process and the page cache
        (:func:`hgmviz.mm.hugetlbfs.hugetlbfs_fallocate`)."""
        return self._m._op("fallocate", self._m._sys_fallocate, self, offset, length, mode)

    def ftruncate(self, size: int):
        """``ftruncate(fd, size)`` (:func:`hgmviz.mm.hugetlbfs.hugetlbfs_setattr`)."""
        return self._m._op("ftruncate", self._m._sys_ftruncate, self, size)


class Process:
    """A process (its ``mm_struct``): the handle scripts use to make syscalls."""

    __slots__ = ("_m", "pid")

    def __init__(self, machine, pid):
        self._m = machine
        self.pid = pid

    def __repr__(self):
        st = self._m._mms.get(self.pid)
        if st is None:
            return "<Process %d: no such process>" % self.pid
        return "<Process %d%s, %d VMAs>" % (self.pid, "" if st.alive else " exited", len(st.vmas))

    def __eq__(self, other):
        return isinstance(other, Process) and other._m is self._m and other.pid == self.pid

    def __hash__(self):
        return hash((id(self._m), self.pid))

    @property
    def alive(self) -> bool:
        return _mm_state(self._m, self.pid).alive

    @property
    def vmas(self) -> tuple:
        return tuple(_mm_state(self._m, self.pid).vmas)

    def find_vma(self, addr: int):
        return self._m._find_vma(_mm_state(self._m, self.pid), addr)

    # syscalls -------------------------------------------------------------------------
    def mmap(self, file, length, offset=0, shared=True, addr=None, noreserve=False):
        """``mmap(addr, length, PROT_READ|PROT_WRITE, MAP_SHARED[|MAP_FIXED][|MAP_NORESERVE],
        fd, offset)``; returns the start address."""
        return self._m._op("mmap", self._m._sys_mmap, self, file, length, offset, shared,
                           addr, noreserve)

    def munmap(self, addr, length):
        return self._m._op("munmap", self._m._sys_munmap, self, addr, length)

    def mremap(self, old_addr, old_len, new_len, flags=0, new_addr=None):
        """``mremap(old_addr, old_len, new_len, flags, new_addr)``; returns the new address
        (:func:`hgmviz.mm.mremap.do_mremap`)."""
        return self._m._op("mremap", self._m._sys_mremap, self, old_addr, old_len, new_len,
                           flags, new_addr)

    def mprotect(self, addr, length, prot):
        """``mprotect(addr, length, prot)`` (:func:`hgmviz.mm.mprotect.do_mprotect_pkey`)."""
        return self._m._op("mprotect", self._m._sys_mprotect, self, addr, length, prot)

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

    def uffdio_copy(self, addr, length):
        """``UFFDIO_COPY``: fill the missing pages of ``[addr, addr + length)`` (in a
        userfaultfd-registered VMA) with new pages; returns the bytes copied
        (:func:`hgmviz.mm.userfaultfd.uffdio_copy`)."""
        return self._m._op("uffdio_copy", self._m._sys_uffdio_copy, self, addr, length)

    def uffdio_wake(self, addr, length):
        """``UFFDIO_WAKE``: wake the faults waiting in the range (nothing else changes)."""
        return self._m._op("uffdio_wake", self._m._sys_uffdio_wake, self, addr, length)

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
    ``tshare`` the page-table pool (entries: 0 none, table << 1, pfn << 1 | 1; of the live
    machine, ``ent`` is a read-only :class:`~hgmviz.core.entries.Entries` view indexed like
    the array, of a checkpoint an array); ``folio_used``,
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


