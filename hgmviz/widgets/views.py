"""Layer 6: what the explorer shows, as plain strings — no ipywidgets here.

Each function reads a session (or a step) and returns text or HTML; the explorer puts the
strings into its widgets.  Nothing here changes a session or a machine, and nothing here
decides what the kernel does: the outcome of a step is whatever the machine returned.
"""
from __future__ import annotations

import html
import re

from ..comparison import folio_counters
from ..describe import UPDATE_LABELS, classify, fmt_addr, fmt_size, op_label  # noqa: F401
from ..schemes.base import UPDATE_KINDS

__all__ = ["fmt_size", "fmt_addr", "op_label", "classify", "svg_html", "counters_html",
           "log_html", "watched", "counters_rows", "RESULT_TAGS"]

#: How a result is tagged in the log, with the colour-independent glyph shown before it.
#: (Glyphs every common font has: DejaVu, Liberation, the system fonts of Windows and macOS.)
RESULT_TAGS = {"ok": "✓", "errno": "✗", "SIGBUS": "↯", "SIGSEGV": "↯", "guard": "⊘",
               "wrap": "↻", "partial": "½", "userfault": "‖", "skipped": "–",
               "state_kept": "!", "rejected": "✗"}


# -----------------------------------------------------------------------------------------
# Diagram
# -----------------------------------------------------------------------------------------
_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_SVG_SIZE = re.compile(r'<svg width="([0-9.]+)pt" height="([0-9.]+)pt"')


def svg_html(svg: str, version: int, label: str, fit: bool = True) -> str:
    """Graphviz's SVG without its XML prolog, in a ``div.hgmviz-diagram`` that carries the
    session version (what the browser test waits for) and an accessible label.  ``fit``:
    shrink a large drawing to the width of its box and 80 % of the window's height (never
    enlarge a small one); else its natural size, with scroll bars."""
    body = _PROLOG.sub("", svg, count=1)
    style = "max-width:100%;max-height:80vh;width:auto;height:auto" if fit else ""
    body = _SVG_SIZE.sub(lambda m: '<svg width="%spt" height="%spt" style="%s"'
                         % (m.group(1), m.group(2), style), body, count=1)
    return ('<div class="hgmviz-diagram" data-version="%d" role="img" aria-label="%s">%s</div>'
            % (version, html.escape(label, quote=True), body))


def text_html(text: str, version: int, label: str) -> str:
    """The plain-text drawing, when Graphviz's ``dot`` is missing."""
    return ('<div class="hgmviz-diagram" data-version="%d" aria-label="%s"><pre>%s</pre></div>'
            % (version, html.escape(label, quote=True), html.escape(text)))


# -----------------------------------------------------------------------------------------
# Counters
# -----------------------------------------------------------------------------------------
def watched(session, limit: int = 4) -> tuple:
    """The (file label, byte offset)s whose folios the counters table shows: the session's
    ``watch``, else the first folios in the page cache of the first scheme's files."""
    if session.watch:
        return tuple(session.watch)
    out = []
    for label, f in sorted(session.world.files.items()):
        st = f.page_cache()
        for idx in sorted(st):
            out.append((label, idx * f.hstate.size))
            if len(out) >= limit:
                return tuple(out)
    return tuple(out)


def counters_rows(session, watch, pages=(0, 1)) -> dict:
    """``{scheme: {"f@0x0": counters or None}}`` plus ``{scheme: {"meminfo": ...}}``:
    read-only, through the folios' accessors (``hgmviz.comparison.folio_counters``)."""
    out = {}
    for s in session.schemes:
        w = session.worlds[s]
        row = {}
        for label, off in watch:
            f = w.files.get(label)
            folio = f.folio_at(off) if f is not None else None
            row["%s@%#x" % (label, off)] = folio_counters(w.machine, folio, pages)
        out[s] = row
    return out


_FIELDS = (("refcount", "folio_ref_count()"), ("entire_mapcount", "folio_entire_mapcount()"),
           ("mapcount", "folio_mapcount()"))


def _cell(value, old, wrapped=False) -> str:
    changed = old is not None and old != value
    txt = html.escape(str(value))
    if changed:
        txt = "<b>%s</b> <small>(was %s)</small>" % (txt, html.escape(str(old)))
    style = ' style="color:#a3161b"' if wrapped else ""
    return "<td%s%s>%s%s</td>" % (' class="changed"' if changed else "", style,
                                  "~ " if changed else "", txt)


def counters_html(session, watch, previous=None) -> tuple:
    """The counters table (one column per scheme) and the values it shows (pass them back
    as ``previous`` next time: changed cells are bold, marked "~" and say what they were)."""
    rows = counters_rows(session, watch)
    schemes = session.schemes
    head = "".join("<th>%s</th>" % html.escape(s) for s in schemes)
    lines = ['<table class="hgmviz-counters"><caption>Folio counters (kernel accessors)'
             '</caption><tr><th scope="col">folio</th><th scope="col">counter</th>%s</tr>'
             % head]
    values = {}
    if not watch:
        lines.append('<tr><td colspan="%d">no folio in any page cache yet</td></tr>'
                     % (2 + len(schemes)))
    for label, off in watch:
        key = "%s@%#x" % (label, off)
        fields = list(_FIELDS) + [("page_mapcount0", "page_mapcount(page 0)"),
                                  ("page_mapcount1", "page_mapcount(page 1)")]
        for fi, (name, shown) in enumerate(fields):
            cells = []
            for s in schemes:
                c = rows[s].get(key)
                if c is None:
                    v = "—"
                    wrapped = False
                elif name.startswith("page_mapcount"):
                    v = c["page_mapcount"].get(int(name[-1]), "—")
                    wrapped = False
                else:
                    v = c[name]
                    wrapped = bool(c["wrapped"]) and name == "refcount"
                    if wrapped:
                        v = "%s WRAPPED" % v
                values[(s, key, name)] = v
                old = previous.get((s, key, name)) if previous else None
                cells.append(_cell(v, old, wrapped))
            first = ('<th scope="row" rowspan="%d">%s</th>' % (len(fields), html.escape(key))
                     if fi == 0 else "")
            lines.append("<tr>%s<td><code>%s</code></td>%s</tr>" % (first, shown, "".join(cells)))
        meta = [rows[s].get(key, {}) or {} for s in schemes]
        if any("metadata_bytes" in m for m in meta):
            lines.append("<tr><td></td><td>metadata bytes</td>%s</tr>" % "".join(
                "<td>%s</td>" % m.get("metadata_bytes", "—") for m in meta))
    # the pool (/proc/meminfo), per hstate that has pages
    mi = {s: session.machines[s].meminfo() for s in schemes}
    names = ("HugePages_Total", "HugePages_Free", "HugePages_Rsvd")
    for size, d in sorted(mi[schemes[0]].items()):
        if not d.get("HugePages_Total"):
            continue
        for k, name in enumerate(names):
            cells = []
            for s in schemes:
                v = mi[s][size][name]
                values[(s, size, name)] = v
                cells.append(_cell(v, previous.get((s, size, name)) if previous else None))
            first = ('<th scope="row" rowspan="%d">pool<br>%s</th>' % (len(names),
                                                                    fmt_size(size))
                     if k == 0 else "")
            lines.append("<tr>%s<td><code>%s</code></td>%s</tr>" % (first, name,
                                                                    "".join(cells)))
    # the work behind the last step's net change (Machine.last_counter_updates)
    upd = {s: session.machines[s].last_counter_updates for s in schemes}
    kinds = [k for k in UPDATE_KINDS if k != "metadata" or any(upd[s][k] for s in schemes)]
    for k, kind in enumerate(kinds):
        first = ('<th scope="row" rowspan="%d">last step:<br>counter updates</th>' % len(kinds)
                 if k == 0 else "")
        lines.append("<tr>%s<td><code>%s</code></td>%s</tr>" % (
            first, UPDATE_LABELS[kind], "".join("<td>%s</td>" % format(upd[s][kind], ",")
                                                for s in schemes)))
    lines.append("</table>")
    return "\n".join(lines), values


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
        who = "" if len(by) == 1 else "<b>%s</b>: " % html.escape(", ".join(ss))
        parts.append('<span class="r-%s">%s %s%s</span>' % (tag, RESULT_TAGS.get(tag, "?"), who,
                                                            html.escape(text)))
    return "<br>".join(parts)


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
                        % (RESULT_TAGS["rejected"], html.escape(msg)))
        if i == 0:
            break
        if len(rows) >= limit:
            rows.append('<tr><td colspan="3">… %d earlier step(s)</td></tr>' % i)
            break
        st = hist[i - 1]
        undone = i > pos
        path = st.call_paths.get(scheme0, ())
        narr = ('<br><small>%s</small>' % html.escape(st.narration)) if st.narration else ""
        rows.append('<tr class="%s"><td>%d</td><td><code>%s</code>%s%s</td><td>%s</td></tr>' % (
            "undone" if undone else "done", i, html.escape(op_label(st.op)),
            " <small>(undone)</small>" if undone else "",
            ('<br><small>%s</small>' % html.escape(" → ".join(path))) if path else "",
            _result_line(st) + narr))
    if not rows:
        rows.append('<tr><td colspan="3">no step yet</td></tr>')
    return ('<table class="hgmviz-log"><caption>Steps, newest first (kernel call path; '
            'result)</caption>%s</table>' % "".join(rows))


CSS = """
<style>
.hgmviz-explorer .hgmviz-counters, .hgmviz-explorer .hgmviz-log {border-collapse: collapse;
  font-size: 12px; width: 100%;}
.hgmviz-explorer .hgmviz-counters td, .hgmviz-explorer .hgmviz-counters th,
.hgmviz-explorer .hgmviz-log td {border: 1px solid #c8ccd2; padding: 2px 5px; vertical-align: top;
  color: #1a1a1a; text-align: left;}
.hgmviz-explorer .hgmviz-counters caption, .hgmviz-explorer .hgmviz-log caption {
  text-align: left; font-weight: bold; color: #1a1a1a;}
.hgmviz-explorer .hgmviz-counters td.changed {background: #fdf0dc;}
.hgmviz-explorer .hgmviz-counters th, .hgmviz-explorer .hgmviz-counters td {white-space: nowrap;}
.hgmviz-explorer .hgmviz-log tr.undone td {color: #595959; background: #f2f2f2;}
.hgmviz-explorer .r-ok {color: #17601f;}
.hgmviz-explorer .r-errno, .hgmviz-explorer .r-SIGBUS, .hgmviz-explorer .r-SIGSEGV,
.hgmviz-explorer .r-guard, .hgmviz-explorer .r-wrap, .hgmviz-explorer .r-rejected,
.hgmviz-explorer .r-state_kept {color: #a3161b;}
.hgmviz-explorer .r-partial, .hgmviz-explorer .r-userfault {color: #7a4100;}
.hgmviz-explorer .hgmviz-diagram {overflow: auto; background: #ffffff;}
.hgmviz-explorer .hgmviz-status {font-size: 12px; color: #1a1a1a;}
</style>
"""
