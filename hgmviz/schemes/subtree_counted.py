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

Under PMD sharing (``huge_pmd_share()`` / ``huge_pmd_unshare()``, mm/hugetlb.c, v6.2) one
PMD page holds the leaves of several processes: a leaf set by one mm's fault is cleared later
under another (the one that still holds the table after the first unshares, munmaps or
exits).  So a leaf in a shared PMD page is counted under the table's *canonical* attachment,
the first (mm, PUD range) still attached to it, not under the mm whose fault set it; when
that attachment unshares, the counts move to the next one.  The scheme follows the tables
from the events (``pgtable_alloc`` / ``pgtable_free`` of PMD pages, ``huge_pmd_share`` /
``huge_pmd_unshare``), so a table with one attachment is keyed exactly as an unshared one
(issue 17 item 3: keyed by the faulting mm, a clear under the other mm left a reference
behind).
"""
from __future__ import annotations

from ..core import EV_CLEAR, EV_PMD_SHARE, EV_PMD_UNSHARE, EV_SET, EV_TABLE_ALLOC, EV_TABLE_FREE
from .base import (GUARDS, OUT_METADATA, Scheme, SchemeRefusal, apply_folio_event, drop_head,
                   guarded_increments, take_head)

ENTRY_BYTES = 8
PMD_TABLE = 2                 # the level of a PMD page (its entries map the PMD hstate)


class SubtreeCounted(Scheme):
    name = "subtree_counted"
    supports_hgm = True
    source = "T11 (Peter Xu), T13 (Mike Kravetz)"

    def __init__(self, geometry, folio_shift, folio_pfn, guard=None):
        super().__init__(geometry, folio_shift, folio_pfn, guard)
        self.counters["pieces"] = {}          # (mm, hugepage address) -> mapped leaves
        self.counters["peak"] = 0
        # the PMD pages, as the events show them (derived state: not a counter)
        self._tables: dict = {}       # (mm, PUD base) -> PMD page
        self._sharers: dict = {}      # PMD page -> [(mm, PUD base), ...], canonical first

    def snapshot(self):
        snap = super().snapshot()
        snap["pieces"] = dict(self.counters["pieces"])
        snap["pmd_tables"] = (dict(self._tables),
                              {t: list(v) for t, v in self._sharers.items()})
        return snap

    def restore(self, snap):
        snap = dict(snap)
        tables, sharers = snap.pop("pmd_tables", ({}, {}))
        super().restore(snap)
        self.counters["pieces"] = dict(snap["pieces"])
        self._tables = dict(tables)
        self._sharers = {t: list(v) for t, v in sharers.items()}

    def commit(self, scratch):
        scratch = dict(scratch)
        self._tables, self._sharers = scratch.pop("pmd_tables")
        self.counters = scratch

    def _key(self, tables, sharers, mm, hbase):
        """Where a leaf of the hugepage at ``hbase`` in ``mm`` is counted: (mm, hbase), or,
        in a PMD page, under the page's canonical attachment."""
        pud_mask = (1 << self.geometry.level_shift(3)) - 1
        pud = hbase & ~pud_mask
        t = tables.get((mm, pud))
        if t is None:
            return (mm, hbase)
        cmm, cpud = sharers[t][0]
        return (cmm, cpud + (hbase - pud))

    def _track(self, tables, sharers, k, mm, addr, level, table, pieces):
        """Follow the PMD pages; move the counts when the canonical attachment leaves."""
        if level != PMD_TABLE:
            return
        pud = addr & ~((1 << self.geometry.level_shift(3)) - 1)
        if k == EV_TABLE_ALLOC:
            tables[(mm, pud)] = table
            sharers[table] = [(mm, pud)]
        elif k == EV_PMD_SHARE:
            tables[(mm, pud)] = table
            sharers.setdefault(table, []).append((mm, pud))
        elif k in (EV_PMD_UNSHARE, EV_TABLE_FREE):
            tables.pop((mm, pud), None)
            att = sharers.get(table)
            if not att or (mm, pud) not in att:
                return
            was_first = att[0] == (mm, pud)
            att.remove((mm, pud))
            if not att:
                del sharers[table]
            elif was_first:                          # re-key to the next attachment
                span = 1 << self.geometry.level_shift(3)
                nmm, npud = att[0]
                for key in [key for key in pieces
                            if key[0] == mm and pud <= key[1] < pud + span]:
                    pieces[(nmm, npud + (key[1] - pud))] = pieces.pop(key)

    def _run(self, ev, c, out):
        bits = self.bits
        guard = GUARDS[self.guard]
        pieces = c["pieces"]
        tables, sharers = c["pmd_tables"]
        ref, ent, wrapped = c["refcount"], c["entire"], c["wrapped"]
        leaves = 0
        for k, mm, addr, n, f, shift, pfn in zip(ev["kind"], ev["mm"], ev["addr"], ev["count"],
                                                 ev["folio"], ev["shift"], ev["pfn"]):
            k, mm, addr, n, f = int(k), int(mm), int(addr), int(n), int(f)
            if k in (EV_SET, EV_CLEAR):
                hbase = addr & ~((1 << int(self.folio_shift[f])) - 1)
                key = self._key(tables, sharers, mm, hbase)
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
            elif k in (EV_TABLE_ALLOC, EV_TABLE_FREE, EV_PMD_SHARE, EV_PMD_UNSHARE):
                self._track(tables, sharers, k, mm, addr, int(shift), int(pfn), pieces)
            else:
                apply_folio_event(k, f, n, bits, ref, ent, wrapped)
        c["peak"] = max(c["peak"], len(pieces))
        out[1] = leaves

    def metadata_bytes(self) -> int:
        return ENTRY_BYTES * len(self.counters["pieces"])

    def peak_metadata_bytes(self) -> int:
        return ENTRY_BYTES * self.counters["peak"]


__all__ = ["SubtreeCounted", "SchemeRefusal"]
