"""mm/mmap.c (mainline v6.2): ``do_mmap`` → ``hugetlbfs_file_mmap``, ``do_vmi_munmap`` (v6.3's
name for v6.2's ``do_mas_munmap``), VMA
splitting (``__split_vma`` with ``hugetlb_vm_op_split``), and ``exit_mmap``; the partial
progress of a failed munmap and of a failed MAP_FIXED (docs/kernel-notes/issue13.md §8).
"""
from __future__ import annotations

import errno
from dataclasses import replace

from .. import core
from ..errors import StateKept, syscall_error
from .structs import MAX_LFS_FILESIZE, ULONG_LIMIT, Vma, _MmState, _check_int, _fmt
from . import hugetlb, hugetlbfs
from .._jit import njit


def hugetlb_get_unmapped_area(m, mm: _MmState, length: int, align: int) -> int:
    """``hugetlb_get_unmapped_area``: top-down from mmap_base, aligned to the hugepage."""
    top = m.geometry.mmap_base
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


def do_mmap(m, proc, f, length, offset, shared, addr, noreserve):
    """``do_mmap`` (mm/mmap.c v6.2) → ``hugetlbfs_file_mmap`` (fs/hugetlbfs/inode.c): the checks,
    ``hugetlb_get_unmapped_area`` or MAP_FIXED (which unmaps what was there),
    ``hugetlb_reserve_pages`` unless MAP_NORESERVE, and the new VMA."""
    mm = m._mm(proc)
    st = m._file(f)
    h = m.geometry.hstates[st.hstate]
    length = _check_int("length", length)
    offset = _check_int("offset", offset)
    if not isinstance(shared, bool) or not isinstance(noreserve, bool):
        raise TypeError("shared and noreserve must be True or False")
    if length == 0:
        raise syscall_error(errno.EINVAL, "mmap: length must be > 0")
    if length > m.geometry.TASK_SIZE:
        # do_mmap: PAGE_ALIGN(len) == 0 -> ENOMEM; get_unmapped_area: len > TASK_SIZE -> ENOMEM
        raise syscall_error(errno.ENOMEM, "mmap: length %#x is larger than the user address "
                            "space (%#x)" % (length, m.geometry.TASK_SIZE))
    if offset > MAX_LFS_FILESIZE or offset + length > MAX_LFS_FILESIZE:
        # hugetlbfs_file_mmap (fs/hugetlbfs/inode.c v6.2): vm_pgoff & PGOFF_LOFFT_MAX, and
        # "len = vma_len + (vm_pgoff << PAGE_SHIFT); if (len < vma_len) return -EINVAL"
        raise syscall_error(errno.EINVAL, "mmap: offset %#x + length %#x overflows a file "
                            "offset (loff_t, at most 2**63-1; hugetlbfs_file_mmap)"
                            % (offset, length))
    if offset & (m.geometry.PAGE_SIZE - 1):
        raise syscall_error(errno.EINVAL, "mmap: the offset must be a multiple of the page "
                            "size (ksys_mmap_pgoff), not %#x" % offset)
    length = (length + h.size - 1) & ~(h.size - 1)    # ksys_mmap_pgoff: ALIGN(len, huge)
    if (offset + length) >> h.shift > hugetlbfs.MAX_FILE_INDEX:
        hugetlbfs.ensure_extent(m, st, (offset + length) >> h.shift, "mmap")   # ENOMEM
    if addr is None:
        start = hugetlb_get_unmapped_area(m, mm, length, h.size)
    else:
        start = _check_int("addr", addr)
        if start & (h.size - 1):
            raise syscall_error(errno.EINVAL, "mmap(MAP_FIXED): the address of a hugetlb "
                                "mapping must be aligned to %s (prepare_hugepage_range), not %#x"
                                % (_fmt(h.size), start))
        if start + length > m.geometry.TASK_SIZE or start < h.size:
            raise syscall_error(errno.ENOMEM, "mmap(MAP_FIXED): %#x-%#x is outside the user "
                                "address space" % (start, start + length))
    replaced = addr is not None and any(v.start < start + length and start < v.end
                                        for v in mm.vmas)
    if replaced:
        do_vmi_munmap(m, mm, start, start + length)   # MAP_FIXED replaces
    try:
        return hugetlbfs_file_mmap(m, mm, st, h, start, length, offset, shared, noreserve)
    except OSError as e:
        if not replaced or isinstance(e, StateKept):
            raise
        # __mmap_region: the old range was unmapped and its page tables cleared
        # (vms_clean_up_area) before hugetlbfs_file_mmap failed; vms_abort_munmap_vmas leaves
        # the gap (checked on 6.18: live scenario map_fixed_hole)
        m._account()
        m._finish()
        raise StateKept(e.errno, "%s; the mapping MAP_FIXED replaced is already gone: the "
                        "call leaves a hole (__mmap_region: vms_clean_up_area, then "
                        "vms_abort_munmap_vmas)" % e.strerror) from None


def hugetlbfs_file_mmap(m, mm, st, h, start, length, offset, shared, noreserve):
    """``hugetlbfs_file_mmap`` (fs/hugetlbfs/inode.c v6.2): the pgoff alignment, the
    reservation (shared: the inode's map; private: the VMA's own,
    :func:`~hgmviz.mm.hugetlb.hugetlb_reserve_pages_private`), then i_size (VM_WRITE)."""
    if offset & (h.size - 1):
        raise syscall_error(errno.EINVAL, "mmap: the offset of a hugetlbfs mapping must be a "
                            "multiple of the hugepage size %s (hugetlbfs_file_mmap), not %#x"
                            % (_fmt(h.size), offset))
    pgoff = offset >> m.geometry.page_shift
    first = offset >> h.shift
    n = length >> h.shift
    m.call_path = ["do_mmap", "hugetlbfs_file_mmap"]
    resv = -1
    if not noreserve and shared:
        hugetlbfs.ensure_extent(m, st, first + n, "mmap")
        hugetlb.hugetlb_reserve_pages(m, st, first, first + n)
    elif not noreserve:
        hugetlb.hugetlb_reserve_pages_private(m, h, n)
        resv = m.version          # unique among this machine's reserve maps
    hugetlbfs.ensure_extent(m, st, first + n, "mmap")
    hugetlbfs.grow_file(m, st, offset + length)   # hugetlbfs_file_mmap extends i_size (VM_WRITE)
    vma = Vma(start, start + length, st.id, pgoff, shared, noreserve, resv=resv)
    mm.vmas = sorted(mm.vmas + [vma], key=lambda v: v.start)
    st.nr_vmas += 1
    m._account()
    m._finish()
    return start


def check_page_range(m, what, addr, length, task_size=True):
    """The range checks every (addr, len) syscall makes before it touches anything: ``addr``
    page aligned, ``len`` an ``size_t`` whose ``PAGE_ALIGN`` does not wrap, and ``addr + len``
    not wrapping past 2**64 (``do_madvise``, mm/madvise.c v6.2: ``len = PAGE_ALIGN(len_in);
    if (len_in && !len) return -EINVAL; end = start + len; if (end < start) return -EINVAL``;
    ``validate_range`` in mm/userfaultfd.c alike) — all EINVAL; then, unless ``task_size`` is
    False, the range must end inside the user address space (EINVAL)."""
    addr = _check_int("addr", addr)
    length = _check_int("length", length)
    ps = m.geometry.PAGE_SIZE
    if addr >= ULONG_LIMIT or length >= ULONG_LIMIT:
        raise syscall_error(errno.EINVAL, "%s: addr and length are unsigned long / size_t: "
                            "they must be below 2**64, not addr %#x length %#x"
                            % (what, addr, length))
    if addr & (ps - 1):
        raise syscall_error(errno.EINVAL, "%s: addr %#x is not page aligned" % (what, addr))
    aligned = (length + ps - 1) & ~(ps - 1)
    end = addr + aligned
    if aligned >= ULONG_LIMIT or end >= ULONG_LIMIT:
        raise syscall_error(errno.EINVAL, "%s: %#x + length %#x wraps past 2**64 (the kernel "
                            "checks end < start and answers EINVAL, changing nothing)"
                            % (what, addr, length))
    if task_size and end > m.geometry.TASK_SIZE:
        raise syscall_error(errno.EINVAL, "%s: %#x-%#x is outside the user address space"
                            % (what, addr, end))
    return addr, length, end


def check_split(m, what, mm, start, end):
    """``hugetlb_vm_op_split``: a hugetlb VMA can only be split at a hugepage boundary."""
    for v in mm.vmas:
        hs = m._hstate_of(v).size
        for point in (start, end):
            if v.start < point < v.end and point & (hs - 1):
                raise syscall_error(errno.EINVAL, "%s: %#x would split a %s hugetlb VMA "
                                    "%#x-%#x off a hugepage boundary (hugetlb_vm_op_split)"
                                    % (what, point, _fmt(hs), v.start, v.end))


def split_vmas(m, mm, start, end):
    """Split VMAs so that ``start`` and ``end`` are VMA boundaries; unshare PMDs whose
    PUD range a piece no longer covers whole (``hugetlb_split``)."""
    out = []
    for v in mm.vmas:
        pieces = [v]
        for point in (start, end):
            nxt = []
            for p in pieces:
                if p.start < point < p.end:
                    delta = (point - p.start) >> m.geometry.page_shift
                    nxt += [replace(p, end=point), replace(p, start=point, pgoff=p.pgoff + delta)]
                    if point & (m.geometry.level_size(3) - 1):
                        hugetlb.hugetlb_unshare_pmds(m, mm, point - 1, point + 1)
                else:
                    nxt.append(p)
            pieces = nxt
        m._files[v.file].nr_vmas += len(pieces) - 1    # __split_vma: get_file()
        out += pieces
    mm.vmas = sorted(out, key=lambda v: v.start)


def do_vmi_munmap(m, mm, start, end, what="munmap"):
    """``do_vmi_munmap``: split, ``unmap_vmas`` → ``__unmap_hugepage_range``, then
    ``free_pgtables`` → ``hugetlb_free_pgd_range``; the VMAs drop their file (a private
    owner's unconsumed reservations go back: ``hugetlb_vm_op_close``).

    ``vms_gather_munmap_vmas`` (mm/vma.c, v6.12 copy) splits the first VMA at ``start``, then
    the last at ``end``; when the second split fails (``hugetlb_vm_op_split``: EINVAL off a
    hugepage boundary) the first is not undone ("we don't undo the first split"): the VMA stays
    split at ``start``, nothing is unmapped, and the call raises
    :class:`~hgmviz.errors.StateKept` (EINVAL; live scenario munmap_split_kept)."""
    check_split(m, what, mm, start, start)
    try:
        check_split(m, what, mm, end, end)
    except OSError as e:
        if not any(v.start < start < v.end for v in mm.vmas):
            raise
        split_vmas(m, mm, start, start)
        m._account()
        m._finish()
        raise StateKept(errno.EINVAL, "%s; the split at the start %#x was done and is not "
                        "undone (vms_gather_munmap_vmas)" % (e.strerror, start)) from None
    split_vmas(m, mm, start, end)
    gone = [v for v in mm.vmas if start <= v.start and v.end <= end]
    if not gone:
        return
    m.call_path += ["__unmap_hugepage_range", "hugetlb_free_pgd_range"]
    for v in gone:
        hl = m._hstate_of(v).level
        m._kcall(core.zap_range, m._g, m._fl, mm.pgd, mm.pid, v.start, v.end, hl, m._res)
    for v in gone:
        hl = m._hstate_of(v).level
        m._kcall(core.free_empty_tables, m._g, mm.pgd, mm.pid, v.start, v.end, hl,
                    m.geometry.levels - 1, 0, m._res)
    mm.vmas = [v for v in mm.vmas if v not in gone]
    for v in gone:
        hugetlb.hugetlb_vm_op_close(m, v)
        st = m._files[v.file]
        st.nr_vmas -= 1
        hugetlbfs.hugetlbfs_evict_inode(m, st)


def munmap(m, proc, addr, length):
    """``munmap`` → ``do_vmi_munmap`` (mm/mmap.c; v6.2 calls it ``do_mas_munmap``)."""
    mm = m._mm(proc)
    addr, length, end = check_page_range(m, "munmap", addr, length)
    if length == 0:
        raise syscall_error(errno.EINVAL, "munmap: length must be > 0")
    m.call_path = ["munmap", "do_vmi_munmap"]
    do_vmi_munmap(m, mm, addr, end)
    m._account()
    m._finish()


def exit_mmap(m, proc):
    """``do_exit`` → ``exit_mmap`` (mm/mmap.c v6.2): ``unmap_vmas``, ``free_pgtables``, the VMAs
    drop their files, then ``pgd_free``."""
    mm = m._mm(proc)
    m.call_path = ["do_exit", "exit_mmap", "unmap_vmas", "__unmap_hugepage_range",
                      "free_pgtables"]
    for v in list(mm.vmas):
        hl = m._hstate_of(v).level
        m._kcall(core.zap_range, m._g, m._fl, mm.pgd, mm.pid, v.start, v.end, hl, m._res)
    for v in list(mm.vmas):
        hl = m._hstate_of(v).level
        m._kcall(core.free_empty_tables, m._g, mm.pgd, mm.pid, v.start, v.end, hl,
                    m.geometry.levels - 1, 0, m._res)
    vmas, mm.vmas = mm.vmas, []
    for v in vmas:
        hugetlb.hugetlb_vm_op_close(m, v)
        st = m._files[v.file]
        st.nr_vmas -= 1
        hugetlbfs.hugetlbfs_evict_inode(m, st)
    m._kcall(pgd_free, m._g, mm.pgd)
    mm.alive = False
    mm.pgd = 0
    m._account()
    m._finish()


@njit
def pgd_free(P, E, g, pgd):
    """``pgd_free``."""
    core.table_free(P, pgd)
    return 0
