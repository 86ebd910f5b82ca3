"""Benchmarks (``hgmviz bench`` / ``python -m hgmviz.bench``): a Markdown table with the
columns benchmark | measured | unit | target | reference | ratio.

Speed is measured here, never asserted in tests.  Each benchmark is a function returning
rows; later issues add functions to ``BENCHMARKS``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from .core.memory import NotEnoughMemory, current_rss, pool_bytes, require_memory
from .errors import PartialProgress

GIB = 1 << 30
PAGE = 4096


def _hgm_machine():
    from . import mm as hv
    m = hv.Machine(nr_hugepages={GIB: 1}, scheme="per_piece", kernel="6.2")
    f = m.memfd_create(size=GIB, hstate=GIB)
    p = m.spawn()
    alias = p.mmap(f, GIB)
    p.touch(alias)                       # the page is in the page cache (postcopy's alias)
    return hv, m, f, p


def map_1g_at_4k(repeats: int = 5, share: bool = True) -> float:
    """Best ns per piece of mapping all 262,144 pieces of a 1 GiB folio at 4 KiB.

    The same folio is mapped into a fresh VMA ``repeats + 1`` times: with ``share`` (the
    default) the PTE pages of the later maps read the canonical rows of their content (issue
    16; ``hgmviz.core.pool``), which is what a second mapping of a page costs in the
    simulator.  ``share=False`` measures the path that writes every entry (a content's first
    sighting)."""
    hv, m, f, p = _hgm_machine()
    m.pt.share = share
    best = float("inf")
    for _ in range(repeats + 1):
        a = p.mmap(f, GIB)
        p.madvise(a, GIB, hv.MADV_SPLIT)
        p.uffdio_register(a, GIB, mode="minor")
        t = time.perf_counter()
        p.uffdio_continue_batch(a, GIB, PAGE)
        dt = time.perf_counter() - t
        p.munmap(a, GIB)
        best = min(best, dt)
    return best / (GIB // PAGE) * 1e9


def numpy_fill_ns(n: int = GIB // PAGE, repeats: int = 20) -> float:
    """A plain numpy fill of n int32 entries with leaf values (the floor)."""
    out = np.zeros(n, dtype=np.int32)
    base = np.arange(n, dtype=np.int32)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.left_shift(base, 1, out=out)
        out |= 1
        best = min(best, time.perf_counter() - t)
    return best / n * 1e9


def _subprocess(code: str, env_extra: dict) -> str:
    env = dict(os.environ)
    env.update(env_extra)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=1800)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return r.stdout.strip().splitlines()[-1]


def bench_map(quick: bool):
    ns = map_1g_at_4k(2 if quick else 5)
    fill = numpy_fill_ns()
    rows = [("map 1 GiB folio at 4 KiB (batched UFFDIO_CONTINUE, per_piece)", ns, "ns/piece",
             "<= 3", "numpy fill %.2f ns/entry" % fill, ns / fill)]
    filled = map_1g_at_4k(2 if quick else 5, share=False)
    rows.append(("same, every PTE page written (no canonical rows: a content's first sighting)",
                 filled, "ns/piece", "<= 3", "numpy fill %.2f ns/entry" % fill, filled / fill))
    if not quick:
        nojit = float(_subprocess("from hgmviz.bench import map_1g_at_4k; print(map_1g_at_4k(0))",
                                  {"NUMBA_DISABLE_JIT": "1"}))
        rows.append(("same, NUMBA_DISABLE_JIT=1", nojit, "ns/piece", "-",
                     "jitted %.2f ns/piece" % ns, nojit / ns))
    return rows


def bench_cold_start(quick: bool):
    code = ("import time; t=time.perf_counter(); import hgmviz as hv; "
            "m=hv.Machine(nr_hugepages={2<<20: 2}); f=m.memfd_create(size=2<<20); p=m.spawn(); "
            "a=p.mmap(f, 2<<20); p.touch(a); print(time.perf_counter()-t)")
    _subprocess(code, {})            # warm the cache
    best = min(float(_subprocess(code, {})) for _ in range(1 if quick else 3))
    base = min(float(_subprocess("import time; t=time.perf_counter(); import numpy, numba; "
                                 "print(time.perf_counter()-t)", {})) for _ in range(2))
    return [("cold start: import hgmviz + first fault (warm numba cache)", best, "s", "<= 1",
             "import numpy+numba %.2f s" % base, best / base)]


def scale_run_tables(guard: str = "int_max_half", kernel: str = "6.2") -> int:
    """Page-table pages the scale run writes: per 1 GiB VMA mapped at 4 KiB one PMD page and
    512 PTE pages (+1 for the PUD page a process may need), for every VMA the guard lets
    through (``overflow_math``) plus the one it stops."""
    from .overflow import overflow_math
    p = overflow_math(hstate=GIB, piece=PAGE, kernel=kernel, guard=guard)
    vmas = int(p["full_mappings"] if guard is not None else p["wraps_during_mapping"]) + 2
    return vmas * 514


def scale_run_bytes(guard: str = "int_max_half", kernel: str = "6.2", procs: int = 64) -> int:
    """Memory the scale run needs: its page-table pages, whose 512 PTE tables per VMA read
    the same 512 canonical rows in every VMA (issue 16) while each VMA's PMD page has a row of
    its own (and the first VMA's PTE pages too); plus 64 MiB for the journal, the events and
    the VMAs."""
    tables = scale_run_tables(guard, kernel)
    rows = tables // 514 + 2 * 512 + 2 * procs
    return pool_bytes(tables, rows, 512) + (64 << 20)


def scale_run(guard: str = "int_max_half", kernel: str = "6.2", procs: int = 64,
              rounds: int = 2) -> dict:
    """Map one 1 GiB folio fully at 4 KiB, VMA after VMA, until the guard refuses or the
    refcount wraps (per_piece, x86-64), spreading the VMAs over ``procs`` processes as
    David's "~64 processes with 64k VMAs" (T10).

    Round 1 runs on a fresh page-table pool, so its time includes the operating system
    faulting in ~4 GiB of new memory; every process then exits and round 2 repeats the run on
    the pool's recycled pages (the simulator's own cost).  Returns both times, the counts and
    the peak RSS."""
    import resource
    import warnings

    from . import mm as hv
    tables = scale_run_tables(guard, kernel)
    require_memory(scale_run_bytes(guard, kernel, procs), "the scale run to the %s guard (%s "
                   "page-table pages, identical leaf tables sharing their entries)"
                   % (guard, format(tables, ",")))
    m = hv.Machine(nr_hugepages={GIB: 1}, scheme="per_piece", guard=guard, kernel=kernel)
    f = m.memfd_create(size=GIB, hstate=GIB)
    f.fallocate(0, GIB)
    folio = f.folio_at(0)
    m.pt.reserve_tables(tables)
    times = []
    for _ in range(rounds):
        ps = [m.spawn() for _ in range(procs)]
        full = extra = 0
        outcome = None
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            while outcome is None:
                p = ps[full % procs]
                a = p.mmap(f, GIB)
                p.madvise(a, GIB, hv.MADV_SPLIT)
                p.uffdio_register(a, GIB, mode="minor")
                try:
                    p.uffdio_continue_batch(a, GIB, PAGE)
                    full += 1
                    if guard is None and folio.wrapped:
                        outcome = "wrapped"
                except PartialProgress as e:
                    extra = e.mapped // PAGE
                    outcome = "refused"
                except OSError:
                    outcome = "refused"
        times.append(time.perf_counter() - t)
        result = {"full_mappings": full, "extra_pieces": extra, "refcount": folio.refcount,
                  "outcome": outcome, "leaves": full * (GIB // PAGE) + extra}
        for p in ps:
            p.exit()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result | {"seconds_cold": times[0], "seconds": times[-1], "peak_rss_bytes": rss}


def bench_scale(quick: bool):
    rows = []
    try:
        require_memory((1 << 30) * 4 + current_rss(), "the numpy fill of 2^30 int32 (the scale "
                       "benchmark's reference)")
    except NotEnoughMemory as e:
        return [("scale: not run: %s" % e, float("nan"), "s", "-", "-", float("nan"))]
    fill = _subprocess("import numpy as np, time, resource; a = np.zeros(1 << 30, np.int32); "
                       "t = time.perf_counter(); a[:] = 3; cold = time.perf_counter() - t; "
                       "t = time.perf_counter(); a[:] = 5; warm = time.perf_counter() - t; "
                       "print(cold, warm, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)",
                       {})
    fill_cold, fill_warm, fill_rss = (float(x) for x in fill.split())
    from .overflow import overflow_math
    for guard in ("int_max_half", "sign"):
        r = json.loads(_subprocess(
            "import json; from hgmviz.bench import scale_run; from hgmviz.core.memory import "
            "NotEnoughMemory\ntry:\n    r = scale_run(%r)\nexcept NotEnoughMemory as e:\n"
            "    r = {'not_run': str(e)}\nprint(json.dumps(r))" % guard, {}))
        if "not_run" in r:
            rows.append(("scale to the %s guard: not run: %s" % (guard, r["not_run"]),
                         float("nan"), "s", "-", "-", float("nan")))
            if quick:
                break
            continue
        want = overflow_math(hstate=GIB, piece=PAGE, kernel="6.2", guard=guard)
        agrees = (r["full_mappings"], r["extra_pieces"]) == (want["full_mappings"],
                                                             want["extra_pieces"])
        target = ("<= 10x fill", "<= 1") if guard == "int_max_half" else ("-", "<= 2")
        label = ("scale: per_piece, 1 GiB at 4 KiB VMA after VMA to the %s guard: %d full + %d "
                 "pieces = %d leaf installs, refcount %d (overflow_math %s)"
                 % (guard, r["full_mappings"], r["extra_pieces"], r["leaves"], r["refcount"],
                    "agrees" if agrees else "DISAGREES"))
        rows.append((label + "; recycled pool", r["seconds"], "s", target[0],
                     "numpy fill of 2^30 int32 %.2f s" % fill_warm, r["seconds"] / fill_warm))
        rows.append(("  same, first run on fresh memory", r["seconds_cold"], "s", "-",
                     "numpy first-touch fill of 2^30 int32 %.2f s" % fill_cold,
                     r["seconds_cold"] / fill_cold))
        rows.append(("  peak RSS of that process", r["peak_rss_bytes"] / GIB, "GiB", target[1],
                     "numpy 2^30 int32 %.2f GiB" % (fill_rss / GIB), r["peak_rss_bytes"] / fill_rss))
        if quick:
            break
    return rows


def collapse_time(scheme: str, repeats: int = 3) -> float:
    """Seconds for MADV_COLLAPSE of a 1 GiB folio fully mapped at 4 KiB (best of repeats)."""
    from . import mm as hv
    m = hv.Machine(nr_hugepages={GIB: 1}, scheme=scheme)
    f = m.memfd_create(size=GIB, hstate=GIB)
    f.fallocate(0, GIB)
    p = m.spawn()
    best = float("inf")
    for _ in range(repeats + 1):
        a = p.mmap(f, GIB)
        p.madvise(a, GIB, hv.MADV_SPLIT)
        p.uffdio_register(a, GIB, mode="minor")
        p.uffdio_continue_batch(a, GIB, PAGE)
        t = time.perf_counter()
        p.madvise(a, GIB, hv.MADV_COLLAPSE)
        best = min(best, time.perf_counter() - t)
        p.munmap(a, GIB)
    return best


def bench_collapse(quick: bool):
    times = {s: collapse_time(s, 1 if quick else 3)
             for s in ("per_piece", "thp_like", "hstate_present", "subtree_counted")}
    base = times["per_piece"]
    return [("MADV_COLLAPSE 4K-mapped 1 GiB -> 1 GiB, %s" % s, t * 1e3, "ms", "-",
             "per_piece %.1f ms" % (base * 1e3), t / base) for s, t in times.items()]


def bench_render(quick: bool):
    from .render.bench import bench_render as run
    return run(quick)


def bench_widgets(quick: bool):
    from .widgets.bench import bench_widgets as run
    return run(quick)


BENCHMARKS = [bench_map, bench_cold_start, bench_render, bench_widgets, bench_collapse, bench_scale]


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            mem = "%.0f GiB" % (int(fh.readline().split()[1]) / (1 << 20))
    except (OSError, ValueError, IndexError):
        pass
    import numba
    return "%s, %d cores, %s, Python %s, numpy %s, numba %s, Linux %s" % (
        cpu, os.cpu_count() or 0, mem, platform.python_version(), np.__version__,
        numba.__version__, platform.release())


def run(quick: bool = False, only=None):
    rows = []
    for b in BENCHMARKS:
        if only and b.__name__ not in only:
            continue
        rows += b(quick)
    return rows


def table(rows) -> str:
    out = ["| benchmark | measured | unit | target | reference | ratio |",
           "|---|---|---|---|---|---|"]
    for name, val, unit, target, ref, ratio in rows:
        out.append("| %s | %.3g | %s | %s | %s | %.3g |" % (name, val, unit, target, ref, ratio))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="hgmviz bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, skip the no-JIT run")
    ap.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    ap.add_argument("--only", action="append", help="run only this benchmark function")
    args = ap.parse_args(argv)
    rows = run(args.quick, args.only)
    if args.json:
        print(json.dumps({"machine": machine_line(), "rows": [
            dict(zip(("benchmark", "measured", "unit", "target", "reference", "ratio"), r))
            for r in rows]}, indent=1))
    else:
        print("Machine: " + machine_line())
        print()
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
