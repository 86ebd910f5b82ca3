"""mm/mremap.c for hugetlb VMAs (since 550a7d60bd5e, v5.16; docs/kernel-notes/issue13.md §6;
live scenario mremap_hugetlb).

``mremap(old, old_len, new_len, flags, new_addr)``: for a hugetlb VMA both lengths are rounded
*up* to the hugepage size, ``old`` and (with MREMAP_FIXED) ``new_addr`` must be hugepage aligned
and the mapping may not grow ("Don't allow remap expansion, because the underlying hugetlb
reservation is not yet capable to handle split reservation") — each EINVAL.  So a shrink to
4 KiB of a 2 MiB mapping is a no-op, and a shrink unmaps the tail (``do_vmi_munmap``).  A move
(MREMAP_MAYMOVE | MREMAP_FIXED) unmaps what was at ``new_addr``, splits the VMA around the
range, gives the range a new VMA at ``new_addr`` (``copy_vma``) and moves its page-table
entries there (``move_hugetlb_page_tables`` → ``move_huge_pte``: get-and-clear, then set): the
folios' refcounts and mapcounts end where they were.  A PMD page shared with another process
is unshared instead of moved (``huge_pmd_unshare``): those pages refault at the new address.
The old range is then unmapped; a private owner's reserve map goes with the new VMA
(``clear_vma_resv_huge_pages`` on the old one).

The simulator moves an entry as a clear plus a set (the accounting sees both; the net change
is nil, ``last_counter_updates`` counts the two), never into a PMD page shared with another
process (the kernel's ``huge_pte_alloc`` at the target may share one); HGM VMAs are not
modelled here (Unsupported).
"""
from __future__ import annotations

import errno
from dataclasses import replace

import numpy as np

from .. import core
from ..errors import Unsupported, syscall_error
from .structs import _fmt
from . import hugetlb, mmap

__all__ = ["MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP", "do_mremap"]

# include/uapi/linux/mman.h
MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4


def _int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError("%s must be an int, not %r" % (name, v))
    return int(v)


def do_mremap(m, proc, old, old_len, new_len, flags=0, new_addr=None):
    """``mremap`` (mm/mremap.c): the checks, then a shrink in place or a move."""
    mm = m._mm(proc)
    old, old_len, new_len, flags = (_int("old_addr", old), _int("old_len", old_len),
                                    _int("new_len", new_len), _int("flags", flags))
    g = m.geometry
    ps = g.PAGE_SIZE
    if flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP):
        raise syscall_error(errno.EINVAL, "mremap: unknown flags %#x" % flags)
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
        raise syscall_error(errno.EINVAL, "mremap: MREMAP_FIXED needs MREMAP_MAYMOVE")
    if flags & MREMAP_FIXED:
        if new_addr is None:
            raise TypeError("mremap: MREMAP_FIXED needs new_addr")
        new_addr = _int("new_addr", new_addr)
    elif new_addr is not None:
        raise TypeError("mremap: new_addr is only used with MREMAP_FIXED")
    if old < 0 or old & (ps - 1) or old_len < 0 or new_len < 0:
        raise syscall_error(errno.EINVAL, "mremap: old_addr %#x is not page aligned" % old)
    old_len = (old_len + ps - 1) & ~(ps - 1)
    new_len = (new_len + ps - 1) & ~(ps - 1)
    if new_len == 0:
        raise syscall_error(errno.EINVAL, "mremap: new_len must be > 0")
    vma = m._find_vma(mm, old)
    if vma is None:
        raise syscall_error(errno.EFAULT, "mremap: no VMA at %#x (vma_lookup)" % old)
    if flags & MREMAP_DONTUNMAP:
        raise syscall_error(errno.EINVAL, "mremap: MREMAP_DONTUNMAP needs a private anonymous "
                            "mapping; a hugetlb VMA is neither (vma_to_resize)")
    h = m._hstate_of(vma)
    old_len = (old_len + h.size - 1) & ~(h.size - 1)       # is_vm_hugetlb_page(vma): ALIGN up
    new_len = (new_len + h.size - 1) & ~(h.size - 1)
    if old & (h.size - 1):
        raise syscall_error(errno.EINVAL, "mremap: old_addr %#x is not aligned to the VMA's "
                            "hugepage size %s" % (old, _fmt(h.size)))
    if flags & MREMAP_FIXED and new_addr & (h.size - 1):
        raise syscall_error(errno.EINVAL, "mremap: new_addr %#x is not aligned to the VMA's "
                            "hugepage size %s" % (new_addr, _fmt(h.size)))
    if new_len > old_len:
        raise syscall_error(errno.EINVAL, "mremap: a hugetlb mapping cannot grow (%s -> %s): "
                            "\"the underlying hugetlb reservation is not yet capable to handle "
                            "split reservation\"" % (_fmt(old_len), _fmt(new_len)))
    m.call_path = ["mremap"]
    if flags & MREMAP_FIXED:
        return mremap_to(m, mm, vma, old, old_len, new_addr, new_len)
    if old_len > new_len:
        m.call_path.append("do_vmi_munmap")
        mmap.do_vmi_munmap(m, mm, old + new_len, old + old_len, "mremap")
    m._account()
    m._finish()
    return old


def mremap_to(m, mm, vma, old, old_len, new_addr, new_len):
    """``mremap_to``: unmap the target, shrink the source, then ``move_vma``."""
    g = m.geometry
    if new_addr + new_len > g.TASK_SIZE:
        raise syscall_error(errno.EINVAL, "mremap: %#x-%#x is outside the user address space"
                            % (new_addr, new_addr + new_len))
    if new_addr < old + old_len and old < new_addr + new_len:
        raise syscall_error(errno.EINVAL, "mremap: the new range overlaps the old one")
    if vma.hgm:
        raise Unsupported("mremap of an HGM VMA (MADV_SPLIT) is not modelled")
    if old_len > vma.end - old:
        raise syscall_error(errno.EFAULT, "mremap: %#x-%#x is not inside one VMA (vma_to_resize)"
                            % (old, old + old_len))
    m.call_path.append("mremap_to")
    if any(v.start < new_addr + new_len and new_addr < v.end for v in mm.vmas):
        mmap.do_vmi_munmap(m, mm, new_addr, new_addr + new_len, "mremap")
    if old_len > new_len:
        mmap.do_vmi_munmap(m, mm, old + new_len, old + old_len, "mremap")
    move_vma(m, mm, old, new_len, new_addr)
    m._account()
    m._finish()
    return new_addr


def move_vma(m, mm, old, length, new_addr):
    """``move_vma``: split around the range, ``copy_vma`` at ``new_addr``,
    ``move_hugetlb_page_tables``, then unmap the old range."""
    g = m.geometry
    mmap.check_split(m, "mremap", mm, old, old + length)
    mmap.split_vmas(m, mm, old, old + length)
    piece = next(v for v in mm.vmas if v.start == old)
    h = m._hstate_of(piece)
    new = replace(piece, start=new_addr, end=new_addr + length)     # copy_vma: same pgoff
    m._files[piece.file].nr_vmas += 1
    mm.vmas = sorted(mm.vmas + [new], key=lambda v: v.start)
    m.call_path += ["move_vma", "copy_vma", "move_hugetlb_page_tables"]
    hugetlb.hugetlb_unshare_pmds(m, mm, old, old + length)          # huge_pmd_unshare
    n = max(16, length >> g.page_shift)
    oa, osh, op, ot = (np.zeros(n, np.int64) for _ in range(4))
    seen = np.zeros(m.pt.capacity, np.int32)
    k = core.collect_leaves(m.pt.P, m._g, mm.pgd, old, old + length, seen, 1, oa, osh, op, ot)
    leaves = [(int(oa[j]), int(core.pfn_to_folio(m._fl, int(op[j])))) for j in range(k)]
    m._kcall(core.zap_range, m._g, m._fl, mm.pgd, mm.pid, old, old + length, h.level, m._res)
    share = np.zeros(1, np.int32)
    for a, fid in leaves:
        to = new_addr + (a - old)
        idx = hugetlb.linear_page_index(m, new, to, h)
        pc = np.full(idx + 1, -1, np.int32)
        pc[idx] = fid
        m._kcall(core.install_range, m._g, mm.pgd, mm.pid, new.start, new.pgoff, h.shift,
                 h.level, h.shift, pc, m._folio_pfn, to, to + 1, core.MODE_FAULT, 0, -1, 0,
                 share, 0, m._res)
    m._account(guarded=False)          # a move takes no new reference
    # the old VMA's reserve map went with the new one (clear_vma_resv_huge_pages)
    mm.vmas = [replace(v, resv=-1, consumed=frozenset()) if v == piece else v for v in mm.vmas]
    mmap.do_vmi_munmap(m, mm, old, old + length, "mremap")
