"""Layer 3: the scripting API in kernel vocabulary (a package cut along the kernel's files).

A :class:`Machine` holds the hugetlb pool, hugetlbfs/memfd files with their page caches,
processes (``struct mm_struct``) with their VMAs, the page-table pool of the core, and one
accounting scheme.  Every syscall a user makes is a method named after the syscall; the work
is done by methods named after the kernel functions they model, each citing it.

Versions the rules come from: mainline v6.2 (the thread's base) for everything the
kernel has, checked against current mainline (domain.md 0.1: ML-HUGETLB, ML-MADV, ML-FORK); the
function names (docstrings, ``Machine.call_path``) are current mainline's where a function was
renamed since v6.2 — :mod:`hgmviz.kernel_names` gives each such name's version and its v6.2 name
(e.g. ``hugetlb_mfill_atomic_pte``: v6.4, ``hugetlb_mcopy_atomic_pte`` in v6.2);
the HGM series v1 (5 Jan 2023) and v2 (18 Feb 2023) for MADV_SPLIT, high-granularity
UFFDIO_CONTINUE, the HGM fault path and MADV_COLLAPSE.

Failure is atomic: an operation that fails (bad input or a kernel error) leaves the machine
byte-identical.  Page-table writes are journalled by the core and rolled back; the small
Python-side state (VMAs, page caches, the pool) is saved before each operation and restored
on failure.  The exceptions are the kernel's own partial progress (docs/kernel-notes/issue13.md
§8), raised with the kernel's errno as :class:`~hgmviz.errors.PartialProgress` (EAGAIN with
``mapped``: UFFDIO_CONTINUE, UFFDIO_COPY) or :class:`~hgmviz.errors.StateKept` (everything else):
madvise() over holes (the mapped parts had the advice; ENOMEM), MADV_REMOVE stopped by a
private VMA (EACCES), fallocate out of pages (the pages added stay; ENOSPC), munmap whose end
split fails (the start split stays; EINVAL), MAP_FIXED whose hugetlbfs mmap fails (the old
mapping is gone; EINVAL / ENOMEM), UFFDIO_UNREGISTER and mprotect stopped by a failing split
or a hole (the VMAs before it changed; EINVAL / ENOMEM); and, under the ``"sign_posted"`` guard
(HGM v2 35/46 as posted), a refused fault or UFFDIO_CONTINUE keeps the lookup's leaked reference and
the locked folio (SIGBUS with ``kept``, StateKept or EAGAIN); a later lookup of that folio raises
:class:`~hgmviz.errors.TaskHung` and changes nothing.

MAP_PRIVATE (:mod:`.hugetlb`: ``hugetlb_wp``, ``unmap_ref_private``) is mainline only (HGM
concerns MAP_SHARED).  Simplifications, each stated where it matters: VMAs are never merged; the kernel may leave an empty page-table page
behind when a fault or UFFDIO_CONTINUE fails after allocating it, the simulator does not (the
HGM schemes' error-injection points model that).
"""
from .checkpoint import Checkpoint, CheckpointMismatch
from .machine import Machine
from .hugetlbfs import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE
from .mremap import MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE
from .structs import (MADV_COLLAPSE, MADV_DONTNEED, MADV_REMOVE, MADV_SPLIT, PROT_EXEC,
                      PROT_NONE, PROT_READ, PROT_WRITE, UFFD_MINOR, UFFD_MISSING, UFFD_WP, File,
                      FileView, Folio, MachineState, MmView, PagemapEntry, Process, Vma)

__all__ = ["Machine", "Process", "File", "Folio", "Vma", "PagemapEntry", "MachineState",
           "MmView", "FileView", "Checkpoint", "CheckpointMismatch", "MADV_DONTNEED",
           "MADV_REMOVE", "MADV_COLLAPSE", "MADV_SPLIT", "FALLOC_FL_KEEP_SIZE",
           "FALLOC_FL_PUNCH_HOLE", "PROT_NONE", "PROT_READ", "PROT_WRITE", "PROT_EXEC",
           "MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP"]
