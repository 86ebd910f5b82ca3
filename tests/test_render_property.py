"""Property test (issue 4): for random machine states (toy geometry, every scheme, random
operations by two or more processes) the scene

* references only existing nodes, ports, page-table pages and folios;
* names every present leaf exactly (in a run, or in table k of a group) or inside a summary
  row whose address range and folio list contain it — and names no leaf that is not present;
* stays under its node budget (or has folded every level it can);
* leaves the machine byte-identical, and its text fits the width.
"""
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hgmviz as hv
from hgmviz.render import build_scene, named_leaves, render_text
from test_render import actual_leaves

T32 = 32 << 10
T256 = 256 << 10
KIB4 = 4096
ERRORS = (hv.SimError, OSError, NotImplementedError, ValueError)

proc_i = st.integers(0, 3)
page_i = st.integers(0, 127)
OPS = st.one_of(
    st.tuples(st.just("touch"), proc_i, page_i),
    st.tuples(st.just("touch"), proc_i, page_i),
    st.tuples(st.just("touch"), proc_i, page_i),
    st.tuples(st.just("continue"), proc_i, page_i, st.sampled_from([1, 2, 3, 8, 16, 64])),
    st.tuples(st.just("continue"), proc_i, page_i, st.sampled_from([1, 2, 3, 8, 16, 64])),
    st.tuples(st.just("batch"), proc_i, st.sampled_from([KIB4, T32])),
    st.tuples(st.just("dontneed"), proc_i, st.integers(0, 7)),
    st.tuples(st.just("collapse"), proc_i),
    st.tuples(st.just("fork"), proc_i),
    st.tuples(st.just("munmap"), proc_i),
    st.tuples(st.just("exit"), proc_i),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("snapshot")),
)


def apply(m, f, procs, addrs, op, H, size):
    i = op[1] % len(procs)
    p, a = procs[i], addrs[i]
    kind = op[0]
    if kind == "touch":
        addr = a + (op[2] * KIB4) % size
        try:
            p.touch(addr)
        except hv.UserfaultPending:             # the uffd handler resolves a minor fault
            p.uffdio_continue(addr, KIB4)
    elif kind == "continue":
        off = (op[2] * KIB4) % size
        p.uffdio_continue(a + off, min(op[3] * KIB4, size - off))
    elif kind == "batch":
        p.uffdio_continue_batch(a, size, op[2])
    elif kind == "dontneed":
        p.madvise(a + (op[2] * H) % size, H, hv.MADV_DONTNEED)
    elif kind == "collapse":
        p.madvise(a, size, hv.MADV_COLLAPSE)
    elif kind == "fork":
        procs.append(p.fork())
        addrs.append(a)
    elif kind == "munmap":
        p.munmap(a, size)
    elif kind == "exit":
        p.exit()


def check_scene(m, before, max_nodes, max_rows=24):
    digest = m.state_digest()
    s = build_scene(m, before=before, max_nodes=max_nodes, max_rows=max_rows)
    assert m.state_digest() == digest
    ids = {n.id for n in s.nodes}
    assert len(ids) == len(s.nodes)
    ports = {(n.id, r.port) for n in s.nodes for r in n.rows}
    for e in s.edges:
        assert e.src in ids and e.dst in ids
        assert e.port == "" or (e.src, e.port) in ports
    pool = m.pt
    for n in s.nodes:
        for t in n.tables:
            assert 0 < t < pool.capacity and pool.tlevel[t] != 0
        for fid in n.folios:
            assert 0 <= fid < len(m.folios)
        for r in n.rows:
            if r.target:
                assert r.target in ids
            for fid in r.folios:
                assert 0 <= fid < len(m.folios)
    assert s.node_count <= max_nodes or s.fold_level == m.geometry.levels - 1
    # every present leaf is named; nothing absent is named
    named, summaries = named_leaves(s)
    want = set()
    old = m.state(before).mms if before is not None else {}
    for pid, mm in m.state().mms.items():
        if not mm.alive or not mm.vmas:
            continue
        lo = min(v.start for v in mm.vmas)
        hi = max(v.end for v in mm.vmas)
        if pid in old and old[pid].vmas:
            lo = min(lo, min(v.start for v in old[pid].vmas))
            hi = max(hi, max(v.end for v in old[pid].vmas))
        want |= actual_leaves(m, pid, lo, hi)
    assert named <= want, sorted(named - want)[:5]
    for leaf in want - named:
        pid, va, _, fid, _ = leaf
        assert any(p == pid and a <= va < b and fid in fs for p, a, b, fs in summaries), leaf
    for width in (24, 80):
        assert max(len(x) for x in render_text(s, width).splitlines()) <= width
    return s


def random_machine(scheme, big, share, hgm, fallocate, ops):
    """Two processes map one memfd (at PUD-aligned addresses when ``share``), the ones in
    ``hgm`` with MADV_SPLIT + minor userfaultfd, then ``ops`` run (failures are fine);
    returns the machine and the last snapshot taken by a "snapshot" op."""
    H = T256 if big else T32
    size = 2 * T256 if big else 8 * T32          # a whole toy PUD range: PMD sharing can happen
    m = hv.Machine(nr_hugepages={T256: 4, T32: 16}, geometry="toy", scheme=scheme)
    f = m.memfd_create(size=size, hstate=H)
    if fallocate:
        f.fallocate(0, size)
    procs, addrs = [], []
    for i in range(2):
        p = m.spawn()
        addrs.append(p.mmap(f, size, addr=(1 + i) << 20 if share else None))
        procs.append(p)
        if i in hgm:
            try:
                p.madvise(addrs[-1], size, hv.MADV_SPLIT)
                p.uffdio_register(addrs[-1], size, mode="minor")
            except ERRORS:
                pass
    before = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for op in ops:
            if op[0] == "snapshot":
                before = m.snapshot()
                continue
            try:
                apply(m, f, procs, addrs, op, H, size)
            except ERRORS:
                pass
    return m, before


MACHINES = dict(scheme=st.sampled_from(sorted(hv.SCHEMES)), big=st.booleans(), share=st.booleans(),
                hgm=st.sampled_from([(), (0,), (0, 1)]), fallocate=st.booleans(),
                ops=st.lists(OPS, min_size=3, max_size=20))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(max_nodes=st.sampled_from([6, 12, 150]), **MACHINES)
def test_scene_properties_on_random_states(scheme, big, share, hgm, fallocate, ops, max_nodes):
    m, before = random_machine(scheme, big, share, hgm, fallocate, ops)
    check_scene(m, before, max_nodes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(max_rows=st.integers(2, 4), **MACHINES)
def test_row_cap_on_random_states(scheme, big, share, hgm, fallocate, ops, max_rows):
    m, before = random_machine(scheme, big, share, hgm, fallocate, ops)
    s = check_scene(m, before, 150, max_rows)
    assert all(len(n.rows) <= max_rows for n in s.nodes)


@pytest.mark.parametrize("scheme", sorted(hv.SCHEMES))
def test_scene_properties_on_a_busy_state(scheme):
    """A fixed busy state per scheme (sharing, HGM pieces, fork, dontneed)."""
    m = hv.Machine(nr_hugepages={T32: 16}, geometry="toy", scheme=scheme)
    f = m.memfd_create(size=2 * T256, hstate=T32)
    p1, p2 = m.spawn(), m.spawn()
    a1 = p1.mmap(f, T256, addr=1 << 20)
    a2 = p2.mmap(f, T256, addr=2 << 20)
    for i in range(0, 8, 3):
        p1.touch(a1 + i * T32)
    p2.touch(a2)
    snap = m.snapshot()
    c = p1.fork()
    c.touch(a1 + T32)
    p2.madvise(a2, T32, hv.MADV_DONTNEED)
    s = check_scene(m, snap, 150)
    assert any(n.mark for n in s.nodes)
    assert any(n.shared for n in s.nodes)
