"""fs/proc/task_mmu.c and mm/hugetlb.c views (mainline v6.2; HGM v1 21/46 for smaps):
``/proc/pid/pagemap`` (``pagemap_hugetlb_range``), the hugetlb lines of ``/proc/pid/smaps``
(``smaps_hugetlb_range``) and of ``/proc/meminfo`` (``hugetlb_report_meminfo``).
"""
from __future__ import annotations

import numpy as np

from .. import core
from .structs import _mm_state, Folio, PagemapEntry, Process, _check_int
from . import hugetlb


def hugetlb_report_meminfo(m) -> dict:
    """``/proc/meminfo`` hugetlb lines per hstate: ``{size: {"HugePages_Total": ..}}``."""
    out = {}
    for h in m.geometry.hstates:
        out[h.size] = {"HugePages_Total": m._nr_hugepages[h.index],
                       "HugePages_Free": hugetlb.free_huge_pages(m, h),
                       "HugePages_Rsvd": m._resv[h.index],
                       "HugePages_Surp": 0,
                       "Hugepagesize": h.size >> 10}
    return out


def pagemap_read(m, proc, addr):
    """``/proc/pid/pagemap`` for the page at ``addr`` (``pagemap_hugetlb_range``,
    fs/proc/task_mmu.c v6.2; HGM: the leaf of any size): None if not present."""
    if not isinstance(proc, Process) or proc._m is not m:
        raise TypeError("expected a Process of this machine, not %r" % (proc,))
    mm = _mm_state(m, proc.pid)
    addr = _check_int("addr", addr)
    if not mm.alive or addr >= m.geometry.TASK_SIZE:
        return None
    t, i, lvl = core.hugetlb_full_walk(m.pt.P, m._g, mm.pgd, addr, 1)
    v = int(m.pt.ent[t, i])
    if v == 0 or not v & 1:
        return None
    sh = m.geometry.level_shift(lvl)
    pfn = (v >> 1) + ((addr & ((1 << sh) - 1)) >> m.geometry.page_shift)
    fid = int(core.pfn_to_folio(m._fl, pfn))
    return PagemapEntry(pfn, Folio(m, fid), pfn - int(m._folio_pfn[fid]), sh)


def smaps_hugetlb_range(m, proc, addr):
    """The hugetlb lines of ``/proc/pid/smaps`` for the VMA holding ``addr``:
    ``smaps_hugetlb_range`` (fs/proc/task_mmu.c) as HGM v1 21/46 changed it — once per leaf
    of any size, shared if the leaf's first page has ``page_mapcount() >= 2``."""
    mm = m._mm(proc)
    vma = m._find_vma(mm, _check_int("addr", addr))
    if vma is None:
        raise ValueError("no VMA at %#x" % addr)
    # the output grows with the leaves present (doubling), not with the VMA's size
    n = max(16, min(4096, (vma.end - vma.start) >> m.geometry.page_shift))
    seen = np.zeros(m.pt.capacity, np.int32)
    while True:
        oa, osh, op, ot = (np.zeros(n, np.int64) for _ in range(4))
        k = core.collect_leaves(m.pt.P, m._g, mm.pgd, vma.start, vma.end, seen, 1, oa, osh,
                                op, ot)
        if k >= 0:
            break
        n *= 2
    shared = private = 0
    for j in range(k):
        pfn = int(op[j])
        fid = int(core.pfn_to_folio(m._fl, pfn))
        mc = m.scheme.page_mapcount(fid, pfn - int(m._folio_pfn[fid]))
        if mc >= 2:
            shared += 1 << int(osh[j])
        else:
            private += 1 << int(osh[j])
    return {"Shared_Hugetlb": shared >> 10, "Private_Hugetlb": private >> 10}
