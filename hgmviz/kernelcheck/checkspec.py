"""What a cross-check scenario is made of: plain data, one definition for the kernel and the simulator.

The scenarios themselves are the table in :mod:`hgmviz.kernelcheck.scenarios`.

A :class:`CheckScenario` is a pool to reserve, a list of :class:`Probe` (a process and an
address, given as a mapping label plus an offset) and a list of :class:`CheckStep`.  A step is
an operation record of :mod:`hgmviz.ops` (the same ``Touch``, ``Mmap``, ``Madvise``, ... the
explorer and the scenario files use; labels name its processes, files and mappings) and what
the rules in ``docs/domain.md`` section 2 say must follow:

``expect``
    the outcome: ``"ok"``, an errno name (``"EINVAL"``), ``"EAGAIN mapped=0x200000"``
    (UFFDIO_CONTINUE's partial progress), ``"SIGBUS"``, ``"SIGSEGV"`` or ``"userfault:minor"``
    (``missing`` / ``wp``).
``maps``
    {probe name: expected value} after the step: ``None`` for "not mapped in that process",
    an int *n* for "mapped, and /proc/kpagecount reads *n* for the head page, for the probed
    page and for the last page of the folio".  Expectations carry over: a probe keeps its last
    stated value until a step states a new one (a probe of an exited process reads ``n/a``).
``pool``
    (HugePages_Free, HugePages_Rsvd) of the scenario's hstate after the step, as *changes since
    the scenario started*.  Deltas, not absolute values, so that pages other users hold in the
    pool do not matter; the simulator starts from an empty pool of exactly the reserved size,
    where delta and absolute value differ only by the constant ``nr_hugepages``.  Also carried
    over.

Addresses: ``At("a", 0x5000)`` is 0x5000 bytes into the mapping bound to ``a`` by an ``mmap``
step; forked children inherit the parent's labels (the same virtual addresses).  An ``mmap``
with ``addr=`` asks for that exact address (MAP_FIXED_NOREPLACE on the kernel side).

Every expectation in the table names the rule it comes from (section numbers of domain.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .. import ops as O
from ..mm import MADV_DONTNEED

__all__ = ["At", "Probe", "CheckStep", "CheckScenario", "Step", "Scenario", "KiB", "MiB", "GiB",
           "H2M", "H1G", "PUD_ALIGNED", "MADV_DONTNEED", "memfd", "spawn", "mmap", "touch", "munmap",
           "madvise", "register", "cont", "fork", "exit_", "close", "ftruncate", "fallocate", "copy",
           "wake", "unregister", "mprotect", "mremap", "prologue", "P"]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
H2M, H1G = 2 * MiB, GiB
PUD_ALIGNED = 64 * GiB            # a 1 GiB-aligned address that is free in a fresh process


@dataclass(frozen=True)
class At:
    """An address: ``offset`` bytes into the mapping labelled ``mapping``."""

    mapping: str
    offset: int = 0

    def __str__(self):
        return "%s+%#x" % (self.mapping, self.offset) if self.offset else self.mapping

    @property
    def addr(self) -> tuple:
        """The address as an operation record takes it: ``(label, offset)``."""
        return (self.mapping, self.offset)


@dataclass(frozen=True)
class Probe:
    """Observe the page at ``at`` as process ``proc`` sees it (its pagemap, then kpagecount)."""

    name: str
    proc: str
    at: At


@dataclass(frozen=True)
class CheckStep:
    """One step of a cross-check: an operation record (:mod:`hgmviz.ops`, run as is on the
    live kernel and on the simulator) and what the rules say must follow it."""

    op: O.Operation
    expect: str = "ok"
    maps: Mapping[str, int | None] = field(default_factory=dict)
    pool: tuple[int, int] | None = None
    why: str = ""

    def describe(self) -> str:
        return self.op.describe_call()


@dataclass(frozen=True)
class CheckScenario:
    """A cross-check scenario (distinct from a scenario *file*,
    :class:`hgmviz.scenarios.Scenario`)."""

    name: str
    title: str
    rule: str
    nr_hugepages: Mapping[int, int]
    probes: tuple[Probe, ...]
    steps: tuple[CheckStep, ...]
    hstate: int = H2M                 # the pool whose Free/Rsvd deltas are observed
    exclusive: bool = False           # the reserved pages must be the only ones faults can get
    userfaultfd: bool = False

    def probe(self, name: str) -> Probe:
        for p in self.probes:
            if p.name == name:
                return p
        raise KeyError(name)


Step = CheckStep                  # the old names
Scenario = CheckScenario
_ADVICE = {v: k for k, v in O.ADVICE_NAMES.items()}
_FALLOC = {v: k for k, v in O.FALLOC_MODES.items()}
_PROT = {v: k for k, v in O.PROT_NAMES.items()}
_MREMAP = {v: k for k, v in O.MREMAP_NAMES.items()}


# --- step builders (they only build data) -----------------------------------------------------
def memfd(bind, size, hstate=H2M, **kw):
    return CheckStep(O.MemfdCreate(bind, size, hstate), **kw)


def spawn(bind, **kw):
    return CheckStep(O.Spawn(bind), **kw)


def mmap(proc, bind, file, length, offset=0, addr=None, noreserve=False, shared=True, **kw):
    return CheckStep(O.Mmap(proc, file, length, bind, offset, addr, noreserve, shared), **kw)


def touch(proc, at, write=True, **kw):
    return CheckStep(O.Touch(proc, at.addr, write), **kw)


def munmap(proc, at, length, **kw):
    return CheckStep(O.Munmap(proc, at.addr, length), **kw)


def madvise(proc, at, length, advice=MADV_DONTNEED, **kw):
    return CheckStep(O.Madvise(proc, at.addr, length, _ADVICE.get(advice, advice)), **kw)


def register(proc, at, length, mode, event_fork=False, **kw):
    return CheckStep(O.UffdioRegister(proc, at.addr, length, mode, event_fork), **kw)


def cont(proc, at, length, **kw):
    return CheckStep(O.UffdioContinue(proc, at.addr, length), **kw)


def fork(proc, bind, **kw):
    return CheckStep(O.Fork(proc, bind), **kw)


def exit_(proc, **kw):
    return CheckStep(O.Exit(proc), **kw)


def close(file, **kw):
    return CheckStep(O.Close(file), **kw)


def ftruncate(file, size, **kw):
    return CheckStep(O.Ftruncate(file, size), **kw)


def fallocate(file, offset, length, mode=0, **kw):
    return CheckStep(O.Fallocate(file, offset, length, _FALLOC[mode]), **kw)


def copy(proc, at, length, **kw):
    return CheckStep(O.UffdioCopy(proc, at.addr, length), **kw)


def wake(proc, at, length, **kw):
    return CheckStep(O.UffdioWake(proc, at.addr, length), **kw)


def unregister(proc, at, length, **kw):
    return CheckStep(O.UffdioUnregister(proc, at.addr, length), **kw)


def mprotect(proc, at, length, prot, **kw):
    return CheckStep(O.Mprotect(proc, at.addr, length, _PROT[prot]), **kw)


def mremap(proc, at, length, new_len, flags=0, new_addr=None, **kw):
    return CheckStep(O.Mremap(proc, at.addr, length, new_len, _MREMAP[flags], new_addr), **kw)


def prologue(size, length=None, bind="a", hstate=H2M, **kw):
    """The steps most scenarios start with: memfd ``f`` of ``size`` bytes (``hstate``), spawn
    ``p``, and ``p`` maps ``length`` bytes of ``f`` (all of it by default) as ``bind``; ``kw``
    goes to that :func:`mmap` (``pool=``, ``addr=``, ``why=``, ...)."""
    return (memfd("f", size, hstate=hstate), spawn("p"),
            mmap("p", bind, "f", size if length is None else length, **kw))


def P(name, proc, mapping, offset):
    return Probe(name, proc, At(mapping, offset))
