"""hgmviz.session: exact undo / redo / replay, failures recorded, notifications, interrupts."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hgmviz as hv
from hgmviz.ops import (Close, Exit, Fallocate, Fork, Madvise, MemfdCreate, Mmap, Munmap, Spawn,
                        Touch, UffdioContinue, UffdioContinueBatch, UffdioRegister)
from hgmviz.session import Inject, InvalidOperation, Session, SessionEvent

K4 = 4096
T32 = 32 << 10       # toy hstate: 8 base pages (PMD leaf)
T256 = 256 << 10     # toy hstate: 64 base pages (PUD leaf)
TOY = dict(geometry="toy", nr_hugepages={T32: 4, T256: 2})


def hgm_setup(length=T256, proc="p", file="f", label="a", fallocate=True, mode="minor",
              event_fork=False, hstate=T256):
    ops = [Spawn(proc), MemfdCreate(file, length, hstate)]
    if fallocate:
        ops.append(Fallocate(file, 0, length))
    ops += [Mmap(proc, file, length, label), Madvise(proc, label, length, "MADV_SPLIT"),
            UffdioRegister(proc, label, length, mode, event_fork)]
    return ops


def full_arrays(m):
    pt = m.pt
    return {k: getattr(pt, k).copy() for k in ("ent", "tlevel", "tcount", "tshare", "tfolio")}


# =========================================================================================
# Random operation sequences: undo / redo / goto / replay are exact
# =========================================================================================
PROCS = ["p", "q", "c"]
FILES = ["f", "g"]
ADDRS = ["a", "b"]
SIZES = [K4, 2 * K4, T32, 2 * T32, T256]


def op_strategy():
    proc = st.sampled_from(PROCS)
    file = st.sampled_from(FILES)
    label = st.sampled_from(ADDRS)
    size = st.sampled_from(SIZES)
    offset = st.sampled_from([0, K4, 3 * K4, T32, T32 + K4, 5 * T32])
    addr = st.one_of(label, st.tuples(label, offset))
    return st.one_of(
        st.builds(Spawn, proc),
        st.builds(MemfdCreate, file, st.sampled_from([T32, 2 * T32, T256, 2 * T256]),
                  st.sampled_from([T32, T256])),
        st.builds(Fallocate, file, st.sampled_from([0, T32]), size),
        st.builds(Close, file),
        st.builds(Mmap, proc, file, st.sampled_from([T32, 2 * T32, T256]), label),
        st.builds(Munmap, proc, addr, size),
        st.builds(Madvise, proc, addr, size,
                  st.sampled_from(["MADV_DONTNEED", "MADV_SPLIT", "MADV_COLLAPSE"])),
        st.builds(Touch, proc, addr),
        st.builds(Touch, proc, addr),
        st.builds(Fork, proc, st.sampled_from(["c", "q"])),
        st.builds(Exit, proc),
        st.builds(UffdioRegister, proc, label, st.sampled_from([T32, T256]),
                  st.sampled_from(["minor", "missing", "minor|wp"]), st.booleans()),
        st.builds(UffdioContinue, proc, addr, size),
        st.builds(UffdioContinue, proc, addr, size),
        st.builds(UffdioContinueBatch, proc, label, st.sampled_from([T32, T256]),
                  st.sampled_from([K4, T32])),
        st.builds(Inject, st.just("pagecache_vanish")),
    )


# a prefix that makes most random operations meaningful
PREFIX = [Spawn("p"), MemfdCreate("f", T256, T256), Fallocate("f", 0, T256),
          Mmap("p", "f", T256, "a"),
          Madvise("p", "a", T256, "MADV_SPLIT"), UffdioRegister("p", "a", T256, "minor|wp", True),
          MemfdCreate("g", 2 * T32, T32), Mmap("p", "g", 2 * T32, "b")]


def run_ops(s, ops):
    """Apply ``ops``; invalid ones must raise and change nothing.  Returns the digests after
    each recorded step (index = position - the position at the start)."""
    start = s.position
    digests = [s.state_digest()]
    for op in ops:
        before, version, n = s.state_digest(), s.version, len(s.history)
        try:
            s.apply(op)
        except InvalidOperation:
            assert s.state_digest() == before
            assert s.version == version and len(s.history) == n
            continue
        digests.append(s.state_digest())
    assert len(digests) == s.position - start + 1
    return digests


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_strategy(), min_size=1, max_size=25),
       budget=st.sampled_from([0, 1 << 30]),
       schemes=st.sampled_from([["per_piece"], ["mainline"], ["thp_like", "hstate_present"],
                                ["per_piece", "subtree_counted", "mainline"]]),
       jumps=st.lists(st.integers(0, 40), max_size=6))
def test_random_sequences_undo_redo_goto_replay_exact(ops, budget, schemes, jumps):
    s = Session(schemes=schemes, snapshot_budget=budget, **TOY)
    digests = run_ops(s, PREFIX + ops)
    n = s.position
    # undo all the way, then redo all the way
    for pos in range(n - 1, -1, -1):
        s.undo()
        assert s.position == pos
        assert s.state_digest() == digests[pos]
    assert s.undo() is None
    for pos in range(1, n + 1):
        s.redo()
        assert s.state_digest() == digests[pos]
    assert s.redo() is None
    for j in jumps:
        j = j % (n + 1)
        s.goto(j)
        assert s.state_digest() == digests[j]
    s.goto(n)
    s.replay()
    assert s.state_digest() == digests[n]
    # an independent oracle: a fresh session applying the recorded operations
    fresh = Session(schemes=schemes, **TOY)
    for step in s.steps:
        fresh.apply(step.op)
        assert fresh.last.outcomes == step.outcomes
    assert fresh.state_digest() == digests[n]
    # the budget is honoured, except for the checkpoints always kept
    if budget == 0:
        assert set(s.checkpoint_positions) <= {0, n - 1, n}


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(op_strategy(), min_size=1, max_size=15), cut=st.integers(0, 30),
       more=st.lists(op_strategy(), min_size=1, max_size=8))
def test_apply_after_undo_drops_the_redo_tail(ops, cut, more):
    s = Session(scheme="per_piece", **TOY)
    digests = run_ops(s, PREFIX + ops)
    cut = cut % (s.position + 1)
    s.goto(cut)
    kept = s.history[:cut]
    tail = s.history[cut:]
    run_ops(s, more)
    assert s.history[:cut] == kept
    if s.position > cut:              # something was applied: the redo tail is gone
        assert len(s.history) == s.position and not s.can_redo
    else:                             # every operation was invalid: nothing changed
        assert s.history[cut:] == tail
    s.goto(cut)
    assert s.state_digest() == digests[cut]


# =========================================================================================
# Checkpoints copy only the tables in use and restore byte for byte
# =========================================================================================
@pytest.mark.filterwarnings("ignore:refcount overflow:RuntimeWarning")
def test_checkpoint_restores_every_array_byte_for_byte():
    m = hv.Machine(nr_hugepages={T256: 2, T32: 4}, geometry="toy", scheme="thp_like")
    f = m.memfd_create(size=T256, hstate=T256)
    f.fallocate(0, T256)
    p = m.spawn()
    a = p.mmap(f, T256)
    p.madvise(a, T256, hv.MADV_SPLIT)
    p.uffdio_register(a, T256, mode="minor")
    p.uffdio_continue(a, 3 * K4)
    full, ck = m.snapshot(), m.checkpoint()
    arrays, digest, cap = full_arrays(m), m.state_digest(), m.pt.capacity
    nfree, fstack = m.pt.nr_free, m.pt.fstack[:m.pt.nr_free].copy()
    counters = {k: v.copy() for k, v in m.scheme.counters.items()}
    # change a lot, including growing the pool well past its capacity
    for _ in range(12):
        q = p.fork()
        b = q.mmap(f, T256)
        q.madvise(b, T256, hv.MADV_SPLIT)
        q.uffdio_register(b, T256, mode="minor")
        q.uffdio_continue_batch(b, T256, K4)
    p.exit()
    assert m.pt.capacity > cap
    m.restore(ck)
    assert m.state_digest() == digest
    now = full_arrays(m)
    for k, a0 in arrays.items():
        assert np.array_equal(now[k][:cap], a0), k
        rest = now[k][cap:]
        assert not rest.any() if k != "tfolio" else (rest == -1).all(), k
    grown = m.pt.capacity - cap
    assert m.pt.nr_free == nfree + grown
    assert np.array_equal(m.pt.fstack[grown:grown + nfree], fstack)
    for k, v in counters.items():
        assert np.array_equal(m.scheme.counters[k], v) if isinstance(v, np.ndarray) else \
            m.scheme.counters[k] == v
    assert m.audit() == []
    # the machine goes on exactly as one that never left that state
    twin = hv.Machine(nr_hugepages={T256: 2, T32: 4}, geometry="toy", scheme="thp_like")
    twin.restore(full)
    for mm in (m, twin):
        pp = mm.processes[0]
        pp.uffdio_continue(a + 8 * K4, T32)
        pp.fork()
    assert m.state_digest() == twin.state_digest()
    # the checkpoint itself was not disturbed: restore it again
    m.restore(ck)
    assert m.state_digest() == digest


def test_checkpoint_is_smaller_than_a_full_snapshot():
    m = hv.Machine(nr_hugepages={T256: 1}, geometry="toy", scheme="per_piece")
    m.pt.reserve_tables(100_000)
    m.spawn()
    ck = m.checkpoint()
    assert ck.tables.ent.shape[0] == m.pt.nr_used
    assert ck.nbytes < m.pt.ent.nbytes // 100


def test_before_is_the_snapshot_before_the_last_step():
    s = Session(scheme="per_piece", **TOY)
    for op in hgm_setup():
        s.apply(op)
    m = s.machine
    snap = m.snapshot()
    s.apply(UffdioContinue("p", "a", 2 * K4))
    before = s.before()
    want, got = m.state(snap), m.state(before)
    cap = want.ent.shape[0]
    for k in ("ent", "tlevel", "tshare", "folio_used", "folio_file", "folio_index"):
        assert np.array_equal(getattr(got, k)[:cap], getattr(want, k)), k
    assert got.mms == want.mms and got.version == want.version == before.version
    twin = hv.Machine(scheme="per_piece", **TOY)
    twin.restore(before)
    s.undo()
    assert twin.state_digest() == m.state_digest()
    assert Session(**TOY).before() is None
    # the renderer takes it as "before" (changes highlighted)
    from hgmviz.render import draw
    s.redo()
    assert "<svg" in draw(m, before=s.before()).svg()


def test_budget_thins_checkpoints_and_undo_replays():
    s = Session(scheme="per_piece", snapshot_budget=0, **TOY)
    digests = run_ops(s, hgm_setup() + [UffdioContinue("p", ("a", i * K4), K4) for i in range(10)])
    assert set(s.checkpoint_positions) == {0, s.position - 1, s.position}
    replayed = s.stats["replayed_steps"]
    s.goto(3)
    assert s.stats["replayed_steps"] > replayed
    assert s.state_digest() == digests[3]
    s.goto(len(s.history))
    assert s.state_digest() == digests[-1]
    assert len(s.checkpoint_positions) <= 4


# =========================================================================================
# Failures
# =========================================================================================
def test_failed_operations_are_recorded_and_change_nothing():
    s = Session(scheme="per_piece", **TOY)
    for op in hgm_setup() + [UffdioContinue("p", "a", T32)]:
        s.apply(op)
    m = s.machine
    cases = [(UffdioContinue("p", "a", K4), "EEXIST"),          # larger leaf already there
             (UffdioContinue("p", ("a", K4 // 2), K4), "EINVAL"),
             (Touch("p", ("a", 2 * T32)), "userfault"),
             (Touch("p", 0x1000), "SIGSEGV"),
             (Munmap("p", ("a", K4), T32), "EINVAL"),            # splits off a hugepage boundary
             (MemfdCreate("h", T32, 3 * T32), "EINVAL")]         # no such hstate
    for op, status in cases:
        digest, version, n = s.state_digest(), m.version, len(s.history)
        out = s.apply(op)
        assert out.status == status, (op, out)
        assert s.last.kind == "failed" and s.last.op == op and out.message
        assert s.state_digest() == digest and m.version == version
        assert len(s.history) == n + 1
        s.undo()
        assert s.state_digest() == digest
        s.redo()
        assert s.last.outcome == out
    assert m.audit() == []


def test_sigbus_when_the_pool_is_empty():
    s = Session(geometry="toy", nr_hugepages={T32: 1})
    for op in [Spawn("p"), MemfdCreate("f", 2 * T32, T32),
               Mmap("p", "f", 2 * T32, "a", noreserve=True), Touch("p", "a")]:
        assert s.apply(op).ok
    d = s.state_digest()
    out = s.apply(Touch("p", ("a", T32)))
    assert out.status == "SIGBUS" and s.last.kind == "failed" and s.state_digest() == d


def test_partial_progress_and_state_kept_are_recorded_as_such():
    s = Session(schemes=["per_piece", "hstate_present"], geometry="toy", guard="int_max_half",
                nr_hugepages={T256: 1}, lookup_first=False)
    for op in hgm_setup():
        s.apply(op)
    d = s.state_digest()
    out = s.apply(UffdioContinueBatch("p", "a", T256, K4))
    assert out.status == "EAGAIN" and out.mapped == 63 * K4 and out.cause == "ENOMEM"
    assert s.last.kinds == {"per_piece": "partial", "hstate_present": "ok"}
    assert s.state_digest() != d
    s.undo()
    assert s.state_digest() == d
    s.redo()
    # StateKept: an injected error after the page tables were allocated
    s2 = Session(scheme="hstate_present", geometry="toy", nr_hugepages={T256: 1},
                 lookup_first=False)
    for op in hgm_setup():
        s2.apply(op)
    s2.apply(Inject("pagecache_vanish"))
    d = s2.state_digest()
    out = s2.apply(UffdioContinue("p", ("a", K4), K4))
    assert out.status == "EFAULT" and s2.last.kind == "state_kept"
    assert s2.state_digest() != d
    assert s2.machine.folio(0).refcount == 2      # the empty table holds a count
    s2.undo()
    assert s2.state_digest() == d                 # the injection is armed again
    s2.redo()
    assert s2.last.kind == "state_kept"


def test_inject_is_undone_and_consumed_by_a_failing_operation():
    s = Session(scheme="per_piece", geometry="toy", nr_hugepages={T256: 1})
    for op in hgm_setup():
        s.apply(op)
    d0 = s.state_digest()
    s.apply(Inject("pagecache_vanish"))
    assert s.machine.call_path == ["inject"] and s.machine.last_events["kind"].size == 0
    d1 = s.state_digest()
    assert d1 != d0                                   # the armed injection is state
    assert s.apply(UffdioContinue("p", ("a", K4), K4)).status == "EFAULT"   # consumed
    assert s.state_digest() == d0
    s.undo()
    assert s.state_digest() == d1
    s.undo()
    assert s.state_digest() == d0
    with pytest.raises(InvalidOperation, match="pagecache_vanish"):
        s.apply(Inject("nowhere"))


@pytest.mark.parametrize("op, match", [
    (Touch("zz", 0), "unknown process label 'zz'"),
    (Touch("p", "nope"), "unknown mapping label 'nope'"),
    (Touch("p", ("nope", 4096)), "unknown mapping label"),
    (Fallocate("h", 0, K4), "unknown file label 'h'"),
    (Touch(5, "a"), "process label"),
    (Munmap("p", "a", True), "must be an integer"),
    (Munmap("p", "a", "4 KiB"), "must be an integer"),
    (Madvise("p", "a", T256, "MADV_FREE"), "allowed: MADV_DONTNEED"),
    (UffdioRegister("p", "a", T256, "minr"), "allowed: missing, minor, wp"),
    (Mmap("p", "f", T256, ""), "new mapping label"),
    (UffdioContinueBatch("p", "a", T256, 12 * K4), "piece must be a page-table leaf size"),
    (MemfdCreate("h", -1, T256), "size must be >= 0"),
    ("Touch", "not an operation"),
])
def test_invalid_input_raises_records_nothing_notifies_nothing(op, match):
    s = Session(schemes=["per_piece", "thp_like"], **TOY)
    for o in hgm_setup():
        s.apply(o)
    events = []
    s.subscribe(events.append)
    d, v, n = s.state_digest(), s.version, len(s.history)
    with pytest.raises(InvalidOperation, match=match):
        s.apply(op)
    assert (s.state_digest(), s.version, len(s.history), events) == (d, v, n, [])


def test_last_events_and_call_path_follow_the_position():
    s = Session(scheme="per_piece", **TOY)
    for op in hgm_setup() + [UffdioContinue("p", "a", 2 * K4), Touch("p", ("a", T32))]:
        s.apply(op)
    m = s.machine
    recorded = [(list(st.call_paths["per_piece"]), st.events["per_piece"]) for st in s.steps]
    for pos in range(len(recorded), 0, -1):
        s.goto(pos)
        path, ev = recorded[pos - 1]
        assert m.call_path == path
        assert all(np.array_equal(m.last_events[k], ev[k]) for k in ev)
    s.goto(0)
    assert m.call_path == [] and all(v.size == 0 for v in m.last_events.values())


# =========================================================================================
# Subscribers
# =========================================================================================
def test_subscribers_are_told_once_per_change():
    s = Session(scheme="per_piece", **TOY)
    events = []
    unsubscribe = s.subscribe(events.append)
    ops = hgm_setup() + [UffdioContinue("p", "a", K4), UffdioContinue("p", "a", K4)]
    for op in ops:
        s.apply(op)
    assert [e.kind for e in events] == ["apply"] * len(ops)
    assert [e.version for e in events] == list(range(1, len(ops) + 1))
    assert events[-1].outcome.status == "EEXIST" and events[-1].steps == (s.last,)
    assert events[-1].outcomes == {"per_piece": s.last.outcome}
    assert events[-1].position == s.position
    s.undo()
    s.redo()
    s.goto(2)
    s.replay()
    s.reset()
    kinds = [e.kind for e in events[len(ops):]]
    assert kinds == ["undo", "redo", "goto", "replay", "reset"]
    assert events[len(ops)].steps == (s.history[-1],) if s.history else True
    versions = [e.version for e in events]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert events[-1].version == s.version and events[-1].position == 0
    assert all(isinstance(e, SessionEvent) for e in events)
    n = len(events)
    unsubscribe()
    unsubscribe()                    # twice is harmless
    s.apply(Spawn("p"))
    assert len(events) == n
    # nothing to undo or redo: no change, no event, no version
    s2 = Session(**TOY)
    seen = []
    s2.subscribe(seen.append)
    assert s2.undo() is None and s2.redo() is None and seen == [] and s2.version == 0


def test_a_failing_subscriber_does_not_starve_the_others():
    s = Session(**TOY)
    seen = []

    def bad(ev):
        raise RuntimeError("view broke")

    s.subscribe(bad)
    s.subscribe(seen.append)
    with pytest.raises(RuntimeError, match="view broke"):
        s.apply(Spawn("p"))
    assert len(seen) == 1 and s.position == 1      # the change happened


def test_a_subscriber_may_not_change_the_session():
    s = Session(**TOY)
    s.subscribe(lambda ev: s.apply(Spawn("x")))
    with pytest.raises(RuntimeError, match="subscriber"):
        s.apply(Spawn("p"))
    assert s.position == 1


def test_reset_goes_back_to_the_start_and_forgets():
    s = Session(scheme="thp_like", **TOY)
    d0 = s.state_digest()
    for op in hgm_setup():
        s.apply(op)
    s.reset()
    assert s.state_digest() == d0 and s.history == () and s.position == 0
    assert s.labels().procs == set()
    s.apply(Spawn("p"))
    assert s.position == 1


# =========================================================================================
# Several schemes step together
# =========================================================================================
def test_schemes_step_together_with_their_own_outcomes():
    s = Session(schemes=["mainline", "per_piece", "thp_like", "hstate_present"],
                watch=[("f", 0), ("f", 2 * K4)], geometry="toy", nr_hugepages={T256: 1})
    for op in hgm_setup():
        s.apply(op)
    assert s.last.statuses == {"mainline": "ok", "per_piece": "ok", "thp_like": "ok",
                               "hstate_present": "ok"}
    assert s.history[-2].statuses["mainline"] == "EINVAL"      # MADV_SPLIT on mainline
    s.apply(UffdioContinue("p", "a", 2 * K4))
    c = s.counters()
    assert c["per_piece"]["f@0x0"]["refcount"] == 3
    assert c["thp_like"]["f@0x2000"]["page_mapcount"] == {0: 1, 1: 1, 2: 0}
    assert c["hstate_present"]["f@0x2000"]["page_mapcount"][2] == 1
    assert c["mainline"]["f@0x0"]["refcount"] == 1
    assert s.last.statuses["mainline"] == "EINVAL"
    digests = {k: m.state_digest() for k, m in s.machines.items()}
    s.undo()
    s.redo()
    assert {k: m.state_digest() for k, m in s.machines.items()} == digests
    assert s.machine is s.machines["mainline"] and s.last.outcome.status == "EINVAL"


def test_a_label_defined_under_one_scheme_only_is_skipped_elsewhere():
    s = Session(schemes=["per_piece", "hstate_present"], geometry="toy", guard="int_max_half",
                nr_hugepages={T256: 1})
    for op in hgm_setup(mode="minor|wp", event_fork=True):
        s.apply(op)
    s.apply(UffdioContinueBatch("p", "a", 40 * K4, K4))      # refcount 41 under per_piece
    s.apply(Fork("p", "c"))                                   # copying 40 more: refused at 64
    assert s.last.statuses == {"per_piece": "ENOMEM", "hstate_present": "ok"}
    out = s.apply(Touch("c", ("a", 50 * K4)))
    assert s.last.statuses == {"per_piece": "skipped", "hstate_present": "userfault"}
    assert out.status == "skipped" and s.last.kinds["per_piece"] == "skipped"
    assert s.machine.call_path == [] and s.last.events["per_piece"]["kind"].size == 0
    d = s.state_digest()
    s.undo()
    s.redo()
    assert s.state_digest() == d
    s.replay()
    assert s.state_digest() == d


def test_session_arguments_are_checked():
    with pytest.raises(TypeError, match="unknown argument"):
        Session(geometri="toy")
    with pytest.raises(TypeError, match="not both"):
        Session(scheme="per_piece", schemes=["thp_like"])
    with pytest.raises(ValueError, match="repeat"):
        Session(schemes=["per_piece", "per_piece"])
    with pytest.raises(ValueError, match="unknown scheme"):
        Session(schemes=["per_pieces"])
    with pytest.raises(ValueError, match="snapshot_budget"):
        Session(snapshot_budget=-1)
    with pytest.raises(ValueError, match="position"):
        Session(**TOY).goto(1)
    assert "per_piece" in repr(Session(scheme="per_piece", title="t"))


# =========================================================================================
# Interrupts leave the session consistent
# =========================================================================================
class Boom(KeyboardInterrupt):
    pass


def interrupt_on_call(monkeypatch, obj, name, n=1):
    """Make the ``n``-th call of ``obj.name`` raise KeyboardInterrupt instead."""
    real = getattr(obj, name)
    calls = [0]

    def wrapper(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            raise Boom()
        return real(*a, **k)
    monkeypatch.setattr(obj, name, wrapper)
    return calls


def test_interrupted_apply_puts_every_machine_back(monkeypatch):
    s = Session(schemes=["per_piece", "thp_like"], **TOY)
    for op in hgm_setup():
        s.apply(op)
    d, v, n = s.state_digest(), s.version, len(s.history)
    # the second machine is interrupted inside _commit, after the first one finished
    m2 = s.machines["thp_like"]
    real_commit = m2._commit

    def commit_then_interrupt(*a):
        real_commit(*a)
        raise Boom()
    monkeypatch.setattr(m2, "_commit", commit_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        s.apply(UffdioContinue("p", "a", T32))
    assert (s.state_digest(), s.version, len(s.history)) == (d, v, n)
    monkeypatch.undo()
    assert s.apply(UffdioContinue("p", "a", T32)).ok
    # interrupted before commit: the machine's own rollback, then the session's
    monkeypatch.setattr(m2, "_commit", lambda *a: (_ for _ in ()).throw(Boom()))
    d = s.state_digest()
    with pytest.raises(KeyboardInterrupt):
        s.apply(UffdioContinue("p", ("a", T32), T32))
    assert s.state_digest() == d
    monkeypatch.undo()
    assert not m2.in_operation
    s.apply(UffdioContinue("p", ("a", T32), T32))
    assert s.machine.audit() == [] and m2.audit() == []


def test_interrupted_undo_keeps_the_position(monkeypatch):
    s = Session(scheme="per_piece", snapshot_budget=0, **TOY)
    for op in hgm_setup() + [UffdioContinue("p", ("a", i * K4), K4) for i in range(6)]:
        s.apply(op)
    d, pos = s.state_digest(), s.position
    interrupt_on_call(monkeypatch, s.machine, "_commit", n=3)     # during the replay
    with pytest.raises(KeyboardInterrupt):
        s.goto(5)
    monkeypatch.undo()
    assert s.position == pos and s.state_digest() == d
    s.goto(2)
    s.goto(pos)
    assert s.state_digest() == d


@pytest.mark.parametrize("where", ["progress", "inside"])
def test_interrupted_apply_many_keeps_the_completed_steps(monkeypatch, where):
    ops = hgm_setup() + [UffdioContinue("p", ("a", i * K4), K4) for i in range(8)]
    s = Session(scheme="per_piece", **TOY)
    events = []
    s.subscribe(events.append)
    if where == "progress":
        def progress(done, total):
            if done == 7:
                raise KeyboardInterrupt
    else:
        progress = None
        interrupt_on_call(monkeypatch, s.machine, "_commit", n=7)
    with pytest.raises(KeyboardInterrupt):
        s.apply_many(ops, progress)
    monkeypatch.undo()
    done = 7 if where == "progress" else 6
    assert s.position == done == len(s.history)
    fresh = Session(scheme="per_piece", **TOY)
    for op in ops[:done]:
        fresh.apply(op)
    assert s.state_digest() == fresh.state_digest()
    assert [e.kind for e in events] == ["apply"] and len(events[0].steps) == done
    s.undo()
    assert s.position == done - 1
    assert all(o.ok for o in s.apply_many(ops[done - 1:]))
    fresh.apply_many(ops[done:])
    assert s.state_digest() == fresh.state_digest()
    assert s.before() is not None


def test_apply_many_matches_apply():
    ops = hgm_setup() + [UffdioContinueBatch("p", "a", T256, K4), Fork("p", "c"), Exit("p")]
    a, b = Session(scheme="thp_like", **TOY), Session(scheme="thp_like", **TOY)
    seen = []
    outs = a.apply_many(ops, progress=lambda i, n: seen.append((i, n)))
    for op in ops:
        b.apply(op)
    assert outs == [st.outcome for st in b.steps]
    assert a.state_digest() == b.state_digest()
    assert seen[-1] == (len(ops), len(ops))
    before = a.before()
    b.undo()
    twin = hv.Machine(scheme="thp_like", **TOY)
    twin.restore(before)
    assert twin.state_digest() == b.machine.state_digest()


@pytest.mark.parametrize("budget", [0, 1 << 30])
def test_warn_on_once_is_state_even_when_the_operation_fails(budget):
    """v2's WARN_ON_ONCE fires on a refused fault (which changes nothing else): undoing and
    redoing around it must not make it fire twice, or replays would differ."""
    s = Session(scheme="per_piece", geometry="toy", nr_hugepages={T256: 1}, guard="sign",
                snapshot_budget=budget)
    warned_at = {}
    ops = hgm_setup() + [UffdioContinueBatch("p", "a", T256, K4),          # refcount 65
                         Mmap("p", "f", T256, "b"), Madvise("p", "b", T256, "MADV_SPLIT"),
                         UffdioRegister("p", "b", T256, "minor"),
                         UffdioContinueBatch("p", "b", 62 * K4, K4)]       # refcount 127
    ops += [Mmap("p", "f", T256, "x%d" % i) for i in range(3)]
    ops += [Touch("p", "x%d" % i) for i in range(3)]                      # wrap, refused x2
    for op in ops:
        s.apply(op)
        warned_at[s.position] = s.machine.warned_sign
    assert [st.outcome.status for st in s.steps[-3:]] == ["ok", "SIGBUS", "SIGBUS"]
    steps = s.steps
    warned = [i for i, st in enumerate(steps) if any("WARN_ON_ONCE" in w
                                                     for w in st.outcome.warnings)]
    assert len(warned) == 1 and steps[warned[0]].kind == "failed"
    d = s.state_digest()
    n = len(s.history)
    for target in (warned[0], warned[0] + 1, n, warned[0] + 2, 0, n - 1, n):
        s.goto(target)
        assert s.machine.warned_sign == warned_at.get(target, False), target
    s.replay()
    assert s.state_digest() == d
    # a further refusal does not WARN again
    s.apply(Mmap("p", "f", T256, "y"))
    assert s.apply(Touch("p", "y")).warnings == ()
