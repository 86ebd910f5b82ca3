"""Layer 6: the explainer as plain text (80 columns, for a mailing-list reply)."""
from __future__ import annotations

import dataclasses
import re
import textwrap
import unicodedata
from typing import Optional

from ..render import render_text
from ..render.counters import table_text
from ..render.safe import printable
from .model import _MARK_KEY, WIDTH, Explainer

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


def _table_text(table, schemes, width: int, changed_only: bool = False) -> list:
    """The counters table (:func:`hgmviz.render.counters.table_text`), group lines
    wrapped."""
    return table_text(table, width, changed_only=changed_only,
                      wrap=lambda text, w: _wrap(text, w))


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
    return "\n".join(printable(line, keep="").rstrip() for line in out) + "\n"


