"""Layer 5: the scene model's data types — frozen plain data that the builder
(:mod:`.builder`) fills and the back ends (:mod:`.dot`, :mod:`.text`) lay out.  See
:mod:`.scene` for what a scene shows and the collapsing rule."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import _fmt_size as fmt_size  # noqa: F401  (used by .builder, .scene)

__all__ = ["Row", "Line", "Strip", "Node", "Edge", "Cluster", "Scene", "STRIP_BUCKETS",
           "downsample"]

STRIP_BUCKETS = 32
NONE, LEAF, TABLE = 0, 1, 2
SAME, NEW, REMOVED, REPLACED = 0, 1, 2, 3
_MARK = {SAME: "", NEW: "new", REMOVED: "removed", REPLACED: "new"}
# pair types between entry j-1 and j (0: not alike)
_P_LEAF_CONTIG, _P_LEAF_NEXT_FOLIO, _P_NONE, _P_ALL = 1, 2, 3, 9
_P_GROUP = 100     # + 0 (no leaves), + 1 (same folio continues), + 2 + dF (same pages, stride dF)



# =========================================================================================
# The model
# =========================================================================================
@dataclass(frozen=True)
class Row:
    """A run of alike entries ``lo..hi`` of one table (or of table k in a group).

    Leaf runs carry the numbers, so a reader (or a test) can recover every leaf: entry
    ``lo + j`` maps folio ``folio + j*folio_step`` page ``page + j*page_step`` (plus
    ``k*k_folio_step`` and ``k*k_page_step`` in table ``k`` of a group).
    """

    port: str
    kind: str                # "none" | "leaf" | "table" | "group" | "fold" | "more"
    level: int               # the level of the entries
    lo: int
    hi: int
    text: str
    mark: str = ""           # "" | "new" | "removed" | "changed"
    present: bool = True     # False: what the entries were (removed)
    target: str = ""         # node id ("table", "group")
    shift: int = 0           # the size shift of one entry (its level's)
    folio: int = -1
    folio_step: int = 0
    page: int = -1
    page_step: int = 0
    k_folio_step: int = 0
    k_page_step: int = 0
    folios: tuple = ()       # every folio the row names (its edges go there)

    @property
    def count(self) -> int:
        return self.hi - self.lo + 1


@dataclass(frozen=True)
class Line:
    text: str
    mark: str = ""
    style: str = ""          # "" | "alert" | "muted"


@dataclass(frozen=True)
class Strip:
    """Downsampled subpage mapcounts: bucket ``b`` covers pages ``b*pages_per_bucket ..``."""

    values: tuple            # the maximum of each bucket
    mixed: tuple             # the bucket's pages are not all equal
    changed: tuple           # some page of the bucket changed (with ``before``)
    pages_per_bucket: int
    nr_pages: int


@dataclass(frozen=True)
class Node:
    id: str
    kind: str                # "process" | "table" | "group" | "folio"
    title: str
    subtitle: str = ""
    rows: tuple = ()
    lines: tuple = ()
    strip: Strip = None
    mark: str = ""
    level: int = 0           # table / group: the level of its entries
    tables: tuple = ()       # pool table ids drawn by this node
    folios: tuple = ()       # folio ids (folio nodes)
    count: int = 1           # group: number of tables; folio node: number of folios
    shared: bool = False     # a shared PMD page (drawn once, several parents)
    column: int = 0          # machine column
    cluster: str = ""        # innermost cluster id
    pid: int = 0             # process nodes


@dataclass(frozen=True)
class Edge:
    src: str
    port: str                # row port of src ("" for the process → PGD edge)
    dst: str
    kind: str                # "root" | "table" | "leaf"
    mark: str = ""


@dataclass(frozen=True)
class Cluster:
    id: str
    title: str
    kind: str                # "machine" | "process"
    parent: str = ""
    lines: tuple = ()        # caption lines (machine columns of a comparison)


@dataclass(frozen=True)
class Scene:
    title: str
    caption: tuple           # Lines
    clusters: tuple
    nodes: tuple
    edges: tuple
    legend: tuple            # strings
    fold_level: int = 0      # tables at levels <= this are summarised, not drawn
    max_nodes: int = 150
    over_budget: bool = False
    columns: int = 1
    _index: dict = field(default=None, compare=False, repr=False)

    def node(self, nid: str) -> Node:
        idx = self._index
        if idx is None:
            idx = {n.id: n for n in self.nodes}
            object.__setattr__(self, "_index", idx)
        return idx[nid]

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    def count(self, kind: str) -> int:
        return sum(1 for n in self.nodes if n.kind == kind)


# =========================================================================================
# Formatting helpers
# =========================================================================================


def _ranges(ids, cap=4) -> str:
    """``0..3, 7, 9..12`` (at most ``cap`` pieces, then ``…``)."""
    if isinstance(ids, np.ndarray) and ids.size > 64:     # a group's 512 tables
        u = np.unique(ids.astype(np.int64, copy=False))
        cut = np.flatnonzero(np.diff(u) != 1)
        pieces = list(zip(np.concatenate([u[:1], u[cut + 1]]).tolist(),
                          np.concatenate([u[cut], u[-1:]]).tolist()))
    else:
        ids = sorted(set(int(i) for i in ids))
        if not ids:
            return "-"
        pieces = []
        a = b = ids[0]
        for x in ids[1:]:
            if x == b + 1:
                b = x
                continue
            pieces.append((a, b))
            a = b = x
        pieces.append((a, b))
    txt = ", ".join("%d" % a if a == b else "%d..%d" % (a, b) for a, b in pieces[:cap])
    return txt + (", …" if len(pieces) > cap else "")


def _lin(base: int, step: int) -> str:
    """``base + k*step`` as text."""
    if step == 0:
        return "%d" % base
    ks = "k" if step == 1 else "k*%d" % step
    return ks if base == 0 else "%s+%d" % (ks, base)


def downsample(values: np.ndarray, buckets: int = STRIP_BUCKETS):
    """``(max per bucket, mixed per bucket, pages per bucket)`` of ``values``: at most
    ``buckets`` buckets of ``ceil(n / buckets)`` pages each (the last may be shorter)."""
    values = np.asarray(values)
    n = values.size
    per = max(1, -(-n // max(1, buckets)))
    nb = -(-n // per)
    pad = nb * per - n
    if pad:
        values = np.concatenate([values, np.full(pad, values[-1] if n else 0)])
    hi = values.reshape(nb, per)
    top = hi.max(axis=1)
    return top, hi.min(axis=1) != top, per


def _kind(v):
    """NONE (0), LEAF (1) or TABLE (2) of each encoded entry."""
    return (v != 0).view(np.int8) * (2 - (v & 1)).astype(np.int8)


class _OverBudget(Exception):
    pass


