"""``subtree_counted``: per-(mapping, hugepage) metadata counting the mapped pieces.

Peter Xu (T11, Y8gRpEonhXgqfb41@x1n): the information needed to know when the last piece is
unmapped "needs to be per-map (so one page mapped multiple times can be accounted
differently), and per-page (so one mapping/vma can contain multiple pages) ... Or we can
maintain seperate allocates for such information, but that can be extra overheads too."  Mike
Kravetz (T13, Y8hITxr/BBMuO6WX@monkey) likewise thought "we might need to scan the page table
or keep metadata for better or easier accounting".

This scheme keeps that metadata: a count of mapped leaves for every (mm, hugepage) pair.  The
folio takes one reference and one mapcount when the first piece is mapped and drops them when
the last piece is unmapped, so — unlike ``hstate_present`` — a folio whose pieces are all
unmapped reports 0 even while empty page tables remain.  The price is the metadata:
:data:`ENTRY_BYTES` per live (mapping, hugepage) pair, reported by :meth:`metadata_bytes`
(an 8-byte slot in a per-VMA xarray holding an ``atomic_t`` count and the index tag: a model,
not a kernel structure — the kernel never had this scheme).
"""
from __future__ import annotations

from ..core import EV_CLEAR, EV_SET
from .base import (GUARDS, OUT_METADATA, Scheme, SchemeRefusal, apply_folio_event, drop_head,
                   guarded_increments, take_head)

ENTRY_BYTES = 8


class SubtreeCounted(Scheme):
    name = "subtree_counted"
    supports_hgm = True
    source = "T11 (Peter Xu), T13 (Mike Kravetz)"

    def __init__(self, geometry, folio_shift, folio_pfn, guard=None):
        super().__init__(geometry, folio_shift, folio_pfn, guard)
        self.counters["pieces"] = {}          # (mm, hugepage address) -> mapped leaves
        self.counters["peak"] = 0

    def snapshot(self):
        snap = super().snapshot()
        snap["pieces"] = dict(self.counters["pieces"])
        return snap

    def restore(self, snap):
        super().restore(snap)
        self.counters["pieces"] = dict(snap["pieces"])

    def _run(self, ev, c, out):
        bits = self.bits
        guard = GUARDS[self.guard]
        pieces = c["pieces"]
        ref, ent, wrapped = c["refcount"], c["entire"], c["wrapped"]
        leaves = 0
        for k, mm, addr, n, f in zip(ev["kind"], ev["mm"], ev["addr"], ev["count"], ev["folio"]):
            k, mm, addr, n, f = int(k), int(mm), int(addr), int(n), int(f)
            if k in (EV_SET, EV_CLEAR):
                hbase = addr & ~((1 << int(self.folio_shift[f])) - 1)
                key = (mm, hbase)
                before = pieces.get(key, 0)
                after = before + (n if k == EV_SET else -n)
                if k == EV_SET and before == 0:
                    if guarded_increments(int(ref[f]), 1, guard, bits) < 1:
                        out[0], out[1], out[2], out[3] = 1, leaves, f, int(ref[f])
                        return
                    take_head(f, 1, bits, ref, ent, wrapped, out)
                elif k == EV_CLEAR and after == 0:
                    drop_head(f, 1, bits, ref, ent, out)
                out[OUT_METADATA] += n
                if after:
                    pieces[key] = after
                else:
                    pieces.pop(key, None)
                if k == EV_SET:
                    leaves += n
            else:
                apply_folio_event(k, f, n, bits, ref, ent, wrapped)
        c["peak"] = max(c["peak"], len(pieces))
        out[1] = leaves

    def metadata_bytes(self) -> int:
        return ENTRY_BYTES * len(self.counters["pieces"])

    def peak_metadata_bytes(self) -> int:
        return ENTRY_BYTES * self.counters["peak"]


__all__ = ["SubtreeCounted", "SchemeRefusal"]
