"""Layer 6: reviewer explainers — a scenario told step by step, as a static HTML page, as
plain text for a mailing-list reply, or as one SVG per step.

::

    hgmviz explain tour --format text                 # to stdout: paste into an email
    hgmviz explain fork_amplifier -o fork.html        # one self-contained page, no JavaScript
    hgmviz explain my.toml --schemes per_piece,hstate_present --format svg -o steps/

    hv.explain("tour", "tour.html")                   # from Python, or from a live session:
    session.save("lesson.toml"); hv.explain(session, "lesson.html")

Each step shows the operation, its result under each scheme, the kernel call path, the
diagram of the page tables after it with the changes highlighted (the renderer's marks:
``+`` new, ``−`` removed, ``~`` changed), the counters of the watched folios and of the
hugepage pool under each scheme (one column per scheme), and the scenario's narration.

Thin over the session and the renderer: the steps are replayed in a fresh
:class:`~hgmviz.session.Session` (a live session passed in is read, never moved), each
position is visited with ``Session.goto`` and drawn with ``hv.draw`` / ``hv.draw_compare``
against ``Session.before``.  Nothing here decides what the kernel does.

Expectations (``expect`` in a scenario file) are checked when the scenario runs under its
own schemes, as :func:`hgmviz.scenarios.session_from_scenario` checks them; with other
``schemes`` the outcomes are shown as they come.
"""
from __future__ import annotations

import argparse
import dataclasses
import html
import os
import re
import sys
import textwrap
import unicodedata
from dataclasses import dataclass
from typing import Optional

from .render import DotNotFound, draw, draw_compare, render_text
from .scenarios import (Scenario, ScenarioError, format_size, is_scenario_path, list_scenarios,
                        read_scenario, scenario_path, session_from_scenario)
from .schemes import SCHEMES
from .session import InvalidOperation, Session
from .describe import UPDATE_LABELS, classify, op_label

__all__ = ["explain", "build_explainer", "select_steps", "parse_steps", "Explainer",
           "ExplainedStep", "CounterRow",
           "to_text", "to_html", "to_svgs", "main", "scenarios_main", "FORMATS", "WIDTH",
           "EXIT_OK", "EXIT_USAGE", "EXIT_SCENARIO", "EXIT_NO_DOT", "EXIT_WRITE"]

#: Output formats of :func:`explain` and ``hgmviz explain --format``.
FORMATS = ("html", "text", "svg")
#: Columns of the text format (a mail reader's).
WIDTH = 80

# Exit codes of ``hgmviz explain`` (documented in its --help).
EXIT_OK = 0
EXIT_USAGE = 2          # bad arguments, unknown scheme, unknown scenario name
EXIT_SCENARIO = 3       # malformed scenario file, or an outcome contradicting its `expect`
EXIT_NO_DOT = 4         # html / svg need Graphviz's dot
EXIT_WRITE = 5          # the output could not be written

_MARK_KEY = "~ changed by this step, ! a refcount that wrapped past INT_MAX"


# =========================================================================================
# The model: what an explainer shows, as plain data
# =========================================================================================
@dataclass(frozen=True)
class CounterRow:
    """One row of a step's counters table: ``group`` (``"f@0x0 · folio 0"``, ``"2 MiB
    pool"``), the ``name`` shown (a kernel accessor or /proc/meminfo field) and per scheme
    ``(value text, mark)``, mark ``""``, ``"~"`` (changed by this step) or ``"!"`` (wrapped)."""

    group: str
    name: str
    cells: tuple            # ((scheme, text, mark), ...)


@dataclass(frozen=True)
class ExplainedStep:
    index: int              # 1-based
    op: object
    label: str              # the operation in the user's words (``touch p a+0x5000``)
    narration: str
    results: tuple          # ((schemes, tag, text), ...) schemes grouped by identical result
    call_paths: tuple       # ((schemes, (fn, ...)), ...) grouped likewise
    counters: tuple         # CounterRow, ...
    diagram: object         # render.Diagram: every scheme (one column each); html, svg
    text_diagram: object    # render.Diagram for the text format: one column per group
    groups: tuple           # ((schemes, ...), ...) whose page tables are drawn alike (text)


@dataclass(frozen=True)
class Explainer:
    title: str
    description: str
    source: str             # "tour", "my.toml", or "" for a live session
    setup: str              # geometry, kernel, pool, guard, ...
    schemes: tuple
    file_schemes: tuple     # the scenario's own schemes (equal to schemes unless overridden)
    steps: tuple            # ExplainedStep, ... (those shown)
    total: int = 0          # steps in the scenario
    selection: str = ""     # the --steps given ("" = every step)


# =========================================================================================
# Building: replay, then visit each position
# =========================================================================================
_is_path = is_scenario_path      # a slash or .toml: a path; else a shipped name (never the cwd)


def _read(source) -> tuple:
    """``(Scenario, display name)`` of a shipped name or a path."""
    if isinstance(source, Scenario):
        return source, os.path.basename(source.path)
    arg = os.fspath(source)
    if _is_path(arg):
        return read_scenario(arg), arg
    return read_scenario(scenario_path(arg)), arg       # ValueError: no such shipped name


def _check_schemes(schemes) -> Optional[tuple]:
    if schemes is None:
        return None
    if isinstance(schemes, str):
        schemes = [s.strip() for s in schemes.split(",")]
    schemes = tuple(schemes)
    if not schemes or any(not isinstance(s, str) or not s for s in schemes):
        raise ValueError("schemes must name at least one scheme; allowed: %s"
                         % ", ".join(SCHEMES))
    for s in schemes:
        if s not in SCHEMES:
            raise ValueError("unknown scheme %r; allowed: %s" % (s, ", ".join(SCHEMES)))
    if len(set(schemes)) != len(schemes):
        raise ValueError("schemes repeats a scheme: %s" % ", ".join(schemes))
    return schemes


def _replay(config, schemes, title, description, watch, steps, path=None) -> Session:
    """A fresh session with ``steps`` (``(op, narration, line)``) applied, outcomes as they
    come.  An operation the session rejects is a :class:`ScenarioError` at its line (from a
    file) or a ValueError (from a session)."""
    s = Session(schemes=list(schemes), title=title, description=description, watch=watch,
                **config)
    for i, (op, narration, line) in enumerate(steps):
        try:
            s.apply(op, narration=narration)
        except InvalidOperation as e:
            msg = "step %d (%s): %s (under %s)" % (i + 1, type(op).__name__, e,
                                                   ", ".join(schemes))
            if path is None:
                raise ValueError(msg) from None
            raise ScenarioError(msg, path, line, getattr(e, "field", None), i + 1) from None
    return s


def _setup_text(s: Session) -> str:
    m = s.machine
    c = s.config
    pool = ", ".join("%d × %s" % (n, format_size(int(size)))
                     for size, n in sorted((c.get("nr_hugepages") or {}).items()) if n)
    bits = [m.geometry.name, "kernel %s" % m.kernel.label,
            "nr_hugepages %s" % (pool or "none"),
            "guard %s" % (c.get("guard") or "none"), "errors %s" % c.get("errors", "proposed"),
            "HVO %s" % ("on" if c.get("hvo") else "off")]
    if c.get("count_at", "alloc") != "alloc":
        bits.append("count_at %s" % c["count_at"])
    if not c.get("lookup_first", True):
        bits.append("lookup_first off")
    return " · ".join(bits)


def _group(mapping: dict) -> tuple:
    """``{scheme: value}`` → ``((schemes, value), ...)`` in scheme order, alike grouped."""
    out = {}
    for s, v in mapping.items():
        out.setdefault(v, []).append(s)
    return tuple((tuple(ss), v) for v, ss in out.items())


def _num(v) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, int):
        return format(v, ",")
    return str(v)


def _fallback_watch(s: Session, limit: int = 4) -> tuple:
    """Without a ``watch`` (a session built by hand): the first folios in the page cache
    of the first scheme's files, at most ``limit``."""
    out = []
    for label, f in sorted(s.world.files.items()):
        for idx in sorted(f.page_cache()):
            out.append((label, idx * f.hstate.size))
    return tuple(out[:limit])


_UPDATES = "updates"


def _counter_values(s: Session, fallback: bool) -> dict:
    """``{(watch key or pool, field): (group, name, {scheme: (text, wrapped)})}``, in
    display order; a watched offset without a folio under any scheme is one group line."""
    if fallback:        # our own replay (never the caller's session) watches nothing
        s.watch = _fallback_watch(s)
    rows = s.counters()
    out = {}
    keys = list(next(iter(rows.values())).keys()) if rows else []
    for key in keys:
        folio_ids = sorted({rows[sc][key]["folio"] for sc in s.schemes
                            if rows[sc].get(key) is not None})
        if not folio_ids:
            out[(key, None)] = ("%s · no folio" % key, "", {})
            continue
        group = "%s · folio %s" % (key, ", ".join(str(f) for f in folio_ids))
        pages = sorted({p for sc in s.schemes if rows[sc].get(key) is not None
                        for p in rows[sc][key]["page_mapcount"]})
        names = [("refcount", "folio_ref_count()"),
                 ("entire_mapcount", "folio_entire_mapcount()"),
                 ("mapcount", "folio_mapcount()")]
        names += [(("page", p), "page_mapcount(page %d)" % p) for p in pages]
        if any((rows[sc].get(key) or {}).get("metadata_bytes") for sc in s.schemes):
            names.append(("metadata_bytes", "scheme metadata bytes"))
        for field_, shown in names:
            cells = {}
            for sc in s.schemes:
                c = rows[sc].get(key)
                if c is None:
                    cells[sc] = ("-", False)
                elif isinstance(field_, tuple):
                    cells[sc] = (_num(c["page_mapcount"].get(field_[1])), False)
                else:
                    cells[sc] = (_num(c.get(field_)),
                                 field_ == "refcount" and bool(c.get("wrapped")))
            out[(key, field_)] = (group, shown, cells)
    mi = {sc: s.machines[sc].meminfo() for sc in s.schemes}
    for size in sorted(mi[s.schemes[0]]):
        if not any(mi[sc][size]["HugePages_Total"] for sc in s.schemes):
            continue
        for name in ("HugePages_Total", "HugePages_Free", "HugePages_Rsvd"):
            out[(size, name)] = ("%s pool" % format_size(size), name,
                                 {sc: (_num(mi[sc][size][name]), False) for sc in s.schemes})
    # the work behind the step's net change (Machine.last_counter_updates): not marked, since
    # it is the step's own count, not a value that changed
    upd = {sc: s.machines[sc].last_counter_updates for sc in s.schemes}
    for kind in UPDATE_LABELS:              # in UPDATE_KINDS' order
        if kind == "metadata" and not any(upd[sc][kind] for sc in s.schemes):
            continue
        out[(_UPDATES, kind)] = ("counter updates in this step", UPDATE_LABELS[kind],
                                 {sc: (_num(upd[sc][kind]), False) for sc in s.schemes})
    return out


def _counter_rows(now: dict, prev: dict) -> tuple:
    """Rows with marks: ``~`` where the value differs from the one before the step (a
    counter of a folio that was not there before counts as changed from ``-``)."""
    rows = []
    for key, (group, name, cells) in now.items():
        old = prev.get(key, (None, None, {}))[2]
        out = []
        for sc, (text, wrapped) in cells.items():
            was = old.get(sc, ("-", False))[0]
            changed = was != text and key[0] != _UPDATES
            out.append((sc, text, "!" if wrapped else ("~" if changed else "")))
        rows.append(CounterRow(group, name, tuple(out)))
    return tuple(rows)


def _tables_key(scene) -> tuple:
    """The page tables of a one-machine scene, without its caption and folios."""
    return tuple((n.kind, n.title, n.subtitle, tuple((r.kind, r.text, r.mark) for r in n.rows),
                  tuple((ln.text, ln.mark) for ln in n.lines))
                 for n in scene.nodes if n.kind != "folio")


def _diagrams(s: Session, fmt=None):
    """``(diagram of every scheme, diagram for text, drawing groups)`` at the current
    position (``fmt`` "text": the first is None; "html"/"svg": the second is None).  The text diagram draws each distinct page-table drawing once: schemes whose
    tables are drawn alike share a column (titled with all of them, showing the first one's
    folio counters; every scheme's counters are in the table)."""
    schemes = s.schemes
    befores = [s.before(sc) for sc in schemes]
    machines = [s.machines[sc] for sc in schemes]
    if len(schemes) == 1:
        d = draw(machines[0], before=befores[0])
        return d, d, ((schemes[0],),)
    both = None if fmt == "text" else draw_compare(machines, before=befores)
    if fmt in ("html", "svg"):
        return both, None, ()
    singles = [draw(m, before=b) for m, b in zip(machines, befores)]
    groups = {}
    for i, d in enumerate(singles):
        groups.setdefault(_tables_key(d.scene), []).append(i)
    reps = [ix for ix in groups.values()]
    if len(reps) == 1:
        text = singles[0]
    else:
        text = draw_compare([machines[ix[0]] for ix in reps],
                            before=[befores[ix[0]] for ix in reps],
                            titles=[", ".join(schemes[i] for i in ix) for ix in reps])
    return both, text, tuple(tuple(schemes[i] for i in ix) for ix in reps)


def _from_session(s: Session, fmt=None) -> tuple:
    """Visit every position of the replayed session ``s``: the explained steps."""
    steps = []
    fallback = not s.watch
    s.goto(0)
    prev = _counter_values(s, fallback)
    n = len(s.history)
    for i in range(1, n + 1):
        s.goto(i)
        st = s.last
        results = _group({sc: classify(st.outcomes[sc], st.kinds.get(sc, ""))
                          for sc in s.schemes})
        paths = _group({sc: tuple(st.call_paths.get(sc, ())) for sc in s.schemes})
        now = _counter_values(s, fallback)
        diagram, text_diagram, groups = _diagrams(s, fmt)
        steps.append(ExplainedStep(
            i, st.op, op_label(st.op), st.narration,
            tuple((ss, tag, text) for ss, (tag, text) in results), paths,
            _counter_rows(now, prev), diagram, text_diagram, groups))
        prev = now
    return tuple(steps)


def build_explainer(source, schemes=None, format=None) -> Explainer:
    """The explainer of ``source``: a :class:`~hgmviz.session.Session` (its steps up to its
    current position, replayed in a fresh session), a parsed
    :class:`~hgmviz.scenarios.Scenario`, a shipped scenario name or a path to a scenario
    file.  ``schemes``: the schemes to compare (a list or ``"a,b,c"``; default the source's).
    ``format``: draw only what that format shows (default: what every format shows).

    Raises :class:`~hgmviz.scenarios.ScenarioError` for a malformed file (or an outcome
    that contradicts its ``expect``), ValueError for an unknown name or scheme."""
    chosen = _check_schemes(schemes)
    if isinstance(source, Session):
        live = source
        use = chosen or live.schemes
        s = _replay(live.config, use, live.title, live.description, live.watch,
                    [(st.op, st.narration, None) for st in live.steps])
        title, desc, name, file_schemes = live.title, live.description, "", live.schemes
    else:
        sc, name = _read(source)
        file_schemes = sc.schemes
        use = chosen or sc.schemes
        if tuple(use) == tuple(sc.schemes):
            s = session_from_scenario(sc)          # checks each step's `expect`
        else:
            s = _replay(sc.config, use, sc.title, sc.description, sc.watch,
                        [(st.op, st.narration, st.line) for st in sc.steps], sc.path)
        title, desc = sc.title, sc.description
    steps = _from_session(s, format)
    return Explainer(title or "hgmviz session", desc, name, _setup_text(s), tuple(use),
                     tuple(file_schemes), steps, len(steps))


def parse_steps(spec: str, total: int) -> tuple:
    """``"3,5-7"`` → ``(3, 5, 6, 7)`` (1-based, within ``1..total``); ValueError otherwise."""
    out = set()
    for part in str(spec).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None:
            raise ValueError("steps %r: write step numbers and ranges such as 3,5-7" % spec)
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if not 1 <= lo <= hi <= total:
            raise ValueError("steps %r: the scenario has steps 1..%d" % (spec, total))
        out.update(range(lo, hi + 1))
    return tuple(sorted(out))


def select_steps(ex: Explainer, spec) -> Explainer:
    """The explainer showing only the steps ``spec`` names (``"11"``, ``"3,5-7"`` or a list
    of step numbers); the counters' marks still compare with the step before each."""
    if spec is None:
        return ex
    if not isinstance(spec, str):
        spec = ",".join(str(int(i)) for i in spec)
    keep = set(parse_steps(spec, ex.total))
    return dataclasses.replace(ex, steps=tuple(st for st in ex.steps if st.index in keep),
                               selection=spec.replace(" ", ""))


# =========================================================================================
# Plain text (80 columns)
# =========================================================================================
def _cols(text: str) -> int:
    """Terminal columns of ``text`` (East Asian wide and full-width characters count 2)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _paragraphs(text: str) -> list:
    """Reflow: blank lines separate paragraphs, single line breaks are spaces."""
    paras = re.split(r"\n\s*\n", text.strip())
    return [" ".join(p.split()) for p in paras if p.strip()]


_UNIT_RE = re.compile(r"(\d) ((?:[KMGT]i)?B\b|pages?\b)")


def _wrap(text: str, width: int, indent: str = "", first: Optional[str] = None) -> list:
    """``text`` wrapped to ``width``: continuation lines start with ``indent``, the first
    with ``first`` (default: ``indent``)."""
    first = indent if first is None else first
    text = _UNIT_RE.sub("\\1\xa0\\2", text)        # keep "2 MiB" on one line
    lines = textwrap.wrap(text, width=width, initial_indent=first, subsequent_indent=indent,
                          break_long_words=True, break_on_hyphens=False) or [first.rstrip()]
    return [line.replace("\xa0", " ") for line in lines]


def _field(label: str, text: str, width: int, pad: int = 11) -> list:
    return _wrap(text, width, " " * pad, label.ljust(pad))


def _command_lines(words, width: int, pad: int, label: str) -> list:
    """A shell command, continued with backslashes rather than wrapped (copy-pasteable)."""
    import shlex
    words = [shlex.quote(w) for w in words]
    lines, cur = [], label.ljust(pad) + words[0]
    for w in words[1:]:
        if _cols(cur) + 1 + len(w) + 2 > width:
            lines.append(cur + " \\")
            cur = " " * (pad + 4) + w
        else:
            cur += " " + w
    lines.append(cur)
    return lines


def _who(schemes, all_schemes) -> str:
    return "" if len(schemes) == len(all_schemes) else ", ".join(schemes) + ": "


def _table_text(rows, schemes, width: int) -> list:
    """The counters table, one column per scheme; split into several tables side by side
    no longer fitting ``width``."""
    if not rows:
        return ["counters   (no watched folio and no hugepage pool)"]
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
                out += _wrap(group, width)
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


def _legend(diagrams) -> list:
    """The legend lines of ``diagrams``, each once, in the order they first appear."""
    out = []
    for d in diagrams:
        for item in d.scene.legend:
            if item not in out:
                out.append(item)
    return out


def _diagram_text(diagram, width: int) -> str:
    scene = dataclasses.replace(diagram.scene, legend=())     # printed once, at the end
    return render_text(scene, width)


def to_text(ex: Explainer, width: int = WIDTH) -> str:
    """The explainer as plain text, no line wider than ``width`` columns."""
    rule = "=" * width
    out = []
    out += _wrap(ex.title, width)
    out.append("-" * min(width, max(_cols(line) for line in out)))
    for p in _paragraphs(ex.description):
        out += _wrap(p, width)
        out.append("")
    if ex.source:
        out += _field("scenario", ex.source, width)
    out += _field("setup", ex.setup, width)
    out += _field("schemes", ", ".join(ex.schemes) + (
        "" if ex.schemes == ex.file_schemes else
        " (the scenario's own: %s; its expectations not checked)" % ", ".join(ex.file_schemes)),
        width)
    out += _field("steps", str(ex.total) + (" (shown here: %s)" % ex.selection
                                            if ex.selection else ""), width)
    if ex.source:
        cmd = ["hgmviz", "explain", ex.source, "--format", "text"]
        if ex.schemes != ex.file_schemes:
            cmd += ["--schemes", ",".join(ex.schemes)]
        if ex.selection:
            cmd += ["--steps", ex.selection]
        out += _command_lines(cmd, width, 11, "command")
    out.append("")
    out += _wrap("Each step: the operation, its result and kernel call path under each "
                 "scheme, the counters (%s), and the page tables after it (+ new, "
                 "− removed, ~ changed)." % _MARK_KEY, width)
    for st in ex.steps:
        out.append("")
        out.append(rule)
        out += _wrap("Step %d of %d: %s" % (st.index, ex.total, st.label), width,
                     "    ", "")
        out.append(rule)
        for p in _paragraphs(st.narration):
            out += _wrap(p, width)
            out.append("")
        for ss, tag, text in st.results:
            out += _field("result", _who(ss, ex.schemes) + text, width)
        for ss, path in st.call_paths:
            out += _field("call path", _who(ss, ex.schemes) +
                          (" → ".join(path) if path else "(no kernel code)"), width)
        out.append("")
        out += _table_text(st.counters, ex.schemes, width)
        out.append("")
        if len(ex.schemes) == 1:
            out.append("Page tables after the step:")
        elif len(st.groups) == 1:
            out += _wrap("Page tables after the step, alike under every scheme (the folios "
                         "drawn with %s's counters):" % ex.schemes[0], width)
        else:
            out += _wrap("Page tables after the step, one column per distinct drawing: %s "
                         "(a column shows its first scheme's folio counters):"
                         % "; ".join(" = ".join(g) if len(g) > 1 else g[0]
                                     for g in st.groups), width)
        out += _diagram_text(st.text_diagram, width).rstrip("\n").split("\n")
    legend = _legend(st.text_diagram for st in ex.steps)
    if legend:
        out.append("")
        out.append(rule)
        out.append("Reading the diagrams")
        out.append(rule)
        for item in legend:
            out += _wrap(item, width, "    ", "")
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(line.rstrip() for line in out) + "\n"


# =========================================================================================
# HTML (one self-contained page: inline SVG and CSS, no script, no external URL)
# =========================================================================================
_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #1a1a1a; background: #fff; margin: 0 auto; max-width: 72rem; padding: 1rem 1.5rem; }
h1 { font-size: 1.6rem; margin: .2rem 0 .6rem; }
h2 { font-size: 1.2rem; margin: 0 0 .5rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
              font-size: .92em; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem;
           margin: .6rem 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
nav ol { columns: 2; font-size: .95em; }
section.step { margin: 2rem 0; page-break-inside: avoid; break-inside: avoid-page; }
p.narration { background: #f4f6fa; border-left: 4px solid #6b8cc7; padding: .5rem .8rem;
              margin: .5rem 0; }
.r-ok { color: #1b5e20; } .r-errno, .r-SIGBUS, .r-SIGSEGV, .r-guard, .r-wrap { color: #a3161b; }
.r-partial, .r-state_kept, .r-userfault, .r-skipped { color: #7a4d00; }
figure.diagram { margin: .8rem 0; overflow-x: auto; }
figure.diagram svg { max-width: 100%; height: auto; display: block; }
figure.diagram figcaption { font-size: .85em; color: #555; }
table.counters { border-collapse: collapse; margin: .6rem 0; font-size: .92em; }
table.counters caption { text-align: left; font-weight: 600; padding-bottom: .2rem; }
table.counters th, table.counters td { border: 1px solid #ccc; padding: .15rem .5rem; }
table.counters td { text-align: right; font-variant-numeric: tabular-nums; }
table.counters th[scope=rowgroup] { text-align: left; background: #f4f4f4; }
table.counters td.changed { font-weight: 700; background: #fff6d6; }
table.counters td.wrapped { font-weight: 700; color: #a3161b; background: #fde7e7; }
.legend li { margin: .2rem 0; }
@media print { nav { display: none; } body { max-width: none; }
               figure.diagram svg { min-width: 0 !important; } }
"""

_PROLOG_RE = re.compile(r"^.*?(?=<svg\b)", re.S)
_COMMENT_RE = re.compile(r"<!--.*?-->", re.S)
_XMLNS_RE = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_ID_RE = re.compile(r'\bid="([^"]*)"')
_REF_RE = re.compile(r'(url\(#|href="#)([^)"]*)')
_SIZE_RE = re.compile(r'<svg width="([0-9.]+)pt" height="([0-9.]+)pt"')


def _inline_svg(svg: str, prefix: str, label: str) -> str:
    """Graphviz's SVG made fit to inline in HTML: no XML prolog, DOCTYPE, comments or
    namespace declarations (HTML puts <svg> in its namespace), ids made unique per step."""
    body = _PROLOG_RE.sub("", svg, count=1)
    body = _COMMENT_RE.sub("", body)
    body = _XMLNS_RE.sub("", body)
    body = _ID_RE.sub(lambda m: 'id="%s%s"' % (prefix, m.group(1)), body)
    body = _REF_RE.sub(lambda m: m.group(1) + prefix + m.group(2), body)
    # on screen a wide drawing shrinks to the page down to 3/4 of its size, then scrolls
    # (its text stays legible); printed, it shrinks to the page (see _CSS)
    body = _SIZE_RE.sub(lambda m: '<svg width="%spt" height="%spt" style="min-width:%.0fpt" '
                        'role="img" aria-label="%s"'
                        % (m.group(1), m.group(2), 0.75 * float(m.group(1)),
                           html.escape(label, quote=True)), body, count=1)
    return body.strip()


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _html_table(rows, schemes) -> str:
    if not rows:
        return '<p class="counters">No watched folio and no hugepage pool.</p>'
    out = ['<table class="counters">',
           "<caption>Counters after the step</caption>",
           '<thead><tr><th scope="col">counter</th>%s</tr></thead>'
           % "".join('<th scope="col">%s</th>' % _e(sc) for sc in schemes)]
    group = None
    for r in rows:
        if r.group != group:
            if group is not None:
                out.append("</tbody>")
            group = r.group
            out.append('<tbody><tr><th scope="rowgroup" colspan="%d">%s</th></tr>'
                       % (1 + len(schemes), _e(group)))
        if not r.name:
            continue
        cells = []
        for _, text, mark in r.cells:
            cls = {"~": ' class="changed"', "!": ' class="wrapped"'}.get(mark, "")
            note = {"~": ' title="changed by this step"',
                    "!": ' title="wrapped past INT_MAX"'}.get(mark, "")
            cells.append("<td%s%s>%s%s</td>" % (cls, note, _e(mark + " ") if mark else "",
                                                _e(text)))
        out.append('<tr><th scope="row"><code>%s</code></th>%s</tr>' % (_e(r.name),
                                                                        "".join(cells)))
    out.append("</tbody></table>")
    return "\n".join(out)


def _paras_html(text: str, cls: str = "") -> str:
    attr = ' class="%s"' % cls if cls else ""
    return "\n".join("<p%s>%s</p>" % (attr, _e(p)) for p in _paragraphs(text))


def to_html(ex: Explainer, generator: str = "hgmviz") -> str:
    """The explainer as one self-contained HTML page (raises
    :class:`~hgmviz.render.DotNotFound` without Graphviz's ``dot``)."""
    n = ex.total
    parts = ['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<meta name="generator" content="%s">' % _e(generator),
             "<title>%s</title>" % _e(ex.title), "<style>%s</style>" % _CSS, "</head>",
             "<body>", "<header>", "<h1>%s</h1>" % _e(ex.title),
             _paras_html(ex.description, "description"), '<dl class="facts">']
    if ex.source:
        parts.append("<dt>scenario</dt><dd><code>%s</code></dd>" % _e(ex.source))
    parts.append("<dt>setup</dt><dd>%s</dd>" % _e(ex.setup))
    parts.append("<dt>schemes</dt><dd>%s%s</dd>" % (
        _e(", ".join(ex.schemes)), "" if ex.schemes == ex.file_schemes else
        _e(" (the scenario's own: %s; its expectations not checked)"
           % ", ".join(ex.file_schemes))))
    parts.append("<dt>steps</dt><dd>%d%s</dd>" % (n, _e(" (shown here: %s)" % ex.selection)
                                                   if ex.selection else ""))
    if ex.source:
        parts.append("<dt>text version</dt><dd><code>hgmviz explain %s --format text%s%s"
                     "</code></dd>" % (_e(ex.source), "" if ex.schemes == ex.file_schemes else
                                       _e(" --schemes " + ",".join(ex.schemes)),
                                       _e(" --steps " + ex.selection) if ex.selection else ""))
    parts.append("</dl>")
    parts.append('<p>In the diagrams, <b>+</b> marks what the step added (bold), <b>−</b> '
                 'what it removed (dashed), <b>~</b> what it changed (double border, '
                 '“was N”). In the tables, %s.</p>' % _e(_MARK_KEY))
    parts.append('<nav aria-label="steps"><ol>')
    for st in ex.steps:
        parts.append('<li><a href="#step-%d"><code>%s</code></a></li>' % (st.index,
                                                                          _e(st.label)))
    parts.append("</ol></nav></header>")
    parts.append("<main>")
    for st in ex.steps:
        label = "Step %d: %s" % (st.index, st.label)
        parts.append('<section class="step" id="step-%d" aria-labelledby="step-%d-h">'
                     % (st.index, st.index))
        parts.append('<h2 id="step-%d-h">Step %d of %d: <code>%s</code></h2>'
                     % (st.index, st.index, n, _e(st.label)))
        if st.narration:
            parts.append(_paras_html(st.narration, "narration"))
        parts.append('<dl class="facts">')
        for ss, tag, text in st.results:
            parts.append('<dt>result</dt><dd class="r-%s">%s</dd>'
                         % (_e(tag), _e(_who(ss, ex.schemes) + text)))
        for ss, path in st.call_paths:
            parts.append("<dt>call path</dt><dd>%s<code>%s</code></dd>" % (
                _e(_who(ss, ex.schemes)),
                _e(" → ".join(path) if path else "(no kernel code)")))
        parts.append("</dl>")
        svg = _inline_svg(st.diagram.svg(), "s%d-" % st.index, label)
        parts.append('<figure class="diagram">%s<figcaption>Page tables and folios after '
                     'step %d%s.</figcaption></figure>'
                     % (svg, st.index, "" if len(ex.schemes) == 1 else
                        ", one column per scheme"))
        parts.append(_html_table(st.counters, ex.schemes))
        parts.append("</section>")
    parts.append("</main>")
    legend = _legend(st.diagram for st in ex.steps)
    if legend:
        parts.append('<footer><h2>Reading the diagrams</h2><ul class="legend">')
        parts += ["<li>%s</li>" % _e(item) for item in legend]
        parts.append("</ul></footer>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


# =========================================================================================
# SVG: one file per step
# =========================================================================================
def to_svgs(ex: Explainer) -> list:
    """``[(file name, SVG text)]``, one per step: ``step-01.svg``, ... (Graphviz's SVG as
    drawn; raises :class:`~hgmviz.render.DotNotFound` without ``dot``)."""
    digits = max(2, len(str(len(ex.steps))))
    return [("step-%0*d.svg" % (digits, st.index), st.diagram.svg()) for st in ex.steps]


# =========================================================================================
# The entry point from Python
# =========================================================================================
def _generator() -> str:
    try:
        from importlib.metadata import version
        return "hgmviz %s" % version("hgmviz")
    except Exception:         # pragma: no cover - not installed (a source checkout)
        return "hgmviz"


def _write(path, text: str):
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def explain(session_or_scenario, path=None, format: str = "html", schemes=None, steps=None):
    """Explain a scenario step by step.

    ``session_or_scenario``: a :class:`~hgmviz.session.Session` (its steps up to the
    current position; the session itself is not changed), a shipped scenario name
    (``hgmviz scenarios`` lists them), a path to a scenario file, or a parsed
    :class:`~hgmviz.scenarios.Scenario`.  ``format``: ``"html"`` (one self-contained page),
    ``"text"`` (80 columns, for a mail) or ``"svg"`` (one drawing per step).  ``schemes``:
    the schemes to compare, one column each (default: the scenario's).  ``steps``: only
    these steps (``"11"``, ``"3,5-7"`` or a list of numbers; default all).

    Returns the page or the text (and writes it to ``path`` when given); for ``"svg"``,
    the SVG texts, or with ``path`` (a folder, created if missing) the files written.

    Raises :class:`~hgmviz.scenarios.ScenarioError` (``FILE:LINE: what is wrong``) for a
    malformed scenario file, ValueError for an unknown format, scheme or scenario name,
    :class:`~hgmviz.render.DotNotFound` for html or svg without Graphviz's ``dot``.
    """
    if format not in FORMATS:
        raise ValueError("format must be one of %s, not %r" % (", ".join(FORMATS), format))
    ex = select_steps(build_explainer(session_or_scenario, schemes, format), steps)
    if format == "text":
        doc = to_text(ex)
    elif format == "html":
        doc = to_html(ex, _generator())
    else:
        files = to_svgs(ex)
        if path is None:
            return [svg for _, svg in files]
        os.makedirs(path, exist_ok=True)
        written = []
        for name, svg in files:
            p = os.path.join(os.fspath(path), name)
            _write(p, svg)
            written.append(p)
        return written
    if path is not None:
        _write(path, doc)
    return doc


# =========================================================================================
# The commands: hgmviz explain, hgmviz scenarios
# =========================================================================================
_EPILOG = """\
SCENARIO is a shipped scenario name (see `hgmviz scenarios`) or a path to a
scenario file (TOML; the format is described in hgmviz/scenarios/__init__.py).

formats:
  html   one self-contained page: inline SVG and CSS, no JavaScript, no external
         file or URL; opens offline in any browser (needs Graphviz's dot)
  text   plain text within 80 columns, to paste into a mailing-list reply
  svg    one SVG per step, step-01.svg ..., into the folder -o names (needs dot)
Without --format, -o FILE.txt means text, otherwise html.  Without -o, html and
text go to standard output.

A scenario's `expect` lines are checked when it runs under its own schemes; with
--schemes the outcomes are shown as they come.

exit status:
  0  the explainer was written
  2  usage error: bad arguments, unknown scheme or scenario name, --steps out of
     range, svg without -o
  3  malformed scenario file, or a step whose outcome contradicts its `expect`;
     the message reads FILE:LINE: what is wrong
  4  Graphviz's dot is missing (html and svg need it; text does not)
  5  the output could not be written

examples:
  hgmviz explain tour --format text > tour.txt       # paste into an email
  hgmviz explain overflow_toy_sign --steps 11 --format text      # one step
  hgmviz explain fork_amplifier -o fork.html         # a handout
  hgmviz explain pmd_sharing --schemes mainline,per_piece -o pmd.html
  hgmviz explain my-session.toml --format svg -o steps/
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):        # argparse's own exit code is 2 as well; say so once
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, "%s: error: %s\n" % (self.prog, message))


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hgmviz explain", description="Explain a scenario step by step: as "
                "one HTML page,\nas plain text for email, or as one SVG per step.",
                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", metavar="SCENARIO",
                   help="a shipped scenario name, or a path to a scenario file: an argument "
                   "with a slash or ending in .toml is a path (./tour for a file called "
                   "tour), anything else a shipped name")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="the file to write (html, text) or the folder (svg)")
    p.add_argument("-f", "--format", choices=FORMATS, default=None,
                   help="html (default), text or svg")
    p.add_argument("-s", "--schemes", metavar="A,B,C",
                   help="schemes to compare, one column each (default: the scenario's); "
                   "allowed: %s" % ", ".join(SCHEMES))
    p.add_argument("--steps", metavar="N,M-K",
                   help="only these steps, e.g. 11 or 3,5-7 (the counters' marks still "
                   "compare with the step before each)")
    return p


def main(argv=None) -> int:
    """``hgmviz explain``; returns the exit status (see ``--help``)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:          # --help (0) or a usage error (2): a status, not a raise
        return int(e.code or 0)
    fmt = args.format
    if fmt is None:
        fmt = "text" if (args.output or "").lower().endswith((".txt", ".text")) else "html"
    if fmt == "svg" and not args.output:
        print("hgmviz explain: --format svg writes one file per step: give the folder "
              "with -o DIR", file=sys.stderr)
        return EXIT_USAGE
    try:
        schemes = _check_schemes(args.schemes)
    except ValueError as e:
        print("hgmviz explain: --schemes: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    try:
        ex = build_explainer(args.scenario, schemes, fmt)
    except ScenarioError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SCENARIO
    except ValueError as e:            # an unknown shipped name
        print("hgmviz explain: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    try:
        ex = select_steps(ex, args.steps)
    except ValueError as e:
        print("hgmviz explain: --steps: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    try:
        if fmt == "text":
            out = to_text(ex)
        elif fmt == "html":
            out = to_html(ex, _generator())
        else:
            out = to_svgs(ex)
    except DotNotFound as e:
        print("hgmviz explain: %s" % e, file=sys.stderr)
        return EXIT_NO_DOT
    try:
        if fmt == "svg":
            os.makedirs(args.output, exist_ok=True)
            for name, svg in out:
                _write(os.path.join(args.output, name), svg)
            print("hgmviz explain: wrote %d SVG files to %s" % (len(out), args.output),
                  file=sys.stderr)
        elif args.output:
            _write(args.output, out)
        else:
            _stdout(out)
    except OSError as e:
        print("hgmviz explain: cannot write %s: %s" % (e.filename or args.output,
                                                       e.strerror or e), file=sys.stderr)
        return EXIT_WRITE
    return EXIT_OK


def _stdout(text: str):
    """Write to standard output; a reader that stops early (``| head``) is not an error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())       # no second error at exit
        os.close(devnull)


def scenarios_main(argv=None) -> int:
    """``hgmviz scenarios``: the shipped scenarios, name and title, within 80 columns."""
    p = argparse.ArgumentParser(prog="hgmviz scenarios",
                                description="List the scenarios shipped with hgmviz "
                                "(name, title); explain one with `hgmviz explain NAME`.")
    p.parse_args(argv)
    infos = list_scenarios()
    w = max([len("name")] + [len(i.name) for i in infos]) + 2
    lines = ["name".ljust(w) + "title"]
    for i in infos:
        lines += _wrap(i.title, WIDTH, " " * w, i.name.ljust(w))
    _stdout("\n".join(lines) + "\n")
    return EXIT_OK
