"""Layer 5: a scene as DOT (through the ``graphviz`` package) and as SVG (through Graphviz's
``dot`` program).

Nodes are HTML-like tables: a header (title, subtitle), optional lines (counters, VMAs) and
one row per run of entries, each row a port the edges leave from.  Change marks are drawn
three ways at once — the theme's colour, a glyph (+ − ~) and a line style (new: thick
border, bold edge; removed: dashed; changed: double border / dotted) — so they read in
greyscale.  All colours come from the :class:`~hgmviz.render.theme.Theme`.

The DOT source is deterministic (snapshot it in tests); the SVG is not byte-stable across
Graphviz versions (toolchain notes), so tests parse it instead.
"""
from __future__ import annotations

import functools
import html
import re
import shutil
import textwrap

from .safe import printable
from .scene import Scene
from .theme import MARK_GLYPHS, Theme, get_theme

__all__ = ["scene_to_dot", "dot_to_svg", "DotNotFound", "INSTALL_HELP", "dot_available"]

INSTALL_HELP = (
    "Graphviz's 'dot' program was not found on PATH; hgmviz needs it to draw SVG.\n"
    "Install it with one of:\n"
    "    sudo apt-get install graphviz        # Debian, Ubuntu\n"
    "    conda install -c conda-forge graphviz  # conda\n"
    "    brew install graphviz                # macOS (Homebrew)\n"
    "then restart Python (or the Jupyter kernel).  The plain-text diagram works without it: "
    "diagram.text()")


class DotNotFound(RuntimeError):
    """Graphviz's ``dot`` binary is missing; the message says how to install it."""

    def __init__(self, msg: str = INSTALL_HELP):
        super().__init__(msg)


def dot_available() -> bool:
    return shutil.which("dot") is not None


def _e(s: str) -> str:
    return html.escape(printable(s, keep=""), quote=True)


def _glyph(mark: str, theme: Theme, alert: bool = False) -> str:
    if alert and not mark:
        return '<FONT COLOR="%s"><B>!</B></FONT> ' % theme.alert
    if not mark:
        return ""
    return '<FONT COLOR="%s"><B>%s</B></FONT> ' % (theme.mark_fg(mark), _e(MARK_GLYPHS[mark]))


def _cell_style(mark: str, theme: Theme) -> str:
    if mark == "new":
        return ' BORDER="2" COLOR="%s"' % theme.mark_line(mark)
    if mark == "removed":
        return ' BORDER="1" STYLE="dashed" COLOR="%s"' % theme.mark_line(mark)
    if mark == "changed":
        return ' BORDER="1" STYLE="dotted" COLOR="%s"' % theme.mark_line(mark)
    return ""


def _strip_html(strip, theme: Theme) -> str:
    cells = []
    for v, mixed, changed in zip(strip.values, strip.mixed, strip.changed):
        fill, fg = theme.heat[theme.heat_level(v)]
        ch = "!" if v < 0 else ("+" if v >= 10 else str(v))
        txt = "<U>%s</U>" % ch if mixed else ch
        border = ' BORDER="2" COLOR="%s"' % theme.mark_line("changed") if changed else ""
        cells.append('<TD BGCOLOR="%s" WIDTH="11"%s><FONT COLOR="%s" FACE="%s" POINT-SIZE="10">%s'
                     '</FONT></TD>' % (fill, border, fg, _e(theme.mono), txt))
    return ('<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="1" COLOR="%s"><TR>%s'
            '</TR></TABLE>' % (theme.border, "".join(cells)))


def _node_label(n, theme: Theme) -> str:
    kind = "shared" if n.shared else n.kind
    fill, head = theme.fill(kind), theme.header_fill(kind)
    rows = []
    title = "%s<B>%s</B>" % (_glyph(n.mark, theme), _e(n.title))
    if n.subtitle:
        title += '<BR ALIGN="LEFT"/><FONT COLOR="%s" POINT-SIZE="%g">%s</FONT>' % (
            theme.muted, theme.fontsize, _e(n.subtitle))
    rows.append('<TR><TD ALIGN="LEFT" BALIGN="LEFT" BGCOLOR="%s">%s<BR ALIGN="LEFT"/></TD></TR>'
                % (head, title))
    for ln in n.lines:
        alert = ln.style == "alert"
        color = theme.alert if alert else (theme.muted if ln.style == "muted" else theme.fg)
        txt = _e(ln.text)
        if alert:
            txt = "<B>%s</B>" % txt
        bg = theme.mark_fill(ln.mark, kind) if ln.mark else fill
        rows.append('<TR><TD ALIGN="LEFT" BGCOLOR="%s"%s>%s<FONT COLOR="%s">%s</FONT></TD></TR>'
                    % (bg, _cell_style(ln.mark, theme), _glyph(ln.mark, theme, alert), color, txt))
    if n.strip is not None:
        s = n.strip
        rows.append('<TR><TD ALIGN="LEFT" BGCOLOR="%s">%s<FONT COLOR="%s" POINT-SIZE="%g">subpage '
                    'mapcounts, max per %s-page bucket (underlined: mixed)</FONT></TD></TR>'
                    % (fill, _glyph("changed" if any(s.changed) else "", theme), theme.muted,
                       theme.fontsize, format(s.pages_per_bucket, ",")))
        rows.append('<TR><TD ALIGN="LEFT" BGCOLOR="%s">%s</TD></TR>' % (fill, _strip_html(s, theme)))
    for r in n.rows:
        bg = theme.mark_fill(r.mark, kind) if r.mark else fill
        rows.append('<TR><TD PORT="%s" ALIGN="LEFT" BGCOLOR="%s"%s>%s<FONT COLOR="%s">%s</FONT>'
                    '</TD></TR>' % (r.port, bg, _cell_style(r.mark, theme), _glyph(r.mark, theme),
                                    theme.fg, _e(r.text)))
    border = theme.mark_line(n.mark)
    width = 3 if n.mark == "new" else 1
    style = ' STYLE="dashed"' if n.mark == "removed" else ""
    # one row a line: golden-file diffs point at the row that changed
    inner = ('<TABLE BORDER="%d" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3" COLOR="%s" '
             'BGCOLOR="%s"%s>\n%s\n</TABLE>' % (width, border, fill, style, "\n".join(rows)))
    if n.mark == "changed":     # a double border
        inner = ('<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="2" CELLPADDING="0" COLOR="%s">'
                 '<TR><TD>%s</TD></TR></TABLE>' % (border, inner))
    return "<%s>" % inner


@functools.lru_cache(maxsize=512)
def _wrap(text: str, width: int) -> tuple:
    """``textwrap.wrap`` (a pure function of its text; the legend's and captions' lines come
    back at every redraw), ``("",)`` for an empty text."""
    return tuple(textwrap.wrap(text, width)) or ("",)


def _text_block(lines, theme: Theme, title: str = "", wrap: int = 90) -> str:
    """Caption lines as a borderless table, one row per line: each row is as tall as its
    text plus padding, so lines never overlap (``<BR/>`` lines sat on a pitch equal to the
    font size, and browsers' fonts overlapped them)."""
    out = []
    if title:
        out.append("<B>%s</B>" % _e(title))
    for ln in lines:
        text, mark, style = (ln.text, ln.mark, ln.style) if hasattr(ln, "text") else (ln, "", "muted")
        color = theme.muted if style == "muted" else theme.fg
        for i, piece in enumerate(_wrap(text, wrap)):
            out.append('%s<FONT COLOR="%s">%s</FONT>' % (_glyph(mark, theme) if i == 0 else "",
                                                         color, _e(piece)))
    return ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">%s</TABLE>>'
            % "".join('<TR><TD ALIGN="LEFT">%s</TD></TR>' % o for o in out))


def _edge_attrs(e, theme: Theme) -> dict:
    color = theme.leaf_edge if e.kind == "leaf" else theme.edge
    attrs = {"color": color}
    if e.mark == "new":
        attrs.update(color=theme.mark_line("new"), penwidth="%g" % (theme.penwidth_new - 0.5),
                     style="bold")
    elif e.mark == "removed":
        attrs.update(color=theme.mark_line("removed"), style="dashed")
    elif e.mark == "changed":
        attrs.update(color=theme.mark_line("changed"), style="dotted")
    return attrs


def scene_to_dot(scene: Scene, theme="light", legend: bool = True) -> str:
    """The DOT source of ``scene`` (top to bottom: processes, page tables, folios);
    ``legend=False``: without the legend lines (a page that shows them once elsewhere)."""
    import graphviz
    theme = get_theme(theme)
    g = graphviz.Digraph(
        name="hgmviz",
        graph_attr={"rankdir": "TB", "bgcolor": theme.bg, "fontname": theme.font,
                    "fontsize": "%g" % theme.fontsize, "fontcolor": theme.fg, "nodesep": "0.25",
                    "ranksep": "0.35", "labelloc": "t", "labeljust": "l", "newrank": "true",
                    "label": _text_block(tuple(scene.caption) +
                                         (tuple(scene.legend) if legend else ()), theme,
                                         scene.title)},
        node_attr={"shape": "plain", "fontname": theme.font, "fontsize": "%g" % theme.fontsize,
                   "fontcolor": theme.fg},
        edge_attr={"arrowsize": "0.6", "color": theme.edge, "penwidth": "%g" % theme.penwidth})
    by_cluster = {}
    for n in scene.nodes:
        by_cluster.setdefault(n.cluster, []).append(n)
    machines = [c for c in scene.clusters if c.kind == "machine"]

    def add_nodes(sub, nodes):
        for n in nodes:
            sub.node(n.id, label=_node_label(n, theme))

    def fill_machine(sub, mc):
        for pc in [c for c in scene.clusters if c.kind == "process" and c.parent == mc.id]:
            with sub.subgraph(name="cluster_" + pc.id) as pcs:
                pcs.attr(label="", style="rounded", color=theme.cluster, penwidth="1")
                add_nodes(pcs, by_cluster.get(pc.id, []))
        own = by_cluster.get(mc.id, [])
        add_nodes(sub, [n for n in own if n.kind != "folio"])
        folios = [n for n in own if n.kind == "folio"]
        if folios:
            with sub.subgraph(name="folios_" + mc.id) as fs:
                fs.attr(rank="same")
                add_nodes(fs, folios)

    if scene.columns > 1:
        for mc in machines:
            with g.subgraph(name="cluster_" + mc.id) as ms:
                ms.attr(label=_text_block(mc.lines, theme, mc.title, wrap=70), style="rounded",
                        color=theme.cluster, fontcolor=theme.fg, labeljust="l")
                fill_machine(ms, mc)
    else:
        for mc in machines:
            fill_machine(g, mc)
    for e in scene.edges:
        tail = "%s:%s" % (e.src, e.port) if e.port else e.src
        g.edge(tail, e.dst, **_edge_attrs(e, theme))
    return g.source


# Graphviz sizes every box from text widths that pango measures with hinting at 72 dpi; a
# browser draws the same font unhinted, about 2-3 % wider (measured in Chromium: 1.021-1.028
# for Liberation Sans/Arial and DejaVu Sans, at 10 pt), so long rows crossed their box's right
# border.  The SVG's font sizes are scaled down by this factor so the text fits the boxes dot
# laid out for it; tests/test_explain_browser.py checks every text of every shipped scenario.
TEXT_FIT = 0.965
_FONT_SIZE = re.compile(r'font-size="([0-9.]+)"')


def _fit_text(svg: str) -> str:
    return _FONT_SIZE.sub(lambda m: 'font-size="%.2f"' % (float(m.group(1)) * TEXT_FIT), svg)


def dot_to_svg(source: str) -> str:
    """Lay ``source`` out with ``dot`` and return the SVG text (font sizes scaled by
    :data:`TEXT_FIT` so browsers' text fits the boxes); :class:`DotNotFound` when the ``dot``
    program is missing."""
    import graphviz
    if not dot_available():
        raise DotNotFound()
    try:
        return _fit_text(graphviz.Source(source).pipe(format="svg", encoding="utf-8"))
    except graphviz.ExecutableNotFound:
        raise DotNotFound() from None
