"""Stateful property test across every scheme, guard, error policy, kernel and geometry.

Random operation sequences run on one machine; after every step the audit (every counter
recomputed from the page tables and the page cache) must find nothing, and a step that
failed must have left the machine byte-identical.  (The reference-model comparison for the
mainline and per_piece counting rules is tests/test_model_equivalence.py.)
"""
import os

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import hgmviz as hv
from hgmviz.ops import (Close, Exit, Fallocate, Fork, Madvise, MemfdCreate, Mmap, Munmap, Spawn,
                        Touch, UffdioContinue, UffdioContinueBatch, UffdioRegister, World, run_step)

LONG = os.environ.get("HGMVIZ_HYPOTHESIS_PROFILE") == "ci-long"

CONFIGS = st.fixed_dictionaries({
    "scheme": st.sampled_from(sorted(hv.SCHEMES)),
    "guard": st.sampled_from([None, "int_max_half", "sign"]),
    "errors": st.sampled_from(["proposed", "v2"]),
    "kernel": st.sampled_from(["6.2", "6.18"]),
    "geometry": st.sampled_from(["toy", "toy", "toy", "x86_64"]),
    "lookup_first": st.booleans(),
})

class SchemeMachine(RuleBasedStateMachine):
    @initialize(cfg=CONFIGS)
    def setup(self, cfg):
        g = hv.Machine(geometry=cfg["geometry"]).geometry
        self.small, self.big = (h.size for h in g.hstates)
        if cfg["geometry"] == "x86_64":
            pool = {self.small: 16, self.big: 2}
        else:
            pool = {self.small: 24, self.big: 3}
        self.m = hv.Machine(nr_hugepages=pool, scheme=cfg["scheme"], guard=cfg["guard"],
                            errors=cfg["errors"], kernel=cfg["kernel"],
                            geometry=cfg["geometry"], lookup_first=cfg["lookup_first"])
        self.g = g
        self.w = World(self.m)
        self.n = 0
        self.owned = {}          # process label -> mapping labels in its address space
        self.label_file = {}     # mapping label -> file label
        self.step(Spawn("p0"))
        self.step(MemfdCreate("f0", 2 * self.big, self.big))
        self.step(MemfdCreate("f1", 4 * self.small, self.small))

    # ---- helpers -----------------------------------------------------------------
    def step(self, op):
        before = self.m.state_digest()
        out = run_step(self.w, op)
        if not (out.ok or out.kept):      # a failure the kernel does not keep changes nothing
            assert self.m.state_digest() == before, (op, out)
        return out

    def procs(self):
        return [k for k, p in self.w.procs.items() if p.alive]

    def maps(self):
        return [k for k, a in self.w.addrs.items()]

    def _pa(self, data):
        """A live process that has a mapping, and an address in one of its mappings."""
        cands = [p for p in self.procs() if self.owned.get(p)]
        if not cands:
            return None, None
        p = data.draw(st.sampled_from(cands))
        label = data.draw(st.sampled_from(sorted(self.owned[p])))
        offs = [0, 0, self.g.PAGE_SIZE, self.small, self.small + self.g.PAGE_SIZE, self.big,
                self.big - self.g.PAGE_SIZE]
        return p, (label, data.draw(st.sampled_from(offs)))

    # ---- rules --------------------------------------------------------------------
    @rule(dice=st.integers(0, 3))
    def spawn(self, dice):
        if dice == 0:
            self.n += 1
            self.step(Spawn("p%d" % self.n))

    @rule(data=st.data(), which=st.sampled_from(["f0", "f1"]), pages=st.integers(1, 2),
          off=st.integers(0, 1), noreserve=st.booleans())
    def mmap(self, data, which, pages, off, noreserve):
        if not self.procs():
            return
        p = data.draw(st.sampled_from(self.procs()))
        size = self.big if which == "f0" else self.small
        self.n += 1
        out = self.step(Mmap(p, which, pages * size, "a%d" % self.n, offset=off * size,
                             noreserve=noreserve))
        if out.ok:
            self.owned.setdefault(p, set()).add("a%d" % self.n)
            self.label_file["a%d" % self.n] = which

    def _addr(self, data):
        label = data.draw(st.sampled_from(self.maps()))
        offs = [0, self.g.PAGE_SIZE, self.small, self.small + self.g.PAGE_SIZE, self.big,
                self.big - self.g.PAGE_SIZE]
        return label, data.draw(st.sampled_from(offs))

    def _len(self, data):
        return data.draw(st.sampled_from([self.g.PAGE_SIZE, 2 * self.g.PAGE_SIZE, self.small,
                                          self.small, self.big, self.big, 2 * self.big]))

    @rule(data=st.data())
    def touch(self, data):
        p, a = self._pa(data)
        if p:
            self.step(Touch(p, a))

    @rule(data=st.data(), advice=st.sampled_from(["MADV_DONTNEED", "MADV_SPLIT", "MADV_COLLAPSE"]))
    def madvise(self, data, advice):
        p, a = self._pa(data)
        if p:
            self.step(Madvise(p, a, self._len(data), advice))

    @rule(data=st.data())
    def munmap(self, data):
        p, a = self._pa(data)
        if p:
            self.step(Munmap(p, a, self._len(data)))

    @rule(data=st.data(), mode=st.sampled_from(["minor", "missing", "wp", "minor|wp"]),
          event_fork=st.booleans())
    def register(self, data, mode, event_fork):
        p, a = self._pa(data)
        if p:
            self.step(UffdioRegister(p, a, data.draw(st.sampled_from([self.small, self.big])),
                                     mode, event_fork))

    @rule(data=st.data(), batch=st.booleans(), inject=st.booleans())
    def uffdio_continue(self, data, batch, inject):
        p, a = self._pa(data)
        if not p:
            return
        if inject and data.draw(st.integers(0, 3)) == 0:
            self.m.inject("pagecache_vanish")
        if batch:
            piece = data.draw(st.sampled_from([self.g.PAGE_SIZE, self.small]))
            self.step(UffdioContinueBatch(p, a, self.small, piece))
        else:
            self.step(UffdioContinue(p, a, self._len(data)))
        self.m.inject(None)

    @rule(data=st.data(), dice=st.integers(0, 2))
    def fork(self, data, dice):
        if self.procs() and dice == 0:
            self.n += 1
            parent = data.draw(st.sampled_from(self.procs()))
            if self.step(Fork(parent, "p%d" % self.n)).ok:
                self.owned["p%d" % self.n] = set(self.owned.get(parent, ()))

    @rule(data=st.data(), dice=st.integers(0, 2))
    def exit(self, data, dice):
        if self.procs() and dice == 0:
            self.step(Exit(data.draw(st.sampled_from(self.procs()))))

    @rule(data=st.data(), split=st.booleans(), mode=st.sampled_from(["minor", "minor|wp"]),
          event_fork=st.booleans())
    def postcopy_pieces(self, data, split, mode, event_fork):
        """The postcopy pattern: page in the page cache, MADV_SPLIT, register, CONTINUE."""
        cands = [p for p in self.procs() if self.owned.get(p)]
        if not cands:
            return
        p = data.draw(st.sampled_from(cands))
        label = data.draw(st.sampled_from(sorted(self.owned[p])))
        which = self.label_file[label]
        H = self.big if which == "f0" else self.small
        self.step(Fallocate(which, 0, H))
        if split:
            self.step(Madvise(p, label, H, "MADV_SPLIT"))
        self.step(UffdioRegister(p, label, H, mode, event_fork))
        piece = data.draw(st.sampled_from([self.g.PAGE_SIZE, self.small]))
        if piece > H:
            piece = H
        n = data.draw(st.integers(1, 4))
        start = data.draw(st.sampled_from([0, 2 * self.g.PAGE_SIZE]))
        self.step(UffdioContinueBatch(p, (label, start - start % piece), min(n * piece, H), piece))
        if data.draw(st.booleans()):
            self.step(Madvise(p, label, H, "MADV_COLLAPSE"))

    @rule(which=st.sampled_from(["f0", "f1"]), dice=st.integers(0, 3))
    def fallocate(self, which, dice):
        if dice == 0:
            self.step(Fallocate(which, 0, self.big if which == "f0" else self.small))

    @rule(which=st.sampled_from(["f0", "f1"]), dice=st.integers(0, 5))
    def close(self, which, dice):
        if dice == 0:
            self.step(Close(which))

    @invariant()
    def audit_finds_nothing(self):
        if hasattr(self, "m"):
            assert self.m.audit() == []


SchemeMachine.TestCase.settings = settings(
    max_examples=1500 if LONG else 300, stateful_step_count=80 if LONG else 60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestSchemes = SchemeMachine.TestCase
