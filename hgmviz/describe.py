"""Layer 4: how an operation and its outcome read in a log line — plain text, used by the
explorer's log (widgets) and by the explainers alike.  Nothing here changes anything."""
from __future__ import annotations

import re

from .ops import Outcome
from .ops.fields import ADDR
from .schemes.base import UPDATE_KINDS
from .units import format_size as fmt_size

__all__ = ["fmt_size", "fmt_addr", "op_label", "outcome_summary", "classify",
           "UPDATE_LABELS"]


# How views name each kind of ``Machine.last_counter_updates``: the field each update writes.
UPDATE_LABELS = {"refcount": "_refcount", "entire_mapcount": "_entire_mapcount",
                 "subpage_mapcount": "subpage _mapcount", "metadata": "metadata counts"}
assert tuple(UPDATE_LABELS) == UPDATE_KINDS


def fmt_addr(a) -> str:
    """An operation's address: ``a+0x5000``, ``a``, or ``0x7f..``."""
    return ADDR.show(a, "log")


def op_label(op) -> str:
    """One line naming what the operation does, in the user's words: ``touch p a+0x5000``
    (the record's own :meth:`~hgmviz.ops.records.Operation.describe`)."""
    return op.describe("log")


_ERRNO_PREFIX = re.compile(r"\[Errno \d+\] ")


def _returned(op, value) -> str:
    """What a successful call returned, in the call's terms."""
    if value is None or op is None:
        return ""
    return op.describe_result(value)


def outcome_summary(outcome: Outcome, kind: str = "", op=None) -> tuple:
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
        # PartialProgress: "mapped N bytes, then EAGAIN (...; the simulator's insight: <cause>)"
        cause = msg.split("insight: ", 1)[-1].rstrip(")")
        text = ("EAGAIN after mapping %s (the kernel reports only the bytes mapped; "
                "simulator's insight: %s)" % (fmt_size(outcome.mapped or 0), cause))
        return ("guard", "guard refusal, " + text) if guard else ("partial", text)
    if guard:
        return "guard", "guard refusal: " + msg
    if kind == "state_kept":
        return "state_kept", "%s (the kernel keeps what it did): %s" % (st, msg)
    if st in ("SIGBUS", "SIGSEGV", "userfault"):
        return st, msg
    return "errno", msg if msg.startswith(st) else "%s: %s" % (st, msg)


classify = outcome_summary     # the old name (kept: views and notebooks use it)
