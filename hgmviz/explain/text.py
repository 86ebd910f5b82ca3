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


#: ``--ascii``: what replaces the non-ASCII characters the text uses (anything else
#: becomes its closest ASCII, or ``?``).
ASCII = {"→": "->", "←": "<-", "·": "*", "×": "x", "−": "-", "–": "-", "—": "--", "…": "...",
         "≥": ">=", "≤": "<=", "‖": "||", "✓": "ok", "✗": "x", "↯": "!", "⊘": "(/)",
         "↻": "(wrap)", "½": "1/2", "“": '"', "”": '"', "‘": "'", "’": "'", "\xa0": " "}


def to_ascii(text: str) -> str:
    """``text`` in ASCII only (for mail clients that mangle ``→ · × − –``)."""
    out = []
    for ch in text:
        if ord(ch) < 128:
            out.append(ch)
        elif ch in ASCII:
            out.append(ASCII[ch])
        else:
            d = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append(d or "?")
    return "".join(out)


def _marked(scene) -> bool:
    """Does the drawing mark anything new, removed or changed?"""
    return any(n.mark or any(r.mark for r in n.rows) or any(ln.mark for ln in n.lines)
               for n in scene.nodes) or any(e.mark for e in scene.edges)


def to_text(ex: Explainer, width: int = WIDTH, full: bool = False,
            ascii: bool = False) -> str:
    """The explainer as plain text, no line wider than ``width`` columns.  By default
    each step shows only the counters it changed and its page tables only when it changed
    them, then the full counters after the last step; ``full=True``: every counter and
    every drawing at every step.  ``ascii=True``: ASCII only."""
    text = _to_text(ex, width, full)
    return to_ascii(text) if ascii else text


def _to_text(ex: Explainer, width: int, full: bool) -> str:
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
        if full:
            cmd += ["--full"]
        out += _command_lines(cmd, width, 11, "command")
    out.append("")
    if full:
        out += _wrap("Each step: the operation, its result and kernel call path under each "
                     "scheme, the counters (%s), and the page tables after it (+ new, "
                     "− removed, ~ changed)." % _MARK_KEY, width)
    else:
        out += _wrap("Each step: the operation, its result and kernel call path under each "
                     "scheme, the counters it changed (%s), and the page tables when it "
                     "changed them (+ new, − removed, ~ changed); the full counters after "
                     "the last step.  --full shows everything at every step." % _MARK_KEY,
                     width)
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
        out += _table_text(st.counters, ex.schemes, width, changed_only=not full)
        out.append("")
        if not full and not _marked(st.text_diagram.scene):
            out.append("Page tables: unchanged by this step.")
            continue
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
    if not full and ex.steps:
        last = ex.steps[-1]
        out.append("")
        out.append(rule)
        out.append("Summary: the counters after step %d" % last.index)
        out.append(rule)
        out += _table_text(last.counters, ex.schemes, width)
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


