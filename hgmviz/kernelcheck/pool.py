"""The hugetlb pool settings the live check changes, and how it gives back only what it added.

The live check needs pages in a hugetlb pool, and the pool belongs to the host: an administrator
(or another program) may resize it at any moment, also while a check runs.  The kernel offers no
compare-and-swap on ``nr_hugepages`` (a write sets an absolute count, ``set_max_huge_pages()``
in mm/hugetlb.c), so the check works by *deltas*:

* **read, then write at once.**  Right before each write it reads the setting again and writes
  that value plus (or minus) its own pages, with nothing slow in between: a resize by someone
  else before that read is kept (the check adds on top of it) and reported as seen *before*
  the write.  (A write landing in the microseconds between the read and the write cannot be
  told apart; that window is all that remains of the race.)
* **check the write.**  Right after, it reads the setting again: a value outside the range
  between the old value and its target is someone else's write, so the check backs off
  (:class:`CannotRun`) and leaves that value alone.  A value inside it is the kernel finding
  fewer pages than asked (not enough free contiguous memory).
* **give back only its own, and only if nobody else changed it.**  At the end the setting
  must read exactly what the check left; then the check writes the value it found.  If it
  reads anything else, somebody set it meanwhile: the check leaves their value (it never
  lowers a pool below what others set), and says so in :attr:`PoolKeeper.warnings`, naming the
  pages that may still be its own and the command that would remove them.

The *guardian* (``_worker.py guardian``, a separate process holding the host lock) gets every
change as a JSON line *before* the write and its result after it, and applies the same rule if
the driver dies without giving the pages back (even by SIGKILL).

Values are *persistent* pool sizes (``nr_hugepages - surplus_hugepages``: what a write to
``nr_hugepages`` sets, see ``nr_hugepages_store_common()`` and ``persistent_huge_pages()`` in
mm/hugetlb.c, v6.1) or ``nr_overcommit_hugepages`` values.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from ..units import format_size as fmt_size
from . import procfs

__all__ = ["CannotRun", "PoolKeeper", "Change", "hstate_dir", "settings_snapshot", "host_lock",
           "acquire_lock", "persistent", "fmt_size"]

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")


class CannotRun(RuntimeError):
    """The live check cannot run here: ``why`` it cannot and ``fix``, what would make it run."""

    def __init__(self, why: str, fix: str):
        super().__init__("cannot run: %s; %s" % (why, fix))
        self.why = why
        self.fix = fix


# --- settings -------------------------------------------------------------------------------
def hstate_dir(size: int) -> str:
    return os.path.join(procfs.HUGEPAGES_SYSFS, "hugepages-%dkB" % (size >> 10))


def settings_snapshot() -> dict[str, str]:
    """Every hugetlb pool setting the live check could touch, as the files read now."""
    paths = ["/proc/sys/vm/nr_hugepages", "/proc/sys/vm/nr_overcommit_hugepages"]
    try:
        for name in sorted(os.listdir(procfs.HUGEPAGES_SYSFS)):
            for k in ("nr_hugepages", "nr_overcommit_hugepages"):
                paths.append(os.path.join(procfs.HUGEPAGES_SYSFS, name, k))
    except OSError:
        pass
    out = {}
    for p in paths:
        try:
            with open(p) as f:
                out[p] = f.read().strip()
        except OSError:
            pass
    return out


def _read_int(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


def persistent(path: str) -> int:
    """What a write to ``path`` sets: for a sysfs nr_hugepages the pool without its surplus
    pages (``persistent_huge_pages()``), else the file's value.  Two small reads, no more."""
    value = _read_int(path)
    if os.path.basename(path) == "nr_hugepages" and path.startswith(procfs.HUGEPAGES_SYSFS):
        value -= _read_int(os.path.join(os.path.dirname(path), "surplus_hugepages"))
    return value


def _write(path: str, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


# --- lock -----------------------------------------------------------------------------------
def _lock_path() -> str:
    for d in ("/run/lock", "/run", tempfile.gettempdir()):
        if os.path.isdir(d) and os.access(d, os.W_OK):
            return os.path.join(d, "hgmviz-kernelcheck.lock")
    return os.path.join(tempfile.gettempdir(), "hgmviz-kernelcheck.lock")


def acquire_lock(timeout: float) -> int:
    """Take the host-wide lock (one live check at a time); its fd, or :class:`CannotRun`."""
    path = _lock_path()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                try:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                except OSError:
                    holder = "?"
                os.close(fd)
                raise CannotRun("another live hgmviz kernel check holds %s (pid %s)"
                                % (path, holder or "?"),
                                "wait for it to finish (only one may change the hugetlb pool "
                                "at a time)")
            time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.pwrite(fd, b"%d\n" % os.getpid(), 0)
    return fd


@contextlib.contextmanager
def host_lock(timeout: float = 120.0):
    """Hold the host-wide lock every live machine holds while it is open.

    While it is held no live machine (in any process) is open, so the hugetlb settings read then
    are the machine's resting state: what tests compare before and after.  It yields the lock's
    fd: ``LiveMachine(..., lock=fd)`` runs under it (for a caller that changes settings itself
    around a machine).
    """
    fd = acquire_lock(timeout)
    try:
        yield fd
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


# --- changing the pool by deltas ------------------------------------------------------------
@dataclass
class Change:
    """One setting the check wrote: the value it read right before (``before``), the value it
    wrote (``target``) and what it read right after (``got``; the kernel may find fewer pages).
    ``disowned``: someone else wrote it meanwhile, so it is theirs now and is left alone."""
    path: str
    before: int
    target: int
    got: int | None = None
    disowned: bool = False

    def as_line(self) -> str:
        return json.dumps({"path": self.path, "before": self.before, "target": self.target,
                           "got": self.got, "disowned": self.disowned}) + "\n"

    def ours(self, value: int) -> bool:
        """Whether ``value`` (read now) is what the check left, so it may be given back."""
        if self.disowned:
            return False
        if self.got is not None:
            return value == self.got
        return min(self.before, self.target) <= value <= max(self.before, self.target)


class PoolKeeper:
    """The pool settings one live machine changed, their guardian, and the outside changes
    seen (:attr:`warnings`: someone else resized the pool before or during the check)."""

    def __init__(self, lock_fd: int):
        self.lock_fd = lock_fd
        self.changes: list[Change] = []
        self.warnings: list[str] = []
        self.problems: list[str] = []
        self.left: list[str] = []       # changes not given back: they are somebody else's now
        self._guardian: subprocess.Popen | None = None

    # the guardian
    def start_guardian(self) -> None:
        g = subprocess.Popen([sys.executable, "-I", "-S", WORKER, "guardian"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             pass_fds=[self.lock_fd], start_new_session=True)
        if g.stdout.readline().strip() != "armed":
            g.kill()
            g.wait()
            raise RuntimeError("the settings guardian did not start")
        self._guardian = g

    @property
    def guardian_pid(self) -> int | None:
        return None if self._guardian is None else self._guardian.pid

    def _tell(self, change: Change) -> None:
        if self._guardian is not None:
            self._guardian.stdin.write(change.as_line())
            self._guardian.stdin.flush()

    def disarm(self) -> None:
        g, self._guardian = self._guardian, None
        if g is None:
            return
        try:
            g.stdin.write("disarm\n")
            g.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            g.wait(5.0)
        except subprocess.TimeoutExpired:
            g.kill()
            g.wait()
        g.stdout.close()

    # reserving
    def reserve(self, nr_hugepages: Mapping[int, int], exclusive: bool) -> dict:
        """Add ``nr_hugepages`` {hstate: pages} to the pools (``exclusive``: make them the only
        free pages and turn overcommit off).  Returns the pools right after; raises
        :class:`CannotRun` when the kernel found too few pages or someone else wrote meanwhile."""
        planned = procfs.read_hugepage_pools()          # the plan, before the guardian starts
        self.start_guardian()
        before = {}
        for size, n in sorted(nr_hugepages.items()):
            d = hstate_dir(size)
            p0 = planned[size]
            if exclusive and p0.nr_overcommit_hugepages:
                self._change(os.path.join(d, "nr_overcommit_hugepages"),
                             p0.nr_overcommit_hugepages, lambda v: 0)
            path = os.path.join(d, "nr_hugepages")
            before[size] = p0.nr_hugepages - p0.surplus_hugepages
            if exclusive:
                avail = max(0, p0.free_hugepages - p0.resv_hugepages)
                ch = self._change(path, before[size], lambda v, a=avail, n=n: v - a + n)
            else:
                ch = self._change(path, before[size], lambda v, n=n: v + n)
            before[size] = ch.before
            if ch.got < ch.target:
                self._compact_and_retry(ch)
        after = procfs.read_hugepage_pools()
        for size, n in sorted(nr_hugepages.items()):
            got = (after[size].nr_hugepages - after[size].surplus_hugepages) - before[size]
            avail = after[size].free_hugepages - after[size].resv_hugepages
            short = (got < n or avail < n) if not exclusive else avail != n
            if short:
                mem = procfs.read_meminfo()
                raise CannotRun(
                    "asked the kernel for %d more %s pages and it found %d (%d free and "
                    "unreserved; MemFree %d MiB): not enough free contiguous memory"
                    % (n, fmt_size(size), got, avail, mem.get("MemFree", 0) >> 10),
                    "free memory or compact it (echo 1 > /proc/sys/vm/compact_memory), or "
                    "reserve the pages at boot (e.g. hugepagesz=%s hugepages=%d on the kernel "
                    "command line)" % ("1G" if size == 1 << 30 else "2M", n))
        return after

    def _change(self, path: str, planned: int, target_of: Callable[[int], int]) -> Change:
        """Read ``path``, write ``target_of(value)`` at once, read it back (see the module
        docstring); the guardian hears of the change before the write."""
        try:
            value = persistent(path)                    # the read ...
            ch = Change(path, value, target_of(value))
            self._tell(ch)
            self.changes.append(ch)
            _write(path, ch.target)                     # ... and the write, nothing between
            ch.got = persistent(path)
        except OSError as e:
            raise CannotRun("changing %s failed: %s" % (path, e),
                            "run as root with a writable /sys and /proc/sys") from e
        if value != planned:
            self.warnings.append(
                "%s changed from %d to %d before the check wrote it (someone else resized the "
                "pool): the check changed it by its own pages only, %+d, to %d"
                % (path, planned, value, ch.target - value, ch.target))
        self._check_write(ch)
        return ch

    def _check_write(self, ch: Change) -> None:
        lo, hi = min(ch.before, ch.target), max(ch.before, ch.target)
        if lo <= ch.got <= hi:
            self._tell(ch)
            return
        ch.disowned = True
        self._tell(ch)
        msg = ("%s was written by someone else while the check reserved pages (it read %d, "
               "wrote %d, then read %d): the check backs off and leaves %d as it is"
               % (ch.path, ch.before, ch.target, ch.got, ch.got))
        self.warnings.append(msg)
        raise CannotRun(msg, "run the check again when nobody else is resizing the hugetlb pool")

    def _compact_and_retry(self, ch: Change) -> None:
        """Gigantic pages need contiguous memory: compact once and ask again, if the setting
        still reads what the first write left."""
        try:
            _write("/proc/sys/vm/compact_memory", 1)
            if persistent(ch.path) != ch.got:
                ch.got = persistent(ch.path)
            else:
                _write(ch.path, ch.target)
                ch.got = persistent(ch.path)
        except OSError:
            return
        self._check_write(ch)

    # giving back
    def restore(self) -> None:
        """Give back every change that still reads what the check left; leave (and report)
        every other one.  Idempotent."""
        for ch in reversed(self.changes):
            try:
                now = persistent(ch.path)
            except OSError as e:
                self.problems.append("reading %s: %s" % (ch.path, e))
                continue
            if now == ch.before and not ch.disowned:
                continue
            if not ch.ours(now):
                if not ch.disowned:
                    self.left.append(self.left_alone(ch, now))
                    self.warnings.append(self.left[-1])
                continue
            for _attempt in range(20):
                try:
                    _write(ch.path, ch.before)
                except OSError as e:
                    self.problems.append("restoring %s=%s: %s" % (ch.path, ch.before, e))
                    break
                if persistent(ch.path) == ch.before:
                    break
                time.sleep(0.05)                   # pages still being freed
            else:
                self.problems.append("%s reads %s after writing %s"
                                     % (ch.path, persistent(ch.path), ch.before))
        self.changes = []

    @staticmethod
    def left_alone(ch: Change, now: int) -> str:
        left = ch.got if ch.got is not None else ch.target
        delta = left - ch.before
        msg = ("%s was set to %d by someone else while the check ran (the check had left %d): "
               "left as it is, the check never lowers a pool below what others set"
               % (ch.path, now, left))
        if delta > 0 and ch.path.endswith("/nr_hugepages"):
            msg += ("; the %d pages the check added may still be in it (if that write meant to "
                    "replace them: echo %d > %s)" % (delta, max(0, now - delta), ch.path))
        return msg
