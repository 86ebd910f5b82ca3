"""Accounting schemes: each consumes the core's event stream and owns its counters.

Schemes sit directly above the core (they read events, never page tables) and below the
``mm`` layer, which feeds them the events of every operation.  A new scheme is one module
plus its tests; :func:`get_scheme_class` resolves the names ``hv.Machine(scheme=...)`` takes.
"""
from __future__ import annotations

from .base import GUARDS, Scheme, SchemeRefusal
from .hstate_present import HstatePresent
from .mainline import Mainline
from .per_piece import PerPiece
from .subtree_counted import SubtreeCounted
from .thp_like import ThpLike

SCHEMES = {cls.name: cls for cls in (Mainline, PerPiece, ThpLike, HstatePresent, SubtreeCounted)}


def get_scheme_class(name):
    try:
        return SCHEMES[name]
    except (KeyError, TypeError):
        raise ValueError("unknown scheme %r; allowed: %s" % (name, ", ".join(SCHEMES))) from None


__all__ = ["Scheme", "SchemeRefusal", "GUARDS", "SCHEMES", "get_scheme_class", "Mainline", "PerPiece", "ThpLike",
           "HstatePresent", "SubtreeCounted"]
