"""Layer 5: a read-only view of one machine state — the live machine or a ``m.snapshot()``.

Everything the scene builder reads goes through :class:`StateView`, so the renderer has one
place that knows where the machine keeps things.  Nothing here writes to the machine: arrays
are read (never assigned into), and the counters of a snapshot are read through a *fresh*
scheme object (``m.scheme.fresh()`` restored from the snapshot), not through the machine's.

Read-only accessors the machine does not offer publicly (documented for the lead):

* a process's PGD table: ``Machine._mms[pid].pgd`` (``mm->pgd``), and exited processes;
* the folio layout: ``Machine._folio_pfn``, ``Machine._folio_hstate``, ``Machine._fl``
  (fixed when the machine is made);
* which folios are in use / in which file: ``Machine._folio_used``, ``_folio_file``,
  ``_folio_index``; files: ``Machine._files`` (also for released files).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["StateView", "MmView", "FileView", "pfn_to_folio"]


@dataclass(frozen=True)
class MmView:
    pid: int
    pgd: int
    vmas: tuple
    alive: bool


@dataclass(frozen=True)
class FileView:
    id: int
    name: str
    hstate: int
    size: int
    pc: np.ndarray
    released: bool


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
        self.machine = m
        self.geometry = m.geometry
        self.fl = m._fl
        self.folio_pfn = m._folio_pfn
        self.folio_hstate = m._folio_hstate
        self.nr_folios = int(m._folio_pfn.size)
        if snap is None:
            pt = m.pt
            self.ent, self.tlevel, self.tshare = pt.ent, pt.tlevel, pt.tshare
            mms, files = m._mms, m._files
            self.folio_used, self.folio_file, self.folio_index = (
                m._folio_used, m._folio_file, m._folio_index)
            self.scheme = m.scheme
            self.version = m.version
        else:
            _check_snapshot(m, snap)
            p = snap["pt"]
            self.ent, self.tlevel, self.tshare = p["ent"], p["tlevel"], p["tshare"]
            py = snap["py"]
            files, mms = py[0], py[1]
            self.folio_used, self.folio_file, self.folio_index = py[2], py[3], py[4]
            scheme = m.scheme.fresh(guard=m.scheme.guard)
            scheme.restore(snap["scheme"])      # a private copy: the machine's is untouched
            self.scheme = scheme
            self.version = snap["version"]
        self.mms = {pid: MmView(pid, int(st.pgd), tuple(st.vmas), bool(st.alive))
                    for pid, st in mms.items()}
        self.files = {fid: FileView(fid, st.name, int(st.hstate), int(st.size), st.pc,
                                    bool(st.released)) for fid, st in files.items()}

    # -- counters through the scheme's accessors (the kernel's names) -------------------
    def counters(self, fid: int) -> dict:
        s = self.scheme
        out = {"refcount": s.folio_ref_count(fid), "entire_mapcount": s.folio_entire_mapcount(fid),
               "mapcount": s.folio_mapcount(fid), "wrapped": s.wrapped(fid)}
        return out

    def subpage_mapcounts(self, fid: int):
        """``page->_mapcount + 1`` of every subpage (thp_like), else None."""
        f = getattr(self.scheme, "subpage_mapcounts", None)
        return None if f is None else f(fid)

    def folio_pages(self, fid: int) -> int:
        h = self.geometry.hstates[int(self.folio_hstate[fid])]
        return h.pages_per_huge_page()

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


def _check_snapshot(m, snap):
    if not isinstance(snap, dict) or not {"pt", "scheme", "py", "version"} <= set(snap):
        raise TypeError("before must be a snapshot of this machine (m.snapshot()), not %r"
                        % (type(snap).__name__,))
    ref = snap["scheme"].get("refcount")
    if ref is None or np.asarray(ref).size != m._folio_pfn.size or \
            snap["pt"]["ent"].shape[1] != m.pt.ent.shape[1]:
        raise ValueError("before is a snapshot of another machine (its folio pool or table "
                         "width differs); take it with m.snapshot() on the machine you draw")
