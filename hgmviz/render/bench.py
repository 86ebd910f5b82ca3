"""Layer 5 benchmark: state → SVG (scene + DOT + ``dot`` layout) for the named examples.

``bench_render(quick)`` returns rows ``(name, value, unit, target, reference, ratio)`` as
``hgmviz.bench`` does: the p95 over repeated redraws of each example (a fresh
:class:`~hgmviz.render.Diagram` every time, as a widget redraws), with its node count, the
reference being the cost of one ``dot`` call on an empty graph.  Machines are built once,
outside the timing.
"""
from __future__ import annotations

import time

import numpy as np

__all__ = ["bench_render", "render_times", "BENCH_EXAMPLES"]

#: examples measured (the issue asks for the 1 GiB folio fully mapped at 4 KiB in two
#: processes among them)
BENCH_EXAMPLES = ("toy_hgm_runs", "toy_compare", "x86_pmd_share", "x86_2m_full", "x86_1g_4k",
                  "x86_1g_4k_two_procs", "x86_collapse_diff")


def _dot_floor(repeats: int) -> float:
    from .dot import dot_to_svg
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        dot_to_svg("digraph { }")
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def render_times(name: str, repeats: int = 20) -> dict:
    """Seconds per phase for ``repeats`` redraws of example ``name`` (after one warm-up)."""
    from .examples import example_args, render_example
    args = example_args(name)
    d = render_example(name, args=args)
    d.svg()                                   # warm-up: imports, numpy paths, dot's cache
    scene_t, dot_t, svg_t, total = [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        d = render_example(name, args=args)
        _ = d.scene
        t1 = time.perf_counter()
        _ = d.dot
        t2 = time.perf_counter()
        d.svg()
        t3 = time.perf_counter()
        scene_t.append(t1 - t0)
        dot_t.append(t2 - t1)
        svg_t.append(t3 - t2)
        total.append(t3 - t0)
    text_t = []
    for _ in range(max(3, repeats // 4)):
        t = time.perf_counter()
        d.text()
        text_t.append(time.perf_counter() - t)
    return {"nodes": d.node_count, "edges": len(d.scene.edges), "scene": scene_t, "dot": dot_t,
            "svg": svg_t, "total": total, "text": text_t}


def bench_render(quick: bool):
    repeats = 10 if quick else 40
    floor = _dot_floor(5 if quick else 15)
    rows = []
    for name in BENCH_EXAMPLES:
        r = render_times(name, repeats)
        p95 = float(np.percentile(r["total"], 95)) * 1e3
        med = lambda xs: float(np.median(xs)) * 1e3  # noqa: E731
        rows.append(("render %s (%d nodes, %d edges): state → SVG p95 (median scene %.1f + DOT "
                     "%.1f + dot %.1f ms; text %.1f ms)"
                     % (name, r["nodes"], r["edges"], med(r["scene"]), med(r["dot"]),
                        med(r["svg"]), med(r["text"])),
                     p95, "ms", "<= 60", "dot on an empty graph %.1f ms" % (floor * 1e3),
                     p95 / (floor * 1e3)))
    return rows


if __name__ == "__main__":
    import sys
    for row in bench_render("--quick" in sys.argv):
        print("%s | %.3g %s | target %s | %s | ratio %.3g" % row)
