"""Layer 6: what the explorer shows, as plain strings — no ipywidgets here.

Each function reads a session (or a step) and returns text or HTML; the explorer puts the
strings into its widgets.  Nothing here changes a session or a machine, and nothing here
decides what the kernel does: the outcome of a step is whatever the machine returned.
"""
from __future__ import annotations

import html
import re
import weakref
from collections import OrderedDict

from ..comparison import watched_counters
from ..render.counters import counter_table, table_html, watched
from ..render.safe import printable
from ..describe import classify, fmt_addr, fmt_size, op_label  # noqa: F401

__all__ = ["fmt_size", "fmt_addr", "op_label", "classify", "svg_html", "counters_html",
           "log_html", "watched", "counters_rows", "RESULT_TAGS"]

#: How a result is tagged in the log, with the colour-independent glyph shown before it.
#: (Glyphs every common font has: DejaVu, Liberation, the system fonts of Windows and macOS.)
RESULT_TAGS = {"ok": "✓", "errno": "✗", "SIGBUS": "↯", "SIGSEGV": "↯", "guard": "⊘",
               "wrap": "↻", "partial": "½", "userfault": "‖", "skipped": "–",
               "state_kept": "!", "rejected": "✗"}


def _h(text, quote=False) -> str:
    """HTML-escaped, with control characters and lone surrogates made visible."""
    return html.escape(printable(text, keep=""), quote=quote)


# -----------------------------------------------------------------------------------------
# Diagram
# -----------------------------------------------------------------------------------------
_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_SVG_SIZE = re.compile(r'<svg width="([0-9.]+)pt" height="([0-9.]+)pt"')


#: The smallest text a diagram shows, in CSS pixels: "fit to the window" shrinks a drawing
#: only down to the scale where its smallest font is this big, then the box scrolls.
MIN_TEXT_PX = 11.0
_FONT = re.compile(r'font-size="([0-9.]+)"')


def min_scale(svg: str, min_px: float = MIN_TEXT_PX) -> float:
    """The smallest scale (<= 1) at which every text of ``svg`` (Graphviz's, sized in
    points: 1 pt = 4/3 CSS px) is still ``min_px`` pixels high."""
    sizes = [float(x) for x in _FONT.findall(svg)]
    if not sizes:
        return 1.0
    return min(1.0, min_px / (min(sizes) * 4.0 / 3.0))


def svg_html(svg: str, version: int, label: str, fit: bool = True) -> str:
    """Graphviz's SVG without its XML prolog, in a ``div.hgmviz-diagram`` that carries the
    session version (what the browser test waits for) and an accessible label.  ``fit``:
    shrink a wide drawing to the width of its box, but never so far that its smallest text
    falls under :data:`MIN_TEXT_PX` (the box scrolls instead), and never enlarge it; else
    its natural size, with scroll bars."""
    body = _PROLOG.sub("", svg, count=1)

    def size(m):
        w = float(m.group(1))
        style = ("width:100%%;min-width:%.1fpt;max-width:%spt;height:auto"
                 % (w * min_scale(svg), m.group(1))) if fit else ""
        return '<svg width="%spt" height="%spt" style="%s"' % (m.group(1), m.group(2), style)
    body = _SVG_SIZE.sub(size, body, count=1)
    return ('<div class="hgmviz-diagram" data-version="%d" role="img" aria-label="%s">%s</div>'
            % (version, _h(label, quote=True), body))


def legend_html(lines) -> str:
    """The diagram's legend (``Diagram.scene.legend``), once, as a list under it."""
    if not lines:
        return ""
    return ('<ul class="hgmviz-legend">%s</ul>'
            % "".join("<li>%s</li>" % _h(x) for x in lines))


def text_html(text: str, version: int, label: str) -> str:
    """The plain-text drawing, when Graphviz's ``dot`` is missing."""
    return ('<div class="hgmviz-diagram" data-version="%d" aria-label="%s"><pre>%s</pre></div>'
            % (version, _h(label, quote=True), _h(text)))


# -----------------------------------------------------------------------------------------
# Counters: the one table model (hgmviz.render.counters), drawn as HTML
# -----------------------------------------------------------------------------------------
def counters_rows(session, watch, pages=(0, 1)) -> dict:
    """``{scheme: {"f@0x0": counters or None}}``: read-only, through the folios' accessors
    (:func:`hgmviz.comparison.watched_counters`)."""
    return watched_counters({s: session.worlds[s] for s in session.schemes}, watch, pages)


def counters_html(session, watch, previous=None) -> tuple:
    """The counters table (one column per scheme) and the values it shows (pass them back
    as ``previous`` next time: changed cells are bold, marked "~" and say what they were)."""
    table = counter_table(session, previous, watch)
    return (table_html(table, caption="Folio counters (kernel accessors)",
                       css_class="hgmviz-counters"), table.values)


# -----------------------------------------------------------------------------------------
# Log
# -----------------------------------------------------------------------------------------
def _result_line(step) -> str:
    outs = step.outcomes
    parts = []
    by = {}
    for s, o in outs.items():
        tag, text = classify(o, step.kinds.get(s, ""), step.op)
        by.setdefault((tag, text), []).append(s)
    for (tag, text), ss in by.items():
        who = "" if len(by) == 1 else "<b>%s</b>: " % _h(", ".join(ss))
        parts.append('<span class="r-%s">%s %s%s</span>' % (tag, RESULT_TAGS.get(tag, "?"), who,
                                                            _h(text)))
    return "<br>".join(parts)


#: The HTML cells of the steps shown last (id of the Step -> (weak reference, scheme, cells)):
#: a step never changes once recorded, and each click redraws up to 40 of them.
_CELLS: "OrderedDict[int, tuple]" = OrderedDict()
_CELLS_MAX = 256


def _step_cells(st, scheme0) -> tuple:
    """(operation label, call path, result) of step ``st`` as HTML."""
    hit = _CELLS.get(id(st))
    if hit is not None and hit[0]() is st and hit[1] == scheme0:
        _CELLS.move_to_end(id(st))
        return hit[2]
    path = st.call_paths.get(scheme0, ())
    narr = ('<br><small>%s</small>' % _h(st.narration)) if st.narration else ""
    cells = (_h(op_label(st.op)), ('<br><small>%s</small>' % _h(" → ".join(path))) if path else "",
             _result_line(st) + narr)
    _CELLS[id(st)] = (weakref.ref(st), scheme0, cells)
    while len(_CELLS) > _CELLS_MAX:
        _CELLS.popitem(last=False)
    return cells


def log_html(session, notes=(), limit: int = 40) -> str:
    """The steps, newest first: number, operation, result (ok, errno, SIGBUS, guard refusal,
    wrap, ...) and the kernel call path; steps undone (the redo tail) greyed; ``notes``
    ``[(position, message)]`` are inputs rejected before the kernel saw them."""
    hist = session.history
    pos = session.position
    scheme0 = session.schemes[0]
    rows = []
    by_pos = {}
    for p, msg in notes:
        by_pos.setdefault(p, []).append(msg)
    for i in range(len(hist), -1, -1):
        for msg in reversed(by_pos.get(i, ())):
            rows.append('<tr class="rejected"><td></td><td colspan="2"><span class="r-rejected">'
                        '%s rejected before the kernel: %s</span></td></tr>'
                        % (RESULT_TAGS["rejected"], _h(msg)))
        if i == 0:
            break
        if len(rows) >= limit:
            rows.append('<tr><td colspan="3">… %d earlier step(s)</td></tr>' % i)
            break
        st = hist[i - 1]
        undone = i > pos
        label, path, result = _step_cells(st, scheme0)
        rows.append('<tr class="%s"><td>%d</td><td><code>%s</code>%s%s</td><td>%s</td></tr>' % (
            "undone" if undone else "done", i, label,
            " <small>(undone)</small>" if undone else "", path, result))
    if not rows:
        rows.append('<tr><td colspan="3">no step yet</td></tr>')
    return ('<table class="hgmviz-log"><caption>Steps, newest first (kernel call path; '
            'result)</caption>%s</table>' % "".join(rows))


#: The explorer's style.  Colours come from JupyterLab's theme variables (Voila uses the
#: same), so light and dark themes both read well; the fallbacks are for other front ends.
#: Result colours are chosen per theme for WCAG AA contrast (4.5:1) on the theme's
#: background.  The counters table may wrap a cell ("was N" under the value) but never
#: clips one: its box scrolls when the window is too narrow.  Rows of controls wrap, and a
#: button never shrinks below its label.
CSS = """
<style>
.hgmviz-explorer {
  --hv-fg: var(--jp-ui-font-color1, #1a1a1a); --hv-muted: var(--jp-ui-font-color1, #424242);
  --hv-bg: var(--jp-layout-color0, #ffffff); --hv-bg2: var(--jp-layout-color2, #eeeeee);
  --hv-border: var(--jp-border-color2, #c8ccd2);
  --hv-good: #17601f; --hv-bad: #a3161b; --hv-warn: #7a4100;
  --hv-changed: rgba(255, 170, 0, 0.22); --hv-wrapped: rgba(255, 60, 60, 0.18);
  color: var(--hv-fg);
}
body[data-jp-theme-light="false"] .hgmviz-explorer {
  --hv-good: #8fd694; --hv-bad: #ff9c94; --hv-warn: #ffcc80;
}
@media (prefers-color-scheme: dark) {
  body:not([data-jp-theme-light]) .hgmviz-explorer {
    --hv-fg: #e8e8e8; --hv-muted: #cfcfcf; --hv-bg: #111111; --hv-bg2: #2a2a2a;
    --hv-good: #8fd694; --hv-bad: #ff9c94; --hv-warn: #ffcc80;
  }
}
.hgmviz-explorer .hgmviz-counters, .hgmviz-explorer .hgmviz-log {border-collapse: collapse;
  font-size: 12px; width: 100%; color: var(--hv-fg);}
.hgmviz-explorer .hgmviz-counters td, .hgmviz-explorer .hgmviz-counters th,
.hgmviz-explorer .hgmviz-log td {border: 1px solid var(--hv-border); padding: 2px 5px;
  vertical-align: top; color: var(--hv-fg); text-align: left;}
.hgmviz-explorer .hgmviz-counters td {text-align: right; font-variant-numeric: tabular-nums;
  white-space: nowrap;}
.hgmviz-explorer .hgmviz-counters th[scope=rowgroup] {background: var(--hv-bg2);
  white-space: normal; overflow-wrap: anywhere;}
.hgmviz-explorer .hgmviz-counters th[scope=row] {font-weight: normal; white-space: nowrap;}
.hgmviz-explorer .hgmviz-counters caption, .hgmviz-explorer .hgmviz-log caption {
  text-align: left; font-weight: bold; color: var(--hv-fg);}
.hgmviz-explorer .hgmviz-counters td.changed {background: var(--hv-changed); font-weight: bold;}
.hgmviz-explorer .hgmviz-counters td.wrapped {background: var(--hv-wrapped); font-weight: bold;
  color: var(--hv-bad);}
.hgmviz-explorer .hgmviz-counters small.was {display: block; font-weight: normal;
  color: var(--hv-muted);}
.hgmviz-explorer .hgmviz-counters-box {overflow-x: auto; max-width: 100%;}
.hgmviz-explorer .hgmviz-log tr.undone td {color: var(--hv-muted); background: var(--hv-bg2);}
.hgmviz-explorer .r-ok {color: var(--hv-good);}
.hgmviz-explorer .r-errno, .hgmviz-explorer .r-SIGBUS, .hgmviz-explorer .r-SIGSEGV,
.hgmviz-explorer .r-guard, .hgmviz-explorer .r-wrap, .hgmviz-explorer .r-rejected,
.hgmviz-explorer .r-state_kept {color: var(--hv-bad);}
.hgmviz-explorer .r-partial, .hgmviz-explorer .r-userfault, .hgmviz-explorer .r-skipped {
  color: var(--hv-warn);}
.hgmviz-explorer .hgmviz-diagram {overflow: auto; background: #ffffff;}
.hgmviz-explorer .hgmviz-legend {font-size: 12px; margin: 2px 0; padding-left: 1.2em;
  color: var(--hv-fg);}
.hgmviz-explorer .hgmviz-diagram.dark {background: #1e1e1e;}
.hgmviz-explorer .hgmviz-status, .hgmviz-explorer .hgmviz-title {font-size: 12px;
  color: var(--hv-fg);}
.hgmviz-explorer .hgmviz-status b, .hgmviz-explorer .hgmviz-title b {color: var(--hv-fg);}
/* a row of controls wraps when the window (or JupyterLab's notebook beside its file browser)
   is narrow: every button keeps its whole label, no selector is cut off at the right */
.hgmviz-explorer .widget-hbox {flex-wrap: wrap; row-gap: 2px;}
.hgmviz-explorer .widget-hbox > .widget-button {flex: 0 0 auto; max-width: none;}
</style>
"""
