"""Layer 6: the explainer as one self-contained HTML page, or one SVG per step."""
from __future__ import annotations

import html
import re

from ..render.counters import table_html
from ..render.safe import printable
from .model import _MARK_KEY, Explainer
from .text import _legend, _paragraphs, _who

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
section.step { margin: 2rem 0; }
p.narration { background: #f4f6fa; border-left: 4px solid #6b8cc7; padding: .5rem .8rem;
              margin: .5rem 0; }
.r-ok { color: #1b5e20; } .r-errno, .r-SIGBUS, .r-SIGSEGV, .r-guard, .r-wrap { color: #a3161b; }
.r-partial, .r-state_kept, .r-userfault, .r-skipped { color: #7a4d00; }
figure.diagram { margin: .8rem 0; overflow-x: auto; }
figure.diagram svg { max-width: 100%; height: auto; display: block; }
table.counters { border-collapse: collapse; margin: .6rem 0; font-size: .92em; }
table.counters caption { text-align: left; font-weight: 600; padding-bottom: .2rem; }
table.counters th, table.counters td { border: 1px solid #ccc; padding: .15rem .5rem; }
table.counters td { text-align: right; font-variant-numeric: tabular-nums; }
table.counters th[scope=rowgroup] { text-align: left; background: #f4f4f4; }
table.counters td.changed { font-weight: 700; background: #fff6d6; }
table.counters td.wrapped { font-weight: 700; color: #a3161b; background: #fde7e7; }
.legend li { margin: .2rem 0; }
figure.diagram figcaption { font-weight: 600; color: #333; margin-bottom: .2rem; }
@page { size: landscape; margin: 12mm; }
@media print { nav { display: none; } body { max-width: none; padding: 0; font-size: 10pt; }
               figure.diagram { overflow: visible; break-inside: avoid; }
               figure.diagram svg { min-width: 0 !important; max-width: 100%; } }
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
                           _e(label)), body, count=1)
    return body.strip()


def _e(text) -> str:
    return html.escape(printable(text), quote=True)


def _html_table(table, schemes) -> str:
    return table_html(table)


#: The widest drawing (in points) the page shows whole.  The page prints landscape (the
#: drawings are wide, not tall): Letter landscape less 12 mm margins is 255 mm = 723 pt
#: wide (A4's 774 pt is wider), where a drawing this wide shrinks to 0.63, so its 9.65 pt
#: text stays >= 6 pt.  A wider drawing of several processes is shown one process at a time.
MAX_PT = 1150.0


def _width_pt(svg: str) -> float:
    m = _SIZE_RE.search(svg)
    return float(m.group(1)) if m else 0.0


def _figures_html(st, schemes, label) -> list:
    """One figure per scheme, stacked (the page is as wide as one scheme's drawing, not the
    sum); a drawing wider than :data:`MAX_PT` with several processes is split into one
    figure per process."""
    if not st.figures:                  # a model built for another format: the comparison
        return ['<figure class="diagram">%s<figcaption>Page tables and folios after step '
                '%d.</figcaption></figure>' % (_inline_svg(st.diagram.svg(), "s%d-" % st.index,
                                                            label), st.index)]
    out = []
    for k, (sc, whole, parts) in enumerate(st.figures):
        svg = whole.svg()
        drawings = [(svg, "")]
        if parts and _width_pt(svg) > MAX_PT:
            drawings = [(p.svg(), " — process %s" % ", ".join(
                n.title for n in p.scene.nodes if n.kind == "process")) for p in parts]
        for j, (one, who) in enumerate(drawings):
            cap = "Step %d%s: page tables and folios%s" % (
                st.index, "" if len(schemes) == 1 else " under %s" % sc, who)
            out.append('<figure class="diagram"><figcaption>%s</figcaption>%s</figure>'
                       % (_e(cap), _inline_svg(one, "s%d-%d-%d-" % (st.index, k, j),
                                               "%s%s" % (label, who))))
    return out


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
        parts += _figures_html(st, ex.schemes, label)
        parts.append(_html_table(st.counters, ex.schemes))
        parts.append("</section>")
    parts.append("</main>")
    legend = _legend(st.diagram for st in ex.steps)
    if legend:
        parts.append('<footer><h2>Reading the diagrams</h2><ul class="legend">')
        parts += ["<li>%s</li>" % _e(item) for item in legend]
        parts.append("</ul></footer>")
    parts += ["</body>", "</html>"]
    return printable("\n".join(parts) + "\n")     # no raw control byte anywhere



# =========================================================================================
# SVG: one file per step
# =========================================================================================
def to_svgs(ex: Explainer) -> list:
    """``[(file name, SVG text)]``, one per step: ``step-01.svg``, ... (Graphviz's SVG as
    drawn; raises :class:`~hgmviz.render.DotNotFound` without ``dot``)."""
    digits = max(2, len(str(len(ex.steps))))
    return [("step-%0*d.svg" % (digits, st.index), st.diagram.svg()) for st in ex.steps]


