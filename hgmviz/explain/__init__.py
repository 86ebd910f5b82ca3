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

import os
import sys
import types

from .cli import _generator, _write, _write_into, main, scenarios_main
from .html import to_html, to_svgs
from .model import (EXIT_NO_DOT, EXIT_OK, EXIT_SCENARIO, EXIT_USAGE, EXIT_WRITE, FORMATS,
                    WIDTH, CounterRow, ExplainedStep, Explainer, build_explainer,
                    parse_steps, select_steps)
from .text import to_text

__all__ = ["explain", "build_explainer", "select_steps", "parse_steps", "Explainer",
           "ExplainedStep", "CounterRow",
           "to_text", "to_html", "to_svgs", "main", "scenarios_main", "FORMATS", "WIDTH",
           "EXIT_OK", "EXIT_USAGE", "EXIT_SCENARIO", "EXIT_NO_DOT", "EXIT_WRITE"]


def explain(session_or_scenario, path=None, format: str = "html", schemes=None, steps=None,
            full: bool = False, ascii: bool = False):
    """Explain a scenario step by step.

    ``session_or_scenario``: a :class:`~hgmviz.session.Session` (its steps up to the
    current position; the session itself is not changed), a shipped scenario name
    (``hgmviz scenarios`` lists them), a path to a scenario file, or a parsed
    :class:`~hgmviz.scenarios.Scenario`.  ``format``: ``"html"`` (one self-contained page),
    ``"text"`` (80 columns, for a mail) or ``"svg"`` (one drawing per step).  ``schemes``:
    the schemes to compare, one column each (default: the scenario's).  ``steps``: only
    these steps (``"11"``, ``"3,5-7"`` or a list of numbers; default all).  ``full`` and
    ``ascii`` (text): every counter and drawing at every step; ASCII only.

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
        doc = to_text(ex, full=full, ascii=ascii)
    elif format == "html":
        doc = to_html(ex, _generator())
    else:
        files = to_svgs(ex)
        if path is None:
            return [svg for _, svg in files]
        os.makedirs(path, exist_ok=True)
        written = []
        for name, svg in files:
            written.append(_write_into(path, name, svg))   # a symlink there is not followed
        return written
    if path is not None:
        _write(path, doc)
    return doc




class _Module(types.ModuleType):
    """``hgmviz.explain`` is this package and also the function :func:`explain`: once the
    package is imported, ``hv.explain`` is the package (Python binds a subpackage to its
    parent's attribute), so calling it must still explain."""

    def __call__(self, *args, **kwargs):
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _Module
