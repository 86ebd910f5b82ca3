"""Layer 5: the scene model — what a diagram shows, as frozen plain data.

:func:`build_scene` reads a machine (never writes it) and returns a :class:`Scene`: nodes
(processes, page-table pages, groups of alike page-table pages, folios), their rows, the
edges between them, change marks and a caption.  The back ends (:mod:`.dot`, :mod:`.text`)
only lay it out.

The collapsing rule
===================

A table's entries are shown from left to right as *runs*.  A run is a maximal sequence of
consecutive entries that are alike, taken greedily from the lowest index:

* ``none``: entries that are all none (``PTE[16..511] none``);
* ``leaves``: present leaves (one size: the level's) that either map consecutive pages of one
  folio — each entry maps the pages right after the previous entry's
  (``PTE[0..15] 4 KiB → folio 3, pages 0..15``) — or map the same pages of consecutive
  folios (``PMD[0..511] 2 MiB → folios 0..511, each whole``); a run keeps one of the two
  progressions;
* ``tables``: pointers to page-table pages that are *translates* of each other (below);
  they are drawn as one group node (``PMD[0..511] → 512 PTE tables``).

Two page-table pages at consecutive entries are translates when both hold only none entries
and leaves (no deeper tables), neither is a shared PMD page, both lie wholly inside the shown
range, their entries have the same kinds and change marks at every index, and every leaf of
the second maps folio ``f + dF`` page ``p + dG`` where the first maps folio ``f`` page ``p``,
with one step ``(dF, dG)`` for the whole page and for the whole run; the allowed steps are
``dF = 0, dG = `` the pages one table spans (the same folio continues) and ``dG = 0, dF >= 0``
(the same pages of folios a fixed stride apart).  The group node shows table ``k``'s rows
once, with ``k`` in the numbers: ``512 PTE tables, each: PTE[0..511] 4 KiB → folio 0, pages
k*512..k*512+511``.

Runs also break where the change mark changes (new / removed / replaced entries never merge
with unchanged ones).  A removed entry is shown as ``none`` with what it was.

Bounds: a table shows at most ``max_rows`` rows; the runs past that are summarised in one
``more`` row naming the folios they map.  If the scene would exceed ``max_nodes`` nodes, the
lowest levels are *folded*: their tables are no longer nodes, and the parent's row
summarises them (``PMD[0..511] → 512 PTE tables (not drawn): 262,144 leaves …``), level by
level until the scene fits.  Folios with consecutive ids, the same size, the same counters
and consecutive file indices are one node (``folios 0..511``).

Subpage mapcounts (thp_like) are downsampled to at most :data:`STRIP_BUCKETS` buckets of
equal size; a bucket shows the *maximum* mapcount of its pages and is flagged *mixed* when
its pages do not all have the same mapcount.
"""
from __future__ import annotations

import numpy as np

from ..core import EV_CLEAR, EV_SET, EVENT_NAMES
from .builder import _Builder
from .model import (STRIP_BUCKETS, Cluster, Edge, Line, Node, Row, Scene, Strip,  # noqa: F401
                    _OverBudget, downsample, fmt_size)
from .view import StateView

__all__ = ["Row", "Line", "Strip", "Node", "Edge", "Cluster", "Scene", "build_scene",
           "build_compare_scene", "named_leaves", "STRIP_BUCKETS", "downsample"]


# =========================================================================================
# Public builders
# =========================================================================================
def _check_range(start, end):
    for name, v in (("start", start), ("end", end)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
            raise TypeError("%s must be a non-negative int address or None, not %r" % (name, v))
    if start is not None and end is not None and end <= start:
        raise ValueError("end (%#x) must be above start (%#x)" % (end, start))


def _pids(m, pids, now, bef):
    if pids is None:
        out = [pid for pid, mm in now.mms.items() if mm.alive]
        if bef is not None:
            out += [pid for pid, mm in bef.mms.items() if mm.alive and pid not in out]
        return sorted(out)
    if not isinstance(pids, (list, tuple, set, frozenset)):
        pids = [pids]
    out = []
    for p in pids:
        pid = getattr(p, "pid", p)
        if isinstance(pid, bool) or not isinstance(pid, (int, np.integer)):
            raise TypeError("pids must be process ids or Process objects, not %r" % (p,))
        pid = int(pid)
        if pid not in now.mms and (bef is None or pid not in bef.mms):
            raise ValueError("no process %d on this machine; processes: %s"
                             % (pid, ", ".join(str(x) for x in sorted(now.mms)) or "none"))
        out.append(pid)
    return out


def _events_line(m) -> str:
    ev = m.last_events
    kinds = ev["kind"]
    if kinds.size == 0:
        return "events: none"
    parts = []
    order = list(EVENT_NAMES)
    for k in sorted(np.unique(kinds).tolist(), key=order.index):
        sel = kinds == k
        name = EVENT_NAMES.get(k, str(k))
        if k in (EV_SET, EV_CLEAR):
            sh = ev["shift"][sel].astype(np.int64)
            cnt = ev["count"][sel].astype(np.int64)
            by = ", ".join("%s×%s" % (format(int(cnt[sh == s].sum()), ","), fmt_size(1 << int(s)))
                           for s in sorted(set(sh.tolist()), reverse=True))
            parts.append("%s %s" % (name, by))
        else:
            parts.append("%s ×%d" % (name, int(sel.sum())))
    return "events: " + " · ".join(parts)


def _machine_title(m, version) -> str:
    s = m.scheme
    bits = [m.geometry.name, "scheme %s" % s.name]
    if s.guard:
        bits.append("guard %s" % s.guard)
    bits += ["kernel %s" % m.kernel.label, "version %d" % version]
    return " · ".join(bits)


def _caption(m, now, bef):
    lines = [Line("call path: " + (" → ".join(m.call_path) if m.call_path else "(none)")),
             Line(_events_line(m), style="muted")]
    meta = m.scheme.metadata_bytes()
    if meta:
        lines.append(Line("scheme metadata: %s bytes" % format(meta, ","), style="muted"))
    if bef is not None:
        lines.append(Line("changes since version %d (the state before the step): + new · "
                          "− removed · ~ changed (was N)" % bef.version))
    return tuple(lines)


def _build_one(m, pids, start, end, before, prefix, column, max_nodes, max_rows, memo=None):
    now = StateView(m)
    bef = StateView(m, before) if before is not None else None
    plist = _pids(m, pids, now, bef)
    levels = m.geometry.levels
    last = None
    for fold in range(0, levels):
        b = _Builder(m, now, bef, prefix, column, fold, max_rows,
                     max_nodes if fold < levels - 1 else None, memo)
        try:
            for pid in plist:
                b.process(pid, start, end)
            b.budget = max_nodes if fold < levels - 1 else None
            b.finish()
            over = len(b.nodes) > max_nodes
            return b, now, bef, fold, over
        except _OverBudget:
            last = fold
            continue
    raise AssertionError("unreachable: the last fold level has no budget (%r)" % last)


def _legend(nodes, fold, levels_name, bef, strip_rule):
    out = ["X[a..b]: entries a..b of a table, one row because alike (all none; or leaves mapping "
           "consecutive pages of one folio; or the same pages of consecutive folios).",
           "N tables, each: page-table pages at consecutive entries whose rows differ only by a "
           "fixed step per table k (numbers shown with k)."]
    if any(n.strip is not None for n in nodes):
        out.append(strip_rule)
    if fold:
        out.append("Tables at levels %s are summarised in their parent's row (over the "
                   "node budget)." % levels_name)
    if bef is not None:
        out.append("+ new (bold border, bold edge) · − removed (dashed) · ~ changed (double "
                   "border, was N).")
    out.append("version N: the machine's change counter (it grows with every change, undo "
               "included); each drawn state has its own.")
    return tuple(out)


STRIP_RULE = ("subpage mapcounts (page->_mapcount + 1): one cell per bucket of equal size, "
              "showing the bucket's maximum (0-9, + for >= 10, ! for < 0); an underlined or "
              "* cell is mixed (its pages differ); ~ marks a bucket that changed.")


def _finish_scene(parts, title, caption, clusters, max_nodes, columns):
    nodes, edges, fold, over, legend = [], [], 0, False, None
    for b, now, bef, f, o in parts:
        nodes += b.nodes
        edges += b.edges
        fold = max(fold, f)
        over |= o
    names = ", ".join(parts[0][0].g.level_name(l) for l in range(1, fold + 1))
    bef = next((p[2] for p in parts if p[2] is not None), None)
    legend = _legend(nodes, fold, names, bef, STRIP_RULE)
    return Scene(title=title, caption=caption, clusters=tuple(clusters), nodes=tuple(nodes),
                 edges=tuple(edges), legend=legend, fold_level=fold, max_nodes=max_nodes,
                 over_budget=over, columns=columns)


def _clusters(b, title, lines=()):
    out = [Cluster(b.mcluster, title, "machine", "", tuple(lines))]
    for n in b.nodes:
        if n.kind == "process":
            out.append(Cluster(n.cluster, n.title, "process", b.mcluster))
    return out


def build_scene(m, pids=None, start=None, end=None, before=None, *, max_nodes=150, max_rows=24):
    """The scene of machine ``m``: processes ``pids`` (default: every live one, and with
    ``before`` those that exited since), the range ``[start, end)`` (default: each process's
    VMAs), changes since ``before`` (a ``m.snapshot()``) marked.  Reads, never writes."""
    _check_range(start, end)
    if max_nodes < 4:
        raise ValueError("max_nodes must be >= 4")
    b, now, bef, fold, over = part = _build_one(m, pids, start, end, before, "", 0, max_nodes,
                                                max_rows)
    title = _machine_title(m, now.version)
    return _finish_scene([part], title, _caption(m, now, bef), _clusters(b, title), max_nodes, 1)


def build_compare_scene(machines, pids=None, start=None, end=None, before=None, *,
                        titles=None, max_nodes=150, max_rows=24):
    """Several machines (the same steps under several schemes), one column each.  ``before``
    is None or a list with one snapshot (or None) per machine."""
    machines = list(machines)
    if not machines:
        raise ValueError("draw_compare needs at least one machine")
    if before is None:
        before = [None] * len(machines)
    before = list(before)
    if len(before) != len(machines):
        raise ValueError("before must have one snapshot (or None) per machine")
    if titles is not None and len(titles) != len(machines):
        raise ValueError("titles must have one title per machine")
    _check_range(start, end)
    budget = max(8, max_nodes // len(machines))
    parts, caps, titles_used = [], [], []
    memo = {}           # the columns' page tables are often alike: see _Builder.group_types
    for i, (m, snap) in enumerate(zip(machines, before)):
        part = _build_one(m, pids, start, end, snap, "m%d_" % i, i, budget, max_rows, memo)
        caps.append(_caption(m, part[1], part[2]))
        titles_used.append(titles[i] if titles is not None else m.scheme.name)
        parts.append(part)
    # the call path shown once on top when every column has the same one
    common = caps[0][0] if all(c[0] == caps[0][0] for c in caps) else None
    clusters = []
    for (b, now, bef, _, _), m, cap, t in zip(parts, machines, caps, titles_used):
        lines = (Line(_machine_title(m, now.version), style="muted"),) + \
            tuple(ln for ln in cap if ln != common)
        clusters += _clusters(b, t, lines)
    title = "comparison: " + " | ".join(titles_used)
    return _finish_scene(parts, title, (common,) if common else (), clusters, max_nodes,
                         len(machines))


# =========================================================================================
# What a scene names (for tests and for readers)
# =========================================================================================
def named_leaves(scene: Scene, column: int = 0):
    """Walk the scene from each process of ``column`` as the kernel walks page tables.

    Returns ``(leaves, summaries)``: ``leaves`` is a set of ``(pid, va, shift, folio, page)``
    of every present leaf drawn exactly (in a run, or in table k of a group); ``summaries``
    a list of ``(pid, va_lo, va_hi, folios)`` for rows that summarise (folded tables,
    ``more`` rows)."""
    leaves, summaries = set(), []
    nodes = {n.id: n for n in scene.nodes}

    def walk(pid, nid, bases):
        n = nodes[nid]
        for r in n.rows:
            S = 1 << r.shift
            for k, base in enumerate(bases):
                if r.kind == "leaf" and r.present:
                    for j in range(r.count):
                        leaves.add((pid, base + (r.lo + j) * S, r.shift,
                                    r.folio + j * r.folio_step + k * r.k_folio_step,
                                    r.page + j * r.page_step + k * r.k_page_step))
                elif r.kind in ("fold", "more"):
                    summaries.append((pid, base + r.lo * S, base + (r.hi + 1) * S, r.folios))
                elif r.kind == "table":
                    walk(pid, r.target, [base + r.lo * S])
                elif r.kind == "group":
                    walk(pid, r.target, [base + (r.lo + i) * S for i in range(r.count)])

    for e in scene.edges:
        if e.kind == "root" and nodes[e.src].column == column:
            walk(nodes[e.src].pid, e.dst, [0])
    return leaves, summaries

