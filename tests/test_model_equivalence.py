"""Property test: the fast simulator (``hgmviz.Machine``) and the reference model
(``tests/refmodel.py``) agree on every operation of random sequences.

For every combination of scheme (mainline, per_piece), geometry (toy, x86_64) and kernel (6.2,
6.18) a hypothesis ``RuleBasedStateMachine`` applies the same random operations — memfd_create,
fallocate, close, spawn, mmap, munmap, madvise (DONTNEED, SPLIT, COLLAPSE), touch, fork, exit,
userfaultfd register/unregister, UFFDIO_CONTINUE and its batched form — to both, with addresses
biased towards the interesting ones (hugepage aligned, page aligned inside VMAs, unaligned, out
of range).  After each step it compares:

* the outcome: the same return value, or the same exception type and errno
  (``PartialProgress.mapped`` and the cause's errno too, ``UserfaultPending.reason``);
* every folio's refcount, entire mapcount, page_mapcount of the head, a tail and the last page,
  whether it is in use and its file index;
* pagemap at probe addresses in every process (pfn, folio, index, leaf size);
* meminfo, each process's VMAs and liveness, each file's size and open state;
* ``Machine.audit()`` of the fast simulator is empty;
* an operation that failed (anything but PartialProgress, or StateKept: madvise over holes)
  left the fast machine's ``state_digest()`` unchanged.

Schemes beyond the reference model's two (hstate_present, subtree_counted, thp_like) run too,
against the reference model of the same page-table rules (per_piece's for an HGM scheme): for
them everything but the folio counters is compared, and the fast machine's audit checks the
counters (issue 17: the audit would have caught items 2 and 3 had a sequence reached them).
Lengths near 2^64 are drawn for every ranged operation.

Sizes come from the hypothesis profile (tests/hypothesis_profiles.py): ``ci`` by default
(derandomized, about a minute of CPU), ``HGMVIZ_HYPOTHESIS_PROFILE=long`` ten times the
examples, 1.5 times the steps, fresh randomness each run.
Divergences already reported (each has a failing or xfail test in ``test_regressions.py`` or
``test_property_schemes.py``) are avoided by the generators while ``HGMVIZ_EQUIV_AVOID_KNOWN``
is not ``0``; see ``KNOWN_DIVERGENCES`` (remove an entry once its regression test passes).
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import hgmviz as hv
import hypothesis_profiles
from hgmviz.errors import PartialProgress, SigBus, StateKept, TaskHung, UserfaultPending
from refmodel import RefMachine

# the core must agree with the reference with NUMBA_DISABLE_JIT=1 too (as fast: toy tables are tiny)
pytestmark = pytest.mark.nojit

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

# name -> the regression test that shows it; the generators avoid these inputs (see module doc)
KNOWN_DIVERGENCES = {
    "fork_empty_tables": "test_fork_copy_mirrors_empty_page_tables",
}
AVOID_KNOWN = os.environ.get("HGMVIZ_EQUIV_AVOID_KNOWN", "1") != "0"

# CI-sized examples per toy combination (x86_64 ones get a quarter, at least 3), and steps;
# the profile scales both
EXAMPLES, STEPS = 70, 40
OTHER_SCHEMES_EXAMPLES = 16          # per toy combination of a scheme the model has no counters for

POOLS = {
    "toy": {32 * KIB: 12, 256 * KIB: 3},
    "x86_64": {2 * MIB: 6, GIB: 1},
}


def _outcome(fn):
    """('ok', value) or ('raise', exception)."""
    try:
        return ("ok", fn())
    except BaseException as e:  # noqa: BLE001 - every outcome is compared
        if isinstance(e, (KeyboardInterrupt, AssertionError)):
            raise
        return ("raise", e)


def _exc_key(e):
    key = [type(e).__name__]
    if isinstance(e, OSError):
        key.append(e.errno)
    if isinstance(e, PartialProgress):
        key += [e.mapped, type(e.cause).__name__, getattr(e.cause, "errno", None)]
    if isinstance(e, UserfaultPending):
        key += [e.reason, e.address]
    if isinstance(e, SigBus):
        key.append(e.kept)
    if isinstance(e, TaskHung):
        key.append(e.folio)
    return tuple(key)


class EquivalenceMachine(RuleBasedStateMachine):
    GEOMETRY = "toy"
    SCHEME = "mainline"
    REF_SCHEME = "mainline"      # the reference model's rules for the page tables
    COUNTERS = True              # the reference model counts as SCHEME does: compare counters
    KERNEL = "6.2"
    GUARD = None
    ERRORS = "proposed"

    def __init__(self):
        super().__init__()
        pool = POOLS[self.GEOMETRY]
        self.fast = hv.Machine(nr_hugepages=pool, geometry=self.GEOMETRY, scheme=self.SCHEME,
                               kernel=self.KERNEL, guard=self.GUARD, errors=self.ERRORS)
        self.ref = RefMachine(nr_hugepages=pool, geometry=self.GEOMETRY, scheme=self.REF_SCHEME,
                              kernel=self.KERNEL, guard=self.GUARD, errors=self.ERRORS,
                              tables_hold=self.SCHEME == "hstate_present")
        g = self.fast.geometry
        self.g = g
        self.PS = g.PAGE_SIZE
        self.hsizes = [h.size for h in g.hstates]
        self.procs = []      # [(fast Process, ref RefProcess)]
        self.files = []      # [(fast File, ref RefFile)]
        self.probes = []     # recent addresses worth probing with pagemap (the last 48)
        self.small = self.GEOMETRY == "toy"
        self.log = []

    # ------------------------------------------------------------------ helpers --------
    def both(self, name, fast_fn, ref_fn, mutating=True):
        """Run an operation on both machines and check the outcomes agree."""
        before = self.fast.state_digest() if mutating else None
        fo = _outcome(fast_fn)
        ro = _outcome(ref_fn)
        self.log.append(name)
        event("%s -> %s" % (name.split("(")[0], "ok" if fo[0] == "ok" else _exc_key(fo[1])[:2]))
        if fo[0] == "raise" and ro[0] == "raise":
            assert _exc_key(fo[1]) == _exc_key(ro[1]), (
                "%s: fast raised %r, reference raised %r" % (name, fo[1], ro[1]))
        else:
            assert fo[0] == ro[0] == "ok", "%s: fast %s %r, reference %s %r" % (
                name, fo[0], fo[1], ro[0], ro[1])
        if mutating and fo[0] == "raise" and not isinstance(fo[1], (PartialProgress, StateKept)) \
                and not getattr(fo[1], "kept", False):
            assert self.fast.state_digest() == before, (
                "%s failed with %r but changed the fast machine" % (name, fo[1]))
        return fo, ro

    def ref_vmas(self, i):
        return self.procs[i][1].vmas

    def draw_proc(self, data):
        """Mostly a live process (an exited one now and then: ESRCH)."""
        alive = [i for i, (p, q) in enumerate(self.procs) if q.alive]
        if alive and data.draw(st.integers(0, 9), label="live?") > 0:
            return data.draw(st.sampled_from(alive), label="proc")
        return data.draw(st.integers(0, len(self.procs) - 1), label="proc")

    def draw_file(self, data):
        """Mostly an open file (a closed one now and then: EBADF)."""
        open_ = [j for j, (f, r) in enumerate(self.files) if not r.closed]
        if open_ and data.draw(st.integers(0, 9), label="open?") > 0:
            return data.draw(st.sampled_from(open_), label="file")
        return data.draw(st.integers(0, len(self.files) - 1), label="file")

    def draw_range(self, data, i):
        """(addr, length) biased towards whole VMAs and aligned pieces of them."""
        vmas = self.ref_vmas(i)
        kind = data.draw(st.integers(0, 9), label="range kind")
        if vmas and kind <= 6:
            k = data.draw(st.integers(0, len(vmas) - 1), label="vma")
            v = vmas[k]
            start, end = v[0], v[1]
            hs = self.hs_of_fid(v[2])
            if kind <= 1:                                  # whole VMA(s)
                n = data.draw(st.integers(1, len(vmas) - k), label="nvmas")
                return start, vmas[k + n - 1][1] - start
            nh = (end - start) // hs
            if kind <= 3:                                  # hugepage-aligned piece
                a = data.draw(st.integers(0, nh - 1), label="h0")
                b = data.draw(st.integers(a + 1, nh), label="h1")
                return start + a * hs, (b - a) * hs
            # page-aligned piece, mostly inside one or two hugepages
            np_ = (end - start) // self.PS
            a = data.draw(st.integers(0, min(np_ - 1, 1200)), label="p0")
            n = data.draw(st.integers(1, max(1, min(np_ - a, 2 * (hs // self.PS), 600))), label="np")
            return start + a * self.PS, n * self.PS
        a = self.draw_addr(data, i)
        return a, self.draw_len(data, data.draw(st.sampled_from(self.hsizes)))

    def hs_of_file(self, j):
        return self.files[j][1].hstate.size

    def hs_of_fid(self, fid):
        return self.ref._s.files[fid].hstate.size

    def draw_addr(self, data, i):
        """An address biased towards interesting ones for process i."""
        vmas = self.ref_vmas(i)
        kind = data.draw(st.integers(0, 9), label="addr kind")
        top = self.g.TASK_SIZE
        if vmas and kind <= 6:
            v = data.draw(st.sampled_from(vmas), label="vma")
            start, end, fid = v[0], v[1], v[2]
            hs = self.hs_of_fid(fid)
            npages = (end - start) // self.PS
            if kind <= 2:     # hugepage aligned inside (or at the end of) the VMA
                k = data.draw(st.integers(0, min((end - start) // hs, 16)), label="k")
                a = start + k * hs
            elif kind <= 4:   # page aligned inside
                a = start + self.PS * data.draw(st.integers(0, min(npages - 1, 600)), label="pg")
            elif kind == 5:   # PUD / hugepage aligned just before or after
                a = data.draw(st.sampled_from([start - hs, end, end + hs, start & ~(self.g.level_size(3) - 1)]))
            else:             # unaligned inside
                a = start + data.draw(st.integers(1, max(1, min(end - start - 1, 5 * self.PS))))
            return max(0, min(a, top + self.PS))
        if kind == 7:
            return data.draw(st.sampled_from([0, self.PS, top - self.PS, top, top + self.PS,
                                              self.g.mmap_base]), label="edge addr")
        if kind == 8:
            hs = data.draw(st.sampled_from(self.hsizes))
            return hs * data.draw(st.integers(1, top // hs - 1), label="aligned addr")
        return self.PS * data.draw(st.integers(0, top // self.PS), label="page addr")

    def draw_len(self, data, hs):
        kind = data.draw(st.integers(0, 9), label="len kind")
        if kind <= 3:
            return hs * data.draw(st.integers(1, 4 if self.small else 2), label="huge count")
        if kind <= 6:
            return self.PS * data.draw(st.integers(1, 16 if self.small else 40), label="pages")
        if kind == 7:
            return data.draw(st.integers(1, 3 * self.PS), label="odd len")
        if kind == 8:
            return 0
        if data.draw(st.booleans(), label="near 2^64?"):
            return data.draw(st.sampled_from([2**64 - self.PS, 2**64 - hs, 2**64 - 2**47,
                                              2**64 - 2 * self.PS + 1, 2**63]), label="huge len")
        return data.draw(st.sampled_from([self.g.TASK_SIZE, self.g.level_size(3),
                                          self.g.level_size(3) * 2]), label="big len")

    def known(self, name, cond):
        """True when the input would hit the reported divergence ``name`` and we avoid it."""
        assert name in KNOWN_DIVERGENCES
        return AVOID_KNOWN and bool(cond)

    def fork_copies_empty_table(self, i):
        """Process i has a uffd-wp + EVENT_FORK VMA holding a page-table page below the hstate
        level with no leaf under it (reference model's tables)."""
        from refmodel import Leaf, Table
        r = self.ref
        mm = r._s.mms[self.procs[i][1].pid]
        if not mm.alive:
            return False

        def empty(t):
            return not any(isinstance(e, Leaf) or (isinstance(e, Table) and not empty(e))
                           for e in t.slots.values())

        def any_empty(t):
            return any(isinstance(e, Table) and (empty(e) or any_empty(e)) for e in t.slots.values())

        for v in mm.vmas:
            if "wp" in v.modes and v.event_fork:
                h = r._hs(v)
                for a in range(v.start, v.end, h.size):
                    t = r._table_at(mm.root, a, h.level)
                    e = None if t is None else t.slots.get(r._idx(a, h.level))
                    if isinstance(e, Table) and (empty(e) or any_empty(e)):
                        return True
        return False

    def note_probe(self, a):
        if isinstance(a, int) and 0 <= a < self.g.TASK_SIZE:
            self.probes.append(a & ~(self.PS - 1))
            del self.probes[:-48]

    # ------------------------------------------------------------------ rules ----------
    @initialize()
    def setup(self):
        self.rule_spawn()
        f = self.g.hstates[0].size
        fo, ro = self.both("memfd_create", lambda: self.fast.memfd_create(size=4 * f, hstate=f),
                           lambda: self.ref.memfd_create(size=4 * f, hstate=f))
        self.files.append((fo[1], ro[1]))

    @precondition(lambda self: len(self.procs) < 6)
    @rule()
    def rule_spawn(self):
        fo, ro = self.both("spawn", self.fast.spawn, self.ref.spawn)
        self.procs.append((fo[1], ro[1]))

    @precondition(lambda self: len(self.files) < 4)
    @rule(data=st.data())
    def rule_memfd(self, data):
        hs = data.draw(st.sampled_from(self.hsizes + [12345]), label="hstate")
        base = hs if hs != 12345 else self.hsizes[0]
        n = data.draw(st.integers(0, 10 if base == self.hsizes[0] else 3), label="n")
        size = n * base + data.draw(st.sampled_from([0] * 8 + [self.PS]), label="size extra")
        fo, ro = self.both("memfd_create(%d, %d)" % (size, hs),
                           lambda: self.fast.memfd_create(size=size, hstate=hs),
                           lambda: self.ref.memfd_create(size=size, hstate=hs))
        if fo[0] == "ok":
            self.files.append((fo[1], ro[1]))

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def rule_fallocate(self, data):
        j = self.draw_file(data)
        hs = self.hs_of_file(j)
        whole = max(hs, self.files[j][1].size)
        off = data.draw(st.sampled_from([0, 0, 0, hs, 2 * hs, self.PS, 5 * hs]), label="off")
        length = data.draw(st.sampled_from([whole, whole, hs, 2 * hs, self.PS, 3 * hs, 0]), label="len")
        mode = data.draw(st.sampled_from([0, 0, 0, hv.FALLOC_FL_KEEP_SIZE,
                                          hv.FALLOC_FL_PUNCH_HOLE | hv.FALLOC_FL_KEEP_SIZE,
                                          hv.FALLOC_FL_PUNCH_HOLE | hv.FALLOC_FL_KEEP_SIZE,
                                          hv.FALLOC_FL_PUNCH_HOLE, 0x10]), label="mode")
        f, r = self.files[j]
        self.both("fallocate(%d, %d, %d, mode=%#x)" % (j, off, length, mode),
                  lambda: f.fallocate(off, length, mode), lambda: r.fallocate(off, length, mode))

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def rule_ftruncate(self, data):
        j = self.draw_file(data)
        hs = self.hs_of_file(j)
        size = data.draw(st.sampled_from([0, hs, 2 * hs, 4 * hs, self.PS, hs + self.PS]),
                         label="size")
        f, r = self.files[j]
        self.both("ftruncate(%d, %#x)" % (j, size), lambda: f.ftruncate(size),
                  lambda: r.ftruncate(size))

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def rule_close(self, data):
        if data.draw(st.integers(0, 3), label="really close?"):
            return
        j = self.draw_file(data)
        f, r = self.files[j]
        self.both("close(%d)" % j, f.close, r.close)

    @precondition(lambda self: self.procs and self.files)
    @rule(data=st.data())
    def rule_mmap(self, data):
        i = self.draw_proc(data)
        j = self.draw_file(data)
        hs = self.hs_of_file(j)
        fsize = self.files[j][1].size
        nfile = max(1, fsize // hs)
        k = data.draw(st.integers(0, nfile), label="offset pages")
        offset = k * hs + data.draw(st.sampled_from([0] * 12 + [self.PS]), label="off extra")
        n = data.draw(st.integers(1, max(1, nfile - k) + 1), label="length pages")
        length = n * hs - data.draw(st.sampled_from([0] * 6 + [self.PS]), label="len less")
        if not self.small and hs == self.hsizes[0] and data.draw(st.integers(0, 4)) == 0:
            length = GIB * data.draw(st.integers(1, 2), label="GiB")     # room for PMD sharing
        addr = None
        if data.draw(st.integers(0, 3), label="fixed?") == 0:
            addr = self.draw_addr(data, data.draw(st.integers(0, len(self.procs) - 1)))
        noreserve = data.draw(st.booleans(), label="noreserve")
        shared = data.draw(st.sampled_from([True, True, False]), label="shared")
        (p, q) = self.procs[i]
        (f, r) = self.files[j]
        fo, ro = self.both("mmap(p%d, f%d, len=%#x, off=%#x, addr=%s, noreserve=%s, shared=%s)" % (
            i, j, length, offset, addr if addr is None else hex(addr), noreserve, shared),
            lambda: p.mmap(f, length, offset=offset, addr=addr, noreserve=noreserve, shared=shared),
            lambda: q.mmap(r, length, offset=offset, addr=addr, noreserve=noreserve, shared=shared))
        if fo[0] == "ok":
            a = fo[1]
            for x in (a, a + self.PS, a + hs, a + hs // 2, a + length - self.PS):
                self.note_probe(x)

    @precondition(lambda self: self.procs)
    @rule(data=st.data())
    def rule_munmap(self, data):
        i = self.draw_proc(data)
        a, length = self.draw_range(data, i)
        p, q = self.procs[i]
        self.both("munmap(p%d, %#x, %#x)" % (i, a, length), lambda: p.munmap(a, length),
                  lambda: q.munmap(a, length))

    @precondition(lambda self: self.procs)
    @rule(data=st.data())
    def rule_mprotect(self, data):
        i = self.draw_proc(data)
        a, length = self.draw_range(data, i)
        prot = data.draw(st.sampled_from([hv.PROT_READ, hv.PROT_READ | hv.PROT_WRITE,
                                          hv.PROT_NONE, 8]), label="prot")
        p, q = self.procs[i]
        self.both("mprotect(p%d, %#x, %#x, %d)" % (i, a, length, prot),
                  lambda: p.mprotect(a, length, prot), lambda: q.mprotect(a, length, prot))

    @precondition(lambda self: self.procs)
    @rule(data=st.data())
    def rule_mremap(self, data):
        i = self.draw_proc(data)
        a, length = self.draw_range(data, i)
        new_len = data.draw(st.sampled_from([self.PS, length, max(self.PS, length // 2),
                                             2 * length]), label="new_len")
        flags = data.draw(st.sampled_from([0, 0, hv.MREMAP_MAYMOVE | hv.MREMAP_FIXED,
                                           hv.MREMAP_FIXED, 4]), label="flags")
        new_addr = self.draw_addr(data, i) if flags & hv.MREMAP_FIXED else None
        p, q = self.procs[i]
        fo, ro = self.both("mremap(p%d, %#x, %#x, %#x, %d, %s)" % (
            i, a, length, new_len, flags, new_addr if new_addr is None else hex(new_addr)),
            lambda: p.mremap(a, length, new_len, flags, new_addr),
            lambda: q.mremap(a, length, new_len, flags, new_addr))
        if fo[0] == "ok":
            self.note_probe(fo[1])

    @precondition(lambda self: self.procs)
    @rule(data=st.data())
    def rule_madvise(self, data):
        i = self.draw_proc(data)
        a, length = self.draw_range(data, i)
        advice = data.draw(st.sampled_from([hv.MADV_DONTNEED] * 3 + [hv.MADV_SPLIT] * 2
                                           + [hv.MADV_COLLAPSE] * 2 + [hv.MADV_REMOVE] * 2 + [7]),
                           label="advice")
        p, q = self.procs[i]
        self.both("madvise(p%d, %#x, %#x, %d)" % (i, a, length, advice),
                  lambda: p.madvise(a, length, advice), lambda: q.madvise(a, length, advice))

    @precondition(lambda self: self.procs)
    @rule(data=st.data())
    def rule_touch(self, data):
        i = self.draw_proc(data)
        a = self.draw_addr(data, i)
        p, q = self.procs[i]
        self.note_probe(a)
        write = data.draw(st.booleans(), label="write")
        self.both("touch(p%d, %#x, write=%s)" % (i, a, write), lambda: p.touch(a, write=write),
                  lambda: q.touch(a, write=write))

    @precondition(lambda self: self.procs and len(self.procs) < 8)
    @rule(data=st.data())
    def rule_fork(self, data):
        i = self.draw_proc(data)
        if self.known("fork_empty_tables", self.fork_copies_empty_table(i)):
            return
        p, q = self.procs[i]
        fo, ro = self.both("fork(p%d)" % i, p.fork, q.fork)
        if fo[0] == "ok":
            self.procs.append((fo[1], ro[1]))

    @precondition(lambda self: self.procs)
    @rule(data=st.data())
    def rule_exit(self, data):
        if data.draw(st.integers(0, 3), label="really exit?"):
            return
        i = self.draw_proc(data)
        p, q = self.procs[i]
        self.both("exit(p%d)" % i, p.exit, q.exit)

    @precondition(lambda self: self.procs)
    @rule(data=st.data())
    def rule_register(self, data):
        i = self.draw_proc(data)
        a, length = self.draw_range(data, i)
        mode = data.draw(st.sampled_from(["minor", "minor", "missing", "wp", "minor|wp",
                                          "missing|minor", "bogus"]), label="mode")
        ef = data.draw(st.booleans(), label="event_fork")
        p, q = self.procs[i]
        self.both("uffdio_register(p%d, %#x, %#x, %s, %s)" % (i, a, length, mode, ef),
                  lambda: p.uffdio_register(a, length, mode=mode, event_fork=ef),
                  lambda: q.uffdio_register(a, length, mode=mode, event_fork=ef))

    @precondition(lambda self: self.procs)
    @rule(data=st.data())
    def rule_unregister(self, data):
        i = self.draw_proc(data)
        a, length = self.draw_range(data, i)
        p, q = self.procs[i]
        self.both("uffdio_unregister(p%d, %#x, %#x)" % (i, a, length),
                  lambda: p.uffdio_unregister(a, length), lambda: q.uffdio_unregister(a, length))

    @precondition(lambda self: self.procs)
    @rule(data=st.data())
    def rule_continue(self, data):
        i = self.draw_proc(data)
        a, length = self.draw_range(data, i)
        p, q = self.procs[i]
        self.note_probe(a)
        self.both("uffdio_continue(p%d, %#x, %#x)" % (i, a, length),
                  lambda: p.uffdio_continue(a, length), lambda: q.uffdio_continue(a, length))

    @precondition(lambda self: self.procs)
    @rule(data=st.data())
    def rule_copy(self, data):
        i = self.draw_proc(data)
        a, length = self.draw_range(data, i)
        p, q = self.procs[i]
        self.note_probe(a)
        wake = data.draw(st.booleans(), label="wake")
        if wake:
            self.both("uffdio_wake(p%d, %#x, %#x)" % (i, a, length),
                      lambda: p.uffdio_wake(a, length), lambda: q.uffdio_wake(a, length))
        else:
            self.both("uffdio_copy(p%d, %#x, %#x)" % (i, a, length),
                      lambda: p.uffdio_copy(a, length), lambda: q.uffdio_copy(a, length))

    @precondition(lambda self: self.procs)
    @rule(data=st.data())
    def rule_continue_batch(self, data):
        i = self.draw_proc(data)
        a = self.draw_addr(data, i)
        piece = data.draw(st.sampled_from([self.PS, self.PS, self.g.level_size(2),
                                           self.g.level_size(3), 3 * self.PS]), label="piece")
        count = data.draw(st.sampled_from([1, 2, 3, 8, 16, 64] if self.small else [1, 2, 8, 24]),
                          label="count")
        length = piece * count
        p, q = self.procs[i]
        self.note_probe(a)
        self.both("uffdio_continue_batch(p%d, %#x, %#x, %#x)" % (i, a, length, piece),
                  lambda: p.uffdio_continue_batch(a, length, piece),
                  lambda: q.uffdio_continue_batch(a, length, piece))

    @precondition(lambda self: self.procs and self.files)
    @rule(data=st.data())
    def rule_postcopy_setup(self, data):
        """mmap a file, fallocate it, MADV_SPLIT (HGM schemes) and register (mostly minor):
        the postcopy recipe of domain.md 4.5, each step compared on its own."""
        i = self.draw_proc(data)
        j = self.draw_file(data)
        p, q = self.procs[i]
        f, r = self.files[j]
        hs = self.hs_of_file(j)
        n = data.draw(st.integers(1, 3 if hs == self.hsizes[0] else 2), label="n")
        noreserve = data.draw(st.booleans(), label="noreserve")
        fo, ro = self.both("mmap(p%d, f%d, %#x)" % (i, j, n * hs),
                           lambda: p.mmap(f, n * hs, noreserve=noreserve),
                           lambda: q.mmap(r, n * hs, noreserve=noreserve))
        if fo[0] != "ok":
            return
        a = fo[1]
        for x in range(a, a + n * hs, max(self.PS, hs // 4)):
            self.note_probe(x)
        if data.draw(st.booleans(), label="fallocate?"):
            self.both("fallocate(f%d)" % j, lambda: f.fallocate(0, n * hs), lambda: r.fallocate(0, n * hs))
        if self.REF_SCHEME != "mainline" and data.draw(st.integers(0, 3), label="split?"):
            self.both("madvise(p%d, %#x, SPLIT)" % (i, a), lambda: p.madvise(a, n * hs, hv.MADV_SPLIT),
                      lambda: q.madvise(a, n * hs, hv.MADV_SPLIT))
        mode = data.draw(st.sampled_from(["minor", "minor", "minor|wp", "wp", "missing"]), label="mode")
        ef = data.draw(st.booleans(), label="event_fork")
        self.both("uffdio_register(p%d, %#x, %s)" % (i, a, mode),
                  lambda: p.uffdio_register(a, n * hs, mode=mode, event_fork=ef),
                  lambda: q.uffdio_register(a, n * hs, mode=mode, event_fork=ef))

    @precondition(lambda self: len(self.procs) >= 1)
    @rule(data=st.data())
    def rule_pmd_share_setup(self, data):
        """Map one file of the PMD-level hstate at PUD-aligned addresses in two processes and
        touch a page in each: huge_pmd_share's conditions (want_pmd_share, page_table_shareable)
        hold unless the flags drawn differ."""
        hs = self.hsizes[0]
        pud = self.g.level_size(3)
        n = pud // hs
        fit = [k for k, (ff, rr) in enumerate(self.files)
               if rr.hstate.size == hs and rr.size >= pud and not rr.closed]
        if fit and (len(self.files) >= 6 or data.draw(st.booleans(), label="reuse file?")):
            j = data.draw(st.sampled_from(fit), label="file")
        else:
            fo, ro = self.both("memfd_create(%#x)" % pud, lambda: self.fast.memfd_create(size=pud, hstate=hs),
                               lambda: self.ref.memfd_create(size=pud, hstate=hs))
            self.files.append((fo[1], ro[1]))
            j = len(self.files) - 1
        f, r = self.files[j]
        if data.draw(st.booleans(), label="fallocate?"):
            self.both("fallocate(f%d)" % j, lambda: f.fallocate(0, hs), lambda: r.fallocate(0, hs))
        others = [k for k, (pp, qq) in enumerate(self.procs) if qq.alive]
        if not others:
            return
        for rep in range(data.draw(st.integers(1, 3), label="how many")):
            i = data.draw(st.sampled_from(others), label="proc")
            p, q = self.procs[i]
            slot = data.draw(st.integers(1, self.g.mmap_base // pud - 1), label="PUD slot")
            addr = slot * pud
            noreserve = data.draw(st.sampled_from([True, True, False]), label="noreserve")
            fo, ro = self.both("mmap(p%d, f%d, %#x, addr=%#x)" % (i, j, pud, addr),
                               lambda: p.mmap(f, pud, addr=addr, noreserve=noreserve),
                               lambda: q.mmap(r, pud, addr=addr, noreserve=noreserve))
            if fo[0] != "ok":
                continue
            for x in range(addr, addr + pud, pud // 8):
                self.note_probe(x)
            if data.draw(st.integers(0, 2), label="register missing?") == 0:
                # VM_UFFD_MISSING alone keeps the VMA shareable (uffd_disable_huge_pmd_share)
                self.both("uffdio_register(p%d, %#x, missing)" % (i, addr),
                          lambda: p.uffdio_register(addr, pud, mode="missing"),
                          lambda: q.uffdio_register(addr, pud, mode="missing"))
            k = data.draw(st.integers(0, n - 1), label="page")
            if data.draw(st.booleans(), label="continue?"):
                self.both("uffdio_continue(p%d, %#x)" % (i, addr + k * hs),
                          lambda: p.uffdio_continue(addr + k * hs, hs),
                          lambda: q.uffdio_continue(addr + k * hs, hs))
            else:
                self.both("touch(p%d, %#x)" % (i, addr + k * hs), lambda: p.touch(addr + k * hs),
                          lambda: q.touch(addr + k * hs))

    # ------------------------------------------------------------------ checks ---------
    @invariant()
    def same_state(self):
        m, r = self.fast, self.ref
        assert m.meminfo() == r.meminfo(), "meminfo: fast %r, reference %r" % (m.meminfo(), r.meminfo())
        for fa, fr in zip(m.folios, r.folios):
            n = fa.nr_pages
            a = (fa.refcount, fa.entire_mapcount, fa.page_mapcount(0), fa.page_mapcount(1),
                 fa.page_mapcount(n - 1), fa.in_use, fa.index, fa.pfn, fa.locked,
                 fa.leaked_refs)
            b = (fr.refcount, fr.entire_mapcount, fr.page_mapcount(0), fr.page_mapcount(1),
                 fr.page_mapcount(n - 1), fr.in_use, fr.index, fr.pfn, fr.locked,
                 fr.leaked_refs)
            if not self.COUNTERS:             # the audit checks this scheme's counters
                a, b = a[5:], b[5:]
            assert a == b, "folio %d (refcount, entire, pm0, pm1, pm-1, in_use, index, pfn): " \
                           "fast %r, reference %r" % (fa.id, a, b)
        for j, (f, r2) in enumerate(self.files):
            assert (f.size, f.closed) == (r2.size, r2.closed), "file %d size/closed: fast %r, reference %r" % (
                j, (f.size, f.closed), (r2.size, r2.closed))
            pa = {k: fo.id for k, fo in f.page_cache().items()}
            pb = dict(r2._st.pc)
            assert pa == pb, "file %d page cache {index: folio}: fast %r, reference %r" % (j, pa, pb)
            hs = r2.hstate.size
            for k in list(pb)[:4]:
                assert f.folio_at(k * hs + self.PS).id == r2.folio_at(k * hs + self.PS).id
        for i, (p, q) in enumerate(self.procs):
            assert p.alive == q.alive
            fv = tuple((v.start, v.end, v.file, v.pgoff, v.noreserve, v.uffd_modes,
                        v.uffd_event_fork, v.hgm, v.shared, v.resv >= 0, v.anon_vma,
                        v.resv_unmapped, v.prot) for v in p.vmas)
            assert fv == q.vmas, "process %d VMAs: fast %r, reference %r" % (i, fv, q.vmas)
            probes = set(self.probes)
            for v in q.vmas:
                hs = self.hs_of_fid(v[2])
                if self.small:                 # toy: every page of the first 512 KiB
                    probes.update(range(v[0], min(v[1], v[0] + (512 << 10)), self.PS))
                probes.update([v[0], v[0] + self.PS, v[1] - self.PS, v[0] + hs // 2])
                probes.update(range(v[0], min(v[1], v[0] + 8 * hs), hs))
            for a in sorted(probes):
                ea, eb = p.pagemap(a), q.pagemap(a)
                ka = None if ea is None else (ea.pfn, ea.folio.id, ea.index, ea.shift)
                kb = None if eb is None else (eb.pfn, eb.folio.id, eb.index, eb.shift)
                assert ka == kb, "pagemap(p%d, %#x) (pfn, folio, index, shift): fast %r, " \
                                 "reference %r" % (i, a, ka, kb)
        # the one thing the audit reports that is the kernel's, not the simulator's: the
        # reference and lock v2 35/46's posted error path leaves (guard sign_posted)
        leaks = ["folio %d: locked" % fa.id for fa in m.folios if fa.locked]
        problems = [p for p in m.audit() if not any(p.startswith(x) for x in leaks)]
        assert problems == [], "audit: %r" % (problems,)
        assert len(m.audit()) == len(problems) + len(leaks)


class GuardEquivalence(EquivalenceMachine):
    """The same comparison with a refcount guard, and one more rule that brings one folio's
    refcount to the guard quickly (the toy's 8-bit counters: INT_MAX 127): map a whole file
    at 4 KiB in a new VMA, the way chapter 3's attack does."""

    @precondition(lambda self: self.procs and self.files and self.SCHEME == "per_piece")
    @rule(data=st.data())
    def rule_flood(self, data):
        i = self.draw_proc(data)
        j = self.draw_file(data)
        (p, q), (f, r) = self.procs[i], self.files[j]
        hs = self.hs_of_file(j)
        length = hs * data.draw(st.integers(1, 2), label="hugepages")
        self.both("fallocate(%d, 0, %#x)" % (j, length), lambda: f.fallocate(0, length),
                  lambda: r.fallocate(0, length))
        for _ in range(data.draw(st.integers(1, 12), label="mappings")):
            if not self.flood_one(p, q, f, r, i, j, length):
                return

    def flood_one(self, p, q, f, r, i, j, length):
        fo, ro = self.both("mmap(p%d, f%d, %#x)" % (i, j, length), lambda: p.mmap(f, length),
                           lambda: q.mmap(r, length))
        if fo[0] != "ok":
            return False
        a = fo[1]
        self.note_probe(a)
        self.both("madvise(p%d, %#x, SPLIT)" % (i, a), lambda: p.madvise(a, length, hv.MADV_SPLIT),
                  lambda: q.madvise(a, length, hv.MADV_SPLIT))
        self.both("uffdio_register(p%d, %#x, minor)" % (i, a),
                  lambda: p.uffdio_register(a, length, mode="minor"),
                  lambda: q.uffdio_register(a, length, mode="minor"))
        fo, ro = self.both("uffdio_continue_batch(p%d, %#x, 4K)" % (i, a),
                           lambda: p.uffdio_continue_batch(a, length, self.PS),
                           lambda: q.uffdio_continue_batch(a, length, self.PS))
        return fo[0] == "ok"


def _make(geometry, scheme, kernel, examples=EXAMPLES, guard=None, errors="proposed"):
    ref = scheme if scheme in ("mainline", "per_piece") else (
        "per_piece" if hv.SCHEMES[scheme].supports_hgm else "mainline")
    cls = type("Equiv_%s_%s_%s_%s" % (geometry, scheme, kernel.replace(".", "_"), guard),
               (GuardEquivalence if guard else EquivalenceMachine,),
               {"GEOMETRY": geometry, "SCHEME": scheme, "KERNEL": kernel, "REF_SCHEME": ref,
                "COUNTERS": ref == scheme, "GUARD": guard, "ERRORS": errors})
    n = examples if geometry == "toy" else max(3, examples // 4)
    cls.TestCase.settings = settings(hypothesis_profiles.for_test(n, STEPS),
                                     suppress_health_check=list(HealthCheck))
    return cls.TestCase


for _g in ("toy", "x86_64"):
    for _s in ("mainline", "per_piece"):
        for _k in ("6.2", "6.18"):
            _tc = _make(_g, _s, _k)
            globals()["Test_%s_%s_%s" % (_g, _s, _k.replace(".", "_"))] = _tc
    for _s in sorted(set(hv.SCHEMES) - {"mainline", "per_piece"}):
        _tc = _make(_g, _s, "6.2", OTHER_SCHEMES_EXAMPLES)
        globals()["Test_%s_%s_6_2" % (_g, _s)] = _tc
# the guards, per_piece in the toy (where a random sequence reaches INT_MAX): the intended
# checks and v2 35/46 as posted (sign_posted: its leaked reference and locked folio)
for _guard, _errors in (("int_max_half", "proposed"), ("sign", "v2"), ("sign_posted", "proposed"),
                        ("sign_posted", "v2")):
    _tc = _make("toy", "per_piece", "6.2", OTHER_SCHEMES_EXAMPLES, guard=_guard, errors=_errors)
    globals()["Test_toy_per_piece_6_2_%s_%s" % (_guard, _errors)] = _tc
del _g, _s, _k, _tc, _guard, _errors
