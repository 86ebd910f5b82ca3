"""mm/mprotect.c (v6.x; docs/kernel-notes/issue13.md §5; live scenario mprotect_split):
``do_mprotect_pkey`` → ``mprotect_fixup`` → ``vma_modify_flags`` (split)
→ ``hugetlb_change_protection``.

The range is walked VMA by VMA.  A VMA whose protection already is the one asked for is left
alone (no split); another is split at the range's ends (``hugetlb_vm_op_split``: EINVAL off a
hugepage boundary) and gets the new protection; its present entries change protection, which
moves no counter, and a PMD page it shares with another process is unshared
(``huge_pmd_unshare`` in ``hugetlb_change_protection``).  A failure — a split, or a hole between
VMAs (ENOMEM) — stops the walk: the VMAs before it keep their new protection
(:class:`~hgmviz.errors.StateKept`); a failure before any change changes nothing.  VMAs are not
merged back (the kernel may merge equal neighbours; the simulator never merges).

A touch that writes a VMA without PROT_WRITE, or touches one with PROT_NONE, is SIGSEGV
(``access_error``, in :func:`hgmviz.mm.hugetlb.handle_mm_fault`)."""
from __future__ import annotations

import errno
from dataclasses import replace

import numpy as np

from ..errors import StateKept, syscall_error
from .structs import PROT_EXEC, PROT_READ, PROT_WRITE

__all__ = ["do_mprotect_pkey"]


def do_mprotect_pkey(m, proc, addr, length, prot):
    """``mprotect(addr, length, prot)``."""
    mm = m._mm(proc)
    for name, v in (("addr", addr), ("length", length), ("prot", prot)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError("%s must be an int, not %r" % (name, v))
    addr, length, prot = int(addr), int(length), int(prot)
    ps = m.geometry.PAGE_SIZE
    if addr < 0 or addr & (ps - 1):
        raise syscall_error(errno.EINVAL, "mprotect: addr %#x is not page aligned" % addr)
    if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC) or length < 0:
        raise syscall_error(errno.EINVAL, "mprotect: prot %#x has bits other than PROT_READ, "
                            "PROT_WRITE and PROT_EXEC" % prot if length >= 0 else
                            "mprotect: length must be >= 0")
    end = addr + ((length + ps - 1) & ~(ps - 1))
    if end == addr:
        return 0
    if end > m.geometry.TASK_SIZE:
        raise syscall_error(errno.ENOMEM, "mprotect: %#x-%#x is outside the user address space"
                            % (addr, end))
    m.call_path = ["mprotect", "do_mprotect_pkey"]
    vs = sorted((v for v in mm.vmas if v.start < end and addr < v.end), key=lambda v: v.start)
    if not vs or vs[0].start > addr:
        raise syscall_error(errno.ENOMEM, "mprotect: no VMA at %#x" % addr)
    tmp = vs[0].start
    changed = 0
    error = None
    for v in vs:
        if v.start != tmp:
            error = (errno.ENOMEM, "mprotect: %#x-%#x is not mapped" % (tmp, v.start))
            break
        a, b = max(addr, v.start), min(end, v.end)
        if v.prot != prot:
            hs = m._hstate_of(v).size
            bad = [p for p in (a, b) if v.start < p < v.end and p & (hs - 1)]
            if bad:
                error = (errno.EINVAL, "mprotect: %#x would split a %s hugetlb VMA off a "
                         "hugepage boundary (hugetlb_vm_op_split)"
                         % (bad[0], m.geometry.fmt_size(hs)))
                break
            m._split_vmas(mm, a, b)
            mm.vmas = [replace(x, prot=prot) if a <= x.start and x.end <= b else x
                       for x in mm.vmas]
            m._unshare(mm, a, b)                    # hugetlb_change_protection
            if "mprotect_fixup" not in m.call_path:
                m.call_path += ["mprotect_fixup", "hugetlb_change_protection"]
            changed += 1
        tmp = b
    if error is None and tmp < end:
        error = (errno.ENOMEM, "mprotect: %#x-%#x is not mapped" % (tmp, end))
    m._account()
    m._finish()
    if error is not None:
        if changed:
            raise StateKept(error[0], "%s: %s; the %d VMA(s) before it have their new "
                            "protection (do_mprotect_pkey stops, undoing nothing)"
                            % (errno.errorcode[error[0]], error[1], changed))
        raise syscall_error(*error)
    return 0
