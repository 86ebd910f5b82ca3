"""mm/hugetlb.c: the pool (allocation, reservations), the fault, PMD sharing.

Rules: mainline v6.2; names: current mainline's (``alloc_hugetlb_folio``: v6.3, v6.2's
``alloc_huge_page``; :mod:`hgmviz.kernel_names`) (``hugetlb_reserve_pages``,
``want_pmd_share``, ``huge_pmd_share``, ``hugetlb_fault``, ``hugetlb_no_page``,
``copy_hugetlb_page_range``, ``hugetlb_unshare_all_pmds``); the HGM fault path from the
HGM series v2 24/46; MAP_PRIVATE (``hugetlb_wp``, ``unmap_ref_private``,
``hugetlb_vm_op_close``: the section at the end).  Every function takes the
:class:`~hgmviz.mm.machine.Machine` first.
"""
from __future__ import annotations

import errno
from dataclasses import replace

import numpy as np

from .. import core
from ..errors import SigBus, SigSegv, TaskHung, UserfaultPending, syscall_error
from .structs import (PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, UFFD_MINOR, UFFD_MISSING,
                      UFFD_WP, Vma, _FileState, _MmState, _check_int, _fmt)


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
    if access_error(vma, bool(write)):
        raise SigSegv(addr, "the VMA is %s: a %s is not allowed (access_error)"
                      % (prot_text(vma.prot), "write" if write else "read"))
    if vma.shared:
        hugetlb_fault(m, mm, vma, addr)
    else:
        hugetlb_fault_private(m, mm, vma, addr, bool(write))
    m._finish()


def access_error(vma, write: bool) -> bool:
    """``access_error`` (arch/x86/mm/fault.c): a write needs VM_WRITE, a read VM_READ (or
    VM_WRITE / VM_EXEC, which imply it on x86)."""
    if write:
        return not vma.prot & PROT_WRITE
    return not vma.prot & (PROT_READ | PROT_WRITE | PROT_EXEC)


def prot_text(prot: int) -> str:
    if prot == PROT_NONE:
        return "PROT_NONE"
    return "|".join(n for bit, n in ((PROT_READ, "PROT_READ"), (PROT_WRITE, "PROT_WRITE"),
                                     (PROT_EXEC, "PROT_EXEC")) if prot & bit)


def hugetlb_fault_private(m, mm, vma, addr, write):
    """``hugetlb_fault`` on a private VMA: ``hugetlb_no_page`` for a none entry, and for a write
    to a present one ``hugetlb_wp``."""
    h = m._hstate_of(vma)
    m.call_path = ["handle_mm_fault", "hugetlb_fault"]
    kind, _, _ = core.probe(m.pt.P, m._g, mm.pgd, addr, h.level, 0)
    if kind == 0:
        hugetlb_no_page_private(m, mm, vma, addr, write)
    elif write:
        st = m._files[vma.file]
        idx = linear_page_index(m, vma, addr, h)
        pc = int(st.pc[idx]) if idx < st.pc.size else -1
        hugetlb_wp(m, mm, vma, addr, pc)


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
        else:
            check_not_locked(m, st, idx, idx, "the fault")
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
                     "%d (v2 35/46: not VM_FAULT_OOM, 'we aren't actually OOMing'; since v5.16, "
                     "60e2793d440a, VM_FAULT_OOM makes pagefault_out_of_memory() warn and retry "
                     "the fault, which a guard that keeps refusing turns into an endless loop)%s"
                     % (refusal.folio, refusal.refcount,
                        "; " + LEAK_TEXT if refusal.leaked else ""), kept=refusal.leaked)


#: What the ``"sign_posted"`` guard's refusal leaves, said in the refusal's message.
LEAK_TEXT = ("as posted (HGM v2 35/46), hugetlb_try_find_lock_folio() returned "
             "ERR_PTR(-EFAULT) after filemap_lock_folio() had taken a reference and the folio "
             "lock, and put neither: the reference is leaked and the folio stays locked")


def check_not_locked(m, st, first, last, what):
    """A lookup of hugepage indices ``first..last`` of file ``st`` that finds a folio left
    locked (``Scheme.locked``: only the ``"sign_posted"`` guard's error path leaves one) would
    sleep in ``filemap_lock_folio()`` → ``folio_lock()`` for ever: :class:`TaskHung`, nothing
    changed.  (HGM v2 35/46 as posted: ``hugetlb_try_find_lock_folio`` returns without
    ``folio_unlock()``.)  The simulator checks this before the operation maps any piece."""
    locked = m.scheme.counters.get("locked")
    if locked is None:
        return
    for idx in range(first, min(last, st.pc.size - 1) + 1):
        fid = int(st.pc[idx])
        if fid >= 0 and locked[fid]:
            m.call_path += ["filemap_lock_folio", "folio_lock"]
            raise TaskHung(fid, "%s sleeps in folio_lock() on folio %d for ever: an earlier "
                           "refused lookup left it locked (HGM v2 35/46 as posted: "
                           "hugetlb_try_find_lock_folio() returned without folio_unlock()); "
                           "the hung-task detector reports the task after 120 s" % (what, fid))


def copy_hugetlb_page_range(m, dst: _MmState, src: _MmState, vma: Vma):
    """``copy_hugetlb_page_range`` (mm/hugetlb.c, v6.2): copy the parent's entries of ``vma``
    into the child's page tables at fork, each copied leaf taking a reference on its folio
    (``try_get_page`` + ``hugetlb_add_file_rmap``) — in the core, ``copy_range``."""
    h = m._hstate_of(vma)
    m._kcall(core.copy_range, m._g, m._fl, src.pgd, dst.pgd, dst.pid, vma.start, vma.end,
             h.level, h.shift, m._res)


# =========================================================================================
# MAP_PRIVATE and copy on write (mainline; HGM concerns MAP_SHARED only).
#
# At v6.3 (the stored copy read for docs/kernel-notes/issue13.md §1), checked against the
# running 6.18 kernel (tools/probes/issue13.c and the live scenarios private_*):
# * hugetlb_reserve_pages for a private VMA: a per-VMA reserve map owned by the mapping process
#   (HPAGE_RESV_OWNER), one reservation per page; its entries mean "this index's reservation
#   was consumed" (__vma_reservation_common); Vma.consumed keeps them, shared by the pieces of
#   a split VMA (hugetlb_vm_op_open).
# * hugetlb_no_page: a page the page cache holds is mapped read-only; otherwise an anonymous
#   folio ("only VM_MAYSHARE adds to the page cache").
# * hugetlb_wp: a write to a page this VMA does not own alone copies it into a new anonymous
#   folio; an exclusive anonymous page is reused; when the reservation owner cannot get a page
#   for the copy, unmap_ref_private takes the page from the other processes.
# * hugetlb_vm_op_close returns a closing VMA's unconsumed reservations; an anonymous folio
#   returns to the pool with its last mapping (free_huge_folio).
# Whether an entry is writable is not stored: "reuse when anonymous and mapped once, copy
# otherwise" gives what a stored write bit gives for every sequence the simulator can run
# (uffd-wp, the one exception, is not modelled on private VMAs).  A failed COW rolls back the
# read-only mapping hugetlb_no_page made first (the kernel keeps it; the process is SIGBUSed).
# =========================================================================================

def linear_page_index(m, vma, addr, h) -> int:
    """The file's hugepage index ``addr`` stands for in ``vma`` (``vma_hugecache_offset``)."""
    return (((addr - vma.start) >> m.geometry.page_shift) + vma.pgoff) >> h.order


def hugetlb_reserve_pages_private(m, h, n: int) -> None:
    """``hugetlb_reserve_pages`` for a private VMA: ``chg = to - from`` — every page of the
    range, whatever the inode's map says — then ``hugetlb_acct_memory``: ENOMEM when the free
    pages cannot cover HugePages_Rsvd + chg."""
    free = m._pool_free(h)
    if m._resv[h.index] + n > free:
        raise syscall_error(errno.ENOMEM, "mmap(MAP_PRIVATE): cannot reserve %d %s hugepage(s): "
                            "HugePages_Free %d, HugePages_Rsvd %d (hugetlb_acct_memory); use "
                            "noreserve=True or raise nr_hugepages"
                            % (n, _fmt(h.size), free, m._resv[h.index]))
    m._resv[h.index] += n
    m.call_path.append("hugetlb_reserve_pages")


def vma_commit_reservation(m, mm, vma, idx: int):
    """``vma_commit_reservation`` on a private map: record ``idx`` as consumed, in every piece
    of the VMA (they share one ``resv_map``).  Returns the VMA as it now is."""
    if vma.resv < 0 or idx in vma.consumed:
        return vma
    consumed = vma.consumed | {idx}
    new = []
    out = vma
    for v in mm.vmas:
        if v.resv == vma.resv:
            nv = replace(v, consumed=consumed)
            if v == vma:
                out = nv
            v = nv
        new.append(v)
    mm.vmas = new
    return out


def _set_vma(mm, old, **changes):
    new = replace(old, **changes)
    mm.vmas = [new if v == old else v for v in mm.vmas]
    return new


def alloc_hugetlb_folio_anon(m, mm, vma, idx: int, avoid_reserve: bool):
    """``alloc_hugetlb_folio(vma, addr, avoid_reserve)`` for an anonymous folio.

    The owner's reservation for ``idx`` is used unless it was consumed or ``avoid_reserve``
    (``vma_has_reserves``); otherwise a page is there only if HugePages_Free - HugePages_Rsvd
    > 0.  The index is then recorded as consumed in the owner's map.  Returns ``(fid, vma)``
    or raises ``LookupError`` (the caller maps it to SIGBUS: ``vmf_error(-ENOSPC)``)."""
    h = m._hstate_of(vma)
    free = m._free_folios(h)
    if not avoid_reserve and vma.resv >= 0 and idx not in vma.consumed:
        m._resv[h.index] -= 1
    elif free.size - m._resv[h.index] <= 0:
        raise LookupError("no free %s hugepage: HugePages_Free %d, HugePages_Rsvd %d"
                          % (_fmt(h.size), free.size, m._resv[h.index]))
    vma = vma_commit_reservation(m, mm, vma, idx)
    fid = int(free[0])
    m._folio_used[fid] = 1
    m._folio_file[fid] = -1
    m._folio_index[fid] = -1
    m._emit(core.EV_FOLIO_ALLOC, -1, 0, h.shift, 1, int(m._folio_pfn[fid]), fid)
    m.call_path.append("alloc_hugetlb_folio")
    return fid, vma


def _install(m, mm, vma, h, idx, fid, addr):
    """``set_huge_pte_at`` of folio ``fid`` at the hugepage holding ``addr`` (guarded like a
    fault: a refused reference is VM_FAULT_SIGBUS)."""
    pc = np.full(idx + 1, -1, np.int32)
    pc[idx] = fid
    share = np.zeros(1, np.int32)

    def run(limit):
        m._kcall(core.install_range, m._g, mm.pgd, mm.pid, vma.start, vma.pgoff, h.shift,
                 h.level, h.shift, pc, m._folio_pfn, addr, addr + 1, core.MODE_FAULT, 0, limit,
                 0, share, 0, m._res)
        return int(m._res[1])

    _, refusal = m._guarded(run, "fault")
    if refusal is not None:
        raise SigBus(addr, "VM_FAULT_SIGBUS: the refcount guard refused folio %d at refcount %d%s"
                     % (refusal.folio, refusal.refcount,
                        "; " + LEAK_TEXT if refusal.leaked else ""), kept=refusal.leaked)


def _zap_one(m, mm, vma, h, addr):
    haddr = addr & ~(h.size - 1)
    m._kcall(core.zap_range, m._g, m._fl, mm.pgd, mm.pid, haddr, haddr + h.size, h.level, m._res)


def _mapped_folio(m, mm, h, addr) -> int:
    kind, _, val = core.probe(m.pt.P, m._g, mm.pgd, addr, h.level, 0)
    if kind != 1:
        return -1
    return int(core.pfn_to_folio(m._fl, int(val) >> 1))


def hugetlb_no_page_private(m, mm, vma, addr: int, write: bool):
    """``hugetlb_fault`` → ``hugetlb_no_page`` on a private VMA (mm/hugetlb.c, v6.3).

    The page cache holds the page: map it read-only (``page_dup_file_rmap``: ref +1, map +1),
    then, for a write, ``hugetlb_wp`` at once.  It does not: allocate an anonymous folio
    (``hugepage_add_new_anon_rmap``), which never enters the page cache.  A VMA the owner's
    failed COW unmapped (``HPAGE_RESV_UNMAPPED``) gets SIGBUS on any such fault."""
    h = m._hstate_of(vma)
    st = m._files[vma.file]
    m.call_path.append("hugetlb_no_page")
    if vma.resv_unmapped:
        raise SigBus(addr, "the reservation owner's copy on write took this page "
                     "(unmap_ref_private, HPAGE_RESV_UNMAPPED): \"killed due to inadequate "
                     "hugepage pool\"")
    idx = linear_page_index(m, vma, addr, h)
    fid = int(st.pc[idx]) if idx < st.pc.size else -1
    if fid < 0:
        if idx >= (st.size >> h.shift):
            raise SigBus(addr, "beyond the end of the file (i_size %#x)" % st.size)
        if vma.uffd & UFFD_MISSING:
            raise UserfaultPending(addr, "missing")
        try:
            fid, vma = alloc_hugetlb_folio_anon(m, mm, vma, idx, avoid_reserve=False)
        except LookupError as e:
            raise SigBus(addr, "VM_FAULT_SIGBUS from alloc_hugetlb_folio: %s" % e) from None
        if not vma.anon_vma:
            vma = _set_vma(mm, vma, anon_vma=True)               # anon_vma_prepare
        m.call_path.append("hugepage_add_new_anon_rmap")
        _install(m, mm, vma, h, idx, fid, addr)
        return       # a write: hugetlb_wp finds it exclusive and makes it writable
    if vma.uffd & UFFD_MINOR:
        raise UserfaultPending(addr, "minor")
    m.call_path.append("hugetlb_add_file_rmap")
    _install(m, mm, vma, h, idx, fid, addr)                      # read-only
    if write:
        hugetlb_wp(m, mm, vma, addr, fid)      # "Optimization, do the COW without a second fault"


def hugetlb_wp(m, mm, vma, addr: int, pagecache_fid: int):
    """``hugetlb_wp`` (mm/hugetlb.c, v6.3): a write to a read-only entry of a private VMA.

    An anonymous folio mapped once is reused ("If no-one else is actually using this page,
    we're the exclusive owner").  Otherwise a new anonymous folio is allocated — without the
    owner's reservation when the old page is not the page-cache page (``outside_reserve``: that
    reservation was consumed by the first fault) — and replaces the old one in this mm
    (``page_remove_rmap`` + ``put_page`` on the old).  When that allocation fails for the owner,
    ``unmap_ref_private`` unmaps the page from the other processes and the owner reuses it;
    for anyone else it is VM_FAULT_SIGBUS."""
    h = m._hstate_of(vma)
    m.call_path.append("hugetlb_wp")
    old = _mapped_folio(m, mm, h, addr)
    anon = m._folio_file[old] < 0
    if anon and m.scheme.folio_mapcount(old) == 1:
        m.call_path.append("page_move_anon_rmap")
        return
    idx = linear_page_index(m, vma, addr, h)
    outside_reserve = vma.resv >= 0 and old != pagecache_fid
    try:
        new, vma = alloc_hugetlb_folio_anon(m, mm, vma, idx, avoid_reserve=outside_reserve)
    except LookupError as e:
        if outside_reserve:
            unmap_ref_private(m, mm, vma, old, addr)
            m._account()
            if m.scheme.folio_mapcount(old) == 1:                 # retry_avoidcopy
                m.call_path.append("page_move_anon_rmap")
                return
        raise SigBus(addr, "VM_FAULT_SIGBUS: hugetlb_wp cannot allocate the copy: %s" % e) from None
    if not vma.anon_vma:
        vma = _set_vma(mm, vma, anon_vma=True)
    m.call_path += ["copy_user_large_folio", "huge_ptep_clear_flush", "hugetlb_remove_rmap",
                    "hugepage_add_new_anon_rmap"]
    _zap_one(m, mm, vma, h, addr)
    _install(m, mm, vma, h, idx, new, addr)


def unmap_ref_private(m, mm, vma, fid: int, addr: int):
    """``unmap_ref_private``: the owner of a private mapping failed to COW; unmap the page from
    every other private VMA of the file at that offset that is not a reservation owner
    (shared VMAs are skipped), marking each ``HPAGE_RESV_UNMAPPED``."""
    g = m.geometry
    h = m._hstate_of(vma)
    haddr = addr & ~(h.size - 1)
    pgoff = ((haddr - vma.start) >> g.page_shift) + vma.pgoff
    m.call_path.append("unmap_ref_private")
    for other in m._mms.values():
        if not other.alive:
            continue
        for v in list(other.vmas):
            if (other is mm and v == vma) or v.file != vma.file or v.shared or v.resv >= 0:
                continue
            if not v.pgoff <= pgoff < v.pgoff + ((v.end - v.start) >> g.page_shift):
                continue
            vaddr = v.start + ((pgoff - v.pgoff) << g.page_shift)
            if _mapped_folio(m, other, h, vaddr) != fid:
                continue
            _zap_one(m, other, v, h, vaddr)
            _set_vma(other, v, resv_unmapped=True)


def hugetlb_vm_op_close(m, vma):
    """``hugetlb_vm_op_close``: a private owner's VMA returns the reservations of its range
    that were never consumed (``(end - start) - region_count(resv, start, end)``)."""
    if vma.resv < 0:
        return
    h = m._hstate_of(vma)
    first = vma.pgoff >> h.order
    n = (vma.end - vma.start) >> h.shift
    unused = sum(1 for i in range(first, first + n) if i not in vma.consumed)
    if unused:
        m._resv[h.index] -= unused
        m.call_path.append("hugetlb_vm_op_close")


def free_unmapped_anon_folios(m):
    """An anonymous folio whose last reference went (its last mapping was zapped:
    ``tlb_remove_page_size`` → ``free_huge_folio``) returns to the pool — and so does a file
    folio the page cache let go while page tables still held it (``hstate_present`` after a
    truncation or hole punch: :func:`hugetlbfs._remove_folio`), once the last of them goes."""
    anon = np.flatnonzero((m._folio_used == 1) & (m._folio_file < 0))
    freed = False
    for f in anon:
        f = int(f)
        if m.scheme.folio_ref_count(f) == 0:
            h = m.geometry.hstates[int(m._folio_hstate[f])]
            m._emit(core.EV_FOLIO_FREE, -1, 0, h.shift, 1, int(m._folio_pfn[f]), f)
            m._folio_used[f] = 0
            freed = True
    if freed:
        m.call_path.append("free_huge_folio")
        m._account()
