"""``mainline``: hugetlb accounting as the kernel does it today, without HGM.

Every hstate-level entry mapping a folio holds one reference and one entire mapcount:
``hugetlb_no_page()`` / ``hugetlb_mfill_atomic_pte()`` / ``copy_hugetlb_page_range()`` take
``folio_get()`` + ``hugetlb_add_file_rmap()``; ``__unmap_hugepage_range()`` drops them with
``hugetlb_remove_rmap()`` + ``tlb_remove_page_size()`` (mm/hugetlb.c, include/linux/rmap.h;
domain.md 2.1-2.2).  The page cache holds one reference before v6.7 and ``folio_nr_pages()``
since (``__filemap_add_folio``, a08c7193e4f1).  HGM does not exist: MADV_SPLIT is unknown
advice and sub-hstate UFFDIO_CONTINUE fails with EINVAL.
"""
from __future__ import annotations

from .._jit import njit
from ..core import EV_CLEAR, EV_SET
from .base import (Scheme, apply_folio_event, drop_head, guarded_increments, is_folio_event,
                   take_head, wrap_counter)


@njit
def _apply_head_only(kind, shift, count, pfn, folio, folio_shift, page_shift, guard, bits,
                     refcount, entire, wrapped, out):
    """Head-only counting: one reference and one entire mapcount per leaf of any size.

    For mainline every leaf is an hstate-level leaf, so this is exactly
    ``folio_get()`` + ``hugetlb_add_file_rmap()`` per entry; for ``per_piece`` (HGM v1) it is
    "each new PT mapping increments the compound_mapcount by 1" (T2).
    """
    leaves = 0
    for e in range(kind.shape[0]):
        k = kind[e]
        f = folio[e]
        n = count[e]
        if k == EV_SET:
            # the guard codes (None, int_max_half, sign, sign_posted) are decided by
            # base.guarded_increments, compiled into this function: numba's cache does not follow
            # that dependency, so this file changes with every change of it
            ok = guarded_increments(refcount[f], n, guard, bits)
            if ok < n:
                # refuse: apply the admitted prefix so the scratch is consistent, report
                refcount[f] = wrap_counter(refcount[f] + ok, bits)
                entire[f] = wrap_counter(entire[f] + ok, bits)
                out[0] = 1
                out[1] = leaves + ok
                out[2] = f
                out[3] = refcount[f]
                return
            take_head(f, n, bits, refcount, entire, wrapped, out)
            leaves += n
        elif k == EV_CLEAR:
            drop_head(f, n, bits, refcount, entire, out)
        elif is_folio_event(k):
            apply_folio_event(k, f, n, bits, refcount, entire, wrapped)
    out[1] = leaves


class Mainline(Scheme):
    """Today's kernel (no HGM): the baseline every other scheme is compared with."""

    name = "mainline"
    supports_hgm = False
    source = "mm/hugetlb.c, include/linux/rmap.h (v6.2 and current mainline)"
    _apply = staticmethod(_apply_head_only)
