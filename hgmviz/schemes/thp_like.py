"""``thp_like``: what HGM v2 implemented (18 Feb 2023), James's "#2".

"The THP-like way. If we are fully mapping the hugetlb page with the hstate-level PTE, we
increment the compound mapcount, otherwise we increment subpage->_mapcount." (T21,
CADrL8HXpfTE1+eE3rNGQyOr1QRtDtG5mBp-b3xcNX22QJRvPaQ@mail.gmail.com).  v2 22/46
(20230218002819.1486479-23-jthoughton@google.com) ``hugetlb_add_file_rmap(subpage, shift, h,
vma)``: at the hstate shift ``page_add_file_rmap(hpage, vma, true)``, below it one
``page_add_file_rmap(subpage, vma, false)`` for each of the ``1 << (shift - PAGE_SHIFT)``
subpages covered; v2 18/46 mirrors it on unmap.  References are per leaf: "if you have a
PMD-mapped 1G page, the reference count will be incremented by 512" (v2 22/46).

The subpage loop writes tail ``struct page``\\ s, which HVO maps read-only, so HGM and HVO
exclude each other: "HGM is disabled by default, and if it gets enabled, HVO will be
disabled" (v2 cover, 20230218002819.1486479-1-jthoughton@google.com).  A machine with
``hvo=True`` refuses MADV_SPLIT under this scheme.  Collapsing a 4 KiB-mapped 1 GiB folio
costs 262,144 subpage decrements ("~1 second for each 1G", T19/T20).
"""
from __future__ import annotations

import numpy as np

from .._jit import njit
from ..core import EV_CLEAR, EV_SET
from .base import (OUT_ENTIRE, OUT_REFCOUNT, OUT_SUBPAGE, Scheme, apply_folio_event,
                   guarded_increments, is_folio_event, wrap_counter)


@njit
def _apply_thp_like(kind, shift, count, pfn, folio, folio_shift, folio_pfn, pfn_lo, page_shift,
                    guard, bits, refcount, entire, wrapped, subpage, out):
    int_max = (1 << (bits - 1)) - 1
    leaves = 0
    for e in range(kind.shape[0]):
        k = kind[e]
        f = folio[e]
        n = count[e]
        if k == EV_SET or k == EV_CLEAR:
            sign = 1
            if k == EV_CLEAR:
                sign = -1
            m = n
            if k == EV_SET:
                # the guard codes (None, int_max_half, sign, sign_posted) are decided by
                # base.guarded_increments, compiled into this function: numba's cache does not follow
                # that dependency, so this file changes with every change of it
                ok = guarded_increments(refcount[f], n, guard, bits)
                if ok < n:
                    m = ok
                    out[0] = 1
                    out[1] = leaves + ok
                    out[2] = f
                if refcount[f] + m > int_max:
                    wrapped[f] = 1
            refcount[f] = wrap_counter(refcount[f] + sign * m, bits)
            out[OUT_REFCOUNT] += m
            if shift[e] == folio_shift[f]:
                if entire[f] + sign * m > int_max:
                    wrapped[f] = 1
                entire[f] = wrap_counter(entire[f] + sign * m, bits)
                out[OUT_ENTIRE] += m
            else:
                step = 1 << (shift[e] - page_shift)
                base = pfn[e] - pfn_lo
                for i in range(m * step):
                    subpage[base + i] = wrap_counter(subpage[base + i] + sign, bits)
                out[OUT_SUBPAGE] += m * step
            if out[0] == 1:
                out[3] = refcount[f]
                return
            if k == EV_SET:
                leaves += n
        elif is_folio_event(k):
            apply_folio_event(k, f, n, bits, refcount, entire, wrapped)
    out[1] = leaves


class ThpLike(Scheme):
    name = "thp_like"
    supports_hgm = True
    writes_tail_pages = True
    source = "HGM v2 22/46, 18/46, cover (20230218002819.1486479-*-jthoughton@google.com); T21"

    def __init__(self, geometry, folio_shift, folio_pfn, guard=None):
        super().__init__(geometry, folio_shift, folio_pfn, guard)
        if self.folio_pfn.size:
            self.pfn_lo = int(self.folio_pfn.min())
            hi = int(max(p + (1 << (s - geometry.page_shift))
                         for p, s in zip(self.folio_pfn, self.folio_shift)))
        else:
            self.pfn_lo, hi = 0, 0
        # page->_mapcount of every subpage, biased by -1 (int32: atomic_t)
        self.counters["subpage"] = np.full(hi - self.pfn_lo, -1, dtype=np.int32)

    def _run(self, ev, c, out):
        _apply_thp_like(ev["kind"], ev["shift"], ev["count"], ev["pfn"], ev["folio"],
                        self.folio_shift, self.folio_pfn, self.pfn_lo, self.geometry.page_shift,
                        self._guard_code(), self.bits, c["refcount"], c["entire"], c["wrapped"],
                        c["subpage"], out)

    def page_mapcount(self, folio: int, index: int) -> int:
        """``folio_precise_page_mapcount``: ``page->_mapcount + 1`` + the entire mapcount."""
        sub = int(self.counters["subpage"][int(self.folio_pfn[folio]) - self.pfn_lo + index]) + 1
        return sub + self.folio_entire_mapcount(folio)

    def subpage_mapcounts(self, folio: int) -> np.ndarray:
        """Every subpage's ``_mapcount + 1`` (without the entire mapcount)."""
        lo = int(self.folio_pfn[folio]) - self.pfn_lo
        n = 1 << (int(self.folio_shift[folio]) - self.geometry.page_shift)
        return self.counters["subpage"][lo:lo + n].astype(np.int64) + 1

    def folio_mapcount(self, folio: int) -> int:
        """``total_mapcount()`` of v6.2: entire mapcount plus every subpage's mapcount."""
        lo = int(self.folio_pfn[folio]) - self.pfn_lo
        n = 1 << (int(self.folio_shift[folio]) - self.geometry.page_shift)
        # sum(_mapcount + 1) summed in int64 without a widened copy of the subpages
        return (self.folio_entire_mapcount(folio)
                + int(self.counters["subpage"][lo:lo + n].sum(dtype=np.int64)) + n)
