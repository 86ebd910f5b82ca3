"""Layer 5: the counters table — one model, two back ends (HTML and plain text).

The same pattern as the diagrams (scene → DOT / text): :func:`counter_table` reads a
session into a :class:`CounterTable` (plain data: rows of cells, one column per scheme,
with what changed since the previous table), and :func:`table_html` / :func:`table_text`
draw it.  The explorer (:mod:`hgmviz.widgets.views`), the explainers
(:mod:`hgmviz.explain`) and ``Session.counters`` (through
:func:`hgmviz.comparison.watched_counters`, the one reader of the folio counters) all
use it.  Nothing here changes a session or a machine.

What a table holds, in order:

- per watched folio (a group; watched offsets that land in the same folio under every
  scheme share one group): ``folio_ref_count()``, ``folio_entire_mapcount()``,
  ``folio_mapcount()``, ``page_mapcount(page N)`` of the pages watched, and the scheme's
  metadata bytes where it keeps any;
- per hstate with a pool: ``HugePages_Total`` / ``_Free`` / ``_Rsvd`` (/proc/meminfo);
- the work behind the last step's net change (``Machine.last_counter_updates``), which is
  the step's own count and so never marked as changed.

A cell's mark is ``"~"`` (changed since the previous table: its ``was`` says from what),
``"!"`` (a refcount that wrapped past INT_MAX) or ``""``.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Optional

from ..comparison import watched_counters
from ..describe import UPDATE_LABELS, fmt_size
from .safe import printable

__all__ = ["CounterRow", "CounterTable", "counter_table", "watched", "table_html",
           "table_text", "MARK_KEY", "SECTIONS"]

#: What the marks mean (printed under the tables).
MARK_KEY = "~ changed by this step, ! a refcount that wrapped past INT_MAX"
#: Row sections, in display order.
SECTIONS = ("folio", "pool", "updates")
_UPDATES_GROUP = "counter updates in this step"


@dataclass(frozen=True)
class CounterRow:
    """One row: ``group`` (``"f@0x0 · folio 0"``, ``"2 MiB pool"``), the ``name`` shown (a
    kernel accessor or a /proc/meminfo field), per scheme ``(scheme, value text, mark)`` in
    ``cells``, and per scheme the text before the change (``None``: unchanged) in ``was``;
    ``section`` is one of :data:`SECTIONS`."""

    group: str
    name: str
    cells: tuple            # ((scheme, text, mark), ...)
    was: tuple = ()         # ((scheme, old text or None), ...)
    section: str = "folio"

    @property
    def changed(self) -> bool:
        return any(m for _, _, m in self.cells)


@dataclass(frozen=True)
class CounterTable:
    """The rows, the schemes (one column each) and the raw values (pass ``values`` as
    ``previous`` to the next :func:`counter_table` to mark what changed)."""

    schemes: tuple
    rows: tuple
    values: dict

    def __iter__(self):             # a table reads as its rows
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __bool__(self):
        return bool(self.rows)


def watched(session, limit: int = 4) -> tuple:
    """The (file label, byte offset)s a table shows: the session's ``watch``, else the
    first folios in the page cache of the first scheme's files (at most ``limit``)."""
    if session.watch:
        return tuple(session.watch)
    out = []
    for label, f in sorted(session.world.files.items()):
        for idx in sorted(f.page_cache()):
            out.append((label, idx * f.hstate.size))
            if len(out) >= limit:
                return tuple(out)
    return tuple(out)


def _num(v) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, int):
        return format(v, ",")
    return str(v)


def _values(session, watch) -> dict:
    """``{key: (section, group, name, {scheme: (text, wrapped)})}`` in display order."""
    schemes = tuple(session.schemes)
    rows = watched_counters({sc: session.worlds[sc] for sc in schemes}, watch)
    out = {}
    # watched offsets in one folio (under every scheme) share a group
    groups = {}
    for key in (("%s@%#x" % (lab, off)) for lab, off in watch):
        ident = tuple((rows[sc][key] or {}).get("folio") for sc in schemes)
        groups.setdefault(ident, []).append(key)
    for ident, keys in groups.items():
        present = [(sc, k) for k in keys for sc in schemes if rows[sc].get(k) is not None]
        if not present:
            out[(keys[0], None)] = ("folio", "%s · no folio" % ", ".join(keys), "", {})
            continue
        fids = sorted({f for f in ident if f is not None})
        group = "%s · folio %s" % (", ".join(keys), ", ".join(str(f) for f in fids))
        pages = sorted({p for sc, k in present for p in rows[sc][k]["page_mapcount"]})
        names = [("refcount", "folio_ref_count()"),
                 ("entire_mapcount", "folio_entire_mapcount()"),
                 ("mapcount", "folio_mapcount()")]
        names += [(("page", p), "page_mapcount(page %d)" % p) for p in pages]
        if any((rows[sc].get(k) or {}).get("metadata_bytes") for sc, k in present):
            names.append(("metadata_bytes", "scheme metadata bytes"))
        for field_, shown in names:
            cells = {}
            for sc in schemes:
                c = next((rows[sc][k] for k in keys if rows[sc].get(k) is not None), None)
                if c is None:
                    cells[sc] = ("-", False)
                elif isinstance(field_, tuple):     # any watched offset's reading of it
                    pm = {}
                    for k in keys:
                        pm.update((rows[sc].get(k) or {}).get("page_mapcount", {}))
                    cells[sc] = (_num(pm.get(field_[1])), False)
                else:
                    cells[sc] = (_num(c.get(field_)),
                                 field_ == "refcount" and bool(c.get("wrapped")))
            out[(keys[0], field_)] = ("folio", group, shown, cells)
    mi = {sc: session.machines[sc].meminfo() for sc in schemes}
    for size in sorted(mi[schemes[0]]):
        if not any(mi[sc][size]["HugePages_Total"] for sc in schemes):
            continue
        for name in ("HugePages_Total", "HugePages_Free", "HugePages_Rsvd"):
            out[(size, name)] = ("pool", "%s pool" % fmt_size(size), name,
                                 {sc: (_num(mi[sc][size][name]), False) for sc in schemes})
    upd = {sc: session.machines[sc].last_counter_updates for sc in schemes}
    for kind in UPDATE_LABELS:              # in UPDATE_KINDS' order
        if kind == "metadata" and not any(upd[sc][kind] for sc in schemes):
            continue
        out[("updates", kind)] = ("updates", _UPDATES_GROUP, UPDATE_LABELS[kind],
                                  {sc: (_num(upd[sc][kind]), False) for sc in schemes})
    return out


def counter_table(session, previous: Optional[dict] = None, watch=None) -> CounterTable:
    """The counters table of ``session`` at its current position.  ``watch``: the (file
    label, offset)s (default :func:`watched`); ``previous``: the ``values`` of the table
    before (a cell differing from it is marked ``~``; a folio that was not there before
    counts as changed from ``-``; None: nothing marked)."""
    watch = watched(session) if watch is None else tuple(watch)
    now = _values(session, watch)
    rows = []
    for key, (section, group, name, cells) in now.items():
        old = previous.get(key, (None, None, None, {}))[3] if previous is not None else None
        out, was = [], []
        for sc, (text, wrapped) in cells.items():
            before = None if old is None else old.get(sc, ("-", False))[0]
            changed = before is not None and before != text and section != "updates"
            out.append((sc, text, "!" if wrapped else ("~" if changed else "")))
            was.append((sc, before if changed else None))
        rows.append(CounterRow(group, name, tuple(out), tuple(was), section))
    return CounterTable(tuple(session.schemes), tuple(rows), now)


# =========================================================================================
# HTML
# =========================================================================================
def _e(text) -> str:
    return html.escape(printable(text, keep=""), quote=True)


def table_html(table: CounterTable, caption: str = "Counters after the step",
               css_class: str = "counters", show_was: bool = True) -> str:
    """A ``<table>``: one column per scheme, a row-group header per folio / pool, changed
    cells with ``class="changed"`` (and, ``show_was``, what they were), wrapped ones with
    ``class="wrapped"``.  Plain HTML: the page's CSS styles it."""
    schemes = table.schemes
    if not table.rows:
        return '<p class="%s">No watched folio and no hugepage pool.</p>' % _e(css_class)
    out = ['<table class="%s">' % _e(css_class), "<caption>%s</caption>" % _e(caption),
           '<thead><tr><th scope="col">counter</th>%s</tr></thead>'
           % "".join('<th scope="col">%s</th>' % _e(sc) for sc in schemes)]
    group = None
    for r in table.rows:
        if r.group != group:
            if group is not None:
                out.append("</tbody>")
            group = r.group
            out.append('<tbody><tr><th scope="rowgroup" colspan="%d">%s</th></tr>'
                       % (1 + len(schemes), _e(group)))
        if not r.name:
            continue
        was = dict(r.was)
        cells = []
        for sc, text, mark in r.cells:
            cls = {"~": ' class="changed"', "!": ' class="wrapped"'}.get(mark, "")
            old = was.get(sc)
            note = {"~": ' title="changed by this step%s"' % (
                        " (was %s)" % _e(old) if old is not None else ""),
                    "!": ' title="wrapped past INT_MAX"'}.get(mark, "")
            body = (_e(mark) + " " if mark else "") + _e(text)
            if mark == "!":
                body += " WRAPPED"
            if show_was and old is not None:
                body += ' <small class="was">(was %s)</small>' % _e(old)
            cells.append("<td%s%s>%s</td>" % (cls, note, body))
        out.append('<tr><th scope="row"><code>%s</code></th>%s</tr>' % (_e(r.name),
                                                                        "".join(cells)))
    out.append("</tbody></table>")
    return "\n".join(out)


# =========================================================================================
# Text
# =========================================================================================
def table_text(table: CounterTable, width: int = 80, changed_only: bool = False,
               wrap=None) -> list:
    """The table as lines no wider than ``width``, one column per scheme (split into
    several tables when the columns do not fit).  ``changed_only``: only the rows that
    changed (and the wrapped ones); the last step's counter updates are shown when any
    is non-zero.  ``wrap(text, width)``: how a long group line is wrapped (default: cut)."""
    schemes = table.schemes
    rows = list(table.rows)
    if changed_only:
        rows = [r for r in rows if r.changed or
                (r.section == "updates" and any(t not in ("0", "-") for _, t, _ in r.cells))]
        if not rows:
            return ["counters   (none changed)"]
    if not rows:
        return ["counters   (no watched folio and no hugepage pool)"]
    wrap = wrap or (lambda text, w: [text[:w]])
    rows = [CounterRow(printable(r.group, keep=""), printable(r.name, keep=""),
                       tuple((printable(sc, keep=""), printable(t, keep=""), m)
                             for sc, t, m in r.cells), r.was, r.section) for r in rows]
    schemes = tuple(printable(sc, keep="") for sc in schemes)
    lab = max([len("counters")] + [2 + len(r.name) for r in rows if r.name]) + 2
    lab = min(lab, width // 2)

    def cell(text, mark):
        return (mark or "") + text

    colw = {}
    for sc in schemes:
        colw[sc] = max([len(sc)] + [len(cell(t, m)) for r in rows for s2, t, m in r.cells
                                    if s2 == sc]) + 2
    chunks, cur, used = [], [], lab
    for sc in schemes:
        if cur and used + colw[sc] > width:
            chunks.append(cur)
            cur, used = [], lab
        cur.append(sc)
        used += colw[sc]
    chunks.append(cur)
    out = []
    for k, chunk in enumerate(chunks):
        if k:
            out.append("")
        out.append(("counters".ljust(lab) + "".join(sc.rjust(colw[sc]) for sc in chunk))
                   .rstrip())
        group = None
        for r in rows:
            if r.group != group:
                group = r.group
                out += wrap(group, width)
            if not r.name:
                continue
            cells = {sc: cell(t, m) for sc, t, m in r.cells}
            name = ("  " + r.name)
            if len(name) > lab - 1:
                out.append(name)
                name = ""
            out.append((name.ljust(lab) + "".join(cells[sc].rjust(colw[sc]) for sc in chunk))
                       .rstrip())
    return out
