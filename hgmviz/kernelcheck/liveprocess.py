"""The driver's side of one real process and one hugetlb memfd, split from :mod:`.live`.

:class:`LiveProcess` sends a worker (``_worker.py``) one JSON request per SOCK_SEQPACKET message
and turns the reply into a value or the error the kernel gave; :class:`LiveFile` is a memfd the
driver holds.  :class:`~hgmviz.kernelcheck.live.LiveMachine` creates both and does the touches
(its module docstring says how a process is run and how a touch is done); every public name
here is also importable from :mod:`hgmviz.kernelcheck.live`.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import json
import os
import select
import signal
import socket

from ..errors import PartialProgress, SigBus
from ..errors import UserfaultPending as _UserfaultPending
from . import procfs
# the uapi values are written once, in the worker (it runs standalone and cannot import them)
from ._worker import (UFFD_FEATURE_EVENT_FORK, UFFD_FEATURE_MINOR_HUGETLBFS,
                      UFFD_FEATURE_MISSING_HUGETLBFS, UFFD_FEATURE_WP_HUGETLBFS_SHMEM)
from .pool import fmt_size as _fmt_size

__all__ = ["LiveProcess", "LiveFile", "UserfaultPending", "TouchTimeout", "ProcessGone"]

UFFDIO_REGISTER_MODE = {"missing": 1, "wp": 2, "minor": 4}
UFFD_PAGEFAULT_FLAG_WRITE = 1
UFFD_PAGEFAULT_FLAG_WP = 2
UFFD_PAGEFAULT_FLAG_MINOR = 4
CALL_TIMEOUT = 10.0
TOUCH_TIMEOUT = 5.0          # no progress and no userfault for this long: the touch is stuck


# --- outcomes -------------------------------------------------------------------------------
class UserfaultPending(_UserfaultPending):
    """The fault was handed to userfaultfd (:class:`hgmviz.errors.UserfaultPending`, plus the
    ``uffd_msg.pagefault.flags`` the kernel reported)."""

    def __init__(self, address: int, reason: str, flags: int):
        super().__init__(address, reason)
        self.flags = flags


class TouchTimeout(TimeoutError):
    """The touch neither finished nor produced a userfault message in time."""


class ProcessGone(OSError):
    def __init__(self, pid: int):
        super().__init__(_errno.ESRCH, "process %d has exited" % pid)


# --- talking to a worker --------------------------------------------------------------------
def _send(sock: socket.socket, obj, fds=()) -> None:
    data = json.dumps(obj).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def _recv(sock: socket.socket, timeout: float | None):
    if timeout is not None:
        r, _, _ = select.select([sock], [], [], timeout)
        if not r:
            raise TimeoutError("no answer within %.1f s" % timeout)
    data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 8)
    if not data:
        for fd in fds:
            os.close(fd)
        raise EOFError
    return json.loads(data), fds


def _result(reply: dict, pid: int, what: str):
    if "errno" in reply:
        e = OSError(reply["errno"], "%s: %s" % (_errno.errorcode.get(reply["errno"], "?"),
                                                reply.get("msg", what)))
        if reply["errno"] == _errno.EAGAIN and "mapped" in reply:
            raise PartialProgress(reply["mapped"], e)    # the kernel kept part of the range
        if "mapped" in reply:
            e.mapped = reply["mapped"]
        raise e
    if "error" in reply:
        raise RuntimeError("worker %d failed in %s:\n%s" % (pid, what, reply["error"]))
    return reply.get("ok")


def _pidfd_wait(pidfd: int, timeout: float) -> bool:
    r, _, _ = select.select([pidfd], [], [], timeout)
    return bool(r)


# --- objects --------------------------------------------------------------------------------
class LiveFile:
    """A hugetlb memfd held open by the driver (``struct file`` of a hugetlbfs inode)."""

    def __init__(self, machine: "LiveMachine", fd: int, size: int, hstate: int, name: str):
        self.machine = machine
        self.fd = fd
        self.size = size
        self.hstate = hstate
        self.name = name
        self.closed = False

    def close(self) -> None:
        """close(2): the page cache goes when the last reference (fd or VMA) goes."""
        if not self.closed:
            self.closed = True
            os.close(self.fd)

    def ftruncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        self.size = size

    def fallocate(self, offset: int, length: int, mode: int = 0) -> None:
        """fallocate(2) with a mode (os.posix_fallocate has none)."""
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long)
        if libc.fallocate(self.fd, mode, offset, length) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "fallocate: %s" % os.strerror(e))
        self.size = os.fstat(self.fd).st_size

    def __repr__(self):
        return "<LiveFile %s fd=%d %s hstate=%s%s>" % (
            self.name, self.fd, _fmt_size(self.size), _fmt_size(self.hstate),
            " closed" if self.closed else "")


class LiveProcess:
    """A real process that executes the commands it receives."""

    def __init__(self, machine, pid, sock, pidfd, popen=None, parent=None, role="process"):
        self.machine = machine
        self.pid = pid
        self.sock = sock
        self.pidfd = pidfd
        self.popen = popen
        self.parent = parent
        self.role = role
        self.alive = True
        self.nuffd = 0
        self.desync = False
        self.fork_events: list[dict] = []
        self.children: list[LiveProcess] = []

    def __repr__(self):
        return "<LiveProcess pid=%d%s>" % (self.pid, "" if self.alive else " exited")

    # plumbing
    def _check(self):
        if not self.alive:
            raise ProcessGone(self.pid)
        if self.desync:
            raise RuntimeError("pid %d was interrupted in the middle of a request; only "
                               "kill() or the machine's close() can follow" % self.pid)

    def _call(self, msg: dict, fds=(), timeout: float | None = CALL_TIMEOUT, want_fds=False):
        self._check()
        try:
            _send(self.sock, msg, fds)
            reply, got = _recv(self.sock, timeout)
        except (EOFError, BrokenPipeError, ConnectionError):
            self._reap(wait=1.0)
            raise ProcessGone(self.pid) from None
        except TimeoutError:
            self.kill()
            raise TimeoutError("pid %d did not answer %r within %.0f s, so it was killed"
                               % (self.pid, msg.get("op"), timeout)) from None
        except BaseException:             # Ctrl-C with a reply outstanding: out of step now
            self.desync = True
            raise
        if "nuffd" in reply:
            self.nuffd = reply["nuffd"]
        if want_fds:
            return reply, got
        for fd in got:
            os.close(fd)
        return _result(reply, self.pid, msg.get("op", "?"))

    # the scripting API
    def mmap(self, f: LiveFile, length: int, offset: int = 0, shared: bool = True,
             addr: int | None = None, noreserve: bool = False, prot: str = "rw") -> int:
        """mmap(addr, length, prot, MAP_SHARED|MAP_PRIVATE..., f, offset).  ``addr`` is
        MAP_FIXED_NOREPLACE; when that finds the range taken by hugetlb memfd mappings (the
        scenario's own), it is MAP_FIXED, which replaces them, as the simulator's ``addr=`` does."""
        p = (1 if "r" in prot else 0) | (2 if "w" in prot else 0)
        if f.closed:
            raise OSError(_errno.EBADF, "EBADF: the file is closed")
        msg = {"op": "mmap", "length": length, "offset": offset, "shared": shared, "addr": addr,
               "noreserve": noreserve, "prot": p}
        try:
            return self._call(msg, fds=[f.fd])
        except OSError as e:
            if e.errno != _errno.EEXIST or addr is None:
                raise
            taken = [v for v in procfs.read_maps(self.pid)
                     if v.start < addr + length and addr < v.end]
            if not taken or any("memfd:" not in v.path for v in taken):
                raise
            return self._call(dict(msg, replace=True), fds=[f.fd])

    def munmap(self, addr: int, length: int) -> None:
        self._call({"op": "munmap", "addr": addr, "length": length})

    def mremap(self, old_addr: int, old_len: int, new_len: int, flags: int = 0,
               new_addr: int | None = None) -> int:
        return self._call({"op": "mremap", "addr": old_addr, "old_len": old_len,
                           "new_len": new_len, "flags": flags, "new_addr": new_addr})

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        self._call({"op": "mprotect", "addr": addr, "length": length, "prot": prot})

    def madvise(self, addr: int, length: int, advice: int) -> None:
        self._call({"op": "madvise", "addr": addr, "length": length, "advice": advice})

    def uffdio_register(self, addr: int, length: int, mode: str = "missing",
                        event_fork: bool = False) -> dict:
        """userfaultfd(O_CLOEXEC|O_NONBLOCK) + UFFDIO_API + UFFDIO_REGISTER on a new context.

        ``mode``: "missing", "minor", "wp" or a combination such as "missing|wp".  The API
        features asked for follow the modes (MISSING_HUGETLBFS, MINOR_HUGETLBFS,
        WP_HUGETLBFS_SHMEM) plus EVENT_FORK when ``event_fork``.
        """
        modes = [m.strip() for m in mode.replace(",", "|").split("|") if m.strip()]
        bits = 0
        features = UFFD_FEATURE_EVENT_FORK if event_fork else 0
        for m in modes:
            if m not in UFFDIO_REGISTER_MODE:
                raise ValueError("unknown userfaultfd mode %r" % m)
            bits |= UFFDIO_REGISTER_MODE[m]
            features |= {"missing": UFFD_FEATURE_MISSING_HUGETLBFS,
                         "minor": UFFD_FEATURE_MINOR_HUGETLBFS,
                         "wp": UFFD_FEATURE_WP_HUGETLBFS_SHMEM}[m]
        return self._call({"op": "uffd_register", "start": addr, "length": length,
                           "mode": bits, "features": features})

    def uffdio_continue(self, addr: int, length: int) -> int:
        """UFFDIO_CONTINUE; partial progress raises :class:`~hgmviz.errors.PartialProgress`
        (an OSError, EAGAIN) with ``.mapped``."""
        return self._call({"op": "uffd_continue", "start": addr, "length": length})

    def uffdio_writeprotect(self, addr: int, length: int, wp: bool = True) -> None:
        self._call({"op": "uffd_writeprotect", "start": addr, "length": length, "wp": wp})

    def uffdio_copy(self, addr: int, length: int) -> int:
        """UFFDIO_COPY from a zeroed buffer; partial progress raises PartialProgress (EAGAIN)
        with ``.mapped`` = the bytes copied."""
        return self._call({"op": "uffd_copy", "start": addr, "length": length})

    def uffdio_wake(self, addr: int, length: int) -> None:
        self._call({"op": "uffd_wake", "start": addr, "length": length})

    def uffdio_unregister(self, addr: int, length: int) -> None:
        self._call({"op": "uffd_unregister", "start": addr, "length": length})

    def touch(self, addr: int, write: bool = True, *, method: str | None = None) -> None:
        """Access one byte at ``addr`` as this process (see the module docstring)."""
        self._check()
        method = method or self.machine.touch_method
        if method == "cpu":
            return self._cpu_touch(addr, write)
        return self.machine._poke(self, addr, write, method)

    def _cpu_touch(self, addr, write):
        """A real CPU store/load in the target. Only for cases that neither SIGBUS nor block."""
        try:
            self._call({"op": "cpu_touch", "addr": addr, "write": write},
                       timeout=TOUCH_TIMEOUT)
        except ProcessGone:
            raise SigBus(addr, "the process died during a CPU access") from None

    def fork(self) -> "LiveProcess":
        reply, fds = self._call({"op": "fork"}, want_fds=True)
        ok = _result(reply, self.pid, "fork")
        child_pid = ok["pid"]
        sock = socket.socket(fileno=fds[0])
        for fd in fds[1:]:
            os.close(fd)
        child = LiveProcess(self.machine, child_pid, sock, os.pidfd_open(child_pid),
                            parent=self)
        child.fork_events = ok.get("events", [])
        self.children.append(child)
        self.machine.processes.append(child)
        return child

    def exit(self, code: int = 0) -> None:
        """exit(2); returns once the process is gone (its mm torn down)."""
        self._check()
        try:
            _send(self.sock, {"op": "exit", "code": code})
        except (BrokenPipeError, ConnectionError):
            pass
        self._reap(wait=5.0)

    def kill(self) -> None:
        if self.alive:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap(wait=5.0)

    def _reap(self, wait: float) -> None:
        if not self.alive:
            return
        if not _pidfd_wait(self.pidfd, wait):
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _pidfd_wait(self.pidfd, 5.0)
        if self.popen is not None:
            self.popen.wait(5.0)
        else:
            try:            # an orphan reparented to us (we are the child subreaper)
                os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                pass
        self.alive = False
        for x in (self.sock,):
            try:
                x.close()
            except OSError:
                pass
        os.close(self.pidfd)
        self.pidfd = -1

    # observation
    def pagemap(self, addr: int) -> procfs.PagemapEntry | None:
        """This process's /proc/<pid>/pagemap entry for ``addr``, or None if not present."""
        self._check()
        e = procfs.read_pagemap(self.pid, addr)[0]
        return e if e.present else None

    def kpagecount(self, addr: int) -> int | None:
        e = self.pagemap(addr)
        return None if e is None else procfs.read_kpagecount(e.pfn)[0]

    def kpageflags(self, addr: int) -> list[str] | None:
        e = self.pagemap(addr)
        return None if e is None else procfs.decode_kpageflags(procfs.read_kpageflags(e.pfn)[0])

    def maps(self) -> list[procfs.MapsEntry]:
        self._check()
        with open("/proc/%d/smaps" % self.pid) as f:
            return procfs.parse_smaps_vmflags(f.read())
