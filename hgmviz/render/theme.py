"""Layer 5: every colour, font and line style of the diagrams, in one place.

A :class:`Theme` is plain data.  The DOT back end asks it for colours through the methods
below and uses no colour of its own, so :meth:`Theme.text_pairs` lists every (text, fill)
pair a diagram can contain and :meth:`Theme.graphic_pairs` every (line, background) pair;
the tests compute their WCAG 2.1 contrast ratios (AA: 4.5:1 for text, 3:1 for lines and
borders, success criteria 1.4.3 and 1.4.11).

Changes are never shown by colour alone (colour-blind and greyscale readers): a new entry
also has a bold border, a "+" marker and bold edges; a removed entry a dashed border, a "−"
marker and dashed edges; a changed counter a double border, a "~" marker and "(was N)".
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Theme", "LIGHT", "DARK", "get_theme", "contrast_ratio", "relative_luminance",
           "MARKS", "MARK_GLYPHS"]

#: the change marks a scene element can carry ("" = unchanged)
MARKS = ("", "new", "removed", "changed")
#: the glyph shown in front of a marked row or line (text and SVG alike)
MARK_GLYPHS = {"": " ", "new": "+", "removed": "−", "changed": "~"}

NODE_KINDS = ("process", "table", "group", "folio", "shared")


def _channel(c: float) -> float:
    c /= 255.0
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def relative_luminance(color: str) -> float:
    """WCAG 2.1 relative luminance of ``#rrggbb``."""
    color = color.lstrip("#")
    if len(color) != 6:
        raise ValueError("expected #rrggbb, not %r" % color)
    r, g, b = (int(color[i:i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2.1 contrast ratio of two ``#rrggbb`` colours (1 .. 21)."""
    la, lb = relative_luminance(a), relative_luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


@dataclass(frozen=True)
class Theme:
    """Colours (``#rrggbb``), fonts and line widths of one diagram style."""

    name: str
    bg: str                 # the page
    fg: str                 # ordinary text
    muted: str              # secondary text (addresses, subtitles)
    border: str             # node borders
    edge: str               # table → table edges
    leaf_edge: str          # leaf → folio edges
    cluster: str            # process / column frames
    fills: tuple            # ((kind, body fill, header fill), ...) for NODE_KINDS
    marks: tuple            # ((mark, text colour, fill), ...) for "new", "removed", "changed"
    alert: str              # WRAPPED / GUARDED text (drawn on the folio fill)
    heat: tuple             # ((fill, text), ...) for strip levels 0, 1, 2, 3-9, >= 10, < 0
    font: str = "Helvetica,Arial,sans-serif"
    mono: str = "DejaVu Sans Mono,Menlo,Consolas,monospace"
    fontsize: float = 10.0
    penwidth_new: float = 3.0
    penwidth: float = 1.0

    # -- what the back ends ask ---------------------------------------------------------
    def fill(self, kind: str) -> str:
        for k, body, _ in self.fills:
            if k == kind:
                return body
        raise KeyError(kind)

    def header_fill(self, kind: str) -> str:
        for k, _, head in self.fills:
            if k == kind:
                return head
        raise KeyError(kind)

    def mark_fg(self, mark: str) -> str:
        for k, fg, _ in self.marks:
            if k == mark:
                return fg
        return self.fg

    def mark_fill(self, mark: str, kind: str) -> str:
        """The fill of a marked row (unmarked rows keep their node's fill)."""
        for k, _, fill in self.marks:
            if k == mark:
                return fill
        return self.fill(kind)

    def mark_line(self, mark: str) -> str:
        """Border / edge colour of a marked node or edge."""
        return self.mark_fg(mark) if mark else self.border

    def heat_level(self, value: int) -> int:
        """Strip colour level of a subpage mapcount: 0, 1, 2, 3 (3..9), 4 (>= 10), 5 (< 0)."""
        if value < 0:
            return 5
        if value <= 2:
            return value
        return 3 if value <= 9 else 4

    # -- for the contrast tests -----------------------------------------------------------
    def text_pairs(self):
        """Every (text colour, background) pair the DOT back end can draw, with a name."""
        out = [("page text", self.fg, self.bg), ("page muted", self.muted, self.bg)]
        for kind, body, head in self.fills:
            for where, fill in (("body", body), ("header", head)):
                out.append(("%s %s text" % (kind, where), self.fg, fill))
                out.append(("%s %s muted" % (kind, where), self.muted, fill))
            out.append(("%s alert" % kind, self.alert, body))
            for mark, fg, fill in self.marks:
                out.append(("%s %s row" % (kind, mark), fg, fill))
                out.append(("%s %s row text" % (kind, mark), self.fg, fill))
                out.append(("%s %s marker on body" % (kind, mark), fg, body))
        for i, (fill, text) in enumerate(self.heat):
            out.append(("heat level %d" % i, text, fill))
        return out

    def graphic_pairs(self):
        """Every (line colour, background) pair: borders and edges on the page."""
        out = [("border", self.border, self.bg), ("edge", self.edge, self.bg),
               ("leaf edge", self.leaf_edge, self.bg), ("cluster frame", self.cluster, self.bg)]
        for mark, fg, _ in self.marks:
            out.append(("%s line" % mark, fg, self.bg))
        for kind, body, _ in self.fills:
            out.append(("%s border" % kind, self.border, body))
        return out


LIGHT = Theme(
    name="light",
    bg="#ffffff", fg="#1a1a1a", muted="#4d4d4d", border="#4a5568", edge="#4a5568",
    leaf_edge="#1f5f99", cluster="#767676",
    fills=(("process", "#eef2f7", "#dde5ef"),
           ("table", "#f6f7f9", "#e4e8ee"),
           ("group", "#eef6ef", "#dcebdd"),
           ("folio", "#fbf6e9", "#f1e7cb"),
           ("shared", "#f3eff9", "#e3dbf0")),
    marks=(("new", "#17601f", "#e3f3e5"),
           ("removed", "#a3161b", "#fbe9e9"),
           ("changed", "#7a4100", "#fdf0dc")),
    alert="#a3161b",
    heat=(("#f2f2f2", "#1a1a1a"), ("#c6dbef", "#1a1a1a"), ("#6baed6", "#1a1a1a"),
          ("#2166ac", "#ffffff"), ("#08306b", "#ffffff"), ("#a3161b", "#ffffff")),
)

DARK = Theme(
    name="dark",
    bg="#1b1d21", fg="#e8e8e8", muted="#b4b8bf", border="#9aa5b4", edge="#9aa5b4",
    leaf_edge="#6cb4ee", cluster="#8a929c",
    fills=(("process", "#262c35", "#313a46"),
           ("table", "#25282d", "#30353c"),
           ("group", "#223027", "#2c3d32"),
           ("folio", "#302c22", "#3d372a"),
           ("shared", "#2c2637", "#383046")),
    marks=(("new", "#8fd694", "#1e3322"),
           ("removed", "#ff9a9a", "#3d2224"),
           ("changed", "#ffc773", "#3b3020")),
    alert="#ff9a9a",
    heat=(("#2a2d32", "#e8e8e8"), ("#1d3d5c", "#e8e8e8"), ("#2a6496", "#ffffff"),
          ("#6baed6", "#101010"), ("#c6dbef", "#101010"), ("#ff9a9a", "#101010")),
)

_THEMES = {"light": LIGHT, "dark": DARK}


def get_theme(theme) -> Theme:
    """``"light"``, ``"dark"`` or a :class:`Theme`."""
    if isinstance(theme, Theme):
        return theme
    try:
        return _THEMES[theme]
    except (KeyError, TypeError):
        raise ValueError("unknown theme %r; allowed: 'light', 'dark' or a Theme" % (theme,)) from None
