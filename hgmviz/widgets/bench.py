"""Layer 6 benchmark: one click of the explorer on the server side — the operation, the
session's checkpoint, the redraw (scene, DOT, ``dot``) and the widget updates — with no
browser (ipywidgets without a kernel; the browser's share is measured by
``tests/test_browser.py``).

``bench_widgets(quick)`` returns rows ``(name, value, unit, target, reference, ratio)`` as
:mod:`hgmviz.bench` does: the p95 of ``Button.click()`` over repeated clicks, the reference
being the p95 of drawing the same states alone (``hv.draw(...).svg()``), so the ratio is what
the explorer adds to the drawing.  The explorer's drawing cache is off (every click draws).
"""
from __future__ import annotations

import time

import numpy as np

__all__ = ["bench_widgets", "click_times", "BENCH_SCENARIOS"]

#: scenarios measured by undo / redo clicks (each a new drawing)
BENCH_SCENARIOS = ("tour", "overflow_toy_noguard", "one_logical_mapping", "postcopy_1g",
                   "fork_amplifier")


def _p95_ms(xs) -> float:
    return float(np.percentile(np.asarray(xs), 95)) * 1e3


def _draw_time(ex) -> float:
    from ..render import draw, draw_compare
    s = ex.session
    t = time.perf_counter()
    if ex.compare:
        d = draw_compare([s.machines[k] for k in s.schemes],
                         before=[s.before(k) for k in s.schemes])
    else:
        d = draw(ex.machine, before=s.before(ex.view_scheme))
    d.svg()
    return time.perf_counter() - t, d.node_count


def click_times(ex, buttons, clicks: int) -> tuple:
    """Seconds per ``button.click()`` over ``clicks`` clicks cycling through ``buttons``
    (after one warm-up round), the drawing alone of each state reached, and the largest
    node count drawn."""
    for b in buttons:
        b.click()
    clicks_t, draws_t, nodes = [], [], 0
    for i in range(clicks):
        b = buttons[i % len(buttons)]
        t = time.perf_counter()
        b.click()
        clicks_t.append(time.perf_counter() - t)
        dt, n = _draw_time(ex)
        draws_t.append(dt)
        nodes = max(nodes, n)
    return clicks_t, draws_t, nodes


def bench_widgets(quick: bool):
    from .explorer import compare, explore
    clicks = 10 if quick else 40
    rows = []

    def row(label, ex, buttons):
        c, d, nodes = click_times(ex, buttons, clicks)
        cp, dp = _p95_ms(c), _p95_ms(d)
        rows.append(("widgets: click → operation + redraw, server side, %s (up to %d nodes)"
                     % (label, nodes), cp, "ms", "<= 100", "drawing alone p95 %.1f ms" % dp,
                     cp / dp if dp else float("nan")))
        ex.close()

    ex = explore(geometry="toy", redraw_cache=0)
    row("explore(toy): touch / MADV_DONTNEED", ex, [ex.buttons["touch"],
                                                   ex.buttons["dontneed"]])
    cx = compare(geometry="toy", redraw_cache=0)
    row("compare(toy, 3 schemes): touch / MADV_DONTNEED", cx, [cx.buttons["touch"],
                                                              cx.buttons["dontneed"]])
    for name in (BENCH_SCENARIOS[:2] if quick else BENCH_SCENARIOS):
        ex = explore(scenario=name, redraw_cache=0)
        row("scenario %s: undo / redo" % name, ex, [ex.b_undo, ex.b_redo])
        if len(ex.session.schemes) > 1:
            cx = compare(scenario=name, redraw_cache=0)
            row("compare %s (%d schemes): undo / redo" % (name, len(cx.session.schemes)),
                cx, [cx.b_undo, cx.b_redo])
    return rows


if __name__ == "__main__":
    import sys
    for r in bench_widgets("--quick" in sys.argv):
        print("%s | %.3g %s | target %s | %s | ratio %.3g" % r)
