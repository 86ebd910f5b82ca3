"""Run ``hgmviz bench`` for two checkouts alternately on this machine and print ratios.

    python scripts/bench_compare.py BEFORE_DIR AFTER_DIR [--rounds N] [--only bench_map ...]

Each round runs the benchmark in a fresh process for BEFORE then AFTER (PYTHONPATH set to the
checkout, a numba cache per checkout, warmed first); a row's value is the best over rounds
(for "s", "ms", "ns/piece" and "GiB" rows lower is better).  Prints a Markdown table of
before | after | after/before per row, and the per-round ratios (each round's after over the
same round's before, which ran next to it): their median and their range, the figure to trust on
a loaded machine.  ``--raw FILE`` writes every round's values as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys


def _cache(tree: str) -> str:
    """A numba cache per checkout, outside it (the checkouts stay untouched)."""
    return os.path.join("/tmp", "bench_compare_cache", os.path.abspath(tree).strip("/").replace("/", "_"))


def run_one(tree: str, only, quick: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, NUMBA_CACHE_DIR=_cache(tree))
    cmd = [sys.executable, "-m", "hgmviz", "bench", "--json"]
    if quick:
        cmd.append("--quick")
    for o in only:
        cmd += ["--only", o]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tree).stdout
    data = json.loads(out[out.index("{"):])
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--raw", help="write every round's values to this JSON file")
    args = ap.parse_args(argv)
    best = {"before": {}, "after": {}}
    every = {"before": {}, "after": {}}
    units = {}
    machine = ""
    # warm both numba caches outside the measurement
    for tree in (args.before, args.after):
        env = dict(os.environ, PYTHONPATH=tree, NUMBA_CACHE_DIR=_cache(tree))
        subprocess.run([sys.executable, "-c", "import hgmviz.warmup as w; w.warm()"],
                       env=env, cwd=tree, capture_output=True)
    for r in range(args.rounds):
        for side, tree in (("before", args.before), ("after", args.after)):
            data = run_one(tree, args.only, args.quick)
            machine = data["machine"]
            for row in data["rows"]:
                # rows whose label carries measured details, e.g. "(median scene 1.0 ...)",
                # are matched by the label without them
                name = re.sub(r" \((median|[0-9]+ nodes)[^)]*\)", "", row["benchmark"])
                units[name] = row["unit"]
                v = float(row["measured"])
                best[side][name] = min(best[side].get(name, v), v)
                every[side].setdefault(name, []).append(v)
            print("round %d %s done" % (r + 1, side), file=sys.stderr, flush=True)
    print("Machine: " + machine)
    print("Rounds: %d, alternating before/after, best of rounds per row" % args.rounds)
    print()
    print("| benchmark | unit | before | after | after/before | per-round ratio: median (min–max) |")
    print("|---|---|---|---|---|---|")
    for name in best["after"]:
        b = best["before"].get(name)
        a = best["after"][name]
        ratio = "%.3f" % (a / b) if b else "-"
        pairs = [y / x for x, y in zip(every["before"].get(name, []), every["after"][name]) if x]
        spread = ("%.3f (%.3f–%.3f)" % (statistics.median(pairs), min(pairs), max(pairs))
                  if pairs else "-")
        print("| %s | %s | %s | %.4g | %s | %s |" % (name, units[name], "%.4g" % b if b else "-",
                                                     a, ratio, spread))
    if args.raw:
        with open(args.raw, "w") as fh:
            json.dump({"machine": machine, "rounds": args.rounds, "units": units, "values": every},
                      fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
