"""Layer 5: a read-only view of one machine state — the live machine or a ``m.snapshot()``.

Everything the scene builder reads goes through :class:`StateView`, built on the machine's
public read-only view (:meth:`hgmviz.mm.Machine.state`), so the renderer never touches the
machine's private fields.  Nothing here writes to the machine: arrays are read-only views, and
the counters of a snapshot are read through a fresh scheme object.
"""
from __future__ import annotations

import numpy as np

from ..mm import FileView, MmView

__all__ = ["StateView", "MmView", "FileView", "pfn_to_folio"]


def pfn_to_folio(fl: np.ndarray, pfn: np.ndarray) -> np.ndarray:
    """Vectorised ``core.pfn_to_folio`` (same ``fl`` layout: ``[nh, (pfn0, order, folio0,
    nr) * nh]``); -1 where a pfn is in no folio."""
    pfn = np.asarray(pfn)
    nh = int(fl[0])
    if pfn.size:
        lo, hi = int(pfn.min()), int(pfn.max())
        for h in range(nh):         # fast path: every pfn in one hstate's region
            pfn0, order, f0, nr = (int(x) for x in fl[1 + 4 * h: 5 + 4 * h])
            if pfn0 <= lo and hi < pfn0 + (nr << order):
                return (pfn - pfn0 >> order) + f0
    out = np.full(pfn.shape, -1, dtype=np.int64)
    for h in range(nh):
        pfn0, order, f0, nr = (int(x) for x in fl[1 + 4 * h: 5 + 4 * h])
        inside = (pfn >= pfn0) & (pfn < pfn0 + (nr << order))
        out[inside] = f0 + ((pfn[inside] - pfn0) >> order)
    return out


class StateView:
    """One state of machine ``m``: its live state (``snap=None``) or a snapshot's."""

    def __init__(self, m, snap=None):
        st = m.state(snap)
        self.machine = m
        self.geometry = st.geometry
        self.fl, self.folio_pfn, self.folio_hstate = st.fl, st.folio_pfn, st.folio_hstate
        self.nr_folios = int(st.folio_pfn.size)
        self.ent, self.tlevel, self.tshare = st.ent, st.tlevel, st.tshare
        self.folio_used, self.folio_file, self.folio_index = (st.folio_used, st.folio_file,
                                                              st.folio_index)
        self.scheme, self.version = st.scheme, st.version
        self.mms, self.files = st.mms, st.files

    # -- counters through the scheme's accessors (the kernel's names) -------------------
    def counters(self, fid: int) -> dict:
        s = self.scheme
        out = {"refcount": s.folio_ref_count(fid), "entire_mapcount": s.folio_entire_mapcount(fid),
               "mapcount": s.folio_mapcount(fid), "wrapped": s.wrapped(fid)}
        if s.guard == "sign_posted":      # what v2 35/46's posted error path leaves
            out["locked"], out["leaked"] = s.locked(fid), s.leaked_refs(fid)
        return out

    def subpage_mapcounts(self, fid: int):
        """``page->_mapcount + 1`` of every subpage (thp_like), else None."""
        f = getattr(self.scheme, "subpage_mapcounts", None)
        return None if f is None else f(fid)

    def folio_pages(self, fid: int) -> int:
        h = self.geometry.hstates[int(self.folio_hstate[fid])]
        return h.pages_per_huge_page()

    def leaf_folio(self, pfn: np.ndarray):
        """The folio of each pfn (-1 for a pfn in no folio): :meth:`leaf_folio_page`'s first
        half, without computing the page indexes."""
        pfn = np.asarray(pfn)
        fl = self.fl
        if pfn.size:
            lo, hi = int(pfn.min()), int(pfn.max())
            for h in range(int(fl[0])):     # fast path: all in one hstate's region
                pfn0, order, f0, nr = (int(x) for x in fl[1 + 4 * h: 5 + 4 * h])
                if pfn0 <= lo and hi < pfn0 + (nr << order):
                    return ((pfn - pfn0) >> order) + f0
        return pfn_to_folio(fl, pfn)

    def leaf_folio_page(self, pfn: np.ndarray):
        """(folio, page index in the folio) of each pfn; (-1, -1) for a pfn in no folio."""
        pfn = np.asarray(pfn)
        fl = self.fl
        if pfn.size:
            lo, hi = int(pfn.min()), int(pfn.max())
            for h in range(int(fl[0])):     # fast path: all in one hstate's region
                pfn0, order, f0, nr = (int(x) for x in fl[1 + 4 * h: 5 + 4 * h])
                if pfn0 <= lo and hi < pfn0 + (nr << order):
                    rel = pfn - pfn0
                    return (rel >> order) + f0, rel & ((1 << order) - 1)
        f = pfn_to_folio(fl, pfn)
        page = pfn - self.folio_pfn[np.maximum(f, 0)]
        if f.size and f.min() < 0:
            page = np.where(f >= 0, page, -1)
        return f, page
