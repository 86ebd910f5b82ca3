"""Layer 2 (beside mm): the audit — recompute every counter from the page tables and the page cache.

Four checks:

* **structure**: every page-table page's ``tcount`` equals its non-none entries; free pages
  are zero; a PMD page's share count equals the number of PUD entries pointing at it minus
  one; every used page is reachable from a live process's PGD; no folio is both free and
  mapped or cached.
* **leaves**: every present leaf is no larger than its VMA's hstate (``mfill_atomic_hugetlb()``
  and HGM's walk map at most ``vma_hpagesize``), is aligned to its size, and maps exactly the
  pages the page cache holds at the file offset its address stands for
  (``linear_page_index()``: ``vm_pgoff`` + the offset into the VMA) — a shared mapping of a
  hugetlbfs file can map nothing else.
* **counters**: the present leaves (each page-table page counted once, however many
  processes share it) and the page-cache contents are replayed as events into a fresh copy
  of the machine's scheme, with no guard; its counters must equal the live ones.  A scheme
  that counted at the wrong moment (say, at table allocation for an operation that then
  failed) shows up here.
* **leaks**: under the ``"sign_posted"`` guard (HGM v2 35/46 as posted) a refused lookup
  leaves a reference no page table accounts for and its folio locked; each such folio is
  reported, and its leaked references are added to the recomputed refcount before comparing.

``Machine.audit()`` returns the list of problems; empty means consistent.
"""
from __future__ import annotations

import numpy as np

from . import core


def _structure(m) -> list:
    pt = m.pt
    problems = []
    used = np.flatnonzero(pt.tlevel != 0)
    ent = pt.ent
    counts = np.count_nonzero(ent[used], axis=1) if used.size else np.zeros(0, int)
    bad = used[counts != pt.tcount[used]]
    for t in bad[:5]:
        problems.append("page-table page %d: tcount %d but %d entries present"
                        % (t, pt.tcount[t], np.count_nonzero(ent[t])))
    free = np.flatnonzero(pt.tlevel == 0)
    free = free[free != 0]
    dirty = free[np.any(ent[free] != 0, axis=1)] if free.size else free
    for t in dirty[:5]:
        problems.append("free page-table page %d is not zero" % t)
    nfree = int(pt.meta[core.M_NFREE])
    if nfree != free.size:
        problems.append("free stack holds %d pages but %d pages are free" % (nfree, free.size))
    # references to each page from entries
    refs = np.zeros(pt.capacity, dtype=np.int64)
    if used.size:
        rows = ent[used]
        np.add.at(refs, rows[(rows != 0) & ((rows & 1) == 0)] >> 1, 1)
    for mm in m._mms.values():
        if mm.alive:
            refs[mm.pgd] += 1
    for t in used:
        expect = refs[t] - 1
        if refs[t] == 0:
            problems.append("page-table page %d (level %d) is unreachable" % (t, pt.tlevel[t]))
        elif pt.tshare[t] != expect:
            problems.append("page-table page %d: share count %d but %d referrers"
                            % (t, pt.tshare[t], refs[t]))
    for fid in range(m._folio_pfn.size):
        cached = m._folio_file[fid] >= 0
        if cached and not m._folio_used[fid]:
            problems.append("folio %d: free but in the page cache of file %d"
                            % (fid, m._folio_file[fid]))
        elif m._folio_used[fid] and not cached and m.scheme.folio_ref_count(fid) <= 0:
            # an anonymous folio (MAP_PRIVATE) lives as long as a mapping holds it
            problems.append("folio %d: used, not in a page cache, and no reference holds it"
                            % fid)
    return problems


def present_leaves(m) -> list:
    """``[(mm, vma, addrs, shifts, pfns)]``: the present leaves of every VMA of every live
    process, each page-table page reported once however many VMAs share it (the first VMA
    that reaches a shared PMD page reports its leaves)."""
    pt = m.pt
    seen = np.zeros(pt.capacity, dtype=np.int32)
    walker = 0
    out = []
    for mm in m._mms.values():
        if not mm.alive:
            continue
        for v in mm.vmas:
            walker += 1          # each VMA walks on its own: a PMD page shared between two
            # VMAs, even of one process, is counted once.  The output grows with the leaves
            # present (doubling), not with the VMA's size: a huge VMA mapping little is cheap
            n = (v.end - v.start) >> m.geometry.page_shift
            cap = max(16, min(n, 4096))
            while True:
                oa = np.zeros(cap, np.int64)
                osh = np.zeros(cap, np.int64)
                op = np.zeros(cap, np.int64)
                ot = np.zeros(cap, np.int64)
                k = core.collect_leaves(pt.P, m._g, mm.pgd, v.start, v.end, seen, walker,
                                        oa, osh, op, ot)
                if k >= 0:
                    break
                cap *= 2
            out.append((mm, v, oa[:k], osh[:k], op[:k]))
    return out


def _leaves(m, leaves) -> list:
    g = m.geometry
    problems = []
    for mm, v, oa, osh, op in leaves:
        h = m._hstate_of(v)
        st = m._files[v.file]
        where = "process %d, VMA %#x-%#x" % (mm.pid, v.start, v.end)
        big = np.flatnonzero(osh > h.shift)
        for j in big[:3]:
            problems.append("%s: a %s leaf at %#x is larger than the VMA's %s hstate"
                            % (where, g.fmt_size(1 << int(osh[j])), int(oa[j]),
                               g.fmt_size(h.size)))
        size = np.int64(1) << osh
        bad = np.flatnonzero((oa & (size - 1)) != 0)
        for j in bad[:3]:
            problems.append("%s: the %s leaf at %#x is not aligned to its size"
                            % (where, g.fmt_size(int(size[j])), int(oa[j])))
        off = (np.int64(v.pgoff) << g.page_shift) + (oa - v.start)      # linear_page_index
        idx = off >> h.shift
        pc = st.pc if st.pc.size else np.full(1, -1, dtype=np.int64)
        folio = np.where(idx < st.pc.size, pc[np.minimum(idx, pc.size - 1)], -1)
        want = np.where(folio >= 0, m._folio_pfn[np.maximum(folio, 0)], -1) + \
            ((off & (h.size - 1)) >> g.page_shift)
        if not v.shared:
            # a private VMA maps the page cache's page or an anonymous folio of its own
            # (hugetlb_no_page / hugetlb_wp); an anonymous folio is in no page cache
            lf = np.array([int(core.pfn_to_folio(m._fl, int(p))) for p in op], dtype=np.int64)
            anon = (m._folio_file[lf] < 0) if lf.size else np.zeros(0, bool)
            folio = np.where(anon, -2, folio)
        for j in np.flatnonzero(folio == -1)[:3]:
            problems.append("%s: the leaf at %#x maps pfn %#x, but file offset %#x is not in "
                            "the page cache" % (where, int(oa[j]), int(op[j]), int(off[j])))
        for j in np.flatnonzero((folio >= 0) & (op != want))[:3]:
            problems.append("%s: the leaf at %#x maps pfn %#x; the page cache holds pfn %#x "
                            "at file offset %#x" % (where, int(oa[j]), int(op[j]),
                                                    int(want[j]), int(off[j])))
    return problems


def hstate_entries(m, pgd, start, end, level) -> list:
    """``[(addr, table, index, value)]`` for every non-none entry at ``level`` under
    ``[start, end)`` (hugepage aligned) of the tree at ``pgd`` — what
    ``hugetlb_full_walk(addr, level)`` finds at each hugepage of the range, found by descending
    only into tables that exist, so the cost follows the page tables present, not the range."""
    g = m.geometry
    ent = m.pt.ent
    bits = g.bits_per_level
    out = []

    def walk(t, lvl, base):
        sh = g.level_shift(lvl)
        lo = max(start, base)
        hi = min(end, base + (1 << (sh + bits)))
        if lo >= hi:
            return
        i0 = (lo - base) >> sh
        i1 = ((hi - base) + (1 << sh) - 1) >> sh
        row = ent[t, i0:i1]
        for k in np.flatnonzero(row):
            i = i0 + int(k)
            val = int(row[k])
            a = base + (i << sh)
            if lvl == level:
                out.append((a, t, i, val))
            elif not val & 1:           # a leaf above the level maps no entry at it
                walk(val >> 1, lvl - 1, a)

    walk(pgd, g.levels, 0)
    return out


def replay_events(m, leaves=None) -> dict:
    """The events that rebuild every counter from scratch: page cache, then present leaves
    (``leaves``: :func:`present_leaves`, walked here if not given), then present
    hstate-level entries."""
    g = m.geometry
    pt = m.pt
    if leaves is None:
        leaves = present_leaves(m)
    kinds, mms, addrs, shifts, counts, pfns, folios = [], [], [], [], [], [], []

    def add(k, mm, addr, shift, count, pfn, folio):
        kinds.append(k)
        mms.append(mm)
        addrs.append(addr)
        shifts.append(shift)
        counts.append(count)
        pfns.append(pfn)
        folios.append(folio)

    for fid, st in m._files.items():
        h = g.hstates[st.hstate]
        for idx in np.flatnonzero(st.pc >= 0):
            f = int(st.pc[idx])
            pfn = int(m._folio_pfn[f])
            add(core.EV_FOLIO_ALLOC, -1, 0, h.shift, 1, pfn, f)
            add(core.EV_PAGECACHE_ADD, -1, 0, h.shift,
                m.kernel.pagecache_refs(h.pages_per_huge_page()), pfn, f)
    seen_entries = set()
    for mm, v, oa, osh, op in leaves:
        h = m._hstate_of(v)
        for j in range(oa.size):
            pfn = int(op[j])
            f = int(core.pfn_to_folio(m._fl, pfn))
            add(core.EV_SET, mm.pid, int(oa[j]), int(osh[j]), 1, pfn, f)
        # hstate-level entries present (as leaf or as table)
        for a, t, i, val in hstate_entries(m, mm.pgd, v.start, v.end, h.level):
            if val & 1:
                f = int(core.pfn_to_folio(m._fl, val >> 1))
            else:
                f = int(pt.tfolio[val >> 1])
            if (int(t), int(i)) in seen_entries:      # a shared PMD page: once
                continue
            seen_entries.add((int(t), int(i)))
            add(core.EV_HSTATE_POPULATED, mm.pid, a, h.shift, 1, int(m._folio_pfn[f]), f)
    return {"kind": np.array(kinds, np.int8), "mm": np.array(mms, np.int32),
            "addr": np.array(addrs, np.int64), "shift": np.array(shifts, np.int8),
            "count": np.array(counts, np.int64), "pfn": np.array(pfns, np.int64),
            "folio": np.array(folios, np.int32)}


def audit(m) -> list:
    """All inconsistencies between the machine's counters and its page tables (empty: none)."""
    problems = _structure(m)
    leaves = present_leaves(m)
    problems += _leaves(m, leaves)
    fresh = m.scheme.fresh()
    ev = replay_events(m, leaves)
    fresh.commit(fresh.admit(ev))
    leaked = m.scheme.counters.get("leaked")
    locked = m.scheme.counters.get("locked")
    if leaked is not None:
        # what v2 35/46's error path leaves (guard "sign_posted"): reported, then allowed for
        for f in np.flatnonzero((leaked != 0) | (locked != 0)):
            problems.append("folio %d: locked, with %d reference(s) never put: a refused "
                            "lookup's error path (HGM v2 35/46 as posted, "
                            "hugetlb_try_find_lock_folio: return ERR_PTR(-EFAULT) without "
                            "folio_unlock() or folio_put())" % (f, leaked[f]))
        half = 1 << (m.scheme.bits - 1)        # wrapped as atomic_t wraps
        fresh.counters["refcount"] = ((fresh.counters["refcount"] + leaked + half)
                                      & (2 * half - 1)) - half
    for k, live in m.scheme.counters.items():
        if k in ("wrapped", "peak", "leaked", "locked"):
            continue
        want = fresh.counters[k]
        if isinstance(live, dict):
            if (m.pt.tshare > 0).any():
                # leaves in a shared PMD page belong to no one process: compare the counts only
                live, want = sorted(live.values()), sorted(want.values())
                if live != want:
                    problems.append("%s: live counts %r, recomputed %r" % (k, live[:8], want[:8]))
                continue
            if live != want:
                problems.append("%s: live %d entries, recomputed %d; first difference %r"
                                % (k, len(live), len(want), sorted(set(live.items()) ^ set(want.items()))[:1]))
            continue
        diff = np.flatnonzero(live != want)
        for i in diff[:5]:
            problems.append("%s[%d]: live %d, recomputed from page tables %d"
                            % (k, i, live[i], want[i]))
    return problems
