"""Run a scenario against a *world* (the live kernel or the simulator) and compare the results.

A world is anything with the scripting API (``memfd_create``, ``spawn``, ``meminfo`` on the
machine; ``mmap``, ``touch``, ``fork``, ... on processes; ``close`` on files) plus the small
adapter below that knows how to start a machine for a scenario and how to read one observable:
the mapcount /proc/kpagecount would show.

* :class:`LiveWorld`: :class:`~hgmviz.kernelcheck.live.LiveMachine`; ``p.pagemap(addr).pfn``
  then ``/proc/kpagecount`` at the head, the probed page and the last page of the folio.
* :class:`SimWorld`: ``hgmviz.Machine(nr_hugepages=..., kernel="running")``;
  ``e = p.pagemap(addr)`` then ``e.folio.page_mapcount(i)`` for the same three indexes.

The runner applies the steps of a :class:`~hgmviz.kernelcheck.scenarios.CheckScenario` in
order — each an operation record of :mod:`hgmviz.ops`, run by the same
:func:`~hgmviz.ops.run_step` the explorer uses, on a :class:`~hgmviz.ops.World` whose machine is
the live kernel's or the simulator's — writes every :class:`~hgmviz.ops.Outcome` as a string
(:func:`outcome_text`: ``"ok"``, an errno name, ``"SIGBUS"``, ``"userfault:minor"``, ...) and
after every step records each probe and the pool's Free/Rsvd changes.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from ..ops import Outcome, World, run_step
from .pool import CannotRun
from .scenarios import CheckScenario

__all__ = ["StepResult", "ScenarioRun", "LiveWorld", "SimWorld", "run_scenario",
           "outcome_text", "check_against_rules", "agreement_rows", "compare_runs", "rules_rows", "Row", "fmt_obs", "fmt_maps",
           "fmt_step", "expected_states"]

NA = "n/a"


@dataclass
class StepResult:
    index: int
    description: str
    outcome: str
    maps: dict[str, Any]                    # probe -> None | "n/a" | [head, page, last] | "error"
    pool: tuple[int, int] | None            # (free delta, rsvd delta) of the scenario's hstate
    detail: str = ""                        # the exception text, if any

    def as_dict(self) -> dict:
        return {"index": self.index, "step": self.description, "outcome": self.outcome,
                "maps": self.maps, "pool": list(self.pool) if self.pool else None,
                "detail": self.detail}


@dataclass
class ScenarioRun:
    scenario: str
    side: str
    status: str                             # "ran" | "skipped" | "error"
    reason: str = ""
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)   # e.g. another user of the pool meanwhile

    def as_dict(self) -> dict:
        return {"scenario": self.scenario, "side": self.side, "status": self.status,
                "reason": self.reason, "seconds": round(self.seconds, 3),
                "warnings": list(self.warnings),
                "steps": [s.as_dict() for s in self.steps]}


# --- outcomes -------------------------------------------------------------------------------
def outcome_text(out: Outcome) -> str:
    """An :class:`~hgmviz.ops.Outcome` as the cross-check writes it: ``"ok"``, an errno name,
    ``"SIGBUS"``, ``"SIGSEGV"``, ``"userfault:minor"``, ``"EAGAIN mapped=0x200000"``."""
    if out.status == "userfault":
        return "userfault:%s" % (out.cause or "?")
    if out.status == "EAGAIN" and out.mapped is not None:
        return "EAGAIN mapped=%#x" % out.mapped
    return out.status


# --- worlds ---------------------------------------------------------------------------------
class LiveWorld:
    """The running kernel."""

    name = "kernel"

    def __init__(self, touch_method: str = "vm"):
        self.touch_method = touch_method

    def start(self, scenario: CheckScenario):
        from .live import LiveMachine, check_can_run
        check_can_run(scenario.nr_hugepages, userfaultfd=scenario.userfaultfd)
        return LiveMachine(nr_hugepages=dict(scenario.nr_hugepages),
                           exclusive=scenario.exclusive, touch_method=self.touch_method)

    def close(self, machine) -> list[str]:
        machine.close()
        return ["the hugetlb pool changed under the check (another user?): " + w
                for w in machine.interference] + list(getattr(machine, "notes", []))

    def alive(self, proc) -> bool:
        return proc.alive

    def observe(self, proc, addr: int, hsize: int):
        from . import procfs
        e = proc.pagemap(addr)
        if e is None:
            return None
        idx = (addr % hsize) >> procfs.PAGE_SHIFT
        head = e.pfn - idx
        last = (hsize >> procfs.PAGE_SHIFT) - 1
        return [procfs.read_kpagecount(head + i)[0] for i in (0, idx, last)]

    def pool(self, machine, hsize: int) -> tuple[int, int]:
        mi = machine.meminfo()[hsize]
        return mi["HugePages_Free"], mi["HugePages_Rsvd"]


class SimWorld:
    """The simulator, ``hgmviz.Machine(..., kernel="running")``, through its public API only."""

    name = "simulator"

    def __init__(self, kernel: str = "running", **machine_kwargs):
        self.kernel = kernel
        self.machine_kwargs = machine_kwargs

    def start(self, scenario: CheckScenario):
        from ..mm import Machine
        return Machine(nr_hugepages=dict(scenario.nr_hugepages), kernel=self.kernel,
                          **self.machine_kwargs)

    def close(self, machine) -> None:
        close = getattr(machine, "close", None)
        if callable(close):
            close()

    def alive(self, proc) -> bool:
        a = getattr(proc, "alive", True)
        return a() if callable(a) else bool(a)

    def observe(self, proc, addr: int, hsize: int):
        e = proc.pagemap(addr)
        if e is None:
            return None
        folio, idx = e.folio, e.index
        last = (hsize >> 12) - 1
        return [int(folio.page_mapcount(i)) for i in (0, idx, last)]

    def pool(self, machine, hsize: int) -> tuple[int, int]:
        mi = machine.meminfo()[hsize]
        return int(mi["HugePages_Free"]), int(mi["HugePages_Rsvd"])


# --- running --------------------------------------------------------------------------------
def _observe_all(world, machine, env: World, scenario: CheckScenario, base) -> tuple[dict, Any]:
    maps = {}
    hsize = scenario.hstate
    for pr in scenario.probes:
        proc = env.procs.get(pr.proc)
        if proc is None or not world.alive(proc) or pr.at.mapping not in env.addrs:
            maps[pr.name] = NA
            continue
        try:
            maps[pr.name] = world.observe(proc, env.addr(pr.at.addr), hsize)
        except Exception as e:             # an observation must not stop the run
            maps[pr.name] = "error: %s: %s" % (type(e).__name__, e)
    try:
        free, rsvd = world.pool(machine, hsize)
        pool = (free - base[0], rsvd - base[1])
    except Exception:
        pool = None
    return maps, pool


def run_scenario(world, scenario: CheckScenario) -> ScenarioRun:
    """Run every step of ``scenario`` in ``world``; never raises for what the world does."""
    t0 = time.monotonic()
    run = ScenarioRun(scenario.name, world.name, "ran")
    try:
        machine = world.start(scenario)
    except Exception as e:
        if isinstance(e, CannotRun):
            run.status, run.reason = "skipped", str(e)
        else:
            run.status = "error"
            run.reason = "could not start: %s: %s" % (type(e).__name__, e)
        run.seconds = time.monotonic() - t0
        return run
    try:
        env = World(machine)
        base = world.pool(machine, scenario.hstate)
        for i, step in enumerate(scenario.steps, 1):
            try:
                out = run_step(env, step.op)
                outcome, detail = outcome_text(out), out.message
            except Exception as e:               # not what a kernel reports: a bug to show
                outcome = "error: %s" % type(e).__name__
                detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            maps, pool = _observe_all(world, machine, env, scenario, base)
            run.steps.append(StepResult(i, step.describe(), outcome, maps, pool, detail))
    except BaseException as e:
        run.status = "error"
        run.reason = "%s: %s" % (type(e).__name__, e)
        if not isinstance(e, Exception):
            raise
    finally:
        try:
            run.warnings.extend(world.close(machine) or [])
        except Exception as e:
            run.status = "error"
            run.reason = (run.reason + "; " if run.reason else "") + "close failed: %s" % e
        run.seconds = time.monotonic() - t0
    return run


# --- formatting -----------------------------------------------------------------------------
def fmt_obs(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return str(v[0]) if v[0] == v[1] == v[2] else "h%s/p%s/l%s" % tuple(v)
    return str(v)


def fmt_maps(maps: dict) -> str:
    return " ".join("%s=%s" % (k, fmt_obs(v)) for k, v in maps.items() if v != NA)


def fmt_pool(pool) -> str:
    if pool is None:
        return "pool=?"
    return "free%+d rsvd%+d" % pool


def fmt_step(s: StepResult) -> str:
    parts = [s.outcome]
    m = fmt_maps(s.maps)
    if m:
        parts.append(m)
    parts.append(fmt_pool(s.pool))
    return " | ".join(parts)


# --- expectations (the rules) ---------------------------------------------------------------
def expected_states(scenario: CheckScenario) -> list[tuple[str, dict, tuple | None, set]]:
    """Per step: (outcome, carried maps expectation, carried pool expectation, stated probes)."""
    out = []
    maps: dict[str, Any] = {}
    pool = None
    for step in scenario.steps:
        maps.update(step.maps)
        if step.pool is not None:
            pool = tuple(step.pool)
        out.append((step.expect, dict(maps), pool, set(step.maps)))
    return out


def _maps_value_matches(expected, observed) -> bool:
    if expected is None:
        return observed is None
    return isinstance(observed, list) and observed == [expected] * 3


def check_against_rules(scenario: CheckScenario, run: ScenarioRun) -> list[tuple[int, str, Any, Any]]:
    """(step, observable, expected, observed) for every difference from the scenario's rules."""
    bad = []
    if run.status != "ran":
        return [(0, "status", "ran", "%s: %s" % (run.status, run.reason))]
    for (exp_out, exp_maps, exp_pool, stated), res in zip(expected_states(scenario), run.steps):
        if res.outcome != exp_out:
            bad.append((res.index, "outcome", exp_out, "%s (%s)" % (res.outcome, res.detail)
                        if res.detail else res.outcome))
        for name, exp in exp_maps.items():
            obs = res.maps.get(name, NA)
            if obs == NA and name not in stated:
                continue                     # carried over, and the process is gone
            if not _maps_value_matches(exp, obs):
                bad.append((res.index, name, exp, obs))
        if exp_pool is not None and tuple(res.pool or ()) != exp_pool:
            bad.append((res.index, "pool(free,rsvd)", exp_pool, res.pool))
    if len(run.steps) != len(scenario.steps):
        bad.append((len(run.steps), "steps", len(scenario.steps), len(run.steps)))
    return bad


# --- comparison of two runs -----------------------------------------------------------------
@dataclass
class Row:
    scenario: str
    step: int
    description: str
    kernel: str
    other: str
    agree: bool
    diffs: list[tuple[str, Any, Any]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"scenario": self.scenario, "step": self.step, "description": self.description,
                "kernel": self.kernel, "simulator": self.other, "agree": self.agree,
                "diffs": [{"observable": o, "kernel": k, "simulator": s}
                          for o, k, s in self.diffs]}


def _step_diffs(k: StepResult, s: StepResult) -> list[tuple[str, Any, Any]]:
    d = []
    if k.outcome != s.outcome:
        d.append(("outcome", k.outcome, s.outcome))
    for name in k.maps:
        kv, sv = k.maps.get(name, NA), s.maps.get(name, NA)
        if kv != sv:
            d.append((name, fmt_obs(kv), fmt_obs(sv)))
    if tuple(k.pool or ()) != tuple(s.pool or ()):
        d.append(("pool(free,rsvd)", k.pool, s.pool))
    return d


def agreement_rows(scenario: CheckScenario, kernel: ScenarioRun, other: ScenarioRun) -> list[Row]:
    """One row per step: the kernel's observations, the other side's, and whether they agree."""
    rows = []
    if kernel.status != "ran" or other.status != "ran":
        kd = "%s: %s" % (kernel.status, kernel.reason) if kernel.status != "ran" else "ran"
        od = "%s: %s" % (other.status, other.reason) if other.status != "ran" else "ran"
        rows.append(Row(scenario.name, 0, "(scenario)", kd, od, False,
                        [("status", kd, od)]))
        if kernel.status != "ran" or other.status != "ran":
            return rows
    for i, step in enumerate(scenario.steps):
        k = kernel.steps[i] if i < len(kernel.steps) else None
        s = other.steps[i] if i < len(other.steps) else None
        if k is None or s is None:
            rows.append(Row(scenario.name, i + 1, step.describe(),
                            fmt_step(k) if k else "(not run)", fmt_step(s) if s else "(not run)",
                            False, [("step", bool(k), bool(s))]))
            continue
        diffs = _step_diffs(k, s)
        rows.append(Row(scenario.name, i + 1, step.describe(), fmt_step(k), fmt_step(s),
                        not diffs, diffs))
    return rows


compare_runs = agreement_rows      # the old name


def rules_rows(scenario: CheckScenario, run: ScenarioRun) -> list[Row]:
    """The same table shape, with the rules' expectations in place of the simulator."""
    rows = []
    if run.status != "ran":
        return [Row(scenario.name, 0, "(scenario)", "%s: %s" % (run.status, run.reason),
                    "ran", False, [("status", run.status, "ran")])]
    bad = check_against_rules(scenario, run)
    for (exp_out, exp_maps, exp_pool, _st), res in zip(expected_states(scenario), run.steps):
        d = [(o, obs, exp) for (i, o, exp, obs) in bad if i == res.index]
        exp_txt = [exp_out]
        m = " ".join("%s=%s" % (k, "-" if v is None else v) for k, v in exp_maps.items()
                     if res.maps.get(k, NA) != NA)
        if m:
            exp_txt.append(m)
        exp_txt.append(fmt_pool(exp_pool) if exp_pool else "pool=(any)")
        rows.append(Row(scenario.name, res.index, res.description, fmt_step(res),
                        " | ".join(exp_txt), not d, d))
    return rows
