"""Layer 4: applying operation records to a world, and what a step did.

A :class:`World` is a machine plus the labels a trace uses for its processes, files and
mapping addresses.  The machine is the simulator's :class:`~hgmviz.mm.Machine` or the live
kernel's :class:`~hgmviz.kernelcheck.live.LiveMachine` (the same scripting API), so the one
:func:`run_step` serves the explorer, the scenario files, the homework and the live
cross-check.

:func:`run_step` applies one record (:meth:`~hgmviz.ops.records.Operation.apply`) and returns
an :class:`Outcome`: ``ok``, an errno name, ``SIGBUS``, ``SIGSEGV``, ``userfault`` or
``EAGAIN`` (partial progress, with ``mapped``) or ``hung`` (a task asleep for ever on a folio
lock an error path never released, :class:`~hgmviz.errors.TaskHung`).  :func:`outcome_of` turns each of the typed
errors of :mod:`hgmviz.errors` into an outcome through one table (:data:`ERROR_STATUS`).
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Optional

from ..errors import (PartialProgress, SigBus, SigSegv, StateKept, TaskHung, UserfaultPending,
                      errno_name)
from .records import OPERATIONS, spec_of

__all__ = ["Outcome", "World", "run_step", "outcome_of", "ERROR_STATUS", "op_to_dict",
           "op_from_dict"]


@dataclass(frozen=True)
class Outcome:
    """What one step did: ``status`` is "ok", an errno name, "SIGBUS", "SIGSEGV",
    "userfault", "hung" or "EAGAIN" (partial progress: ``mapped`` bytes then ``cause``); ``refused``
    when a refcount guard refused a reference, ``wrapped`` the folios whose refcount wrapped,
    ``kept`` when the step failed but the kernel kept its work so far (EAGAIN's pieces, the
    mapped parts of a madvise over holes, an injected error's page tables).  ``cause``: the
    errno name that stopped a partial step, or a userfault's reason (missing, minor, wp)."""

    status: str
    value: Optional[int] = None
    message: str = ""
    mapped: Optional[int] = None
    cause: Optional[str] = None
    warnings: tuple = ()
    refused: bool = False          # a refcount guard refused a reference (Machine.last_refusal)
    wrapped: tuple = ()            # folios whose refcount wrapped past INT_MAX in this step
    kept: bool = False             # failed, but the kernel kept what it did before the failure

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class World:
    """A machine and the labels a trace uses for its processes, files and addresses."""

    machine: object
    procs: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    addrs: dict = field(default_factory=dict)

    def addr(self, a) -> int:
        if isinstance(a, str):
            return self._label(a)
        if isinstance(a, (tuple, list)):
            return self._label(a[0]) + int(a[1])
        return int(a)

    def _label(self, name):
        try:
            return self.addrs[name]
        except KeyError:
            raise KeyError("no mapping labelled %r; labels: %s" % (name, sorted(self.addrs))) from None

    def proc(self, name):
        try:
            return self.procs[name]
        except KeyError:
            raise KeyError("no process labelled %r; labels: %s" % (name, sorted(self.procs))) from None

    def file(self, name):
        try:
            return self.files[name]
        except KeyError:
            raise KeyError("no file labelled %r; labels: %s" % (name, sorted(self.files))) from None

    def bind(self, kind: str, label: str, obj):
        """Name a new process, file or mapping (``kind``: proc, file, addr)."""
        table = {"proc": self.procs, "file": self.files, "addr": self.addrs}[kind]
        table[label] = int(obj) if kind == "addr" else obj


def _errno_status(e) -> str:
    return errno_name(e.errno)


#: The typed errors a machine raises for what the kernel reports, and the outcome of each
#: (looked up along the exception's class hierarchy, most derived first).
ERROR_STATUS = {
    PartialProgress: lambda e: Outcome(
        "EAGAIN", None, str(e), e.mapped,
        (errno_name(e.cause.errno) if getattr(e.cause, "errno", 0) else type(e.cause).__name__),
        kept=True),
    StateKept: lambda e: Outcome(_errno_status(e), None, str(e), kept=True),
    SigBus: lambda e: Outcome("SIGBUS", None, str(e), kept=e.kept),
    TaskHung: lambda e: Outcome("hung", None, str(e)),
    SigSegv: lambda e: Outcome("SIGSEGV", None, str(e)),
    UserfaultPending: lambda e: Outcome("userfault", None, str(e), cause=e.reason),
    OSError: lambda e: Outcome(_errno_status(e), None, str(e)),
}


def outcome_of(exc: BaseException) -> Optional[Outcome]:
    """The outcome of a typed error (None: not one the kernel would report)."""
    for cls in type(exc).__mro__:
        make = ERROR_STATUS.get(cls)
        if make is not None:
            return make(exc)
    return None


def run_step(world: World, op) -> Outcome:
    """Apply ``op``; never raises for what the kernel would report (errno, signals)."""
    spec_of(op)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = op.apply(world)
            out = Outcome("ok", value if isinstance(value, int) else None)
        except Exception as e:
            out = outcome_of(e)
            if out is None:
                raise
    m = world.machine
    return dataclasses.replace(out, warnings=tuple(str(w.message) for w in caught),
                               refused=getattr(m, "last_refusal", None) is not None,
                               wrapped=tuple(getattr(m, "last_wrapped", ())))


def op_to_dict(op) -> dict:
    return {"op": type(op).__name__} | {k: (list(v) if isinstance(v, tuple) else v)
                                         for k, v in dataclasses.asdict(op).items()}


def op_from_dict(d: dict):
    """Build an operation from plain data, with errors naming the bad field."""
    if not isinstance(d, dict) or "op" not in d:
        raise ValueError("a step must be a table with an 'op' key; got %r" % (d,))
    name = d["op"]
    cls = OPERATIONS.get(name)
    if cls is None:
        raise ValueError("unknown op %r; allowed: %s" % (name, ", ".join(OPERATIONS)))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    args = {}
    for k, v in d.items():
        if k == "op":
            continue
        if k not in fields:
            raise ValueError("%s has no field %r; fields: %s" % (name, k, ", ".join(fields)))
        args[k] = tuple(v) if isinstance(v, list) else v
    missing = [f.name for f in fields.values() if f.name not in args
               and f.default is dataclasses.MISSING]
    if missing:
        raise ValueError("%s is missing %s" % (name, ", ".join(missing)))
    return cls(**args)
