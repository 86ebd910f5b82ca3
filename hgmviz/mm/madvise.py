"""mm/madvise.c (mainline v6.2): ``do_madvise`` → ``madvise_walk_vmas``; MADV_DONTNEED
(``madvise_dontneed_free``), MADV_REMOVE (``madvise_remove``, docs/kernel-notes/issue13.md §4),
MADV_SPLIT (HGM v1 09/46) and MADV_COLLAPSE on hugetlb
(``hugetlb_collapse``, HGM v2 34/46).
"""
from __future__ import annotations

import errno
from dataclasses import replace

import numpy as np

from .. import core
from ..errors import StateKept, syscall_error
from .structs import MADV_COLLAPSE, MADV_DONTNEED, MADV_REMOVE, MADV_SPLIT, _ADVICE, _fmt
from . import hugetlb, hugetlbfs, mmap


def do_madvise(m, proc, addr, length, advice):
    """``do_madvise`` (mm/madvise.c v6.2): ``madvise_behavior_valid``, the range checks
    (:func:`~hgmviz.mm.mmap.check_page_range`: a range wrapping past 2**64 is EINVAL and
    changes nothing), then ``madvise_walk_vmas`` over the VMAs of the range."""
    mm = m._mm(proc)
    if isinstance(advice, bool) or not isinstance(advice, (int, np.integer)):
        raise TypeError("madvise: advice must be an int (hv.MADV_DONTNEED, hv.MADV_REMOVE, "
                        "hv.MADV_COLLAPSE, hv.MADV_SPLIT), not %r" % (advice,))
    advice = int(advice)
    if advice not in _ADVICE:
        raise syscall_error(errno.EINVAL, "madvise: unknown advice %r; modelled: %s" % (
            advice, ", ".join("%s (%d)" % (n, a) for a, n in _ADVICE.items())))
    name = _ADVICE[advice]
    if advice == MADV_SPLIT and not m.scheme.supports_hgm:
        # madvise_behavior_valid(): checked before anything else
        raise syscall_error(errno.EINVAL, "madvise: MADV_SPLIT (26) is unknown advice on a "
                            "mainline kernel: HGM was never merged; use scheme='per_piece' "
                            "or another HGM scheme")
    # do_madvise() checks no TASK_SIZE: a range past it meets no VMA (ENOMEM below)
    addr, length, end = mmap.check_page_range(m, "madvise(%s)" % name, addr, length,
                                               task_size=False)
    if length == 0:
        return 0                     # do_madvise: "if (end == start) return 0;"
    if advice == MADV_SPLIT and m.scheme.writes_tail_pages and m.hvo:
        raise syscall_error(errno.EINVAL, "madvise(MADV_SPLIT): the %s scheme writes tail "
                            "struct pages, which HVO (hugetlb_optimize_vmemmap) maps read-only: "
                            "HGM and HVO exclude each other (HGM v2 cover letter); "
                            "use hvo=False" % m.scheme.name)
    if advice == MADV_COLLAPSE and not m.scheme.supports_hgm:
        vs = [v for v in mm.vmas if v.start < end and addr < v.end]
        if not vs:
            raise syscall_error(errno.ENOMEM, "madvise(MADV_COLLAPSE): no VMA in %#x-%#x"
                                % (addr, end))
        raise syscall_error(errno.EINVAL, "madvise(MADV_COLLAPSE): mainline refuses hugetlb "
                            "VMAs (thp_vma_allowable_order); %d VMA(s) in range" % len(vs))
    # madvise_walk_vmas(): visit every VMA of the range in turn; a hole only sets
    # unmapped_error = -ENOMEM, returned once the mapped parts have had the advice
    vs = [v for v in mm.vmas if v.start < end and addr < v.end]
    if not vs:
        raise syscall_error(errno.ENOMEM, "madvise(%s): no VMA in %#x-%#x" % (name, addr, end))
    if advice == MADV_DONTNEED:
        madvise_dontneed(m, mm, vs, addr, end)
    elif advice == MADV_REMOVE:
        madvise_remove(m, mm, vs, addr, end)
    elif advice == MADV_SPLIT:
        madvise_split(m, mm, addr, end)
    else:
        hugetlb_collapse(m, mm, vs, addr, end)
    m._account(guarded=advice != MADV_COLLAPSE)
    m._finish()
    if has_holes(vs, addr, end):
        raise StateKept(errno.ENOMEM, "ENOMEM: madvise(%s): %#x-%#x is not fully mapped; "
                        "the advice was applied to the mapped parts (madvise_walk_vmas: "
                        "unmapped_error)" % (name, addr, end))
    return 0


def has_holes(vs, start, end) -> bool:
    """Whether the sorted VMAs ``vs`` leave part of ``[start, end)`` unmapped."""
    pos = start
    for v in vs:
        if v.start > pos:
            return True
        pos = max(pos, v.end)
    return pos < end


def madvise_dontneed(m, mm, vs, addr, end):
    """``madvise_dontneed_free_valid_vma``: the start must be hugepage aligned (EINVAL)
    and the end is rounded *down* (Rik van Riel's fix); then ``zap_page_range_single``."""
    plan = []
    for v in vs:
        hs = m._hstate_of(v).size
        s = max(addr, v.start)
        e = min(end, v.end)
        if s & (hs - 1):
            raise syscall_error(errno.EINVAL, "madvise(MADV_DONTNEED): the start %#x of a "
                                "range in a %s hugetlb VMA must be hugepage aligned "
                                "(madvise_dontneed_free_valid_vma)" % (s, _fmt(hs)))
        e &= ~(hs - 1)
        if s < e:
            plan.append((v, s, e))
    m.call_path = ["madvise", "madvise_dontneed_free", "zap_page_range_single",
                      "__unmap_hugepage_range"]
    for v, s, e in plan:
        m._kcall(core.zap_range, m._g, m._fl, mm.pgd, mm.pid, s, e,
                    m._hstate_of(v).level, m._res)


def madvise_split(m, mm, addr, end):
    """HGM v1 09/46 ``MADV_SPLIT``: set VM_HUGETLB_HGM, unshare PMDs; maps nothing."""
    mmap.check_split(m, "madvise(MADV_SPLIT)", mm, addr, end)
    mmap.split_vmas(m, mm, addr, end)
    m.call_path = ["madvise", "madvise_split", "hugetlb_unshare_all_pmds"]
    new = []
    for v in mm.vmas:
        if addr <= v.start and v.end <= end and not v.hgm:
            v = replace(v, hgm=True)
            hugetlb.hugetlb_unshare_pmds(m, mm, v.start, v.end)
        new.append(v)
    mm.vmas = new


def hugetlb_collapse(m, mm, vs, addr, end):
    """HGM v2 34/46 ``hugetlb_collapse`` / ``__hugetlb_collapse``: for each largest aligned
    piece whose entry points to page tables, replace that subtree of smaller leaves by one
    leaf (dropping every leaf's counts first); holes *inside* the subtree are covered by the
    new leaf ("Any holes in the mapping will be filled").  An entry that does not point to
    page tables (not present, or already a leaf) is skipped: "There is no work to do if the
    PTE doesn't point to page tables" (``if (!pte_present(entry)) goto next_hpte;``), so
    collapse never maps a piece that had no mapping at all.  The new
    leaf's reference comes from ``filemap_get_folio()``, which no refcount guard covers
    (neither v2 35/46 nor the thread's proposal), so collapse is never refused."""
    g = m.geometry
    m.call_path = ["madvise", "madvise_collapse", "hugetlb_collapse"]
    for v in vs:
        if not v.hgm:
            continue
        h = m._hstate_of(v)
        st = m._files[v.file]
        s = max(addr, v.start)
        e = min(end, v.end)
        pos = s
        while pos < e:
            ts = int(core._largest_shift(m._g, pos, e, h.shift, g.page_shift))
            if ts < 0:
                break
            size = 1 << ts
            tl = (ts - g.page_shift) // g.bits_per_level + 1
            idx = (((pos - v.start) >> g.page_shift) + v.pgoff) >> h.order
            if idx < st.pc.size and st.pc[idx] >= 0:
                t, i, lvl = core.hugetlb_full_walk(m.pt.P, m._g, mm.pgd, pos, tl)
                val = int(m.pt.ent[t, i])
                is_table = lvl == tl and val != 0 and not val & 1
                if is_table:
                    m._kcall(core.zap_range, m._g, m._fl, mm.pgd, mm.pid, pos,
                                pos + size, h.level, m._res)
                    m._kcall(core.free_empty_tables, m._g, mm.pgd, mm.pid, pos, pos + size,
                                h.level, tl - 1, core.F_NO_HSTATE_EVENTS, m._res)
                    m._kcall(core.install_range, m._g, mm.pgd, mm.pid, v.start, v.pgoff,
                                h.shift, h.level, g.page_shift, st.pc, m._folio_pfn, pos,
                                pos + size, core.MODE_FIXED, ts, -1, 0, m._empty_share,
                                core.F_NO_HSTATE_EVENTS, m._res)
            pos += size
    m.call_path += ["__unmap_hugepage_range", "hugetlb_free_pgd_range", "hugetlb_add_file_rmap"]


def madvise_remove(m, mm, vs, addr: int, end: int):
    """``madvise_remove`` for each VMA of the range in turn (``madvise_walk_vmas``): a private
    VMA is EACCES (the VMAs before it were already punched); a shared one punches the file range
    it maps, ``vfs_fallocate(PUNCH_HOLE | KEEP_SIZE)``."""
    g = m.geometry
    m.call_path = ["madvise", "madvise_walk_vmas", "madvise_remove", "vfs_fallocate"]
    done = False
    for v in vs:
        if not v.shared:
            msg = ("madvise(MADV_REMOVE): the VMA %#x-%#x is MAP_PRIVATE; only a shared "
                   "writable mapping can remove pages (madvise_remove)" % (v.start, v.end))
            if done:
                m._account()
                m._finish()
                raise StateKept(errno.EACCES, "EACCES: " + msg + "; the VMAs before it were "
                                "punched already")
            raise syscall_error(errno.EACCES, msg)
        a, b = max(addr, v.start), min(end, v.end)
        st = m._files[v.file]
        off = (a - v.start) + (v.pgoff << g.page_shift)
        hugetlbfs.hugetlbfs_punch_hole(m, st, off, b - a)
        done = True
