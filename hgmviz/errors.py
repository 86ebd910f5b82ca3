"""Layer 0: the ways an operation can fail, in the kernel's vocabulary.

A syscall the kernel refuses raises :class:`OSError` with the kernel's errno (``e.errno``) and
a message that says what was wrong and what is allowed.  A page fault the kernel answers with
``VM_FAULT_SIGBUS`` raises :class:`SigBus`; an access outside any VMA raises :class:`SigSegv`;
a fault that userfaultfd hands to user space raises :class:`UserfaultPending`.  Every one of
them leaves the machine exactly as it was, except where the kernel itself commits partial
progress (UFFDIO_CONTINUE returning ``EAGAIN`` with ``mapped`` bytes, see
:class:`PartialProgress`).
"""
from __future__ import annotations

import errno as _errno

__all__ = [
    "SimError", "SigBus", "StateKept", "TaskHung", "SigSegv", "UserfaultPending", "PartialProgress", "ProcessExited",
    "Unsupported", "syscall_error", "VM_FAULT_OOM", "VM_FAULT_SIGBUS", "VM_FAULT_NOPAGE",
    "errno_name",
]

# include/linux/mm_types.h enum vm_fault_reason (values as in v6.2)
VM_FAULT_OOM = 0x000001
VM_FAULT_SIGBUS = 0x000002
VM_FAULT_NOPAGE = 0x000100


class SimError(Exception):
    """Base of the simulator's own (non-errno) outcomes."""


class SigBus(SimError):
    """The fault handler returned ``VM_FAULT_SIGBUS``: the process would get SIGBUS.

    ``kept``: the fault's error path left state behind that the kernel does not undo (HGM v2
    35/46 as posted: the refused lookup's reference and folio lock, guard ``"sign_posted"``);
    otherwise nothing changed."""

    def __init__(self, address: int, why: str, kept: bool = False):
        super().__init__("SIGBUS at %#x: %s" % (address, why))
        self.address = address
        self.why = why
        self.kept = kept


class TaskHung(SimError):
    """The task would sleep in ``folio_lock()`` forever (TASK_UNINTERRUPTIBLE; the hung-task
    detector reports it after ``kernel.hung_task_timeout_secs``, 120 s by default): the folio
    was left locked by an error path that never unlocked it (HGM v2 35/46 as posted,
    ``hugetlb_try_find_lock_folio``; guard ``"sign_posted"``).  The simulator reports it before
    the operation changes anything."""

    def __init__(self, folio: int, why: str):
        super().__init__("hung: %s" % why)
        self.folio = folio
        self.why = why


class SigSegv(SimError):
    """No VMA covers the address: the process would get SIGSEGV."""

    def __init__(self, address: int, why: str = "no VMA covers this address"):
        super().__init__("SIGSEGV at %#x: %s" % (address, why))
        self.address = address


class UserfaultPending(SimError):
    """``handle_userfault()``: the fault was handed to the userfaultfd reader.

    A real thread would sleep until the handler resolves the fault (for example with
    UFFDIO_CONTINUE for a ``minor`` fault); the simulator reports it and changes nothing.
    """

    def __init__(self, address: int, reason: str):
        super().__init__("userfaultfd %s fault at %#x: the faulting thread waits for the "
                         "handler (resolve it with %s)" % (
                             reason.upper(), address,
                             "UFFDIO_CONTINUE" if reason == "minor" else "UFFDIO_COPY"))
        self.address = address
        self.reason = reason


class ProcessExited(OSError):
    """The process has exited; nothing can be done on its behalf (ESRCH)."""


class Unsupported(NotImplementedError):
    """A real kernel feature that this simulator does not model."""


class PartialProgress(OSError):
    """The kernel committed part of the request, then stopped.

    ``userfaultfd_continue()`` sets ``uffdio_continue.mapped`` to the bytes it mapped and
    returns ``-EAGAIN`` when that is less than the length asked for (fs/userfaultfd.c,
    ``userfaultfd_continue``, v6.2): the pieces before the failing one stay mapped, and the
    kernel reports *no* cause (``mapped`` holds ``-errno`` only when nothing was mapped; user
    space learns the cause by retrying at ``start + mapped``).  ``cause`` is the simulator's
    insight, the error the next piece failed with, not part of the kernel's answer.
    """

    def __init__(self, mapped: int, cause: BaseException):
        super().__init__(_errno.EAGAIN, "mapped %d bytes, then EAGAIN (the kernel reports no "
                                        "cause; the simulator's insight: %s)" % (mapped, cause))
        self.mapped = mapped
        self.cause = cause


class StateKept(OSError):
    """An injected error on a path where the kernel does not undo what it did.

    The operation failed with ``errno``, but (as in the kernel) the page tables allocated
    before the failure stay; the accounting saw whatever events happened first."""


def errno_name(code: int) -> str:
    """The errno's name; 95 is EOPNOTSUPP, the name the kernel's fallocate paths return (Python's
    table calls it ENOTSUP, the same number on Linux)."""
    if code == _errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return _errno.errorcode.get(code, str(code))


def syscall_error(code: int, message: str) -> OSError:
    """An ``OSError`` whose ``str()`` starts with the errno's name, e.g. ``EINVAL: ...``."""
    err = OSError(code, "%s: %s" % (errno_name(code), message))
    return err
