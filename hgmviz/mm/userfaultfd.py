"""fs/userfaultfd.c and mm/userfaultfd.c (mainline v6.2; HGM v2 for 4 KiB pieces):
``userfaultfd_register``, ``userfaultfd_unregister``, UFFDIO_CONTINUE → ``mfill_atomic_hugetlb``
→ ``hugetlb_mfill_atomic_pte`` (v6.4 names; v6.2 and HGM v2 call them ``__mcopy_atomic_hugetlb``
and ``hugetlb_mcopy_atomic_pte``: :mod:`hgmviz.kernel_names`).
"""
from __future__ import annotations

import errno
from dataclasses import replace

import numpy as np

from .. import core
from ..errors import PartialProgress, StateKept, syscall_error
from .structs import UFFD_MINOR, UFFD_WP, ULONG_LIMIT, _UFFD_MODES, _check_int, _fmt
from . import hugetlb, hugetlbfs, mmap


def parse_modes(m, mode):
    """The ``UFFDIO_REGISTER_MODE_*`` bits of ``mode`` (fs/userfaultfd.c v6.2)."""
    if isinstance(mode, str):
        parts = [p.strip() for p in mode.split("|")]
    elif isinstance(mode, (tuple, list, set, frozenset)):
        parts = list(mode)
    else:
        raise TypeError("mode must be 'missing', 'minor', 'wp' or a combination, not %r" % (mode,))
    bits = 0
    for p in parts:
        if p not in _UFFD_MODES:
            raise syscall_error(errno.EINVAL, "UFFDIO_REGISTER: unknown mode %r; allowed: "
                                "missing, minor, wp" % (p,))
        bits |= _UFFD_MODES[p]
    if not bits:
        raise syscall_error(errno.EINVAL, "UFFDIO_REGISTER: no mode given")
    return bits


def uffd_range(m, what, mm, addr, length, check_end=True):
    """The checks ``userfaultfd_register``/``_unregister`` make before changing anything:
    at least one VMA meets the range (``vma_find``), ``start`` is aligned to the first
    VMA's hugepage size, and (register) the end to that of the VMA holding it.  Holes
    between VMAs are allowed; each VMA in the range is handled."""
    addr, length, end = mmap.check_page_range(m, what, addr, length)
    if length == 0 or length & (m.geometry.PAGE_SIZE - 1):
        raise syscall_error(errno.EINVAL, "%s: the length must be a positive multiple of the "
                            "page size (validate_unaligned_range), not %d" % (what, length))
    vs = [v for v in mm.vmas if v.start < end and addr < v.end]
    if not vs:
        raise syscall_error(errno.EINVAL, "%s: no VMA in %#x-%#x" % (what, addr, end))
    hs = m._hstate_of(vs[0]).size
    if addr & (hs - 1):
        raise syscall_error(errno.EINVAL, "%s: the start %#x must be aligned to the first "
                            "VMA's hugepage size %s (vma_kernel_pagesize)" % (what, addr, _fmt(hs)))
    if check_end:
        # one loop over the VMAs in address order: the end alignment (for the VMA that
        # holds the end), then ownership by another userfaultfd
        for v in vs:
            hs = m._hstate_of(v).size
            if v.start < end <= v.end and end & (hs - 1):
                raise syscall_error(errno.EINVAL, "%s: the end %#x must be aligned to the "
                                    "hugepage size %s of the VMA holding it" % (what, end, _fmt(hs)))
            if v.uffd:
                raise syscall_error(errno.EBUSY, "%s: the VMA %#x-%#x is already registered "
                                    "with another userfaultfd" % (what, v.start, v.end))
    return addr, end, vs


def userfaultfd_register(m, proc, addr, length, mode, event_fork):
    """``userfaultfd()`` + ``UFFDIO_API`` + ``UFFDIO_REGISTER`` (fs/userfaultfd.c
    ``userfaultfd_register``): a new userfaultfd each call, so a VMA another call already
    registered is EBUSY ("We can't allow more than one userfaultfd to own a single vma")."""
    mm = m._mm(proc)
    bits = parse_modes(m, mode)
    if not isinstance(event_fork, bool):
        raise TypeError("event_fork must be True or False")
    addr, end, vs = uffd_range(m, "UFFDIO_REGISTER", mm, addr, length)
    mmap.split_vmas(m, mm, addr, end)
    m.call_path = ["userfaultfd", "UFFDIO_API", "UFFDIO_REGISTER", "userfaultfd_register"]
    new = []
    for v in mm.vmas:
        if addr <= v.start and v.end <= end:
            v = replace(v, uffd=bits, uffd_event_fork=event_fork)
            if bits & (UFFD_WP | UFFD_MINOR):
                hugetlb.hugetlb_unshare_pmds(m, mm, v.start, v.end)   # uffd_disable_huge_pmd_share
        new.append(v)
    mm.vmas = new
    m._account()
    m._finish()
    return 0


def userfaultfd_unregister(m, proc, addr, length):
    """``UFFDIO_UNREGISTER`` (fs/userfaultfd.c ``userfaultfd_unregister``): only the start is
    checked up front; then VMA by VMA (``userfaultfd_clear_vma``): VMAs that are not registered
    are skipped (neither split nor checked), a registered one is split at the range's ends
    (hugetlb_vm_op_split) and unregistered.  A split that fails after earlier VMAs were
    unregistered keeps them so (:class:`~hgmviz.errors.StateKept`, EINVAL; live scenario
    uffd_unregister_partial)."""
    mm = m._mm(proc)
    addr, end, vs = uffd_range(m, "UFFDIO_UNREGISTER", mm, addr, length, check_end=False)
    m.call_path = ["UFFDIO_UNREGISTER", "userfaultfd_unregister"]
    done = 0
    for v in vs:
        if not v.uffd:
            continue
        hs = m._hstate_of(v).size
        for point in (addr, end):
            if v.start < point < v.end and point & (hs - 1):
                msg = ("UFFDIO_UNREGISTER: %#x would split a %s hugetlb VMA off a hugepage "
                       "boundary (hugetlb_vm_op_split)" % (point, _fmt(hs)))
                if not done:
                    raise syscall_error(errno.EINVAL, msg)
                m._account()
                m._finish()
                raise StateKept(errno.EINVAL, "EINVAL: %s; the %d VMA(s) before it are "
                                "unregistered already (userfaultfd_unregister works VMA by VMA)"
                                % (msg, done))
        a, b = max(addr, v.start), min(end, v.end)
        mmap.split_vmas(m, mm, a, b)
        mm.vmas = [replace(x, uffd=0, uffd_event_fork=False) if a <= x.start and x.end <= b
                   else x for x in mm.vmas]
        done += 1
    m._finish()
    return 0


def uffd_dst_vma(m, what, mm, addr, length):
    """The checks UFFDIO_CONTINUE and UFFDIO_COPY share before their own alignment rule:
    ``validate_range`` (fs/userfaultfd.c, called by ``userfaultfd_continue`` and
    ``userfaultfd_copy``: EINVAL) and ``find_dst_vma`` (mm/userfaultfd.c, called by
    ``mfill_atomic``; v6.2 ``__mcopy_atomic``: the range inside one VMA registered with
    userfaultfd, else ENOENT).  Returns ``(vma, hstate, addr, length, end)``."""
    addr, length, end = mmap.check_page_range(m, what, addr, length)
    if length == 0 or length & (m.geometry.PAGE_SIZE - 1):
        raise syscall_error(errno.EINVAL, "%s: length must be a positive multiple of %d"
                            % (what, m.geometry.PAGE_SIZE))
    vma = m._find_vma(mm, addr)
    if vma is None or end > vma.end or not vma.uffd:
        raise syscall_error(errno.ENOENT, "%s: %#x-%#x is not inside one VMA registered with "
                            "userfaultfd (find_dst_vma)" % (what, addr, end))
    return vma, m._hstate_of(vma), addr, length, end


def continue_target(m, what, mm, addr, length):
    """:func:`uffd_dst_vma` + the hugetlb alignment check of ``mfill_atomic_hugetlb``
    (PAGE_SIZE on an HGM VMA, HGM v2 33/46)."""
    vma, h, addr, length, end = uffd_dst_vma(m, what, mm, addr, length)
    gran = m.geometry.PAGE_SIZE if vma.hgm else h.size
    if addr & (gran - 1) or length & (gran - 1):
        raise syscall_error(errno.EINVAL, "%s: on a %s hugetlb VMA%s the range must be aligned "
                            "to %s (mfill_atomic_hugetlb); MADV_SPLIT enables 4 KiB"
                            % (what, _fmt(h.size), " with HGM" if vma.hgm else "",
                               _fmt(gran)))
    return vma, h, addr, end


def mfill_atomic_hugetlb(m, mm, vma, h, addr, end, mode, piece_shift):
    """One ``mfill_atomic_hugetlb`` loop over ``[addr, end)`` of one VMA: returns the bytes
    mapped and the error that stopped it (None when it finished)."""
    st = m._files[vma.file]
    g = m.geometry
    min_shift = g.page_shift if vma.hgm else h.shift
    m.call_path = ["UFFDIO_CONTINUE", "mfill_atomic_hugetlb"]
    if vma.hgm:
        m.call_path.append("hugetlb_alloc_largest_pte")
    m.call_path += ["hugetlb_mfill_atomic_pte", "filemap_lock_hugetlb_folio",
                       "hugetlb_add_file_rmap"]
    status = [0, 0, 0]

    share_base, share = 0, m._empty_share
    if h.level == 2:
        # huge_pte_alloc() → huge_pmd_share(), as for a fault
        pud = g.level_size(3)
        share_base = addr & ~(pud - 1)
        cands = [hugetlb.huge_pmd_share(m, mm, vma, b)
                 for b in range(share_base, end, pud)]
        if any(cands):
            share = np.array(cands, dtype=np.int32)
    hugetlb.check_not_locked(m, st, (addr - vma.start + (vma.pgoff << g.page_shift)) >> h.shift,
                             (end - 1 - vma.start + (vma.pgoff << g.page_shift)) >> h.shift,
                             "UFFDIO_CONTINUE")
    inject = 0
    if m._inject is not None:
        if m._inject == "after_pte_alloc" or not m.lookup_first:
            inject = core.INJECT_AFTER_ALLOC
        else:
            inject = core.INJECT_AT_LOOKUP
        m._inject = None

    def run(limit):
        code = m._kcall(core.install_range, m._g, mm.pgd, mm.pid, vma.start, vma.pgoff,
                           h.shift, h.level, min_shift, st.pc, m._folio_pfn, addr, end,
                           mode, piece_shift, limit, share_base, share, 0, m._res,
                           inject)
        status[:] = [code, int(m._res[0]), int(m._res[2])]
        return status[1]

    mapped, refusal = m._guarded(run, "continue")
    code, mapped, fail_at = status
    if refusal is not None and not refusal.admitted:
        mapped = 0
    if refusal is not None and refusal.leaked:
        ecode = errno.ENOMEM if m.errors == "proposed" else errno.EFAULT
        cause = StateKept(ecode, "%s: UFFDIO_CONTINUE: the refcount guard refused folio %d at "
                          "refcount %d; %s" % (errno.errorcode[ecode], refusal.folio,
                                               refusal.refcount, hugetlb.LEAK_TEXT))
    elif refusal is not None:
        ecode = errno.ENOMEM if m.errors == "proposed" else errno.EFAULT
        cause = syscall_error(ecode, "UFFDIO_CONTINUE: the refcount guard refused folio %d at "
                              "refcount %d" % (refusal.folio, refusal.refcount))
    elif code == -core.EEXIST:
        cause = syscall_error(errno.EEXIST, "UFFDIO_CONTINUE: %#x is already mapped (or mapped "
                              "by a larger or smaller entry at that level)" % fail_at)
    elif code == -core.EFAULT and inject == core.INJECT_AFTER_ALLOC:
        raise StateKept(errno.EFAULT, "EFAULT: UFFDIO_CONTINUE: injected: an error at %#x "
                        "after the page tables were allocated and before the entry was set; "
                        "the tables stay, as in the kernel's error path" % fail_at)
    elif code == -core.EFAULT:
        cause = syscall_error(errno.EFAULT, "UFFDIO_CONTINUE: the page for %#x is not in the "
                              "page cache (filemap_lock_hugetlb_folio failed)%s"
                              % (fail_at, " [injected]" if inject else ""))
    elif code != 0:
        cause = syscall_error(-code, "UFFDIO_CONTINUE failed at %#x" % fail_at)
    else:
        cause = None
    return mapped, cause


def continue_result(mapped, cause):
    """What ``UFFDIO_CONTINUE`` returns: the bytes mapped; EAGAIN with ``mapped`` after
    partial progress (:class:`~hgmviz.errors.PartialProgress`); the error otherwise."""
    if cause is None:
        return mapped
    if mapped:
        raise PartialProgress(mapped, cause)
    raise cause


def uffdio_continue(m, proc, addr, length):
    """``userfaultfd_continue`` (fs/userfaultfd.c v6.2) → ``mfill_atomic_hugetlb`` (v6.4's name
    for v6.2's ``__mcopy_atomic_hugetlb``) in
    MFILL_LARGEST mode (HGM v2: the largest aligned pieces)."""
    mm = m._mm(proc)
    vma, h, addr, end = continue_target(m, "UFFDIO_CONTINUE", mm, addr, length)
    return continue_result(*mfill_atomic_hugetlb(m, mm, vma, h, addr, end, core.MODE_LARGEST, 0))


def uffdio_continue_batch(m, proc, addr, length, piece):
    """``for a in range(addr, addr + length, piece): UFFDIO_CONTINUE(a, piece)`` stopping at
    the first failure (each call as :func:`uffdio_continue`), in as few core calls as the
    VMAs allow.  ``addr``, ``length`` and ``piece`` are checked first (ints; the range below
    2**64, as ``validate_range`` in mm/userfaultfd.c v6.2 requires of each call)."""
    mm = m._mm(proc)
    addr = _check_int("addr", addr)
    piece = _check_int("piece", piece, 1)
    length = _check_int("length", length, 1)
    if addr >= ULONG_LIMIT or length >= ULONG_LIMIT or addr + length >= ULONG_LIMIT:
        raise syscall_error(errno.EINVAL, "UFFDIO_CONTINUE: %#x + length %#x wraps past 2**64 "
                            "(validate_range: EINVAL)" % (addr, length))
    g = m.geometry
    allowed = [g.level_size(l) for l in range(1, g.levels)]
    if piece not in allowed:
        raise ValueError("piece must be a page-table leaf size (%s), not %d"
                         % (", ".join(_fmt(s) for s in allowed[:3]), piece))
    if length % piece:
        raise ValueError("length %d is not a multiple of piece %d" % (length, piece))
    # run the calls VMA by VMA; each VMA's first call is validated as
    # uffdio_continue(a, piece) would be, and every call in it then passes the same checks
    total = 0
    pos, end = addr, addr + length
    while pos < end:
        try:
            vma, h, a0, _ = continue_target(m, "UFFDIO_CONTINUE", mm, pos, piece)
        except OSError as e:
            return continue_result(total, e)
        seg = pos + ((min(end, vma.end) - pos) // piece) * piece
        if pos % piece == 0 and piece <= h.size and (vma.hgm or piece == h.size):
            # each call's range is one aligned piece: one fixed-size install loop
            mapped, cause = mfill_atomic_hugetlb(m, mm, vma, h, a0, seg, core.MODE_FIXED,
                                           piece.bit_length() - 1)
            total += mapped
            if cause is not None:
                return continue_result(total, cause)
        else:
            # each call maps the largest aligned pieces of its own range
            while pos < seg:
                mapped, cause = mfill_atomic_hugetlb(m, mm, vma, h, pos, pos + piece,
                                               core.MODE_LARGEST, 0)
                total += mapped
                if cause is not None:
                    return continue_result(total, cause)
                pos += piece
        pos = seg
    return total


# =========================================================================================
# UFFDIO_COPY and UFFDIO_WAKE (docs/kernel-notes/issue13.md §7; live scenario uffdio_copy)
# =========================================================================================
def uffdio_copy(m, proc, addr, length):
    """``userfaultfd_copy`` → ``mfill_atomic_copy`` → ``mfill_atomic_hugetlb`` →
    ``hugetlb_mfill_atomic_pte`` (mm/hugetlb.c; v6.3 ``hugetlb_mcopy_atomic_pte``), one
    hugepage at a time: the range must lie in one registered VMA (ENOENT) and be aligned to
    its hugepage (EINVAL below it — HGM's 4 KiB pieces are for CONTINUE only); a page the page
    cache of a shared VMA already holds, or a present entry, is EEXIST; the new page takes the
    reservation (``alloc_hugetlb_folio``; ENOMEM when none can be had) and, in a shared VMA,
    goes into the page cache where every other mapping sees it (past i_size: EFAULT); in a
    private VMA it is an anonymous folio.  After some pages, an error is EAGAIN with ``copy``
    bytes (:class:`~hgmviz.errors.PartialProgress`), the pages before it kept.  The waiting
    faults are woken (a retried touch then finds the page)."""
    mm = m._mm(proc)
    what = "UFFDIO_COPY"
    vma, h, addr, length, end = uffd_dst_vma(m, what, mm, addr, length)
    if addr & (h.size - 1) or length & (h.size - 1):
        raise syscall_error(errno.EINVAL, "%s: on a %s hugetlb VMA the range must be aligned to "
                            "the hugepage (mfill_atomic_hugetlb)" % (what, _fmt(h.size)))
    m.call_path = ["UFFDIO_COPY", "mfill_atomic_hugetlb", "hugetlb_mfill_atomic_pte"]
    st = m._files[vma.file]
    copied = 0
    for a in range(addr, end, h.size):
        try:
            vma = _mfill_copy_one(m, mm, vma, h, st, a)
        except OSError as e:
            if not copied:
                raise
            m._account()
            m._finish()
            raise PartialProgress(copied, e) from None
        copied += h.size
    m._account()
    m._finish()
    return copied


def _mfill_copy_one(m, mm, vma, h, st, a):
    idx = hugetlb.linear_page_index(m, vma, a, h)
    if vma.shared and idx < st.pc.size and st.pc[idx] >= 0:
        raise syscall_error(errno.EEXIST, "UFFDIO_COPY: the page cache already holds the page "
                            "at %#x (hugetlbfs_pagecache_present)" % a)
    share = hugetlb.huge_pmd_share(m, mm, vma, a) if vma.shared else 0
    kind, lvl, _ = core.probe(m.pt.P, m._g, mm.pgd, a, h.level, share)
    if kind != 0 or lvl < h.level:           # huge_pte_none_mostly() of the hstate-level entry
        raise syscall_error(errno.EEXIST, "UFFDIO_COPY: %#x is already mapped" % a)
    if vma.shared:
        if idx >= st.size >> h.shift:
            raise syscall_error(errno.EFAULT, "UFFDIO_COPY: %#x is past the end of the file "
                                "(i_size %#x)" % (a, st.size))
        hugetlbfs.ensure_extent(m, st, idx + 1, "UFFDIO_COPY")
        try:
            hugetlb.alloc_hugetlb_folio(m, st, idx)
        except LookupError as e:
            raise syscall_error(errno.ENOMEM, "UFFDIO_COPY: %s" % e) from None
        pc = st.pc
    else:
        try:
            fid, vma = hugetlb.alloc_hugetlb_folio_anon(m, mm, vma, idx, avoid_reserve=False)
        except LookupError as e:
            raise syscall_error(errno.ENOMEM, "UFFDIO_COPY: %s" % e) from None
        if not vma.anon_vma:
            vma = hugetlb._set_vma(mm, vma, anon_vma=True)
        pc = np.full(idx + 1, -1, np.int32)
        pc[idx] = fid
    share_arr = np.array([share], dtype=np.int32)
    share_base = a & ~(m.geometry.level_size(3) - 1)

    def run(limit):
        m._kcall(core.install_range, m._g, mm.pgd, mm.pid, vma.start, vma.pgoff, h.shift,
                 h.level, h.shift, pc, m._folio_pfn, a, a + 1, core.MODE_FAULT, 0, limit,
                 share_base, share_arr, 0, m._res)
        return int(m._res[1])

    _, refusal = m._guarded(run, "UFFDIO_COPY")
    if refusal is not None:
        raise syscall_error(errno.ENOMEM if m.errors == "proposed" else errno.EFAULT,
                            "UFFDIO_COPY: the refcount guard refused folio %d at refcount %d"
                            % (refusal.folio, refusal.refcount))
    return vma


def uffdio_wake(m, proc, addr, length):
    """``userfaultfd_wake``: wake the faults waiting in ``[addr, addr + length)``; a woken
    fault retries (a touch again: the page if COPY put it there, else another userfault).
    The simulator keeps no waiting tasks, so it only checks the range (``validate_range``:
    EINVAL) and changes nothing."""
    m._mm(proc)
    addr, length, end = mmap.check_page_range(m, "UFFDIO_WAKE", addr, length)
    if length == 0 or length & (m.geometry.PAGE_SIZE - 1):
        raise syscall_error(errno.EINVAL, "UFFDIO_WAKE: length must be a positive multiple of "
                            "%d" % m.geometry.PAGE_SIZE)
    m.call_path = ["UFFDIO_WAKE", "userfaultfd_wake", "wake_userfault"]
    return 0
