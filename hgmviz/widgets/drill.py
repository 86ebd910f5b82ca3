"""Layer 6: the overflow drill — the operations James counted in T9, one step at a time.

James Houghton, 17 Jan 2023 (T9): "We increment the refcount once for each 4K mapping in 1G
... we only need 8192 (2^13) VMAs for the same 1G page to overflow refcount."  The drill does
exactly that: map the file's hugepage again and again, each time in a new VMA made
high-granularity (``MADV_SPLIT``), registered for minor faults and filled piece by piece with
``UFFDIO_CONTINUE``, until the guard refuses or the refcount wraps.

* :func:`drill_step_ops` — the next step of the drill as :mod:`hgmviz.ops` operations, read
  from the state (so undo / redo / reset never confuse it): a new mapping (mmap + MADV_SPLIT
  + UFFDIO_REGISTER) or the next unmapped piece (UFFDIO_CONTINUE).  For the toy geometry,
  where a mapping is 64 pieces and INT_MAX is 127; the explorer applies them through its
  session, so every step is recorded and undoable.
* :class:`ScaleRun` — the same at the real geometry (1 GiB at 4 KiB, 262,144 references a
  mapping, thousands of mappings, gigabytes of page tables): far beyond what a session
  should checkpoint, so it runs on a machine of its own, in chunks of VMAs between which a
  user interface can stop it.  Every operation is atomic (``Machine`` restores its state on
  any exception, KeyboardInterrupt included) and the cursor moves only after an operation
  completed, so a stop or an interrupt at any moment leaves a consistent machine that
  :meth:`ScaleRun.run_chunk` continues from.
"""
from __future__ import annotations

import re
import time
import warnings

from .. import ops as O
from ..core.memory import NotEnoughMemory, current_rss, pool_bytes, require_memory
from ..mm import Machine
from ..overflow import overflow_math

__all__ = ["drill_step_ops", "drill_label", "ScaleRun"]

_DRILL = re.compile(r"^d(\d+)$")


def drill_label(n: int) -> str:
    """The label of the drill's ``n``-th mapping (``d1``, ``d2``, ...)."""
    return "d%d" % n


def _drill_mappings(world) -> list:
    return sorted((int(m.group(1)), lab) for lab in world.addrs
                  for m in [_DRILL.match(lab)] if m)


def drill_step_ops(world, proc: str, file: str, piece: int, whole: bool = False) -> list:
    """The operations of the drill's next step for process ``proc`` and file ``file`` (labels
    of ``world``), mapping ``piece`` bytes at a time (``whole``: the rest of the current
    mapping in one batched UFFDIO_CONTINUE, as ``UffdioContinueBatch`` = one call per piece).

    Read from the state: the current mapping is the highest ``dN`` label of the world; its
    next piece is the first one ``pagemap`` reports not present.  When it is complete (or
    there is none), the step is a new mapping: ``mmap`` + ``MADV_SPLIT`` +
    ``UFFDIO_REGISTER(minor)``."""
    p = world.procs[proc]
    f = world.files[file]
    hs = f.hstate.size
    maps = _drill_mappings(world)
    if maps and p.alive:
        n, lab = maps[-1]
        a = world.addrs[lab]
        vma = p.find_vma(a)
        if vma is not None and vma.uffd:
            for off in range(0, hs, piece):
                if p.pagemap(a + off) is None:
                    if whole:
                        return [O.UffdioContinueBatch(proc, (lab, off), hs - off, piece)]
                    return [O.UffdioContinue(proc, (lab, off), piece)]
    lab = drill_label(maps[-1][0] + 1 if maps else 1)
    return [O.Mmap(proc, file, hs, lab), O.Madvise(proc, lab, hs, "MADV_SPLIT"),
            O.UffdioRegister(proc, lab, hs, "minor")]


def _gib(n: int) -> str:
    return "%.2f GiB" % (n / (1 << 30)) if n >= 1 << 28 else "%.0f MiB" % (n / (1 << 20))


class ScaleRun:
    """James's count at the real geometry: one ``hstate`` folio mapped fully at ``piece``,
    VMA after VMA, spread over ``procs`` processes (David, T10: "~64 processes with 64k
    VMAs"), until the ``guard`` refuses or the refcount wraps.

    ``run_chunk()`` maps up to ``chunk`` more VMAs and returns whether the run is over;
    ``stop_requested`` (set from a Stop button) ends :meth:`run` between two chunks.  The
    machine is built lazily (``start()``) and freed by :meth:`release`."""

    def __init__(self, scheme="per_piece", guard="int_max_half", kernel="6.2",
                 geometry="x86_64", hstate=1 << 30, piece=4096, procs=64, chunk=64):
        self.scheme, self.guard, self.kernel, self.geometry = scheme, guard, kernel, geometry
        self.hstate, self.piece, self.procs, self.chunk = int(hstate), int(piece), int(procs), \
            int(chunk)
        self.predicted = overflow_math(hstate=self.hstate, piece=self.piece, kernel=kernel,
                                       guard=guard, geometry=geometry)
        self.machine = None
        self.world = None
        self.stop_requested = False
        self.reset_counts()

    def reset_counts(self):
        self.vmas = 0              # VMAs completely mapped
        self.extra_pieces = 0      # pieces of the VMA the guard stopped
        self._cursor = 0           # next operation of the current VMA (0..3)
        self.outcome = None        # None (running), "refused", "wrapped", or an error status
        self.message = ""
        self.seconds = 0.0

    # ---- what a progress bar needs ------------------------------------------------------
    @property
    def expected_vmas(self) -> int:
        """How many VMAs the run maps before it ends, by :func:`hgmviz.overflow_math`."""
        p = self.predicted
        if self.guard is None:
            return int(p["wraps_during_mapping"])
        return int(p["full_mappings"]) + 1

    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def folio(self):
        return None if self.world is None else self.world.files["f"].folio_at(0)

    @property
    def refcount(self):
        f = self.folio
        return None if f is None else f.refcount

    def summary(self) -> str:
        """One line: where the run is, and what ``overflow_math`` predicts."""
        p = self.predicted
        if self.guard is None:
            pred = "wraps during mapping %d" % p["wraps_during_mapping"]
        else:
            pred = "%d full mappings + %d pieces, then refused" % (p["full_mappings"],
                                                                  p["extra_pieces"])
        state = ("not started" if self.machine is None else
                 "%d VMAs mapped%s, refcount %s" % (
                     self.vmas, (" + %d pieces" % self.extra_pieces) if self.extra_pieces else "",
                     self.refcount))
        end = "" if self.outcome is None else " — %s%s" % (
            self.outcome, (": " + self.message) if self.message else "")
        mem = ""
        if self.machine is not None:
            mem = "; page tables %s resident of the process's %s" % (
                _gib(pool_bytes(self.machine.pt.nr_used, self.machine.pt.nr_rows,
                                self.machine.pt.ptrs)),
                _gib(current_rss()))
        return "%s in %.2f s%s%s; overflow_math predicts: %s" % (state, self.seconds, end, mem,
                                                                 pred)

    # ---- running ------------------------------------------------------------------------
    def start(self):
        """Build the machine: ``procs`` processes and a file holding one folio."""
        self.reset_counts()
        self.stop_requested = False
        self.check_memory()
        m = Machine(nr_hugepages={self.hstate: 1}, geometry=self.geometry, scheme=self.scheme,
                    guard=self.guard, kernel=self.kernel)
        w = O.World(m)
        setup = [O.MemfdCreate("f", self.hstate, self.hstate),
                 O.Fallocate("f", 0, self.hstate)]
        setup += [O.Spawn("p%d" % i) for i in range(self.procs)]
        for op in setup:
            out = O.run_step(w, op)
            if not out.ok:
                raise RuntimeError("scale run set-up failed at %r: %s" % (op, out.message))
        # page tables for the whole run up front (lazily zeroed memory: only pages written to
        # become resident), as hgmviz.bench.scale_run does; without it the pool grows by
        # copying while the run goes
        m.pt.reserve_tables(self.tables_needed())
        self.machine, self.world = m, w
        return self

    def tables_needed(self) -> int:
        """Page-table pages the whole run writes (what ``start`` reserves)."""
        from ..geometry import get_geometry
        g = get_geometry(self.geometry)
        per_vma = 2 + self.hstate // (self.piece << g.bits_per_level)
        return min(self.expected_vmas + 1, 1 << 16) * per_vma

    def check_memory(self):
        """Refuse (:class:`~hgmviz.core.memory.NotEnoughMemory`) a run whose page tables
        would not fit in the memory this process has (cgroup, RLIMIT_AS, MemAvailable)."""
        from ..geometry import get_geometry
        g = get_geometry(self.geometry)
        n = self.tables_needed()
        leaf = max(1, self.hstate // (self.piece << g.bits_per_level))
        # every VMA's full leaf tables read the same canonical rows (issue 16); its other
        # tables, and the first VMA's leaf tables, have rows of their own
        rows = n // (2 + leaf) + 2 * leaf + 2 * self.procs
        require_memory(pool_bytes(n, rows, g.PTRS_PER_TABLE) + (64 << 20),
                       "the scale run (%s page-table pages, identical leaf tables sharing "
                       "their entries)" % format(n, ","))

    def _vma_ops(self, i: int) -> list:
        proc, lab = "p%d" % (i % self.procs), "v%d" % i
        hs = self.hstate
        return [O.Mmap(proc, "f", hs, lab), O.Madvise(proc, lab, hs, "MADV_SPLIT"),
                O.UffdioRegister(proc, lab, hs, "minor"),
                O.UffdioContinueBatch(proc, lab, hs, self.piece)]

    def run_chunk(self) -> bool:
        """Map up to ``chunk`` more VMAs; returns :attr:`done`."""
        if self.machine is None:
            try:
                self.start()
            except NotEnoughMemory as e:
                self.outcome = "not enough memory"
                self.message = str(e)
                return True
        if self.done:
            return True
        t = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for _ in range(self.chunk):
                    ops = self._vma_ops(self.vmas)
                    while self._cursor < len(ops):
                        out = O.run_step(self.world, ops[self._cursor])
                        self._cursor += 1           # the operation completed (ok or refused)
                        if not out.ok:
                            self._finish(out)
                            return True
                    self._cursor = 0
                    self.vmas += 1
                    if self.guard is None and self.folio.wrapped:
                        self.outcome = "wrapped"
                        self.message = "refcount %d" % self.refcount
                        return True
        finally:
            self.seconds += time.perf_counter() - t
        return False

    def _finish(self, out):
        if out.refused:
            self.extra_pieces = (out.mapped or 0) // self.piece
            self.outcome = "refused"
        else:
            self.outcome = out.status
        self.message = out.message

    def run(self, progress=None) -> bool:
        """Chunks until done or :attr:`stop_requested`; ``progress(self)`` after each."""
        self.stop_requested = False
        while not self.done and not self.stop_requested:
            self.run_chunk()
            if progress is not None:
                progress(self)
        return self.done

    def release(self):
        """Drop the machine (gigabytes of page tables after a full run); the counts stay."""
        self.machine = None
        self.world = None
