"""Layer 5: a scene as plain text, for terminals and plain-text mail (at most ``width``
columns, default 80; UTF-8 arrows and dashes, no colour).

Layout: the caption, then each machine column in turn (a comparison prints its columns one
after another), each process's page-table tree indented by level, then the folios, then the
legend.  Every line starts with a two-character mark column: ``+`` new, ``−`` removed, ``~``
changed, ``!`` a wrapped or guarded counter.  A shared table is printed under the first
process that reaches it; later parents say where it is.  Long lines wrap with a hanging
indent; nothing exceeds ``width``.
"""
from __future__ import annotations

import textwrap

import numpy as np

from .safe import printable
from .scene import Scene, downsample
from .theme import MARK_GLYPHS

__all__ = ["render_text", "strip_text"]

_INDENT = 2


class _Out:
    def __init__(self, width: int):
        self.width = width
        self.lines = []

    def emit(self, text: str, mark: str = "", depth: int = 0, alert: bool = False):
        glyph = "!" if alert and not mark else MARK_GLYPHS.get(mark, " ")
        prefix = glyph + " "
        avail = self.width - len(prefix)
        ind = min(depth * _INDENT, max(0, avail // 3))
        body = max(1, avail - ind)
        text = printable(text, keep="")
        wrapped = textwrap.wrap(text, width=body, subsequent_indent="    " if body > 12 else "",
                                break_long_words=True, break_on_hyphens=False) or [""]
        for i, w in enumerate(wrapped):
            self.lines.append(((prefix if i == 0 else "  ") + " " * ind + w)[: self.width].rstrip())

    def raw(self, text: str, depth: int = 0):
        """One line that must not wrap (a strip); cut at the width."""
        ind = min(depth * _INDENT, max(0, (self.width - 2) // 3))
        text = printable(text, keep="")
        self.lines.append(("  " + " " * ind + text)[: self.width].rstrip())

    def blank(self):
        if self.lines and self.lines[-1] != "":
            self.lines.append("")


def strip_text(strip, width: int):
    """``(cells, marks)`` of a strip re-bucketed to at most ``width`` cells: a cell shows the
    maximum of its bucket (0-9, ``+`` >= 10, ``!`` < 0); ``marks`` puts ``*`` under a mixed
    cell and ``~`` under a changed one."""
    vals = list(strip.values)
    mixed = list(strip.mixed)
    changed = list(strip.changed)
    per = strip.pages_per_bucket
    if len(vals) > width:
        group = -(-len(vals) // max(1, width))
        v = np.asarray(vals)
        mx, mix, _ = downsample(v, -(-len(vals) // group))
        mix2 = [any(mixed[i:i + group]) or bool(mix[j]) for j, i in enumerate(range(0, len(vals), group))]
        ch2 = [any(changed[i:i + group]) for i in range(0, len(vals), group)]
        vals, mixed, changed, per = [int(x) for x in mx], mix2, ch2, per * group

    def cell(x):
        return "!" if x < 0 else ("+" if x >= 10 else str(x))

    cells = "".join(cell(x) for x in vals)
    marks = "".join("~" if c else ("*" if m else " ") for m, c in zip(mixed, changed))
    return cells, marks.rstrip(), per


def render_text(scene: Scene, width: int = 80) -> str:
    if isinstance(width, bool) or not isinstance(width, int) or width < 20:
        raise ValueError("width must be an int >= 20, not %r" % (width,))
    out = _Out(width)
    out.emit(scene.title)
    for ln in scene.caption:
        out.emit(ln.text, ln.mark)
    if scene.over_budget:
        out.emit("(over the node budget of %d even with every level folded)" % scene.max_nodes)
    nodes = {n.id: n for n in scene.nodes}
    by_src = {}
    for e in scene.edges:
        by_src.setdefault((e.src, e.port), []).append(e)
    printed = {}

    def tree(nid, depth, owner):
        n = nodes[nid]
        if nid in printed:
            out.emit("(%s: shown under %s)" % (n.title.rstrip(":"), printed[nid]), "", depth)
            return
        printed[nid] = owner
        head = n.title + ("  " + n.subtitle if n.subtitle else "")
        out.emit(head, n.mark, depth)
        for ln in n.lines:
            out.emit(ln.text, ln.mark, depth + 1, ln.style == "alert")
        for r in n.rows:
            out.emit(r.text, r.mark, depth + 1)
            if r.target:
                tree(r.target, depth + 2, owner)

    for cl in [c for c in scene.clusters if c.kind == "machine"]:
        if scene.columns > 1:
            out.blank()
            out.emit("== " + cl.title + " ==")
            for ln in cl.lines:
                out.emit(ln.text, ln.mark)
        col_nodes = [n for n in scene.nodes if n.cluster == cl.id or
                     any(c.id == n.cluster and c.parent == cl.id for c in scene.clusters)]
        for n in col_nodes:
            if n.kind != "process":
                continue
            out.blank()
            out.emit(n.title, n.mark)
            for ln in n.lines:
                out.emit(ln.text, ln.mark, 1, ln.style == "alert")
            for e in by_src.get((n.id, ""), []):
                tree(e.dst, 1, n.title)
        folios = [n for n in col_nodes if n.kind == "folio"]
        if folios:
            out.blank()
            out.emit("folios")
            for n in folios:
                out.emit(n.title + "  " + n.subtitle, n.mark, 1)
                for ln in n.lines:
                    out.emit(ln.text, ln.mark, 2, ln.style == "alert")
                if n.strip is not None:
                    lead = "subpage mapcount "
                    avail = width - 2 - 2 * _INDENT - len(lead) - 2
                    cells, marks, per = strip_text(n.strip, max(4, avail))
                    out.emit("subpage mapcounts, max per %d-page bucket:" % per,
                             "changed" if any(n.strip.changed) else "", 2)
                    out.raw(lead + "|" + cells + "|", 2)
                    if marks:
                        out.raw(" " * (len(lead) + 1) + marks, 2)
    if scene.legend:
        out.blank()
        for item in scene.legend:
            out.emit(item)
    return "\n".join(out.lines) + "\n"
