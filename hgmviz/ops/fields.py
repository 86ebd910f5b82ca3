"""Layer 4: the kinds of an operation's fields — how each is validated, resolved against a
world, shown and filled in by a form.

A field of an operation record (:mod:`hgmviz.ops.records`) is declared with :func:`arg` and a
*kind*: a process label the trace already defined (:data:`PROC`), a new one it defines
(``NewLabel("proc", "p")``), an address (:data:`ADDR`: a mapping label, ``(label, offset)`` or
an integer), a size, a choice among names (``Choice({"MADV_DONTNEED": 4, ...})``), ...  One
kind answers every question about its fields: :meth:`Kind.check` (what a session and a
scenario file accept, with an :class:`InvalidOperation` naming what is allowed),
:meth:`Kind.resolve` (the argument the machine's method gets), :meth:`Kind.show` (how a log
line or a pseudo-C line prints it) and :attr:`Kind.form` (which control of the explorer fills
it).

Only what no kernel call could express is checked here (types, labels, names of advice and
modes); values the kernel validates (alignment, sizes, hstates) go to the machine, which
answers with an errno.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..units import format_size, parse_size

__all__ = ["InvalidOperation", "Labels", "Kind", "Label", "NewLabel", "Address", "Size",
           "OptionalAddress", "Flag", "Choice", "UffdMode", "Text", "arg", "kind_of",
           "PROC", "FILE", "ADDR", "SIZE", "HSTATE", "OPT_ADDR", "BOOL", "LABEL_WORD"]

LABEL_WORD = {"proc": "process", "file": "file", "addr": "mapping"}


class InvalidOperation(ValueError):
    """Input no kernel would see (unknown label, wrong type, value not allowed); nothing ran.

    ``field`` names the offending field when there is one."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.field = field


@dataclass
class Labels:
    """The labels a trace has defined so far: processes, files, mapping addresses."""

    procs: set = field(default_factory=set)
    files: set = field(default_factory=set)
    addrs: set = field(default_factory=set)

    def copy(self) -> "Labels":
        return Labels(set(self.procs), set(self.files), set(self.addrs))

    def kind_set(self, kind):
        return {"proc": self.procs, "file": self.files, "addr": self.addrs}[kind]


class _Check:
    """What one check needs: where (``Op.field``), the labels so far (None: skip label
    checks) and whether size fields may be strings such as ``"2 MiB"`` (scenario files)."""

    def __init__(self, opname, fname, labels, sizes_as_text):
        self.where = "%s.%s" % (opname, fname)
        self.fname = fname
        self.labels = labels
        self.sizes_as_text = sizes_as_text

    def bad(self, msg):
        raise InvalidOperation("%s: %s" % (self.where, msg), self.fname)

    def size(self, v, allow_none=False):
        if v is None and allow_none:
            return None
        if isinstance(v, str) and self.sizes_as_text:
            try:
                return parse_size(v)
            except ValueError as e:
                self.bad(str(e))
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            self.bad("must be an integer%s, not %r" % (
                " (bytes, or a size such as \"2 MiB\")" if self.sizes_as_text else "", v))
        return int(v)

    def label(self, v, lk):
        if not isinstance(v, str) or not v:
            self.bad("must be a %s label (a non-empty string), not %r" % (LABEL_WORD[lk], v))
        if self.labels is not None and v not in self.labels.kind_set(lk):
            known = sorted(self.labels.kind_set(lk))
            self.bad("unknown %s label %r; %s" % (LABEL_WORD[lk], v, "defined so far: " +
                                                  ", ".join(known) if known else
                                                  "none defined yet"))
        return v


class Kind:
    """How fields of one kind are checked, resolved, shown and filled in.

    ``name``: a short word (``"label:proc"``, ``"size"``, ...; :func:`hgmviz.session.field_kind`
    returns it); ``defines``: the label kind a field of this kind defines (None: it defines
    none); ``form``: the explorer control that fills it (``"proc"``, ``"file"``, ``"addr"``,
    ``"length"``, ``"new:p"``, or None for "its default")."""

    name = "any"
    defines: Optional[str] = None
    form: Optional[str] = None

    def check(self, c: _Check, value):
        return value

    def resolve(self, world, value, fname=""):
        """The argument the machine's method takes for ``value``."""
        return value

    def show(self, value, style: str = "log") -> str:
        return str(value)

    def show_arg(self, fname: str, value) -> str:
        """The field as an argument of a call line (``length=2M``; "" leaves it out)."""
        return "" if value is None else "%s=%s" % (fname, self.show(value, "short"))


class _Bare(Kind):
    """Shown bare in a call line (a label, an address, a name)."""

    def show_arg(self, fname, value):
        return self.show(value, "short")


class Label(_Bare):
    """A label the trace defined before: ``proc`` or ``file``; resolves to the object."""

    def __init__(self, kind: str):
        self.kind = kind
        self.name = "label:" + kind
        self.form = kind

    def check(self, c, value):
        return c.label(value, self.kind)

    def resolve(self, world, value, fname=""):
        return world.proc(value) if self.kind == "proc" else world.file(value)


class NewLabel(_Bare):
    """A label this operation defines (its result is bound to it); ``prefix``: what the
    explorer names new ones (``p1``, ``c2``, ``a3``)."""

    def __init__(self, kind: str, prefix: str):
        self.defines = kind
        self.name = "define:" + kind
        self.form = "new:" + prefix

    def check(self, c, value):
        if not isinstance(value, str) or not value:
            c.bad("must be a new %s label (a non-empty string), not %r"
                  % (LABEL_WORD[self.defines], value))
        return value


class Address(_Bare):
    """An address: a mapping label, ``(label, offset)`` or an integer."""

    name = "addr"
    form = "addr"

    def check(self, c, value):
        if isinstance(value, str):
            return c.label(value, "addr")
        if isinstance(value, (tuple, list)):
            if len(value) != 2:
                c.bad("an address is a mapping label, [label, offset] or an integer, not %r"
                      % (value,))
            return (c.label(value[0], "addr"), c.size(value[1]))
        return c.size(value)

    def resolve(self, world, value, fname=""):
        return world.addr(value)

    def show(self, a, style="log"):
        if isinstance(a, str):
            return a
        if isinstance(a, (tuple, list)):
            if style == "c":
                return "%s + %s" % (a[0], format_size(a[1])) if a[1] else a[0]
            return a[0] if not a[1] else "%s+%#x" % (a[0], int(a[1]))
        return str(a) if style == "c" else "%#x" % int(a)


class Size(Kind):
    """A number of bytes (an integer; in scenario files also ``"2 MiB"``)."""

    name = "size"
    form = "length"

    def __init__(self, name: str = "size", form: Optional[str] = "length"):
        self.name = name
        self.form = form

    def check(self, c, value):
        return c.size(value)

    def show(self, value, style="log"):
        if style == "short":
            return format_size(value, "short")
        if style == "c" and not value:
            return "0"
        return format_size(value)


class OptionalAddress(Kind):
    """An optional fixed address (None: the kernel picks one)."""

    name = "optsize"

    def check(self, c, value):
        return c.size(value, allow_none=True)

    def show(self, value, style="log"):
        if value is None:
            return "any"
        return format_size(value, "short") if style == "short" else "%#x" % value


class Flag(Kind):
    """True or false; ``words`` (for false, for true) name both in a call line, else a true
    flag shows as its name and a false one not at all."""

    name = "bool"

    def __init__(self, words=None):
        self.words = words

    def show_arg(self, fname, value):
        if self.words:
            return self.words[bool(value)]
        return fname if value else ""

    def check(self, c, value):
        if not isinstance(value, bool):
            c.bad("must be true or false, not %r" % (value,))
        return value


class Choice(_Bare):
    """One of a few names; ``values`` maps a name to what the machine's method takes (the
    name itself when None)."""

    name = "enum"

    def __init__(self, choices, values: Optional[dict] = None):
        self.choices = tuple(choices)
        self.values = values

    def check(self, c, value):
        if value not in self.choices:
            c.bad("%r is not allowed; allowed: %s" % (value, ", ".join(self.choices)))
        return value

    def resolve(self, world, value, fname=""):
        if value not in self.choices:
            raise ValueError("unknown %s %r; allowed: %s" % (fname, value, ", ".join(self.choices)))
        return self.values[value] if self.values is not None else value


class UffdMode(Kind):
    """userfaultfd register modes: ``missing``, ``minor``, ``wp`` or several joined by ``|``."""

    name = "uffd_mode"
    MODES = ("missing", "minor", "wp")

    def check(self, c, value):
        parts = value.split("|") if isinstance(value, str) else None
        if not parts or any(p.strip() not in self.MODES for p in parts):
            c.bad("%r is not allowed; allowed: missing, minor, wp, or several joined by '|'"
                  % (value,))
        return value


class Text(Kind):
    name = "str"

    def check(self, c, value):
        if not isinstance(value, str):
            c.bad("must be a string, not %r" % (value,))
        return value


PROC = Label("proc")
FILE = Label("file")
ADDR = Address()
SIZE = Size()
HSTATE = Size("hstate", form=None)     # a size the geometry lacks: memfd_create's EINVAL
OFFSET = Size("size", form=None)
OPT_ADDR = OptionalAddress()
BOOL = Flag()


def arg(kind: Kind, default=dataclasses.MISSING, *, form=None):
    """A field of an operation record, of ``kind`` (``form``: the explorer control that fills
    it, when not the kind's own)."""
    meta = {"kind": kind, "form": form if form is not None else kind.form}
    return field(default=default, metadata=meta)


def kind_of(f: dataclasses.Field) -> Kind:
    return f.metadata.get("kind") or Kind()
