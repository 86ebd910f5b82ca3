"""``hstate_present``: one reference and one mapcount while the hstate-level entry is present.

HGM RFC v1 (20220624173656.2033256-1-jthoughton@google.com): "If the PUD for a hugepage is not
none, a hugepage's mapcount will be increased"; James restated it as "page_mapcount() is
incremented if the hstate-level PTE is present" (T12,
CADrL8HVGMTowH4trJhS+eM_EwZKoUgu7LmfwyTGyGRnNnwL3Zg@mail.gmail.com).  David Hildenbrand's
"treat the whole mapping as a single large logical mapping. One reference and one mapping, no
matter how the individual parts are mapped" (T10, 6548b3b3-30c9-8f64-7d28-8a434e0a0b80@redhat.com)
and Peter Xu's variant "increase the hpage mapcount only when hstate pXd ... being populated
(no matter as leaf or a non-leaf), and ... decreased when the pXd entry is removed" (T20)
are the same rule; James's "#3" (T21).

The count moves on ``EV_HSTATE_POPULATED`` / ``EV_HSTATE_CLEARED`` only: the core emits them
when the hstate-level entry goes none → present (a leaf, or a table on the way to a smaller
leaf) and back (the leaf is cleared, or the subtree's page table is freed).  The caveat the
thread names is visible: "a piece of a page that is legitimately unmapped can still have a
positive page_mapcount()" (T12) — every subpage of a folio with one 4 KiB piece mapped
reports 1.  Only head fields are written, so HVO stays; collapse is free.
"""
from __future__ import annotations

from .._jit import njit
from ..core import EV_HSTATE_CLEARED, EV_HSTATE_POPULATED, EV_SET
from .base import (Scheme, apply_folio_event, drop_head, guarded_increments, is_folio_event,
                   take_head)


@njit
def _apply_hstate_present(kind, mm, addr, shift, count, pfn, folio, folio_shift, page_shift,
                          guard, bits, count_at_set, refcount, entire, wrapped, out):
    leaves = 0
    pend_mm = -1
    pend_lo = 0
    pend_hi = 0
    for e in range(kind.shape[0]):
        k = kind[e]
        f = folio[e]
        n = count[e]
        take = False
        set_leaves = 0
        if k == EV_SET:
            set_leaves = n           # counted after the guard: a refusal admits none of them
            if count_at_set and mm[e] == pend_mm and addr[e] >= pend_lo and addr[e] < pend_hi:
                take = True          # the first leaf under an hstate entry made present
                pend_mm = -1
                n = 1
            else:
                leaves += set_leaves
                set_leaves = 0
        elif k == EV_HSTATE_POPULATED:
            if count_at_set:
                pend_mm = mm[e]
                pend_lo = addr[e]
                pend_hi = addr[e] + (1 << shift[e])
            else:
                take = True
        if take:
            # the guard codes (None, int_max_half, sign, sign_posted) are decided by
            # base.guarded_increments, compiled into this function: numba's cache does not follow
            # that dependency, so this file changes with every change of it
            ok = guarded_increments(refcount[f], n, guard, bits)
            if ok < n:
                out[0] = 1
                out[1] = leaves
                out[2] = f
                out[3] = refcount[f]
                return
            take_head(f, n, bits, refcount, entire, wrapped, out)
            leaves += set_leaves
        elif k == EV_HSTATE_CLEARED:
            drop_head(f, n, bits, refcount, entire, out)
        elif is_folio_event(k):
            apply_folio_event(k, f, n, bits, refcount, entire, wrapped)
    out[1] = leaves


class HstatePresent(Scheme):
    """``count_at="alloc"``: count when the walk makes the hstate-level entry present (as a
    table or a leaf) — the rule's definition.  ``count_at="set"``: count when the first leaf
    under an entry the walk reported "made present" is set (James's flag passed up through
    ``hugetlb_walk_step`` → ``hugetlb_hgm_walk``, T14).  An error between the allocation and
    the set then loses the increment for good (the entry is present, so no later walk
    reports "made present"): the audit shows it, unless the page-cache lookup comes first
    (``lookup_first=True``)."""

    name = "hstate_present"
    supports_hgm = True
    has_count_at = True
    source = "HGM RFC v1; T10 (David), T12 (James), T20 (Peter), T21"

    def __init__(self, geometry, folio_shift, folio_pfn, guard=None, count_at="alloc"):
        super().__init__(geometry, folio_shift, folio_pfn, guard)
        self.count_at = count_at

    def fresh(self, guard=None):
        # the audit's truth is the rule's definition: one count per present hstate entry
        return type(self)(self.geometry, self.folio_shift, self.folio_pfn, guard=guard,
                          count_at="alloc")

    def _run(self, ev, c, out):
        _apply_hstate_present(ev["kind"], ev["mm"], ev["addr"], ev["shift"], ev["count"],
                              ev["pfn"], ev["folio"], self.folio_shift, self.geometry.page_shift,
                              self._guard_code(), self.bits, self.count_at == "set",
                              c["refcount"], c["entire"], c["wrapped"], out)
