"""Layer 6: the interactive explorer (ipywidgets 8; JupyterLab 4 and Voila).

``explore(...)`` — one scheme, every operation a button; ``compare(...)`` — one trace,
several schemes side by side.  Both return an :class:`Explorer` over a
:class:`~hgmviz.session.Session`: the widgets are thin controllers (controls in, one
:mod:`hgmviz.ops` operation out, the diagram back).  See :mod:`hgmviz.widgets.explorer`.
"""
from .drill import ScaleRun, drill_step_ops
from .explorer import (ERROR_CHOICES, GUARD_CHOICES, OPERATION_BUTTONS, Explorer, compare,
                       explore, legal_granularities)

__all__ = ["explore", "compare", "Explorer", "legal_granularities", "OPERATION_BUTTONS",
           "GUARD_CHOICES", "ERROR_CHOICES", "ScaleRun", "drill_step_ops"]
