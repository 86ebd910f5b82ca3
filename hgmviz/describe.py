"""Layer 4: how an operation and its outcome read in a log line — plain text, used by the
explorer's log (widgets) and by the explainers alike.  Nothing here changes anything."""
from __future__ import annotations

import re

from .geometry import _fmt_size
from .ops import Outcome
from .schemes.base import UPDATE_KINDS

__all__ = ["fmt_size", "fmt_addr", "op_label", "classify", "UPDATE_LABELS"]


fmt_size = _fmt_size          # one size format for every layer (hgmviz.geometry)

# How views name each kind of ``Machine.last_counter_updates``: the field each update writes.
UPDATE_LABELS = {"refcount": "_refcount", "entire_mapcount": "_entire_mapcount",
                 "subpage_mapcount": "subpage _mapcount", "metadata": "metadata counts"}
assert tuple(UPDATE_LABELS) == UPDATE_KINDS


def fmt_addr(a) -> str:
    """An operation's address: ``a+0x5000``, ``a``, or ``0x7f..``."""
    if isinstance(a, str):
        return a
    if isinstance(a, (tuple, list)):
        return a[0] if not a[1] else "%s+%#x" % (a[0], int(a[1]))
    return "%#x" % int(a)


_OP_NAMES = {"Touch": "touch", "UffdioContinue": "UFFDIO_CONTINUE", "Munmap": "munmap",
             "Fork": "fork", "Exit": "exit", "Close": "close", "Mmap": "mmap", "Spawn": "spawn",
             "MemfdCreate": "memfd_create", "Fallocate": "fallocate",
             "UffdioRegister": "UFFDIO_REGISTER", "UffdioContinueBatch": "UFFDIO_CONTINUE ×n",
             "Inject": "inject"}


def op_label(op) -> str:
    """One line naming what the operation does, in the user's words: ``touch p a+0x5000``."""
    name = type(op).__name__
    if name == "Madvise":
        return "%s %s %s, %s" % (op.advice, op.proc, fmt_addr(op.addr), fmt_size(op.length))
    if name == "UffdioContinueBatch":
        return "UFFDIO_CONTINUE ×%d %s %s, %s each" % (op.length // op.piece, op.proc,
                                                      fmt_addr(op.addr), fmt_size(op.piece))
    word = _OP_NAMES.get(name, name)
    if name in ("Touch",):
        return "%s %s %s" % (word, op.proc, fmt_addr(op.addr))
    if name in ("UffdioContinue", "Munmap"):
        return "%s %s %s, %s" % (word, op.proc, fmt_addr(op.addr), fmt_size(op.length))
    if name == "UffdioRegister":
        return "%s %s %s, %s (%s)" % (word, op.proc, fmt_addr(op.addr), fmt_size(op.length),
                                      op.mode)
    if name == "Fork":
        return "fork %s → %s" % (op.proc, op.child)
    if name in ("Exit",):
        return "exit %s" % op.proc
    if name == "Spawn":
        return "spawn %s" % op.proc
    if name == "Close":
        return "close %s" % op.file
    if name == "Mmap":
        return "mmap %s %s, %s → %s" % (op.proc, op.file, fmt_size(op.length), op.label)
    if name == "MemfdCreate":
        return "memfd_create %s, %s of %s pages" % (op.file, fmt_size(op.size),
                                                    fmt_size(op.hstate))
    if name == "Fallocate":
        return "fallocate %s %#x, %s" % (op.file, op.offset, fmt_size(op.length))
    if name == "Inject":
        return "inject %s" % op.point
    return "%s %r" % (word, op)


_ERRNO_PREFIX = re.compile(r"\[Errno \d+\] ")


def _returned(op, value) -> str:
    """What a successful call returned, in the call's terms."""
    if value is None or op is None:
        return ""
    name = type(op).__name__
    if name in ("UffdioContinue", "UffdioContinueBatch"):
        return " (mapped %s)" % fmt_size(value)
    if name == "Mmap":
        return " (at %#x)" % value
    return (" (returned %d)" % value) if value else ""


def classify(outcome: Outcome, kind: str = "", op=None) -> tuple:
    """``(tag, text)`` of one outcome: the tag is a key of :data:`RESULT_TAGS` (ok, errno,
    SIGBUS, guard refusal, wrap, ...), the text what the log prints after the glyph
    (``op``: the operation, to say what its return value means)."""
    st = outcome.status
    warn = " ".join(outcome.warnings)
    if kind == "skipped" or st == "skipped":
        return "skipped", "skipped: " + outcome.message
    if outcome.ok:
        if outcome.wrapped:
            return "wrap", "ok — but a refcount WRAPPED: " + warn
        return "ok", "ok" + _returned(op, outcome.value) + ((" — " + warn) if warn else "")
    msg = _ERRNO_PREFIX.sub("", outcome.message)
    guard = outcome.refused
    if st == "EAGAIN":
        # PartialProgress: "mapped N bytes, then: <the cause's message>"
        cause = msg.split("then: ", 1)[-1]
        text = "EAGAIN after mapping %s: %s" % (fmt_size(outcome.mapped or 0), cause)
        return ("guard", "guard refusal, " + text) if guard else ("partial", text)
    if guard:
        return "guard", "guard refusal: " + msg
    if kind == "state_kept":
        return "state_kept", "%s (the kernel keeps what it did): %s" % (st, msg)
    if st in ("SIGBUS", "SIGSEGV", "userfault"):
        return st, msg
    return "errno", msg if msg.startswith(st) else "%s: %s" % (st, msg)
