"""PMD sharing under every scheme (issue 17 item 3).

Two or three processes map one file at PUD-aligned addresses, so ``huge_pmd_share`` gives
them one PMD page: a leaf set by one process's fault is cleared later under another.  Under
``subtree_counted`` the piece counts were keyed by the faulting mm, so that clear found no
count and a reference leaked.  Every scheme must come back to the page cache's references
alone, with the audit clean after every step, in every order of touching, exiting, unmapping
and undoing.
"""
from __future__ import annotations

import dataclasses
import itertools

import pytest

import hgmviz as hv
from hgmviz.scenario_file import read_scenario
from hgmviz.scenarios import scenario_path
from hgmviz.schemes import SCHEMES
from hgmviz.session import session_from_scenario

MiB, GiB = 1 << 20, 1 << 30
BASES = (0x100000000, 0x200000000, 0x300000000)


def test_the_issue_reproduction_drops_every_reference():
    m = hv.Machine(nr_hugepages={2 << 20: 512}, scheme="subtree_counted")
    f = m.memfd_create(size=1 << 30, hstate=2 << 20)
    p1, p2 = m.spawn(), m.spawn()
    a1 = p1.mmap(f, 1 << 30, addr=0x100000000)
    a2 = p2.mmap(f, 1 << 30, addr=0x200000000)
    p1.touch(a1)
    p2.touch(a2 + (2 << 20))
    p2.exit()
    p1.exit()
    assert f.folio_at(2 << 20).refcount == 1
    assert f.folio_at(0).refcount == 1
    assert m.audit() == []


def _world(scheme, n):
    m = hv.Machine(nr_hugepages={2 * MiB: 8}, scheme=scheme)
    f = m.memfd_create(size=GiB, hstate=2 * MiB)
    f.fallocate(0, 8 * MiB)
    rest = [f.folio_at(i * 2 * MiB).refcount for i in range(4)]
    procs = [m.spawn() for _ in range(n)]
    addrs = [p.mmap(f, GiB, addr=BASES[i], noreserve=True) for i, p in enumerate(procs)]
    return m, f, rest, procs, addrs


def _ok(m, what):
    problems = m.audit()
    assert problems == [], "%s: %s" % (what, problems)


ENDS = ("exit", "munmap", "madvise", "munmap_half")


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("end", ENDS)
def test_every_order_of_touch_and_teardown_balances(scheme, n, end):
    touch_orders = list(itertools.permutations(range(n)))
    if n == 3:
        touch_orders = [(0, 1, 2), (2, 0, 1)]       # every end order after two touch orders
    for touch_order in touch_orders:
        for end_order in itertools.permutations(range(n)):
            m, f, rest, procs, addrs = _world(scheme, n)
            for k, i in enumerate(touch_order):       # each process faults a different page,
                procs[i].touch(addrs[i] + k * 2 * MiB)  # and one page all of them
                procs[i].touch(addrs[i] + 3 * 2 * MiB)
                _ok(m, "touch %d" % i)
            for i in end_order:
                p, a = procs[i], addrs[i]
                if end == "exit":
                    p.exit()
                elif end == "munmap":
                    p.munmap(a, GiB)
                elif end == "madvise":
                    p.madvise(a, GiB, hv.MADV_DONTNEED)
                else:                                  # a split off the PUD boundary unshares
                    p.munmap(a + 512 * MiB, 512 * MiB)
                    p.munmap(a, 512 * MiB)
                _ok(m, "%s %d (touches %s, ends %s)" % (end, i, touch_order, end_order))
            if end == "madvise":
                for p in procs:
                    p.exit()
                _ok(m, "exit after madvise")
            got = [f.folio_at(i * 2 * MiB).refcount for i in range(4)]
            assert got == rest, (scheme, touch_order, end_order, got, rest)
            assert all(f.folio_at(i * 2 * MiB).mapcount == 0 for i in range(4))


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_undo_across_sharing_and_unsharing_stays_exact(scheme):
    m, f, rest, (p1, p2), (a1, a2) = _world(scheme, 2)
    p1.touch(a1)
    p2.touch(a2 + 2 * MiB)
    snap = m.snapshot()
    p1.exit()                                          # the canonical owner leaves first
    _ok(m, "owner exit")
    m.restore(snap)
    _ok(m, "restored")
    p2.exit()
    p1.exit()
    _ok(m, "both gone")
    assert [f.folio_at(i * 2 * MiB).refcount for i in range(4)] == rest


def test_the_shipped_pmd_sharing_scenario_passes_the_audit_under_every_scheme():
    sc = read_scenario(scenario_path("pmd_sharing"))
    s = session_from_scenario(dataclasses.replace(sc, schemes=sorted(SCHEMES)), 1 << 30)
    for pos in range(len(s.history), -1, -1):
        s.goto(pos)
        for name, m in s.machines.items():
            assert m.audit() == [], (pos, name, m.audit())
