"""kernel/fork.c and mm/memory.c (mainline v6.2): ``mm_alloc``, ``dup_mmap``,
``vma_needs_copy``; the page-table copy itself is :func:`hgmviz.mm.hugetlb.copy_hugetlb_page_range`.
"""
from __future__ import annotations

import errno
from dataclasses import replace

from .. import core
from ..errors import syscall_error
from ..schemes import SchemeRefusal
from . import hugetlb
from .structs import UFFD_WP, Process, Vma, _MmState


def mm_alloc(m) -> _MmState:
    """``mm_alloc`` (kernel/fork.c, v6.2) + ``pgd_alloc``: a new ``mm_struct`` with an empty
    PGD."""
    pt = m.pt
    pt.ensure_free_tables(1)
    pgd = core.table_alloc(pt.P, m.geometry.levels, -1)
    pid = m._next_pid
    m._next_pid += 1
    st = _MmState(pid, int(pgd), [])
    m._mms[pid] = st
    return st


def spawn(m):
    """A new process with an empty address space (``mm_alloc`` → ``pgd_alloc``)."""
    st = mm_alloc(m)
    m.call_path = ["mm_alloc", "pgd_alloc"]
    m._finish()
    return Process(m, st.pid)


def vma_needs_copy(dst: Vma, src: Vma) -> bool:
    """``vma_needs_copy`` (mm/memory.c): page tables are copied at fork only when the
    child VMA is uffd-wp (``userfaultfd_wp(dst_vma)``), or for PFNMAP/MIXEDMAP/anon VMAs,
    none of which a shared hugetlb VMA is (lazy copy since bcd51a3c679d); a private VMA
    that has had an anonymous page has an ``anon_vma``: its tables are copied (both sides then
    share its pages read-only until one writes: ``hugetlb_wp``)."""
    return bool(dst.uffd & UFFD_WP) or src.anon_vma


def dup_mmap(m, proc):
    """``copy_process`` → ``dup_mmap``: VMAs are duplicated (``dup_userfaultfd`` drops the
    uffd flags unless the context has EVENT_FORK), and ``copy_hugetlb_page_range`` copies
    the page tables where ``vma_needs_copy`` says so, each copied leaf taking a reference.

    The copy is guarded like a fault: a refused reference fails the whole fork (ENOMEM
    under the thread's error policy, EFAULT under v2's).  HGM v2 35/46 as posted wrote
    ``if (try_get_page(hpage)) { ret = -EFAULT; break; }`` — the test is the wrong way
    round (``try_get_page()`` returns true on success, so every successful copy would fail
    the fork); the simulator models the intended ``!try_get_page()``, under every guard
    (``"sign_posted"`` checks here as ``"sign"``: this path does not go through
    ``hugetlb_try_find_lock_folio``)."""
    parent = m._mm(proc)
    child = mm_alloc(m)
    m.call_path = ["copy_process", "dup_mmap", "dup_userfaultfd"]
    copied = False
    child_vmas = []
    for v in parent.vmas:
        if v.uffd and not v.uffd_event_fork:
            c = replace(v, uffd=0, uffd_event_fork=False)    # userfaultfd_reset_ctx
        else:
            c = v
        if not v.shared:
            # hugetlb_dup_vma_private: "the reserve map which does not apply to children"
            c = replace(c, resv=-1, consumed=frozenset(), resv_unmapped=False)
        child_vmas.append(c)
        m._files[v.file].nr_vmas += 1
        if vma_needs_copy(c, v):
            if not copied:
                m.call_path += ["copy_page_range", "copy_hugetlb_page_range"]
                copied = True
            hugetlb.copy_hugetlb_page_range(m, child, parent, v)
    child.vmas = child_vmas
    try:
        m._account(lookup=False)        # try_get_page(): checked before the increment
    except SchemeRefusal as refusal:
        m._warn_guard(refusal)
        code = errno.ENOMEM if m.errors == "proposed" else errno.EFAULT
        raise syscall_error(code, "fork: copy_hugetlb_page_range: the refcount guard refused "
                            "folio %d at refcount %d; the whole fork fails"
                            % (refusal.folio, refusal.refcount)) from None
    m._finish()
    return Process(m, child.pid)
