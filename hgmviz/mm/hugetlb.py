"""mm/hugetlb.c: the pool (allocation, reservations), the fault, PMD sharing.

Names and rules: mainline v6.2 (``alloc_hugetlb_folio``, ``hugetlb_reserve_pages``,
``want_pmd_share``, ``huge_pmd_share``, ``hugetlb_fault``, ``hugetlb_no_page``,
``copy_hugetlb_page_range``, ``hugetlb_unshare_all_pmds``); the HGM fault path from the
HGM series v2 24/46.  Every function takes the :class:`~hgmviz.mm.machine.Machine` first.
"""
from __future__ import annotations

import errno

import numpy as np

from .. import core
from ..errors import SigBus, SigSegv, UserfaultPending, syscall_error
from .structs import (UFFD_MINOR, UFFD_MISSING, UFFD_WP, Vma, _FileState, _MmState, _check_int,
                      _fmt)


def free_folios(m, h) -> np.ndarray:
    """The folios of hstate ``h`` on the free list (``h->hugepage_freelists``, mm/hugetlb.c
    v6.2), lowest first."""
    lo = int(m._fl[3 + 4 * h.index])
    n = m._nr_hugepages[h.index]
    return lo + np.flatnonzero(m._folio_used[lo:lo + n] == 0)


def free_huge_pages(m, h) -> int:
    """``h->free_huge_pages`` (mm/hugetlb.c v6.2): how many hugepages of ``h`` are free."""
    return int(free_folios(m, h).size)


def alloc_hugetlb_folio(m, st: _FileState, idx: int):
    """``alloc_hugetlb_folio`` + ``hugetlb_add_to_page_cache`` for index ``idx``.

    A reservation for ``idx`` (``resv_map`` entry) is consumed if there is one; otherwise
    a page is available only if ``free_huge_pages - resv_huge_pages > 0``.  Returns the
    folio id or raises ``LookupError`` with the reason (the caller maps it to
    VM_FAULT_SIGBUS or ENOSPC).
    """
    h = m.geometry.hstates[st.hstate]
    free = free_folios(m, h)
    if st.resv[idx] == 1:
        m._resv[h.index] -= 1
    elif free.size - m._resv[h.index] <= 0:
        raise LookupError("no free %s hugepage: HugePages_Free %d, HugePages_Rsvd %d"
                          % (_fmt(h.size), free.size, m._resv[h.index]))
    st.resv[idx] = 2
    fid = int(free[0])
    m._folio_used[fid] = 1
    m._folio_file[fid] = st.id
    m._folio_index[fid] = idx
    st.pc[idx] = fid
    m._emit(core.EV_FOLIO_ALLOC, -1, 0, h.shift, 1, int(m._folio_pfn[fid]), fid)
    m._emit(core.EV_PAGECACHE_ADD, -1, 0, h.shift,
               m.kernel.pagecache_refs(h.pages_per_huge_page()), int(m._folio_pfn[fid]), fid)
    m.call_path += ["alloc_hugetlb_folio", "hugetlb_add_to_page_cache"]
    return fid


def hugetlb_reserve_pages(m, st: _FileState, frm: int, to: int):
    """``hugetlb_reserve_pages`` for a shared mapping: reserve every index of
    ``[frm, to)`` not yet in the inode's ``resv_map``; ENOMEM if the pool cannot cover it
    (``hugetlb_acct_memory``: resv + chg must not exceed free)."""
    h = m.geometry.hstates[st.hstate]
    chg = int(np.count_nonzero(st.resv[frm:to] == 0))
    free = free_huge_pages(m, h)
    if m._resv[h.index] + chg > free:
        raise syscall_error(errno.ENOMEM, "mmap: cannot reserve %d %s hugepage(s): "
                            "HugePages_Free %d, HugePages_Rsvd %d (hugetlb_acct_memory); "
                            "use noreserve=True or raise nr_hugepages"
                            % (chg, _fmt(h.size), free, m._resv[h.index]))
    st.resv[frm:to][st.resv[frm:to] == 0] = 1
    m._resv[h.index] += chg
    m.call_path.append("hugetlb_reserve_pages")


def hugetlb_unshare_pmds(m, mm, a, b):
    """``hugetlb_unshare_pmds`` (mm/hugetlb.c v6.2): unshare every shared PMD page of the
    PUD-aligned ranges around ``[a, b)`` (``huge_pmd_unshare`` for each)."""
    pud = m.geometry.level_size(3)
    a &= ~(pud - 1)
    b = (b + pud - 1) & ~(pud - 1)
    m._kcall(core.unshare_range, m._g, mm.pgd, mm.pid, a, b, m._res)


def want_pmd_share(m, vma: Vma, addr: int) -> bool:
    """``want_pmd_share``: 2 MiB-hstate shared VMA covering the whole PUD-aligned range
    around ``addr``, not uffd minor/wp (``uffd_disable_huge_pmd_share``), not HGM."""
    h = m._hstate_of(vma)
    if h.level != 2 or not vma.shared or vma.uffd & (UFFD_WP | UFFD_MINOR) or vma.hgm:
        return False
    pud = m.geometry.level_size(3)
    base = addr & ~(pud - 1)
    return vma.start <= base and base + pud <= vma.end


def huge_pmd_share(m, mm: _MmState, vma: Vma, addr: int) -> int:
    """``huge_pmd_share``: another VMA mapping the same file pages at the same PUD offset,
    with the same flags, covering its PUD range, whose mm has the PMD page: that page."""
    if not want_pmd_share(m, vma, addr):
        return 0
    g = m.geometry
    pud = g.level_size(3)
    idx = ((addr - vma.start) >> g.page_shift) + vma.pgoff
    for pid, other in m._mms.items():
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
            t, i, lvl = core.hugetlb_full_walk(m.pt.P, m._g, other.pgd, saddr, 3)
            if lvl == 3:
                v = int(m.pt.ent[t, i])
                if v != 0 and not v & 1:
                    return v >> 1
    return 0


def handle_mm_fault(m, proc, addr, write):
    """``handle_mm_fault`` (mm/memory.c v6.2) for a touch at ``addr``: SIGSEGV outside any VMA,
    else :func:`hugetlb_fault`."""
    mm = m._mm(proc)
    addr = _check_int("addr", addr)
    vma = m._find_vma(mm, addr)
    if vma is None:
        raise SigSegv(addr)
    hugetlb_fault(m, mm, vma, addr)
    m._finish()


def hugetlb_fault(m, mm: _MmState, vma: Vma, addr: int):
    """``hugetlb_fault`` → (``huge_pte_alloc`` / ``huge_pmd_share``) → ``hugetlb_no_page``.

    On an HGM VMA the walk allocates only the hstate level and the fault installs a leaf of
    the size of the first none entry it meets (HGM v2 24/46).  A fault on a page that is
    present does nothing; a fault the userfaultfd wants is handed to it
    (``hugetlb_handle_userfault``); a page that cannot be allocated is VM_FAULT_SIGBUS.
    """
    g = m.geometry
    h = m._hstate_of(vma)
    st = m._files[vma.file]
    m.call_path = ["handle_mm_fault", "hugetlb_fault"]
    share = huge_pmd_share(m, mm, vma, addr)
    kind, lvl, _ = core.probe(m.pt.P, m._g, mm.pgd, addr, h.level, share)
    idx = (((addr - vma.start) >> g.page_shift) + vma.pgoff) >> h.order
    if kind == 0:
        m.call_path.append("hugetlb_no_page")
        fid = int(st.pc[idx]) if idx < st.pc.size else -1
        if fid < 0 and idx >= (st.size >> h.shift):
            raise SigBus(addr, "beyond the end of the file (i_size %#x)" % st.size)
        if fid < 0:
            if vma.uffd & UFFD_MISSING:
                raise UserfaultPending(addr, "missing")
            try:
                alloc_hugetlb_folio(m, st, idx)
            except LookupError as e:
                raise SigBus(addr, "VM_FAULT_SIGBUS from alloc_hugetlb_folio: %s" % e) from None
        elif vma.uffd & UFFD_MINOR:
            raise UserfaultPending(addr, "minor")
    elif share:
        m.call_path.append("huge_pmd_share")
    else:
        return   # already mapped: no fault
    share_arr = np.array([share], dtype=np.int32)
    share_base = addr & ~(g.level_size(3) - 1)
    min_shift = g.page_shift if vma.hgm else h.shift

    def run(limit):
        m._kcall(core.install_range, m._g, mm.pgd, mm.pid, vma.start, vma.pgoff,
                    h.shift, h.level, min_shift, st.pc, m._folio_pfn, addr, addr + 1,
                    core.MODE_FAULT, 0, limit, share_base, share_arr, 0, m._res)
        return int(m._res[1])

    if kind == 0:
        m.call_path.append("hugetlb_add_file_rmap")
    _, refusal = m._guarded(run, "fault")
    if refusal is not None:
        raise SigBus(addr, "VM_FAULT_SIGBUS: the refcount guard refused folio %d at refcount "
                     "%d (not VM_FAULT_OOM: that would invoke the OOM killer on an unrelated "
                     "process although memory is not short)" % (refusal.folio, refusal.refcount))


def copy_hugetlb_page_range(m, dst: _MmState, src: _MmState, vma: Vma):
    """``copy_hugetlb_page_range`` (mm/hugetlb.c, v6.2): copy the parent's entries of ``vma``
    into the child's page tables at fork, each copied leaf taking a reference on its folio
    (``try_get_page`` + ``hugetlb_add_file_rmap``) — in the core, ``copy_range``."""
    h = m._hstate_of(vma)
    m._kcall(core.copy_range, m._g, m._fl, src.pgd, dst.pgd, dst.pid, vma.start, vma.end,
             h.level, h.shift, m._res)
