"""Layer 4: the operation records — each operation a user can do, defined once.

An operation is a frozen dataclass declared with :func:`operation`: its fields (each with a
kind from :mod:`hgmviz.ops.fields`), the kernel's word for it, a sentence saying what it does,
the kernel call path it runs (current mainline's names: :mod:`hgmviz.kernel_names` says which
are newer than v6.2 and what v6.2 called them), the machine method it calls (``call``, in the
scripting API's own words, e.g. ``"proc.madvise(addr, length, advice)"``), how a log line and a pseudo-C line
print it, and the explorer buttons that build it.  Everything else derives from the record:

* the session's and the scenario files' validation (:func:`check_op`, the field kinds),
* scenario-file reading and writing (:mod:`hgmviz.scenarios.scenario_file`),
* the explorer's buttons and forms (:func:`buttons`),
* descriptions in explainers, logs and homework (:meth:`Operation.describe`),
* applying it to a machine — the simulator's :class:`~hgmviz.mm.Machine` or the live
  kernel's :class:`~hgmviz.kernelcheck.live.LiveMachine`, which has the same API
  (:meth:`Operation.apply`).

Adding an operation is one record here (plus its kernel model in :mod:`hgmviz.mm` and tests).
"""
from __future__ import annotations

import dataclasses
import re
import string
from dataclasses import dataclass
from typing import Optional, Union

from ..mm import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MADV_COLLAPSE, MADV_DONTNEED,
                  MADV_REMOVE, MADV_SPLIT, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_NONE, PROT_READ,
                  PROT_WRITE)
from ..units import format_size
from .fields import (ADDR, BOOL, FILE, HSTATE, OFFSET, OPT_ADDR, PROC, SIZE, Choice, Flag,
                     InvalidOperation, Kind, Labels, NewLabel, UffdMode, _Check, arg, kind_of)

__all__ = ["Operation", "OpSpec", "Button", "operation", "OPERATIONS", "ADVICE_NAMES",
           "INJECT_POINTS", "check_op", "buttons", "spec_of", "fields_of", "quiet", "Addr",
           "FALLOC_MODES", "PROT_NAMES", "MREMAP_NAMES", "Spawn", "MemfdCreate", "Fallocate",
           "Ftruncate", "Close", "Mprotect", "Mremap", "Mmap", "Munmap", "Madvise", "Touch",
           "Fork", "Exit", "UffdioRegister", "UffdioCopy", "UffdioWake", "UffdioContinue",
           "UffdioContinueBatch", "Inject", "RangeOp"]

Addr = Union[int, str, tuple]

#: Every operation, by class name (the ``op`` of a scenario step), in definition order.
OPERATIONS: dict = {}


@dataclass(frozen=True)
class Button:
    """An explorer button that builds an operation: ``key`` (``Explorer.do(key)``), the
    button's ``label``, ``preset`` field values, ``order`` among the buttons; the tooltip is
    the record's text and call path unless ``tip`` is given."""

    key: str
    label: str
    preset: tuple = ()              # ((field, value), ...)
    order: int = 1000
    tip: str = ""
    row: int = 2                    # 1: the ranged operations' row, 2: the others'


@dataclass(frozen=True)
class OpSpec:
    """What :func:`operation` records about one operation (``cls.spec``)."""

    name: str
    word: str                       # the kernel's name for it: "madvise", "UFFDIO_CONTINUE"
    text: str                       # one sentence: what it does
    call_path: str                  # the kernel functions it runs, "a → b → c"
    call: str                       # the scripting-API call, "proc.madvise(addr, length, advice)"
    target: str                     # "machine" or the field holding the object called
    method: str
    args: tuple                     # fields passed positionally
    kwargs: tuple                   # (parameter, field) pairs
    binds: Optional[str]            # the field whose new label names the result
    log: str                        # log-line template
    c: str                          # pseudo-C template
    buttons: tuple
    returns: str = ""               # what a successful call returns: "mapped {size}"

    def kinds(self, cls) -> dict:
        return {f.name: kind_of(f) for f in dataclasses.fields(cls)}


_CALL_RE = re.compile(r"^\s*(\w+)\.(\w+)\((.*)\)\s*(?:->\s*(\w+))?\s*$")


def _parse_call(call: str, fields: dict):
    m = _CALL_RE.match(call)
    if m is None:
        raise ValueError("call %r is not 'target.method(args) [-> field]'" % call)
    target, method, inner, bind = m.groups()
    args, kwargs = [], []
    for part in filter(None, (p.strip() for p in inner.split(","))):
        if "=" in part:
            k, v = (s.strip() for s in part.split("=", 1))
            kwargs.append((k, v))
        else:
            args.append(part)
    for name in args + [v for _, v in kwargs] + ([bind] if bind else []):
        if name not in fields:
            raise ValueError("call %r names %r, which is not a field" % (call, name))
    if target != "machine" and not (target in fields and kind_of(fields[target]).name
                                    .startswith("label:")):
        raise ValueError("call %r: the target must be 'machine' or a label field" % call)
    if bind and kind_of(fields[bind]).defines is None:
        raise ValueError("call %r binds its result to %r, which defines no label" % (call, bind))
    return target, method, tuple(args), tuple(kwargs), bind


def operation(*, word: str, text: str, call_path: str, call: str, log: str, c: str = "",
              buttons=(), returns: str = ""):
    """Declare an operation record (the class body lists its fields with
    :func:`~hgmviz.ops.fields.arg`); registers it in :data:`OPERATIONS`."""
    def wrap(cls):
        cls = dataclass(frozen=True)(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        target, method, args, kwargs, bind = _parse_call(call, fields)
        for b in buttons:
            for k, _v in b.preset:
                if k not in fields:
                    raise ValueError("%s button %r presets %r, not a field" % (cls.__name__,
                                                                               b.key, k))
        cls.spec = OpSpec(cls.__name__, word, text, call_path, call, target, method, args,
                          kwargs, bind, log, c or log, tuple(buttons), returns)
        if cls.__name__ in OPERATIONS:
            raise ValueError("operation %s is defined twice" % cls.__name__)
        OPERATIONS[cls.__name__] = cls
        return cls
    return wrap


class _Show(string.Formatter):
    """Formats a template with each field shown by its kind (``{addr}``), or raw with a
    format spec (``{offset:#x}``); other names are attributes of the record."""

    def __init__(self, op, style):
        self.op, self.style = op, style
        self.kinds = {f.name: kind_of(f) for f in dataclasses.fields(op)}

    def get_value(self, key, args, kwargs):
        return getattr(self.op, key)

    def get_field(self, field_name, args, kwargs):
        v = getattr(self.op, field_name)
        kind = self.kinds.get(field_name)
        return (v, field_name) if kind is None else (_Shown(kind, v, self.style), field_name)


class _Shown:
    def __init__(self, kind: Kind, value, style):
        self.kind, self.value, self.style = kind, value, style

    def __format__(self, spec):
        return format(self.value, spec) if spec else self.kind.show(self.value, self.style)


class Operation:
    """Base of the operation records (see :func:`operation`)."""

    spec: OpSpec

    def describe(self, style: str = "log") -> str:
        """One line: ``"log"`` as the explorer's log and the explainers print it
        (``touch p a+0x5000``), ``"c"`` as pseudo-C (homework)."""
        return _Show(self, style).format(self.spec.log if style == "log" else self.spec.c)

    def describe_call(self) -> str:
        """The call in the scripting API's words: ``a = p.mmap(f, length=2M, offset=0)``."""
        sp = self.spec
        kinds = sp.kinds(type(self))
        parts = [kinds[n].show_arg(n, getattr(self, n))
                 for n in list(sp.args) + [f for _k, f in sp.kwargs] if n != sp.binds]
        who = "" if sp.target == "machine" else "%s." % getattr(self, sp.target)
        out = "%s%s(%s)" % (who, sp.method, ", ".join(p for p in parts if p))
        return out if sp.binds is None else "%s = %s" % (getattr(self, sp.binds), out)

    def describe_result(self, value: int) -> str:
        """What a successful call returned, in the call's terms: `` (mapped 2 MiB)``."""
        if self.spec.returns:
            return " (%s)" % self.spec.returns.format(value=value, size=format_size(value))
        return (" (returned %d)" % value) if value else ""

    def apply(self, world):
        """Call the machine's method (the simulator's or the live kernel's: the same API)
        with this record's fields resolved in ``world``; bind the result to the new label."""
        sp = self.spec
        kinds = sp.kinds(type(self))

        def value(name):
            return kinds[name].resolve(world, getattr(self, name), name)

        obj = world.machine if sp.target == "machine" else value(sp.target)
        fn = getattr(obj, sp.method)
        result = fn(*[value(a) for a in sp.args], **{k: value(v) for k, v in sp.kwargs})
        if sp.binds is not None:
            world.bind(kinds[sp.binds].defines, getattr(self, sp.binds), result)
        return result


def quiet(m, call_path=()):
    """A step that ran no kernel code: no events, no counter updates, the call path given."""
    m.last_events = {k: v[:0] for k, v in m.last_events.items()}
    m.last_counter_updates = dict.fromkeys(m.last_counter_updates, 0)
    m.last_refusal, m.last_wrapped = None, ()
    m.call_path = list(call_path)


def fields_of(op_or_cls) -> tuple:
    """The record's fields (``dataclasses.fields``); ``f.metadata["kind"]`` is the kind,
    ``f.metadata["form"]`` the explorer control that fills it."""
    return dataclasses.fields(op_or_cls)


def spec_of(op_or_cls) -> OpSpec:
    cls = op_or_cls if isinstance(op_or_cls, type) else type(op_or_cls)
    if OPERATIONS.get(cls.__name__) is not cls:
        raise InvalidOperation("not an operation: %r; operations: %s"
                               % (op_or_cls, ", ".join(OPERATIONS)))
    return cls.spec


def check_op(op, labels: Optional[Labels], geometry=None, sizes_as_text: bool = False):
    """Check every field of ``op`` against ``labels`` (None: skip label checks); raise
    :class:`~hgmviz.ops.fields.InvalidOperation`.  Returns the labels it defines as
    ``[(kind, name)]``."""
    spec_of(op)
    defines = []
    for f in dataclasses.fields(op):
        kind = kind_of(f)
        v = kind.check(_Check(type(op).__name__, f.name, labels, sizes_as_text),
                       getattr(op, f.name))
        if kind.defines:
            defines.append((kind.defines, v))
    return defines


def buttons() -> tuple:
    """``((key, label, tooltip, record class, preset, row), ...)`` of every operation, in
    order."""
    out = []
    for cls in OPERATIONS.values():
        sp = cls.spec
        for b in sp.buttons:
            tip = b.tip or "%s (%s)" % (sp.text, sp.call_path)
            out.append((b.order, b.key, b.label, tip, cls, dict(b.preset), b.row))
    return tuple(t[1:] for t in sorted(out, key=lambda t: t[0]))


# =========================================================================================
# The operations
# =========================================================================================
ADVICE_NAMES = {"MADV_DONTNEED": MADV_DONTNEED, "MADV_REMOVE": MADV_REMOVE,
                "MADV_COLLAPSE": MADV_COLLAPSE, "MADV_SPLIT": MADV_SPLIT}
#: mprotect protections by the kernel's flag names.
PROT_NAMES = {"PROT_READ|PROT_WRITE": PROT_READ | PROT_WRITE, "PROT_READ": PROT_READ,
              "PROT_NONE": PROT_NONE}
#: mremap flags by the kernel's names.
MREMAP_NAMES = {"0": 0, "MREMAP_MAYMOVE|MREMAP_FIXED": MREMAP_MAYMOVE | MREMAP_FIXED}
#: fallocate modes by the kernel's flag names (include/uapi/linux/falloc.h).
FALLOC_MODES = {"0": 0, "FALLOC_FL_KEEP_SIZE": FALLOC_FL_KEEP_SIZE,
                "FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE": FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                "FALLOC_FL_PUNCH_HOLE": FALLOC_FL_PUNCH_HOLE}
#: Points :meth:`hgmviz.mm.Machine.inject` accepts.
INJECT_POINTS = ("pagecache_vanish", "after_pte_alloc")


@dataclass(frozen=True)
class RangeOp(Operation):
    """The fields every ranged operation starts with, in this order: the process, the start
    address and the length (``proc.munmap(addr, length)``, ``proc.madvise(addr, length,
    advice)``, ...).  A ranged record derives from it and lists only its own further fields;
    it is not an operation itself (:func:`spec_of` refuses it)."""

    proc: str = arg(PROC)
    addr: Addr = arg(ADDR)
    length: int = arg(SIZE)


@operation(word="spawn", text="A new process with an empty address space",
           call_path="fork + exec", call="machine.spawn() -> proc",
           log="spawn {proc}", c="{proc} = spawn()",
           buttons=[Button("spawn", "spawn", order=120,
                           tip="A new process with an empty address space")])
class Spawn(Operation):
    proc: str = arg(NewLabel("proc", "p"))


@operation(word="memfd_create", text="A hugetlbfs file of `size` bytes in `hstate` pages",
           call_path="memfd_create → hugetlb_file_setup",
           call="machine.memfd_create(size=size, hstate=hstate, name=file) -> file",
           log="memfd_create {file}, {size} of {hstate} pages",
           c="{file} = memfd_create(MFD_HUGETLB, {hstate} hugepages), size {size}")
class MemfdCreate(Operation):
    file: str = arg(NewLabel("file", "f"))
    size: int = arg(SIZE)
    hstate: int = arg(HSTATE)


@operation(word="fallocate", text="Allocate the file's pages in [offset, offset+length), or "
           "with FALLOC_FL_PUNCH_HOLE remove the whole hugepages in it from every process",
           call_path="hugetlbfs_fallocate → alloc_hugetlb_folio → hugetlb_add_to_page_cache "
           "| hugetlbfs_punch_hole",
           call="file.fallocate(offset, length, mode)",
           log="fallocate {file} {offset:#x}, {length}{mode_text}",
           c="fallocate({file}, {mode}, {offset}, {length})",
           buttons=[Button("punch", "PUNCH_HOLE",
                           (("mode", "FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE"),), 92,
                           "fallocate(FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE) over [offset, "
                           "offset+length) of the selected file: its whole hugepages leave "
                           "every process and the page cache (hugetlbfs_punch_hole)")])
class Fallocate(Operation):
    file: str = arg(FILE)
    offset: int = arg(OFFSET)
    length: int = arg(SIZE)
    mode: str = arg(Choice(FALLOC_MODES, FALLOC_MODES), "0")

    @property
    def mode_text(self) -> str:
        return "" if self.mode == "0" else " (%s)" % self.mode


@operation(word="ftruncate", text="Set the file's size; shrinking removes the pages past the "
           "new end from every process",
           call_path="do_truncate → hugetlbfs_setattr → hugetlb_vmtruncate",
           call="file.ftruncate(size)", log="ftruncate {file} {size}",
           c="ftruncate({file}, {size})",
           buttons=[Button("ftruncate", "ftruncate", order=91,
                           tip="ftruncate() the selected file: shrinking zaps and frees the "
                           "pages past the new end in every process (hugetlb_vmtruncate)")])
class Ftruncate(Operation):
    file: str = arg(FILE)
    size: int = arg(SIZE)


@operation(word="close", text="close() the file's descriptor (the VMAs keep the file open)",
           call_path="fput → hugetlbfs_evict_inode → remove_inode_hugepages",
           call="file.close()", log="close {file}", c="close({file})",
           buttons=[Button("close", "close", order=90, tip="close() the selected file's "
                           "descriptor (the VMAs keep the file open)")])
class Close(Operation):
    file: str = arg(FILE)


@operation(word="mmap", text="mmap() the file, MAP_SHARED (or MAP_PRIVATE: copy on write): "
           "a new VMA, nothing mapped yet",
           call_path="do_mmap → hugetlbfs_file_mmap → hugetlb_reserve_pages",
           call="proc.mmap(file, length, offset=offset, addr=addr, noreserve=noreserve, "
           "shared=shared) -> label",
           log="mmap {proc} {file}, {length}{private} → {label}",
           c="{label} = {proc}: mmap({length}, {map_flag}, {file}, offset {offset})",
           returns="at {value:#x}",
           buttons=[Button("mmap", "mmap", order=110, tip="mmap(MAP_SHARED) the whole selected "
                           "file once more in the selected process: a new VMA"),
                    Button("mmap_private", "mmap private", (("shared", False),), 111,
                           "mmap(MAP_PRIVATE) the whole selected file in the selected process: "
                           "reads map the page cache's page, a write copies it into an "
                           "anonymous page (hugetlb_wp)")])
class Mmap(Operation):
    proc: str = arg(PROC)
    file: str = arg(FILE)
    length: int = arg(SIZE, form="file_size")
    label: str = arg(NewLabel("addr", "a"))
    offset: int = arg(OFFSET, 0)
    addr: Optional[int] = arg(OPT_ADDR, None)
    noreserve: bool = arg(BOOL, False)
    shared: bool = arg(Flag(("MAP_PRIVATE", "")), True)    # a call line names only MAP_PRIVATE

    @property
    def private(self) -> str:
        return "" if self.shared else " (MAP_PRIVATE)"

    @property
    def map_flag(self) -> str:
        return "MAP_SHARED" if self.shared else "MAP_PRIVATE"


@operation(word="munmap", text="munmap(address, length)",
           call_path="do_vmi_munmap → __unmap_hugepage_range",
           call="proc.munmap(addr, length)", log="munmap {proc} {addr}, {length}",
           c="{proc}: munmap({addr}, {length})",
           buttons=[Button("munmap", "munmap", order=60, row=1)])
class Munmap(RangeOp):
    pass


@operation(word="mprotect", text="Change the protection of [address, address+length): VMAs are "
           "split at hugepage boundaries; a write to a read-only VMA is SIGSEGV",
           call_path="do_mprotect_pkey → mprotect_fixup → hugetlb_change_protection",
           call="proc.mprotect(addr, length, prot)", log="mprotect {proc} {addr}, {length}, {prot}",
           c="{proc}: mprotect({addr}, {length}, {prot})",
           buttons=[Button("mprotect", "mprotect R/O", (("prot", "PROT_READ"),), 65,
                           "mprotect(PROT_READ) over [address, address+length): the VMA is "
                           "split at hugepage boundaries; a write there is then SIGSEGV",
                           row=1)])
class Mprotect(RangeOp):
    prot: str = arg(Choice(PROT_NAMES, PROT_NAMES), "PROT_READ")


@operation(word="mremap", text="Shrink [address, address+length) to new_length (rounded up to "
           "the hugepage), or move it to new_addr (MREMAP_MAYMOVE|MREMAP_FIXED): the entries "
           "move, the counters stay",
           call_path="mremap → move_vma → move_hugetlb_page_tables",
           call="proc.mremap(addr, length, new_length, flags, new_addr)",
           log="mremap {proc} {addr}, {length} → {new_length}{where}", returns="at {value:#x}",
           c="{proc}: mremap({addr}, {length}, {new_length}, {flags})")
class Mremap(RangeOp):
    new_length: int = arg(SIZE)
    flags: str = arg(Choice(MREMAP_NAMES, MREMAP_NAMES), "0")
    new_addr: Optional[int] = arg(OPT_ADDR, None)

    @property
    def where(self) -> str:
        return "" if self.new_addr is None else " at %#x" % self.new_addr


@operation(word="madvise", text="madvise(address, length, advice)",
           call_path="do_madvise → madvise_walk_vmas → madvise_vma_behavior",
           call="proc.madvise(addr, length, advice)",
           log="{advice} {proc} {addr}, {length}", c="{proc}: madvise({addr}, {length}, {advice})",
           buttons=[
               Button("split", "MADV_SPLIT", (("advice", "MADV_SPLIT"),), 30,
                      "madvise(MADV_SPLIT) over [address, address+length): set "
                      "VM_HUGETLB_HGM so the VMA can be mapped in pieces (HGM v1 09/46)", 1),
               Button("collapse", "MADV_COLLAPSE", (("advice", "MADV_COLLAPSE"),), 40,
                      "madvise(MADV_COLLAPSE): replace small leaves by the largest ones "
                      "(hugetlb_collapse, HGM v2 34/46)", 1),
               Button("dontneed", "MADV_DONTNEED", (("advice", "MADV_DONTNEED"),), 50,
                      "madvise(MADV_DONTNEED): zap the range "
                      "(zap_page_range_single → __unmap_hugepage_range)", 1),
               Button("remove", "MADV_REMOVE", (("advice", "MADV_REMOVE"),), 55,
                      "madvise(MADV_REMOVE): punch the file range a shared VMA maps, in every "
                      "process (madvise_remove → vfs_fallocate(PUNCH_HOLE))", 1)])
class Madvise(RangeOp):
    advice: str = arg(Choice(ADVICE_NAMES, ADVICE_NAMES))


@operation(word="touch", text="Access one byte at the address: a page fault if the page is "
           "not mapped", call_path="hugetlb_fault → hugetlb_no_page",
           call="proc.touch(addr, write=write)", log="touch {proc} {addr}{access}",
           c="{proc}: {rw} one byte at {addr}",
           buttons=[Button("touch", "touch", order=10, row=1)])
class Touch(Operation):
    proc: str = arg(PROC)
    addr: Addr = arg(ADDR)
    write: bool = arg(Flag(("read", "write")), True)

    @property
    def access(self) -> str:
        return "" if self.write else " (read)"

    @property
    def rw(self) -> str:
        return "write" if self.write else "read"


@operation(word="fork", text="fork() the process (copy_hugetlb_page_range where the VMA "
           "needs it)", call_path="dup_mmap → copy_page_range → copy_hugetlb_page_range",
           call="proc.fork() -> child", log="fork {proc} → {child}",
           c="{child} = fork() of {proc}",
           buttons=[Button("fork", "fork", order=70, tip="fork() the selected process "
                           "(copy_hugetlb_page_range where the VMA needs it)")])
class Fork(Operation):
    proc: str = arg(PROC)
    child: str = arg(NewLabel("proc", "c"))


@operation(word="exit", text="The process exits", call_path="exit_mmap → unmap_vmas",
           call="proc.exit()", log="exit {proc}", c="{proc}: exit()",
           buttons=[Button("exit", "exit", order=80, tip="The selected process exits "
                           "(exit_mmap)")])
class Exit(Operation):
    proc: str = arg(PROC)


@operation(word="UFFDIO_REGISTER", text="userfaultfd + UFFDIO_REGISTER over [address, "
           "address+length)", call_path="userfaultfd_register → vma_modify_flags_uffd",
           call="proc.uffdio_register(addr, length, mode=mode, event_fork=event_fork)",
           log="UFFDIO_REGISTER {proc} {addr}, {length} ({mode})",
           c="{proc}: UFFDIO_REGISTER({addr}, {length}, mode {mode}{fork_feature})",
           buttons=[Button("register", "UFFDIO_REGISTER", (("mode", "minor"),), 100,
                           "userfaultfd + UFFDIO_REGISTER(minor) over [address, "
                           "address+length): what UFFDIO_CONTINUE needs")])
class UffdioRegister(RangeOp):
    mode: str = arg(UffdMode(), "minor")
    event_fork: bool = arg(BOOL, False)

    @property
    def fork_feature(self) -> str:
        return ", UFFD_FEATURE_EVENT_FORK" if self.event_fork else ""


@operation(word="UFFDIO_UNREGISTER", text="Unregister [address, address+length) from "
           "userfaultfd: its faults are handled by the kernel again",
           call_path="userfaultfd_unregister → userfaultfd_clear_vma",
           call="proc.uffdio_unregister(addr, length)",
           log="UFFDIO_UNREGISTER {proc} {addr}, {length}",
           c="{proc}: UFFDIO_UNREGISTER({addr}, {length})",
           buttons=[Button("unregister", "UFFDIO_UNREGISTER", order=105)])
class UffdioUnregister(RangeOp):
    pass


@operation(word="UFFDIO_COPY", text="Fill the missing hugepages of [address, address+length) "
           "with new pages (needs UFFDIO_REGISTER); in a shared VMA they join the page cache",
           call_path="mfill_atomic_hugetlb → hugetlb_mfill_atomic_pte",
           call="proc.uffdio_copy(addr, length)", returns="copied {size}",
           log="UFFDIO_COPY {proc} {addr}, {length}", c="{proc}: UFFDIO_COPY({addr}, {length})",
           buttons=[Button("copy", "UFFDIO_COPY", order=22, row=1)])
class UffdioCopy(RangeOp):
    pass


@operation(word="UFFDIO_WAKE", text="Wake the faults waiting in [address, address+length): "
           "they retry", call_path="userfaultfd_wake → wake_userfault",
           call="proc.uffdio_wake(addr, length)", log="UFFDIO_WAKE {proc} {addr}, {length}",
           c="{proc}: UFFDIO_WAKE({addr}, {length})")
class UffdioWake(RangeOp):
    pass


@operation(word="UFFDIO_CONTINUE", text="Map the page-cache pages of [address, "
           "address+length); needs UFFDIO_REGISTER (minor)",
           call_path="mfill_atomic_hugetlb → hugetlb_mfill_atomic_pte",
           call="proc.uffdio_continue(addr, length)",
           log="UFFDIO_CONTINUE {proc} {addr}, {length}", returns="mapped {size}",
           c="{proc}: UFFDIO_CONTINUE({addr}, {length})",
           buttons=[Button("continue", "UFFDIO_CONTINUE", order=20, row=1)])
class UffdioContinue(RangeOp):
    pass


@operation(word="UFFDIO_CONTINUE", text="UFFDIO_CONTINUE over [address, address+length) "
           "in pieces of `piece` bytes, one ioctl each",
           call_path="mfill_atomic_hugetlb → hugetlb_mfill_atomic_pte",
           call="proc.uffdio_continue_batch(addr, length, piece)",
           log="UFFDIO_CONTINUE ×{count} {proc} {addr}, {piece} each", returns="mapped {size}",
           c="{proc}: {count} × UFFDIO_CONTINUE({addr}, {piece} each)")
class UffdioContinueBatch(RangeOp):
    piece: int = arg(SIZE)

    @property
    def count(self) -> int:
        return self.length // self.piece if self.piece else 0


@operation(word="inject", text="Arm a one-shot error for the next UFFDIO_CONTINUE "
           "(Machine.inject)", call_path="inject", call="machine.inject(point)",
           log="inject {point}", c="inject({point})")
class Inject(Operation):
    """``m.inject(point)``: arm a one-shot error for the next UFFDIO_CONTINUE.

    ``"pagecache_vanish"``: the page leaves the page cache while UFFDIO_CONTINUE runs
    (T13/T14); what that does depends on the machine's ``lookup_first``
    (see :meth:`hgmviz.mm.Machine.inject`)."""

    point: str = arg(Choice(INJECT_POINTS), "pagecache_vanish")

    def apply(self, world):
        super().apply(world)
        quiet(world.machine, ["inject"])
        return None
