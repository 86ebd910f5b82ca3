"""Layer 4: one trace, several schemes side by side, as plain data.

``compare_schemes(steps, schemes=[...], nr_hugepages=..., watch=[("f", 0)])`` builds one
machine per scheme (same geometry, kernel, guard and error policy), applies every step to
each, and returns per step the outcome under each scheme and the counters of the watched
folios — what a renderer or a notebook shows.  Nothing here counts anything itself.
"""
from __future__ import annotations

from .mm import Machine
from .ops import World, op_to_dict, run_step

ALL_SCHEMES = ("mainline", "per_piece", "thp_like", "hstate_present", "subtree_counted")


def folio_counters(machine, folio, pages=(0, 1)) -> dict:
    if folio is None:
        return None
    out = {"folio": folio.id, "refcount": folio.refcount, "entire_mapcount": folio.entire_mapcount,
           "mapcount": folio.mapcount, "wrapped": folio.wrapped,
           "page_mapcount": {int(i): folio.page_mapcount(int(i)) for i in pages
                             if int(i) < folio.nr_pages}}
    meta = machine.scheme.metadata_bytes()
    if meta:
        out["metadata_bytes"] = meta
    if folio.locked:        # left by v2 35/46's posted error path (guard "sign_posted")
        out["locked"], out["leaked_refs"] = True, folio.leaked_refs
    return out


def watched_counters(worlds, watch, pages=(0, 1)) -> dict:
    """``{scheme: {"f@0x2000": folio counters or None}}``: for each watched (file label,
    byte offset) the :func:`folio_counters` of the folio holding that byte, with
    ``page_mapcount`` of ``pages`` and of the page holding the byte (None: the file has no
    folio there).  The one reader behind ``Session.counters`` and the counter tables of the
    explorer and the explainers (:mod:`hgmviz.render.counters`)."""
    out = {}
    for s, w in worlds.items():
        row = {}
        for label, offset in watch:
            f = w.files.get(label)
            folio = f.folio_at(offset) if f is not None else None
            pg = tuple(pages)
            if folio is not None:
                idx = (offset & (folio.size - 1)) >> w.machine.geometry.page_shift
                pg = tuple(sorted(set(int(i) for i in pg) | {int(idx)}))
            row["%s@%#x" % (label, offset)] = folio_counters(w.machine, folio, pg)
        out[s] = row
    return out


def compare_schemes(steps, schemes=ALL_SCHEMES, watch=(), pages=(0, 1), **machine_kwargs):
    """Run ``steps`` under each scheme; return ``[{"op":.., "results": {scheme: {...}}}]``.

    ``watch`` lists ``(file label, byte offset)`` pairs whose folios are reported after every
    step; ``machine_kwargs`` go to every :class:`~hgmviz.mm.Machine`.
    """
    worlds = {s: World(Machine(scheme=s, **machine_kwargs)) for s in schemes}
    table = []
    for op in steps:
        row = {"op": op_to_dict(op), "results": {}}
        for s, w in worlds.items():
            out = run_step(w, op)
            folios = {}
            for label, offset in watch:
                f = w.files.get(label)
                folios["%s@%#x" % (label, offset)] = (
                    folio_counters(w.machine, f.folio_at(offset), pages) if f is not None else None)
            row["results"][s] = {"outcome": out, "folios": folios,
                                 "call_path": list(w.machine.call_path)}
        table.append(row)
    return table
