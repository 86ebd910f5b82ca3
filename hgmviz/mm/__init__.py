"""Layer 3: the scripting API in kernel vocabulary (a package cut along the kernel's files).

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
from .checkpoint import Checkpoint, CheckpointMismatch
from .machine import Machine
from .structs import (MADV_COLLAPSE, MADV_DONTNEED, MADV_SPLIT, UFFD_MINOR, UFFD_MISSING, UFFD_WP,
                      File, FileView, Folio, MachineState, MmView, PagemapEntry, Process, Vma)

__all__ = ["Machine", "Process", "File", "Folio", "Vma", "PagemapEntry", "MachineState",
           "MmView", "FileView", "Checkpoint", "CheckpointMismatch", "MADV_DONTNEED",
           "MADV_COLLAPSE", "MADV_SPLIT"]
