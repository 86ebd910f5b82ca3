"""The live driver: real processes, real hugetlb memfds, real page tables on the running kernel.

Its objects mirror the simulator's scripting API so that one scenario drives both::

    with LiveMachine(nr_hugepages={2 << 20: 8}) as m:       # root: reserves 8, restores at exit
        f = m.memfd_create(size=8 << 20, hstate=2 << 20)    # memfd_create(MFD_HUGETLB|MFD_HUGE_2MB)
        p = m.spawn()                                        # a real child process
        a = p.mmap(f, length=4 << 20)                        # its start address, in that process
        p.touch(a + 0x5000, write=True)                      # a fault ("How a touch is done")
        p.kpagecount(a + 0x5000)                             # /proc/kpagecount of that page: 1

How a process is run
    Each process is a small Python interpreter running ``_worker.py`` (standard library and
    ctypes only) that executes JSON requests from a SOCK_SEQPACKET socket; the memfd travels to it
    by SCM_RIGHTS and is closed there right after mmap(), so the mapping's own file reference is
    the only one it holds.  ``fork()`` forks that real process (the child inherits the mappings
    and the userfaultfd state by the kernel's rules) and hands the child's socket back the same
    way.  A refused syscall comes back as ``OSError(errno)``.

How a touch is done (and why)
    By default a separate *prober* process writes (or reads) one byte of the target's memory with
    ``process_vm_writev()`` / ``process_vm_readv()``.  The kernel faults the page in through
    ``get_user_pages_remote()`` -> ``handle_mm_fault()`` -> ``hugetlb_fault()`` in the target's mm,
    exactly the handler a CPU access runs, so the page tables and mapcounts come out the same (the
    test suite checks this against a real CPU store in the target, ``method="cpu"``).  Unlike a CPU
    access it survives the two outcomes a Python process cannot:

    * ``VM_FAULT_SIGBUS`` becomes ``EFAULT`` from the syscall instead of a SIGBUS that kills the
      target: raised here as :class:`SigBus` (or :class:`SigSegv` when no VMA covers the address
      or the VMA forbids the access).
    * A fault userfaultfd must handle: GUP runs with ``FAULT_FLAG_ALLOW_RETRY``, so the prober
      sleeps (killable) in ``handle_userfault()`` and the message lands on the userfaultfd.  Every
      process that holds a userfaultfd watches it (``poll``) while the prober works; the message
      turns into :class:`UserfaultPending` with ``.reason`` ``"missing"``, ``"minor"`` or ``"wp"``,
      and the prober is killed, which abandons the fault without changing anything.

    ``method="mem"`` (``pwrite`` to ``/proc/<pid>/mem``) is also available; it uses GUP without
    ALLOW_RETRY, so a userfault fails at once with ``EIO`` and cannot be told from a SIGBUS.
    That is why it is not the default.

Safety
    Only root can reserve pages; :class:`CannotRun` says why something cannot run and what would
    make it run.  The machine takes a lock (one live check at a time on a host), starts a
    *guardian* process that holds the original settings and the lock and writes the settings back
    if this process dies without doing it (even by SIGKILL), and on ``close()`` / ``with`` exit /
    SIGTERM / SIGHUP / Ctrl-C / interpreter exit it: ends every process it created (children
    before parents; it is their child subreaper meanwhile, so orphans are reaped too), closes
    every file, and restores ``nr_hugepages`` (and ``nr_overcommit_hugepages`` if it changed it)
    for every hstate it touched.
"""
from __future__ import annotations

import atexit
import ctypes
import errno as _errno
import fcntl
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Iterable, Mapping

from ..errors import SigBus, SigSegv
from . import procfs
from .liveprocess import (CALL_TIMEOUT, TOUCH_TIMEOUT, UFFD_FEATURE_EVENT_FORK,  # noqa: F401
                          UFFD_FEATURE_MINOR_HUGETLBFS, UFFD_FEATURE_MISSING_HUGETLBFS,
                          UFFD_FEATURE_WP_HUGETLBFS_SHMEM, UFFD_PAGEFAULT_FLAG_MINOR,
                          UFFD_PAGEFAULT_FLAG_WP, UFFD_PAGEFAULT_FLAG_WRITE, UFFDIO_REGISTER_MODE,
                          LiveFile, LiveProcess, ProcessGone, TouchTimeout, UserfaultPending,
                          _pidfd_wait, _recv, _result, _send)
from .pool import (CannotRun, PoolKeeper, acquire_lock, hstate_dir, host_lock,  # noqa: F401
                   settings_snapshot)
from .pool import fmt_size as _fmt_size

__all__ = [
    "LiveMachine", "LiveProcess", "LiveFile", "CannotRun", "SigBus", "SigSegv",
    "UserfaultPending", "TouchTimeout", "check_can_run", "hstate_dir", "settings_snapshot",
    "host_lock", "MADV_DONTNEED",
]

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")
MADV_DONTNEED = 4
MFD_HUGE_SHIFT = 26                  # include/uapi/linux/memfd.h
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
TOUCH_MAX = 180.0            # a touch still working (zeroing a fresh page) gets this long at most
SLOW_TOUCH = 2.0             # a touch slower than this is noted (LiveMachine.notes)


def _cpu_and_state(pid: int):
    """(utime + stime in clock ticks, state letter) of ``pid`` from /proc/<pid>/stat."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None, "?"
    return int(fields[11]) + int(fields[12]), fields[0]


def check_can_run(hstates: Iterable[int] = (), *, userfaultfd: bool = False) -> None:
    """Raise :class:`CannotRun` unless the live check can run here with these hstates."""
    if not sys.platform.startswith("linux"):
        raise CannotRun("this is %s, not Linux: hugetlb memfds, /proc/<pid>/pagemap and "
                        "/proc/kpagecount exist only on Linux" % sys.platform,
                        "run it on a Linux machine")
    if os.geteuid() != 0:
        raise CannotRun("not root (euid %d): reserving hugetlb pages (nr_hugepages) and "
                        "reading PFNs (/proc/<pid>/pagemap, /proc/kpagecount) need root"
                        % os.geteuid(), "run it as root, e.g. with sudo")
    if not os.path.isdir(procfs.HUGEPAGES_SYSFS):
        raise CannotRun("this kernel has no hugetlb support (%s is missing)"
                        % procfs.HUGEPAGES_SYSFS,
                        "boot a kernel built with CONFIG_HUGETLBFS=y and CONFIG_HUGETLB_PAGE=y")
    for path in ("/proc/kpagecount", "/proc/kpageflags"):
        if not os.access(path, os.R_OK):
            raise CannotRun("%s is not readable" % path,
                            "use a kernel with CONFIG_PROC_PAGE_MONITOR=y and a readable /proc")
    for size in hstates:
        d = hstate_dir(size)
        if not os.path.isdir(d):
            have = ", ".join(_fmt_size(s) for s in sorted(procfs.read_hugepage_pools()))
            fix = ("1 GiB pages need a CPU with pdpe1gb (x86-64) and a kernel that offers them"
                   if size == 1 << 30 else "use a kernel/architecture that has this page size")
            raise CannotRun("this kernel has no %s hstate (%s is missing; it offers: %s)"
                            % (_fmt_size(size), d, have or "none"), fix)
        if not os.access(os.path.join(d, "nr_hugepages"), os.W_OK):
            raise CannotRun("%s/nr_hugepages is not writable" % d,
                            "run as root with a writable /sys (not a read-only container mount)")
    if userfaultfd:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        fd = libc.syscall(ctypes.c_long(323), ctypes.c_long(os.O_CLOEXEC))
        if fd < 0:
            e = ctypes.get_errno()
            raise CannotRun("userfaultfd(2) failed: %s" % os.strerror(e),
                            "use a kernel with CONFIG_USERFAULTFD=y (and run as root, or set "
                            "vm.unprivileged_userfaultfd=1)")
        os.close(fd)



_OPEN: list["LiveMachine"] = []
_ATEXIT = False


def _close_all_open():
    for m in list(_OPEN)[::-1]:
        try:
            m.close()
        except Exception as e:      # pragma: no cover - last resort at interpreter exit
            sys.stderr.write("hgmviz.kernelcheck: cleanup failed: %s\n" % e)


class LiveMachine:
    """The running kernel, with hugetlb pages reserved for one scenario.

    ``nr_hugepages``: {hstate bytes: pages} to add to each pool.  ``exclusive=True`` also makes
    these the *only* pages a fault can get (it removes other free, unreserved pages from the pool
    and sets nr_overcommit_hugepages to 0 until close), for scenarios that must exhaust the pool.
    """

    def __init__(self, nr_hugepages: Mapping[int, int] | None = None, *,
                 exclusive: bool = False, touch_method: str = "vm",
                 lock_timeout: float = 120.0, lock: int | None = None):
        global _ATEXIT
        self.nr_hugepages = dict(nr_hugepages or {2 << 20: 8})
        self.exclusive = exclusive
        self.touch_method = touch_method
        self.processes: list[LiveProcess] = []
        self.files: list[LiveFile] = []
        self._prober: LiveProcess | None = None
        self._pool: PoolKeeper | None = None
        self._start_pools: dict = {}
        self.interference: list[str] = []
        self.notes: list[str] = []              # e.g. a touch that took seconds (not an error)
        self._closed = False
        self._broken = ""
        self._lock_fd = -1
        self._prev_handlers = {}
        self._prev_subreaper = None
        self.restore_problems: list[str] = []
        check_can_run(self.nr_hugepages)
        self._own_lock = lock is None
        self._lock_fd = acquire_lock(lock_timeout) if lock is None else lock
        _OPEN.append(self)
        if not _ATEXIT:
            atexit.register(_close_all_open)
            _ATEXIT = True
        try:
            self._install_signal_handlers()
            self._set_subreaper()
            self._reserve()
        except BaseException:
            self.close()
            raise

    # context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # setup
    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            prev = signal.getsignal(sig)
            if prev is signal.SIG_IGN:
                continue
            self._prev_handlers[sig] = prev
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signo, frame):
        raise SystemExit(128 + signo)

    def _set_subreaper(self):
        libc = ctypes.CDLL(None, use_errno=True)
        cur = ctypes.c_int(0)
        if libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(cur), 0, 0, 0) == 0:
            self._prev_subreaper = cur.value
            libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def _reserve(self):
        """Add this machine's pages to the pools, by deltas (see :mod:`.pool`)."""
        self._pool = PoolKeeper(self._lock_fd)
        self._start_pools = self._pool.reserve(self.nr_hugepages, self.exclusive)

    @property
    def guardian_pid(self) -> int | None:
        """The settings guardian's pid while the machine is open."""
        return None if self._pool is None else self._pool.guardian_pid

    # the scripting API
    def memfd_create(self, size: int, hstate: int = 2 << 20, name: str = "hgmviz") -> LiveFile:
        """memfd_create(name, MFD_CLOEXEC|MFD_HUGETLB|MFD_HUGE_<hstate>) + ftruncate(size)."""
        self._check_open()
        shift = hstate.bit_length() - 1
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_HUGETLB | (shift << MFD_HUGE_SHIFT))
        try:
            if size:
                os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            raise
        f = LiveFile(self, fd, size, hstate, name)
        self.files.append(f)
        return f

    def spawn(self) -> LiveProcess:
        self._check_open()
        p = self._start_worker("process")
        self.processes.append(p)
        return p

    def meminfo(self) -> dict[int, dict[str, int]]:
        """{hstate bytes: {"HugePages_Total", "HugePages_Free", "HugePages_Rsvd",
        "HugePages_Surp"}}, from /sys/kernel/mm/hugepages (every hstate, not only the default)."""
        return {size: pool.as_meminfo() for size, pool in procfs.read_hugepage_pools().items()}

    def live_processes(self) -> list[LiveProcess]:
        return [p for p in self.processes if p.alive]

    # internals
    def _check_open(self):
        if self._closed:
            raise RuntimeError("this LiveMachine is closed")

    def _start_worker(self, role: str) -> LiveProcess:
        drv, kid = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            popen = subprocess.Popen([sys.executable, "-I", "-S", WORKER, "worker",
                                      str(kid.fileno())], pass_fds=[kid.fileno()],
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            kid.close()
        p = LiveProcess(self, popen.pid, drv, os.pidfd_open(popen.pid), popen=popen, role=role)
        p._call({"op": "ping"})
        return p

    def _get_prober(self) -> LiveProcess:
        if self._prober is None or not self._prober.alive:
            self._prober = self._start_worker("prober")
        return self._prober

    def _poke(self, target: LiveProcess, addr: int, write: bool, method: str) -> None:
        if self._broken:
            raise RuntimeError("this LiveMachine was interrupted in the middle of a touch "
                               "(%s); close it and start a new one" % self._broken)
        try:
            return self._poke_unlocked(target, addr, write, method)
        except (UserfaultPending, SigBus, SigSegv, TouchTimeout, OSError):
            raise
        except BaseException as e:            # e.g. Ctrl-C while a reply is outstanding:
            self._broken = type(e).__name__   # the sockets may hold unread replies now
            raise

    def _poke_unlocked(self, target: LiveProcess, addr: int, write: bool, method: str) -> None:
        watchers = [q for q in self.live_processes() if q.nuffd > 0]
        for q in watchers:
            _send(q.sock, {"op": "watch"})
        prober = self._get_prober()
        _send(prober.sock, {"op": "poke", "pid": target.pid, "addr": addr, "write": write,
                            "method": method})
        waiting = {prober.sock.fileno(): prober}
        waiting.update({q.sock.fileno(): q for q in watchers})
        t0 = time.monotonic()
        deadline = t0 + TOUCH_TIMEOUT
        cpu = _cpu_and_state(prober.pid)[0]
        done = fault = None
        while done is None and fault is None:
            left = deadline - time.monotonic()
            if left <= 0:
                # A fault waiting in handle_userfault() sleeps, and its message reaches a
                # watcher at once; one that still uses CPU or runs is working: zeroing a fresh
                # hugepage (clear_huge_page) takes seconds for 1 GiB where the hypervisor
                # backs guest memory lazily, or on a loaded machine.  Wait for it.
                now_cpu, state = _cpu_and_state(prober.pid)
                if (now_cpu is None or (now_cpu == cpu and state != "R")
                        or time.monotonic() - t0 >= TOUCH_MAX):
                    break
                cpu = now_cpu
                deadline = time.monotonic() + TOUCH_TIMEOUT
                continue
            r = select.select(list(waiting), [], [], left)[0]
            if not r:
                continue
            for fd in r:
                who = waiting[fd]
                reply, fds = _recv(who.sock, None)
                for x in fds:
                    os.close(x)
                if who is prober:
                    done = reply
                    del waiting[fd]
                    continue
                msg = reply.get("ok")
                if msg and msg.get("kind") == "pagefault":
                    fault = msg
                    del waiting[fd]
                elif msg:                          # another event (e.g. remove): keep watching
                    _send(who.sock, {"op": "watch"})
        took = time.monotonic() - t0
        if done is not None and took > SLOW_TOUCH:
            self.notes.append("touching %#x in pid %d took %.1f s (the kernel was still in the "
                              "fault, not waiting for userfaultfd: zeroing a fresh hugepage is "
                              "slow where the hypervisor backs guest memory lazily, or under "
                              "load)" % (addr, target.pid, took))
        if done is None:                           # stuck in handle_userfault(), or a timeout
            prober.kill()
            self._prober = None
        for fd, q in list(waiting.items()):
            if q is prober:
                continue
            _send(q.sock, {"op": "stop"})
            reply, fds = _recv(q.sock, CALL_TIMEOUT)
            for x in fds:
                os.close(x)
            msg = reply.get("ok")
            if fault is None and msg and msg.get("kind") == "pagefault":
                fault = msg
        if fault is not None and done is None:
            flags = fault["flags"]
            reason = ("minor" if flags & UFFD_PAGEFAULT_FLAG_MINOR else
                      "wp" if flags & UFFD_PAGEFAULT_FLAG_WP else "missing")
            raise UserfaultPending(addr, reason, flags)
        if done is None:
            raise TouchTimeout("touching %#x in pid %d neither finished nor raised a userfault "
                               "within %.0f s (%s)" % (addr, target.pid, took,
                                                      "it was still working in the fault"
                                                      if took >= TOUCH_MAX else
                                                      "it made no progress for %.0f s"
                                                      % TOUCH_TIMEOUT))
        if "errno" in done and done["errno"] in (_errno.EFAULT, _errno.EIO):
            vma = procfs.find_vma(procfs.read_maps(target.pid), addr)
            if vma is None:
                raise SigSegv(addr, "no VMA covers this address")
            if ("w" if write else "r") not in vma.perms:
                raise SigSegv(addr, "the VMA (%s) does not allow this access" % vma.perms)
            raise SigBus(addr, "the fault handler returned VM_FAULT_SIGBUS (%s from %s)"
                         % (_errno.errorcode[done["errno"]],
                            "process_vm_writev" if method == "vm" else "/proc/pid/mem"))
        _result(done, prober.pid, "touch")

    # teardown
    def close(self) -> None:
        """End every process, close every file, restore every setting. Idempotent."""
        if self._closed:
            return
        self._closed = True
        in_main = threading.current_thread() is threading.main_thread()
        blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked) if in_main else None
        try:
            self._teardown()
        finally:
            if self in _OPEN:
                _OPEN.remove(self)
            for sig, prev in self._prev_handlers.items():
                try:
                    signal.signal(sig, prev)
                except (ValueError, TypeError):
                    pass
            self._prev_handlers = {}
            if old_mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _teardown(self):
        problems = self.restore_problems
        for p in reversed(self.processes):         # children before parents
            if p.alive:
                try:
                    p.exit()
                except Exception as e:
                    problems.append("ending pid %d: %s" % (p.pid, e))
                    try:
                        p.kill()
                    except Exception:
                        pass
        if self._prober is not None and self._prober.alive:
            try:
                self._prober.exit()
            except Exception:
                self._prober.kill()
        self._prober = None
        for f in self.files:
            try:
                f.close()
            except OSError:
                pass
        if self._prev_subreaper is not None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_CHILD_SUBREAPER, self._prev_subreaper, 0, 0, 0)
            self._prev_subreaper = None
        self.interference = self._check_interference()
        if self._pool is not None:
            self._pool.restore()
            self._pool.disarm()
            problems.extend(self._pool.problems + self._pool.left)   # said on stderr too
            self.interference.extend(self._pool.warnings)
        if self._lock_fd >= 0 and self._own_lock:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
        self._lock_fd = -1
        if problems:
            sys.stderr.write("hgmviz.kernelcheck: %s\n" % "; ".join(problems))

    def _check_interference(self) -> list[str]:
        """Signs that something other than this machine used or resized the pool meanwhile.

        Called once everything this machine created is gone: then the pool must be exactly as
        it was right after the reservation.  (Deltas hide *other users of the pool*, but not
        ones acting *during* the run.)
        """
        out = []
        if not self._start_pools:
            return out
        deadline = time.monotonic() + 0.5
        while True:
            now = procfs.read_hugepage_pools()
            if all(now.get(s) == self._start_pools.get(s) for s in self.nr_hugepages):
                return out
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)                       # a page may still be on its way back
        for size in self.nr_hugepages:
            a, b = self._start_pools.get(size), now.get(size)
            if a is None or b is None:
                continue
            for k in ("nr_hugepages", "free_hugepages", "resv_hugepages", "surplus_hugepages"):
                if getattr(a, k) != getattr(b, k):
                    out.append("%s %s: %d at the start, %d at the end" % (
                        _fmt_size(size), k, getattr(a, k), getattr(b, k)))
        return out

    def __del__(self):
        try:
            if not self._closed and _OPEN:
                self.close()
        except Exception:
            pass
