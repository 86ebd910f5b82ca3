"""``hgmviz kernel-check``: run the scenarios on this kernel and in the simulator, compare.

Usage::

    hgmviz kernel-check [--scenario NAME ...] [--json] [--list] [--against simulator|rules]
                        [--touch vm|mem|cpu] [--verbose]

Prints one row per step: scenario, step, what the kernel showed, what the simulator showed
(or, with ``--against rules``, what the rules in domain.md section 2 predict), and whether
they agree.  A cell reads ``outcome | probe=mapcount ... | free±n rsvd±n``: ``-`` is "not
mapped in that process", a single number is the mapcount of head, probed page and last page
alike (``h1/p2/l1`` when they differ), and the pool numbers are changes since the scenario
started.

Exit status: 0 when every step of every scenario agrees; 1 when something disagrees; 2 when
nothing disagrees but some scenario could not run (the reason is printed: not root, no 1 GiB
pages, ...); 130 after Ctrl-C (the check ends its processes and gives back its hugetlb pages
first, and prints one line, no traceback).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

from .runner import LiveWorld, Row, SimWorld, compare_runs, fmt_step, rules_rows, run_scenario
from .scenarios import SCENARIOS, get_scenario

__all__ = ["main", "run_check", "format_report", "format_summary", "format_prediction"]

LEGEND = ("How to read a cell: the outcome (ok, or the error the step got), then one NAME=VALUE per "
          "probe — a named page of a mapping, as one process sees it: VALUE is what "
          "/proc/kpagecount says for the page its /proc/self/pagemap entry points to, '-' where "
          "nothing is mapped (hN/pN/lN: head, probed page and last page differ) — then "
          "free±N rsvd±N: HugePages_Free and HugePages_Rsvd of the scenario's hstate, relative "
          "to before the scenario.")


def run_check(names=None, against: str = "simulator", touch: str = "vm") -> dict:
    """Run the check and return the JSON-able report (also what ``--json`` prints)."""
    scenarios = [get_scenario(n) for n in names] if names else list(SCENARIOS)
    live = LiveWorld(touch_method=touch)
    sim = SimWorld() if against == "simulator" else None
    report = {"kernel": platform.release(), "machine": platform.machine(),
              "against": against, "touch": touch, "scenarios": []}
    t0 = time.monotonic()
    for sc in scenarios:
        krun = run_scenario(live, sc)
        srun = run_scenario(sim, sc) if krun.status == "skipped" and sim is not None else None
        if srun is not None and srun.status == "ran":
            # nothing to compare, but the simulator's predictions are still worth showing (a
            # student without root, on Binder say); the reason is said once, below the table
            rows = [Row(sc.name, res.index, res.description, "(not run)", fmt_step(res), False,
                        [("status", "skipped: %s" % krun.reason, "ran")]) for res in srun.steps]
        elif krun.status == "skipped":
            rows = [Row(sc.name, 0, "(scenario)", "skipped (see below)", "(not run)",
                        False, [("status", "skipped: %s" % krun.reason, "not run")])]
        elif sim is not None:
            srun = run_scenario(sim, sc)
            rows = compare_runs(sc, krun, srun)
        else:
            srun = None
            rows = rules_rows(sc, krun)
        report["scenarios"].append({
            "name": sc.name, "title": sc.title, "rule": sc.rule,
            "kernel": krun.as_dict(), "simulator": srun.as_dict() if srun else None,
            "rows": [r.as_dict() for r in rows],
            "agree": all(r.agree for r in rows),
            "could_not_run": krun.status != "ran" or (srun is not None and srun.status != "ran"),
        })
    report["seconds"] = round(time.monotonic() - t0, 3)
    disagree = [s["name"] for s in report["scenarios"]
                if not s["agree"] and not s["could_not_run"]]
    not_run = [s["name"] for s in report["scenarios"] if s["could_not_run"]]
    report["summary"] = {"scenarios": len(scenarios), "disagree": disagree, "not_run": not_run,
                         "agree": len(scenarios) - len(disagree) - len(not_run)}
    report["exit_code"] = 1 if disagree else 2 if not_run else 0
    return report


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    out = [fmt % tuple(header), fmt % tuple("-" * w for w in widths)]
    out.extend(fmt % tuple(r) for r in rows)
    return "\n".join(line.rstrip() for line in out)


TOUCH_METHODS = {"vm": "process_vm_writev", "mem": "/proc/pid/mem", "cpu": "the CPU"}


def format_report(report: dict, verbose: bool = False, scenarios=None) -> str:
    """The report as text: a row per step of every scenario (or of those named in
    ``scenarios``), then the disagreements, warnings, what could not run, and the summary."""
    other = "simulator" if report["against"] == "simulator" else "rules"
    lines = ["hgmviz kernel-check: Linux %s %s, %d scenarios, kernel vs %s (pages touched by %s)"
             % (report["kernel"], report["machine"], len(report["scenarios"]), other,
                TOUCH_METHODS.get(report["touch"], report["touch"])), ""]
    if scenarios is not None:
        known = [sc["name"] for sc in report["scenarios"]]
        unknown = [n for n in scenarios if n not in known]
        if unknown:
            raise ValueError("not in this report: %s; it has: %s"
                             % (", ".join(unknown), ", ".join(known)))
        report = dict(report, scenarios=[sc for sc in report["scenarios"]
                                         if sc["name"] in scenarios])
    rows = []
    for sc in report["scenarios"]:
        for r in sc["rows"]:
            step = "%d. %s" % (r["step"], r["description"]) if r["step"] else r["description"]
            rows.append([sc["name"], step, r["kernel"], r["simulator"],
                         "yes" if r["agree"] else "skip" if sc["could_not_run"] else "NO"])
    lines.append(_table(rows, ["scenario", "step", "kernel", other, "agree"]))
    lines.append("")
    notes = []
    for sc in report["scenarios"]:
        if sc["could_not_run"]:
            continue
        for r in sc["rows"]:
            if r["agree"] and not verbose:
                continue
            for d in r["diffs"]:
                notes.append("%s, step %d (%s): %s: kernel %s, %s %s"
                             % (sc["name"], r["step"], r["description"], d["observable"],
                                d["kernel"], other, d["simulator"]))
    if notes:
        lines.append("Disagreements and problems:")
        lines.extend("  " + n for n in notes)
        lines.append("")
    warns = ["%s (%s): %s" % (sc["name"], side, w) for sc in report["scenarios"]
             for side in ("kernel", "simulator") if sc.get(side)
             for w in sc[side].get("warnings", [])]
    if warns:
        lines.append("Warnings:")
        lines.extend("  " + w for w in warns)
        lines.append("")
    s = report["summary"]
    reasons = {}
    for sc in report["scenarios"]:
        if sc["could_not_run"]:
            why = sc["kernel"]["reason"] or (sc["simulator"] or {}).get("reason", "")
            reasons.setdefault(why, []).append(sc["name"])
    if reasons:
        lines.append("Could not run:")
        for why, names in reasons.items():
            lines.append("  %s: %s" % (", ".join(names), why))
        lines.append("")
    lines.append("%d of %d scenarios agree%s%s (%.1f s)" % (
        s["agree"], s["scenarios"],
        "; disagree: " + ", ".join(s["disagree"]) if s["disagree"] else "",
        "; could not run: " + ("every scenario" if len(s["not_run"]) == s["scenarios"] > 1
                               else ", ".join(s["not_run"])) if s["not_run"] else "",
        report["seconds"]))
    return "\n".join(lines)


def format_summary(report: dict) -> str:
    """One line per scenario: its name, its steps, whether kernel and simulator agree (or why
    it could not run), and its title; then the totals."""
    rows, reasons = [], {}
    for sc in report["scenarios"]:
        if sc["could_not_run"]:
            why = sc["kernel"]["reason"] or (sc["simulator"] or {}).get("reason", "")
            reasons.setdefault(why, []).append(sc["name"])
            verdict = "not run (%d)" % (list(reasons).index(why) + 1)
        else:
            verdict = "agree" if sc["agree"] else "DISAGREE"
        steps = len(get_scenario(sc["name"]).steps)
        rows.append([sc["name"], str(steps), verdict, sc["title"]])
    s = report["summary"]
    notes = ["(%d) %s — %s" % (i + 1, "every scenario" if len(names) == len(rows)
                                else ", ".join(names), why)
             for i, (why, names) in enumerate(reasons.items())]
    return "%s\n\n%s%d of %d scenarios agree; disagree: %d; could not run: %d (%.1f s)" % (
        _table(rows, ["scenario", "steps", "kernel vs simulator", "what it checks"]),
        "".join(n + "\n" for n in notes), s["agree"], s["scenarios"], len(s["disagree"]),
        len(s["not_run"]), report["seconds"])


def format_prediction(name: str, kernel: str = "running") -> str:
    """What the simulator predicts for scenario ``name``, step by step, with the kernel rule
    behind each step — without root and without touching the running kernel (the simulator
    side of the check alone: :class:`~hgmviz.kernelcheck.runner.SimWorld`)."""
    sc = get_scenario(name)
    run = run_scenario(SimWorld(kernel=kernel), sc)
    if run.status != "ran":
        return "%s: the simulator could not run it: %s" % (name, run.reason)
    rows = [["%d. %s" % (res.index, res.description), fmt_step(res), step.why]
            for step, res in zip(sc.steps, run.steps)]
    return "%s — %s\n%s\n\n%s" % (sc.name, sc.title, sc.rule,
                                    _table(rows, ["step", "simulator predicts", "why"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="hgmviz kernel-check",
        description="Run hugetlb scenarios on the running kernel (root) and in the simulator, "
                    "and compare mapcounts, outcomes and the hugetlb pool step by step.")
    ap.add_argument("--scenario", action="append", metavar="NAME",
                    help="run only this scenario (repeatable); see --list")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--json", action="store_true", help="print the full report as JSON")
    ap.add_argument("--against", choices=("simulator", "rules"), default="simulator",
                    help="compare the kernel with the simulator (default) or with the rules "
                         "the scenarios state")
    ap.add_argument("--touch", choices=("vm", "mem", "cpu"), default="vm",
                    help="how memory is touched: process_vm_writev from a prober (default), "
                         "/proc/pid/mem, or a CPU store in the process (unsafe for SIGBUS and "
                         "userfault steps)")
    ap.add_argument("--verbose", "-v", action="store_true",
                    help="also list per-observable details of agreeing rows")
    args = ap.parse_args(argv)
    if args.list:
        for sc in SCENARIOS:
            need = []
            if any(s == 1 << 30 for s in sc.nr_hugepages):
                need.append("1 GiB pages")
            if sc.userfaultfd:
                need.append("userfaultfd")
            if sc.exclusive:
                need.append("exclusive pool")
            print("%-28s %s%s" % (sc.name, sc.title, " [%s]" % ", ".join(need) if need else ""))
        return 0
    try:
        names = args.scenario
        if names:
            for n in names:
                get_scenario(n)
    except KeyError as e:
        print(str(e.args[0]), file=sys.stderr)
        return 2
    try:
        report = run_check(names, against=args.against, touch=args.touch)
    except KeyboardInterrupt:
        # LiveMachine.close() has run on the way out (it blocks Ctrl-C while it restores)
        print("hgmviz kernel-check: interrupted; its processes have ended and the hugetlb "
              "pool settings it changed are given back", file=sys.stderr)
        return 130
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_report(report, verbose=args.verbose))

    return report["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
