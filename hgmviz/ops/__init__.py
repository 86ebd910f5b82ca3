"""Layer 4: operations as typed, plain data, and a runner that applies them to machines.

One operation is a frozen dataclass naming what a user does (``Touch``, ``UffdioContinue``,
...), declared once in :mod:`hgmviz.ops.records` with its fields' kinds
(:mod:`hgmviz.ops.fields`), its label, its kernel call path and the machine method it calls;
every record of :data:`OPERATIONS` is a name of this package.  Processes, files and mapping
addresses are referred to by *labels* ("p", "f", "a"), so a trace is plain data that can be
saved, replayed, compared across schemes and shown.  An address is an int, a label, or
``(label, offset)``.

:func:`run_step` (:mod:`hgmviz.ops.run`) applies one operation to a :class:`World` (a machine
plus its labels) and returns an :class:`Outcome`: ``ok``, an errno name, ``SIGBUS``,
``SIGSEGV``, ``userfault`` or ``EAGAIN`` (partial progress, with ``mapped``).
"""
from . import records as _records
from .fields import InvalidOperation, Labels, arg
from .records import (ADVICE_NAMES, FALLOC_MODES, INJECT_POINTS, MREMAP_NAMES, OPERATIONS,
                      PROT_NAMES, Addr, Button, Close, Exit,
                      Fallocate, Fork, Inject, Madvise, MemfdCreate, Mmap, Munmap, Operation,
                      OpSpec, Spawn, Touch, UffdioContinue, UffdioContinueBatch,
                      UffdioRegister, buttons, check_op, fields_of, operation, quiet,
                      spec_of)
from .run import (ERROR_STATUS, Outcome, World, op_from_dict, op_to_dict, outcome_of,
                  run_step)

globals().update({name: getattr(_records, name) for name in OPERATIONS})   # every record

__all__ = ["Addr", "ADVICE_NAMES", "FALLOC_MODES", "PROT_NAMES", "MREMAP_NAMES", "INJECT_POINTS",
           "OPERATIONS", "Operation", "OpSpec",
           "Button", "operation", "arg", "check_op", "buttons", "spec_of", "fields_of", "quiet",
           "InvalidOperation", "Labels", "Outcome", "World", "run_step", "outcome_of",
           "ERROR_STATUS", "op_to_dict", "op_from_dict"] + list(OPERATIONS)
