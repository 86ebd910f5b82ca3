"""Layer 5: diagrams — machine state → scene model → DOT/SVG and plain text.

``draw(m)`` returns a :class:`Diagram`: it shows itself in Jupyter (SVG), and has ``.dot``
(the DOT source), ``.svg()`` and ``.text(width=80)``.  ``draw_compare([m1, m2, ...])`` lays
several machines (the same steps under several schemes) side by side, one column each.
Nothing here changes a machine.
"""
from __future__ import annotations

import warnings

from .dot import INSTALL_HELP, DotNotFound, dot_available, dot_to_svg, scene_to_dot
from .scene import (Cluster, Edge, Line, Node, Row, Scene, Strip, build_compare_scene,
                    build_scene, named_leaves)
from .text import render_text
from .theme import DARK, LIGHT, Theme, contrast_ratio, get_theme

__all__ = ["draw", "draw_compare", "Diagram", "DotNotFound", "INSTALL_HELP", "build_scene",
           "build_compare_scene", "named_leaves", "scene_to_dot", "dot_to_svg", "render_text",
           "Theme", "LIGHT", "DARK", "contrast_ratio", "Scene", "Node", "Row", "Edge", "Line",
           "Strip", "Cluster", "dot_available"]


class Diagram:
    """A drawn scene: ``.dot``, ``.svg()``, ``.text(width=80)``; SVG in Jupyter."""

    def __init__(self, scene: Scene, theme="light", legend: bool = True):
        self.scene = scene
        self.theme = get_theme(theme)
        self.legend = bool(legend)      # False: the legend is shown once elsewhere
        self._dot = None
        self._svg = None

    @property
    def dot(self) -> str:
        """The DOT source (deterministic; what the golden tests snapshot)."""
        if self._dot is None:
            self._dot = scene_to_dot(self.scene, self.theme, legend=self.legend)
        return self._dot

    def svg(self) -> str:
        """The SVG drawn by Graphviz's ``dot`` (raises :class:`DotNotFound` without it)."""
        if self._svg is None:
            self._svg = dot_to_svg(self.dot)
        return self._svg

    def text(self, width: int = 80) -> str:
        """The diagram as plain text, no line longer than ``width``."""
        return render_text(self.scene, width)

    @property
    def node_count(self) -> int:
        return self.scene.node_count

    def _repr_svg_(self):
        try:
            return self.svg()
        except DotNotFound as e:
            warnings.warn(str(e), RuntimeWarning, stacklevel=2)
            return None

    def _repr_pretty_(self, p, cycle):
        p.text(self.text())

    def __repr__(self):
        s = self.scene
        return "<Diagram %r: %d nodes, %d edges>" % (s.title, s.node_count, len(s.edges))


def draw(m, pids=None, start=None, end=None, before=None, *, theme="light", max_nodes=150,
         max_rows=24, legend=True) -> Diagram:
    """Draw machine ``m``: the page-table trees of processes ``pids`` (default all) over
    ``[start, end)`` (default: their VMAs), the folios they map with their counters, and —
    given ``before = m.snapshot()`` taken earlier — what changed since.  ``legend=False``:
    the SVG leaves out the legend (``Diagram.scene.legend`` still has it)."""
    return Diagram(build_scene(m, pids, start, end, before, max_nodes=max_nodes,
                               max_rows=max_rows), theme, legend)


def draw_compare(machines, pids=None, start=None, end=None, before=None, *, titles=None,
                 theme="light", max_nodes=150, max_rows=24, legend=True) -> Diagram:
    """Several machines side by side, one column each (``before``: one snapshot or None
    per machine; ``titles``: one per machine, default the scheme names)."""
    return Diagram(build_compare_scene(machines, pids, start, end, before, titles=titles,
                                       max_nodes=max_nodes, max_rows=max_rows), theme,
                   legend)
