"""Layer 6: the explainer's model — a scenario replayed, each step as plain data
(:class:`Explainer`, :class:`ExplainedStep`); the back ends in :mod:`.text` and :mod:`.html`
draw it."""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Optional

from ..describe import classify, op_label
from ..render import draw, draw_compare
from ..render.counters import MARK_KEY, CounterRow, counter_table  # noqa: F401
from ..scenarios import (Scenario, ScenarioError, format_size, is_scenario_path, read_scenario,
                         scenario_path, session_from_scenario)
from ..schemes import SCHEMES
from ..session import InvalidOperation, Session

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

_MARK_KEY = MARK_KEY



# =========================================================================================
# The model: what an explainer shows, as plain data
# =========================================================================================
@dataclass(frozen=True)
class ExplainedStep:
    index: int              # 1-based
    op: object
    label: str              # the operation in the user's words (``touch p a+0x5000``)
    narration: str
    results: tuple          # ((schemes, tag, text), ...) schemes grouped by identical result
    call_paths: tuple       # ((schemes, (fn, ...)), ...) grouped likewise
    counters: object        # render.counters.CounterTable (iterates as CounterRow)
    diagram: object         # render.Diagram: every scheme (one column each); html, svg
    text_diagram: object    # render.Diagram for the text format: one column per group
    groups: tuple           # ((schemes, ...), ...) whose page tables are drawn alike (text)
    figures: tuple = ()     # html: ((scheme, Diagram, (per-process Diagram, ...)), ...)


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


def _figures(s: Session) -> tuple:
    """The HTML page's drawings at the current position: one per scheme (stacked, so the
    page never grows wider than one scheme), each with one drawing per process too, which
    the page uses when the whole is too wide to print legibly (:data:`.html.MAX_PT`).  No
    legend inside: the page shows it once."""
    out = []
    for sc in s.schemes:
        m, b = s.machines[sc], s.before(sc)
        whole = draw(m, before=b, legend=False)
        pids = [n.pid for n in whole.scene.nodes if n.kind == "process"]
        parts = tuple(draw(m, pids=[pid], before=b, legend=False) for pid in pids) \
            if len(pids) > 1 else ()
        out.append((sc, whole, parts))
    return tuple(out)


def _from_session(s: Session, fmt=None) -> tuple:
    """Visit every position of the replayed session ``s``: the explained steps."""
    steps = []
    s.goto(0)
    prev = counter_table(s).values
    n = len(s.history)
    for i in range(1, n + 1):
        s.goto(i)
        st = s.last
        results = _group({sc: classify(st.outcomes[sc], st.kinds.get(sc, ""))
                          for sc in s.schemes})
        paths = _group({sc: tuple(st.call_paths.get(sc, ())) for sc in s.schemes})
        table = counter_table(s, prev)
        diagram, text_diagram, groups = _diagrams(s, fmt)
        steps.append(ExplainedStep(
            i, st.op, op_label(st.op), st.narration,
            tuple((ss, tag, text) for ss, (tag, text) in results), paths,
            table, diagram, text_diagram, groups,
            _figures(s) if fmt in (None, "html") else ()))
        prev = table.values
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


