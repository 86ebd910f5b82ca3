"""Layer 4: operations as typed, plain data, and a runner that applies them to machines.

One operation is a frozen dataclass naming what a user does (``Touch``, ``UffdioContinue``,
...).  Processes, files and mapping addresses are referred to by *labels* ("p", "f", "a"), so a
trace is plain data that can be saved, replayed, compared across schemes and shown.  An
address is an int, a label, or ``(label, offset)``.

:func:`run_step` applies one operation to a :class:`World` (a machine plus its labels) and
returns an :class:`Outcome`: ``ok``, an errno name, ``SIGBUS``, ``SIGSEGV``, ``userfault`` or
``EAGAIN`` (partial progress, with ``mapped``).
"""
from __future__ import annotations

import dataclasses
import errno as _errno
import warnings
from dataclasses import dataclass, field
from typing import Optional, Union

from .errors import PartialProgress, SigBus, SigSegv, StateKept, UserfaultPending
from .mm import MADV_COLLAPSE, MADV_DONTNEED, MADV_SPLIT, Machine

Addr = Union[int, str, tuple]

ADVICE_NAMES = {"MADV_DONTNEED": MADV_DONTNEED, "MADV_COLLAPSE": MADV_COLLAPSE,
                "MADV_SPLIT": MADV_SPLIT}


@dataclass(frozen=True)
class Spawn:
    proc: str


@dataclass(frozen=True)
class MemfdCreate:
    file: str
    size: int
    hstate: int


@dataclass(frozen=True)
class Fallocate:
    file: str
    offset: int
    length: int


@dataclass(frozen=True)
class Close:
    file: str


@dataclass(frozen=True)
class Mmap:
    proc: str
    file: str
    length: int
    label: str
    offset: int = 0
    addr: Optional[int] = None
    noreserve: bool = False


@dataclass(frozen=True)
class Munmap:
    proc: str
    addr: Addr
    length: int


@dataclass(frozen=True)
class Madvise:
    proc: str
    addr: Addr
    length: int
    advice: str      # "MADV_DONTNEED" | "MADV_SPLIT" | "MADV_COLLAPSE"


@dataclass(frozen=True)
class Touch:
    proc: str
    addr: Addr


@dataclass(frozen=True)
class Fork:
    proc: str
    child: str


@dataclass(frozen=True)
class Exit:
    proc: str


@dataclass(frozen=True)
class UffdioRegister:
    proc: str
    addr: Addr
    length: int
    mode: str = "minor"
    event_fork: bool = False


@dataclass(frozen=True)
class UffdioContinue:
    proc: str
    addr: Addr
    length: int


@dataclass(frozen=True)
class UffdioContinueBatch:
    proc: str
    addr: Addr
    length: int
    piece: int


@dataclass(frozen=True)
class Inject:
    """Arm an error-injection point for the next operation (``Machine.inject``)."""

    point: str = "pagecache_vanish"


OPERATIONS = {cls.__name__: cls for cls in (
    Spawn, MemfdCreate, Fallocate, Close, Mmap, Munmap, Madvise, Touch, Fork, Exit,
    UffdioRegister, UffdioContinue, UffdioContinueBatch, Inject)}


@dataclass(frozen=True)
class Outcome:
    """What one step did: ``status`` is "ok", an errno name, "SIGBUS", "SIGSEGV",
    "userfault" or "EAGAIN" (partial progress: ``mapped`` bytes then ``cause``); ``refused``
    when a refcount guard refused a reference, ``wrapped`` the folios whose refcount wrapped,
    ``kept`` when the step failed but the kernel kept its work so far (EAGAIN's pieces, the
    mapped parts of a madvise over holes, an injected error's page tables)."""

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

    machine: Machine
    procs: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    addrs: dict = field(default_factory=dict)

    def addr(self, a: Addr) -> int:
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


def _do(world: World, op):
    m = world.machine
    if isinstance(op, Spawn):
        world.procs[op.proc] = m.spawn()
        return None
    if isinstance(op, MemfdCreate):
        world.files[op.file] = m.memfd_create(size=op.size, hstate=op.hstate, name=op.file)
        return None
    if isinstance(op, Fallocate):
        return world.file(op.file).fallocate(op.offset, op.length)
    if isinstance(op, Close):
        return world.file(op.file).close()
    if isinstance(op, Inject):
        m.inject(op.point)
        m.call_path = ["inject"]
        m.last_events = m.pt.events(m.pt.events()["kind"].size)
        m.last_counter_updates = dict.fromkeys(m.last_counter_updates, 0)
        m.last_refusal, m.last_wrapped = None, ()
        return None
    if isinstance(op, Mmap):
        a = world.proc(op.proc).mmap(world.file(op.file), op.length, offset=op.offset,
                                     addr=op.addr, noreserve=op.noreserve)
        world.addrs[op.label] = a
        return a
    p = world.proc(op.proc)
    if isinstance(op, Munmap):
        return p.munmap(world.addr(op.addr), op.length)
    if isinstance(op, Madvise):
        if op.advice not in ADVICE_NAMES:
            raise ValueError("unknown advice %r; allowed: %s" % (op.advice, ", ".join(ADVICE_NAMES)))
        return p.madvise(world.addr(op.addr), op.length, ADVICE_NAMES[op.advice])
    if isinstance(op, Touch):
        return p.touch(world.addr(op.addr))
    if isinstance(op, Fork):
        world.procs[op.child] = p.fork()
        return None
    if isinstance(op, Exit):
        return p.exit()
    if isinstance(op, UffdioRegister):
        return p.uffdio_register(world.addr(op.addr), op.length, mode=op.mode,
                                 event_fork=op.event_fork)
    if isinstance(op, UffdioContinue):
        return p.uffdio_continue(world.addr(op.addr), op.length)
    if isinstance(op, UffdioContinueBatch):
        return p.uffdio_continue_batch(world.addr(op.addr), op.length, op.piece)
    raise TypeError("not an operation: %r; operations: %s" % (op, ", ".join(OPERATIONS)))


def run_step(world: World, op) -> Outcome:
    """Apply ``op``; never raises for what the kernel would report (errno, signals)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = _do(world, op)
            out = Outcome("ok", value if isinstance(value, int) else None)
        except PartialProgress as e:
            out = Outcome("EAGAIN", None, str(e), e.mapped,
                          _errno.errorcode.get(getattr(e.cause, "errno", 0) or 0, type(e.cause).__name__),
                          kept=True)
        except StateKept as e:
            out = Outcome(_errno.errorcode.get(e.errno, str(e.errno)), None, str(e), kept=True)
        except SigBus as e:
            out = Outcome("SIGBUS", None, str(e))
        except SigSegv as e:
            out = Outcome("SIGSEGV", None, str(e))
        except UserfaultPending as e:
            out = Outcome("userfault", None, str(e))
        except OSError as e:
            out = Outcome(_errno.errorcode.get(e.errno, str(e.errno)), None, str(e))
    m = world.machine
    out = dataclasses.replace(out, warnings=tuple(str(w.message) for w in caught),
                              refused=m.last_refusal is not None, wrapped=tuple(m.last_wrapped))
    return out


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
