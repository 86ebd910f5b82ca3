"""Layer 1: how much memory this process really has, and refusing a run that would not fit.

A page-table pool is lazily zeroed memory: a run becomes resident as it writes tables, and a
run bigger than the machine (a Binder session has about 2 GiB) is killed by the OOM killer in
the middle, with no warning.  Before such a run, :func:`require_memory` compares what it
needs with the tightest of the limits the process is under and raises
:class:`NotEnoughMemory` (a :class:`MemoryError`) saying both:

* cgroup v2: ``memory.max`` − ``memory.current`` of the process's cgroup and each ancestor
  (``/proc/self/cgroup`` line ``0::PATH``; Documentation/admin-guide/cgroup-v2.rst);
* cgroup v1: ``memory.limit_in_bytes`` − ``memory.usage_in_bytes`` of the memory controller's
  cgroup (Documentation/admin-guide/cgroup-v1/memory.rst);
* ``RLIMIT_AS`` (``prlimit --as``, ``ulimit -v``) − the process's ``VmSize``;
* ``MemAvailable`` of ``/proc/meminfo`` (the kernel's estimate of memory available without
  swapping, since v3.14).
"""
from __future__ import annotations

import os
import resource

__all__ = ["NotEnoughMemory", "memory_headroom", "require_memory", "pool_table_bytes",
           "pool_bytes", "current_rss"]

_UNLIMITED = 1 << 60


class NotEnoughMemory(MemoryError):
    """A run would need more memory than the process has; nothing was allocated."""

    def __init__(self, what: str, need: int, have: int, source: str):
        super().__init__(
            "%s needs about %s of memory; this process has %s (%s), so it is not started"
            % (what, _fmt(need), _fmt(have), source))
        self.need = need
        self.have = have
        self.source = source


def _fmt(n: int) -> str:
    n = int(n)
    if n >= 1 << 30:
        return "%.2f GiB" % (n / (1 << 30))
    return "%.0f MiB" % (n / (1 << 20))


def _read_int(path: str):
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    if text == "max":
        return _UNLIMITED
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_limits(root: str, proc_cgroup: str):
    """``(headroom, description)`` for each cgroup level with a memory limit."""
    out = []
    try:
        with open(proc_cgroup) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            # cgroup v2: this cgroup and every ancestor can limit
            rel = path.strip("/")
            while True:
                d = os.path.join(root, rel) if rel else root
                lim = _read_int(os.path.join(d, "memory.max"))
                if lim is not None and lim < _UNLIMITED:
                    cur = _read_int(os.path.join(d, "memory.current")) or 0
                    out.append((max(lim - cur, 0), "cgroup v2 memory.max %s − memory.current %s"
                                % (_fmt(lim), _fmt(cur))))
                if not rel:
                    break
                rel = os.path.dirname(rel)
        elif "memory" in controllers.split(","):
            d = os.path.join(root, "memory", path.strip("/"))
            lim = _read_int(os.path.join(d, "memory.limit_in_bytes"))
            if lim is not None and lim < _UNLIMITED:
                cur = _read_int(os.path.join(d, "memory.usage_in_bytes")) or 0
                out.append((max(lim - cur, 0), "cgroup v1 memory.limit_in_bytes %s − "
                            "memory.usage_in_bytes %s" % (_fmt(lim), _fmt(cur))))
    return out


def _status_kib(field: str, status: str = "/proc/self/status"):
    try:
        with open(status) as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def current_rss() -> int:
    """Resident memory of this process now (``VmRSS``), 0 when unknown."""
    return _status_kib("VmRSS") or 0


def memory_headroom(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup",
                    meminfo: str = "/proc/meminfo"):
    """``(bytes, description)``: the most this process can still allocate, by the tightest
    of its cgroup (v2 or v1), ``RLIMIT_AS`` and ``MemAvailable``.  ``(None, "unknown")``
    when no source could be read."""
    cands = _cgroup_limits(root, proc_cgroup)
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        vm = _status_kib("VmSize") or 0
        cands.append((max(soft - vm, 0), "RLIMIT_AS %s − VmSize %s" % (_fmt(soft), _fmt(vm))))
    avail = _status_kib("MemAvailable", meminfo)
    if avail is not None:
        cands.append((avail, "MemAvailable %s" % _fmt(avail)))
    if not cands:
        return None, "unknown"
    return min(cands, key=lambda c: c[0])


def require_memory(need: int, what: str, **where) -> int:
    """Raise :class:`NotEnoughMemory` unless ``need`` more bytes fit; return the headroom."""
    have, source = memory_headroom(**where)
    if have is not None and need > have:
        raise NotEnoughMemory(what, need, have, source)
    return have if have is not None else -1


def pool_table_bytes(ptrs: int) -> int:
    """Resident bytes of one page-table page in a :class:`PageTablePool` that has a row of
    its own: ``ptrs`` int32 entries plus its ``tlevel``/``tcount``/``tshare``/``tfolio``/
    ``fstack``/``rmap`` slots."""
    return pool_bytes(1, 1, ptrs)


def pool_bytes(tables: int, rows: int, ptrs: int) -> int:
    """Resident bytes of a :class:`PageTablePool` holding ``tables`` page-table pages whose
    entries take ``rows`` rows (full leaf tables of one content share a canonical row,
    issue 16): per table its ``tlevel``/``tcount``/``tshare``/``tfolio``/``fstack``/``rmap``
    slots, per row ``ptrs`` int32 entries."""
    return int(tables) * (1 + 4 + 4 + 4 + 4 + 4) + int(rows) * 4 * int(ptrs)
