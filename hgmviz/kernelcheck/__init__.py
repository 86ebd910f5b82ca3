"""Layer 4: check the simulator against the real kernel it runs on (issue 7).

Mainline Linux has no HGM, but everything else the simulator does for hugetlb can be run for
real and compared: faults, several mappings, munmap and MADV_DONTNEED rules, UFFDIO_CONTINUE
and its refusals, fork with and without uffd-wp and EVENT_FORK, child exit, PMD sharing,
page-cache release on close, HugePages_Free / HugePages_Rsvd.

Modules
    :mod:`~hgmviz.kernelcheck.procfs`
        pure parsers for /proc/<pid>/pagemap, /proc/kpagecount, /proc/kpageflags,
        /proc/meminfo, /proc/<pid>/{maps,smaps} and /sys/kernel/mm/hugepages (plus thin readers).
    :mod:`~hgmviz.kernelcheck.live`
        :class:`LiveMachine`: real processes and hugetlb memfds behind the simulator's API
        (root; restores every setting it touches, reaps every process, in all cases).
    :mod:`~hgmviz.kernelcheck.liveprocess`
        :class:`LiveProcess` and :class:`LiveFile` (one real process, one memfd) and the wire
        to a worker; re-exported by ``live``.
    :mod:`~hgmviz.kernelcheck.checkspec`
        what a scenario is made of (:class:`CheckScenario`, :class:`Probe`, :class:`CheckStep`,
        ``At``) and the step builders; re-exported by ``scenarios``.
    :mod:`~hgmviz.kernelcheck.scenarios`
        the scenarios, plain data, each with the expectations the rules of domain.md section
        2 imply.
    :mod:`~hgmviz.kernelcheck.runner`
        runs a scenario in a *world* (:class:`LiveWorld` or :class:`SimWorld`) and compares.
    :mod:`~hgmviz.kernelcheck.cli`
        ``hgmviz kernel-check``: the table, ``--json``, ``--list``, ``--scenario``.
    :mod:`~hgmviz.kernelcheck.record`
        records real /proc bytes as fixtures for the parsers' tests.

Nothing here imports the simulator until a :class:`SimWorld` starts a machine, so the live
side runs (and is tested) on its own.
"""
from .live import CannotRun, LiveMachine, SigBus, SigSegv, UserfaultPending, check_can_run
from .runner import (LiveWorld, SimWorld, agreement_rows, check_against_rules, compare_runs,
                     run_scenario)
from .scenarios import (SCENARIOS, CheckScenario, CheckStep, Scenario, Step, get_scenario,
                        scenario_names)

__all__ = [
    "LiveMachine", "CannotRun", "SigBus", "SigSegv", "UserfaultPending", "check_can_run",
    "LiveWorld", "SimWorld", "run_scenario", "check_against_rules", "agreement_rows",
    "compare_runs", "SCENARIOS", "CheckScenario", "CheckStep", "Scenario", "Step", "get_scenario", "scenario_names", "main",
]


def main(argv=None) -> int:
    """``hgmviz kernel-check``; see :mod:`hgmviz.kernelcheck.cli`."""
    from .cli import main as _main
    return _main(argv)
