"""HGM v2 35/46 as posted: the ``"sign_posted"`` guard (issue 14).

``hugetlb_try_find_lock_folio`` (20230218002819.1486479-36-jthoughton@google.com, mm/hugetlb.c)::

    struct folio *folio = filemap_lock_folio(mapping, idx);
    ...
    if (WARN_ON_ONCE(folio && folio_ref_count(folio) <= 0))
            return ERR_PTR(-EFAULT);

The test sees the count *after* the lookup's own reference, so the fault or UFFDIO_CONTINUE
piece whose reference wraps the count is refused one piece earlier than under ``"sign"`` (the
``try_get_page()`` order), and the error path gives back neither that reference nor the folio
lock.  Fork (``copy_hugetlb_page_range``, ``try_get_page()``) checks before the increment.
"""
import errno
import warnings

import numpy as np
import pytest

import hgmviz as hv
from hgmviz.core import EV_SET
from hgmviz.describe import outcome_summary
from hgmviz.errors import SigBus, StateKept, TaskHung
from hgmviz.ops import (Fallocate, Madvise, MemfdCreate, Mmap, Spawn, Touch, UffdioContinue,
                        UffdioContinueBatch, UffdioRegister, World, run_step)
from hgmviz.overflow import overflow_math
from hgmviz.scenario_file import dump_scenario, parse_scenario
from hgmviz.schemes import SchemeRefusal
from hgmviz.session import Session, session_from_scenario

KIB4, KIB32, KIB256 = 4 << 10, 32 << 10, 256 << 10
TOY_INT_MAX, TOY_INT_MIN = 127, -128
LEAK = "folio 0: locked, with 1 reference(s) never put"


def flood(guard, hstate=KIB32, piece=KIB4, errors="proposed", kernel="6.2"):
    """Map one toy folio at ``piece`` in VMA after VMA until the guard refuses; returns the
    machine, the world and the refused step's outcome."""
    m = hv.Machine(nr_hugepages={hstate: 2}, geometry="toy", scheme="per_piece", guard=guard,
                   errors=errors, kernel=kernel)
    w = World(m)
    for op in (MemfdCreate("f", hstate, hstate), Fallocate("f", 0, hstate), Spawn("p")):
        assert run_step(w, op).ok
    for n in range(400):
        if n and n % 20 == 0:                 # the toy address space holds a few dozen VMAs
            assert run_step(w, Spawn("p%d" % n)).ok
        proc = "p%d" % (n - n % 20) if n >= 20 else "p"
        ops = [Mmap(proc, "f", hstate, "a"), UffdioRegister(proc, "a", hstate, "minor"),
               UffdioContinueBatch(proc, "a", hstate, piece)]
        if piece < hstate:
            ops.insert(1, Madvise(proc, "a", hstate, "MADV_SPLIT"))
        outs = [run_step(w, op) for op in ops]
        assert all(o.ok for o in outs[:-1]), outs
        if not outs[-1].ok:
            return m, w, outs[-1], proc
    raise AssertionError("the guard never refused")


# ---------------------------------------------------------------------------------------------
# the boundary: one piece earlier than "sign", and the leaked reference
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hstate,piece", [(KIB32, KIB4), (KIB256, KIB4), (KIB256, KIB32),
                                          (KIB32, KIB32)], ids=lambda v: "%dk" % (v >> 10))
@pytest.mark.parametrize("kernel", ["6.2", "6.18"])
def test_posted_order_refuses_one_piece_earlier_and_leaks(hstate, piece, kernel):
    m0, w0, sign, _ = flood("sign", hstate, piece, kernel=kernel)
    m1, w1, posted, _ = flood("sign_posted", hstate, piece, kernel=kernel)
    f0, f1 = w0.files["f"].folio_at(0), w1.files["f"].folio_at(0)
    want = overflow_math(hstate, piece, kernel, "sign_posted", geometry="toy")
    # one piece (one reference a mapping keeps) fewer than the intended order
    assert f1.mapcount == f0.mapcount - 1 == want["admitted_references"]
    assert want["admitted_references"] == overflow_math(
        hstate, piece, kernel, "sign", geometry="toy")["admitted_references"] - 1
    assert (posted.mapped or 0) == want["extra_pieces"] * piece
    # both end at INT_MIN: "sign" through the admitted piece, the posted order through the
    # refused lookup's reference, which stays
    assert f0.refcount == f1.refcount == want["refused_at_refcount"] == TOY_INT_MIN
    assert (f0.leaked_refs, f0.locked) == (0, False)
    assert (f1.leaked_refs, f1.locked) == (1, True) and want["leaked_references"] == 1
    assert f1.wrapped and posted.refused and posted.kept and posted.wrapped == (f1.id,)
    assert f1.refcount == ((want["page_cache_refs"] + f1.mapcount + 1 + 128) % 256) - 128
    assert m0.audit() == []
    assert m1.audit() == [LEAK + ": a refused lookup's error path (HGM v2 35/46 as posted, "
                          "hugetlb_try_find_lock_folio: return ERR_PTR(-EFAULT) without "
                          "folio_unlock() or folio_put())"]
    assert "locked, 1 leaked" in repr(f1)
    assert any("WARN_ON_ONCE(folio_ref_count(folio) <= 0)" in x for x in posted.warnings)


@pytest.mark.parametrize("errors,code", [("proposed", "ENOMEM"), ("v2", "EFAULT")])
def test_refused_continue_is_a_typed_error_that_keeps_the_leak(errors, code):
    m, w, out, proc = flood("sign_posted", KIB32, KIB32, errors=errors)
    # piece == hstate: nothing of the refused call was mapped: the error itself, kept
    assert out.status == code and out.kept and out.refused and out.mapped is None
    assert m.last_refusal.leaked and m.last_refusal.refcount == TOY_INT_MIN
    assert "the reference is leaked and the folio stays locked" in out.message
    tag, text = outcome_summary(out)
    assert tag == "guard" and "leaked" in text
    # through the API: StateKept with the errno, the leak in the state
    m2 = hv.Machine(nr_hugepages={KIB32: 1}, geometry="toy", scheme="per_piece",
                    guard="sign_posted", errors=errors)
    f = m2.memfd_create(size=KIB32, hstate=KIB32)
    f.fallocate(0, KIB32)
    p = m2.spawn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(TOY_INT_MAX - 1):              # page cache 1 + 126 leaves = INT_MAX
            a = p.mmap(f, KIB32)
            p.uffdio_register(a, KIB32, mode="minor")
            p.uffdio_continue(a, KIB32)
        assert f.folio_at(0).refcount == TOY_INT_MAX
        a = p.mmap(f, KIB32)
        p.uffdio_register(a, KIB32, mode="minor")
        with pytest.raises(StateKept) as e:
            p.uffdio_continue(a, KIB32)
    assert e.value.errno == getattr(errno, code)
    assert p.pagemap(a) is None                               # not mapped
    folio = f.folio_at(0)
    assert (folio.refcount, folio.mapcount, folio.leaked_refs, folio.locked) == (
        TOY_INT_MIN, TOY_INT_MAX - 1, 1, True)


@pytest.mark.parametrize("guard", ["sign", "sign_posted"])
def test_fault_sigbus_keeps_the_leak_only_as_posted(guard):
    m = hv.Machine(nr_hugepages={KIB32: 1}, geometry="toy", scheme="per_piece", guard=guard)
    f = m.memfd_create(size=KIB32, hstate=KIB32)
    f.fallocate(0, KIB32)
    p = m.spawn()
    refused = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(TOY_INT_MAX + 2):
            a = p.mmap(f, KIB32)
            before = m.state_digest()
            try:
                p.touch(a)
            except SigBus as e:
                refused = e
                break
    assert refused is not None and "VM_FAULT_SIGBUS" in str(refused)
    folio = f.folio_at(0)
    assert p.pagemap(a) is None
    if guard == "sign":
        assert not refused.kept and m.state_digest() == before       # nothing changed
        assert (folio.refcount, folio.mapcount, folio.locked) == (TOY_INT_MIN, TOY_INT_MAX, False)
    else:
        assert refused.kept and m.state_digest() != before
        assert "the reference is leaked" in str(refused)
        assert (folio.refcount, folio.mapcount, folio.leaked_refs, folio.locked) == (
            TOY_INT_MIN, TOY_INT_MAX - 1, 1, True)


# ---------------------------------------------------------------------------------------------
# the folio left locked: every later lookup of it sleeps for ever; other folios are unaffected
# ---------------------------------------------------------------------------------------------
def test_after_the_leak_every_lookup_of_the_folio_hangs_and_changes_nothing():
    m, w, out, proc = flood("sign_posted", KIB32, KIB4)
    assert run_step(w, MemfdCreate("g", KIB32, KIB32)).ok
    assert run_step(w, Fallocate("g", 0, KIB32)).ok
    steps = [
        (Mmap(proc, "f", KIB32, "b"), "ok"),
        (Touch(proc, "b"), "hung"),                                   # hugetlb_no_page
        (Mmap(proc, "f", KIB32, "c"), "ok"),
        (Madvise(proc, "c", KIB32, "MADV_SPLIT"), "ok"),
        (UffdioRegister(proc, "c", KIB32, "minor"), "ok"),
        (UffdioContinue(proc, "c", KIB4), "hung"),                    # hugetlb_mcopy_atomic_pte
        (Fallocate("f", 0, KIB32, "FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE"), "hung"),
        (Mmap(proc, "g", KIB32, "d"), "ok"),                          # another folio: fine
        (Touch(proc, "d"), "ok"),
    ]
    for op, want in steps:
        before = m.state_digest()
        got = run_step(w, op)
        assert got.status == want, (op, got)
        if want == "hung":
            assert m.state_digest() == before and not got.kept
            assert "folio_lock() on folio 0 for ever" in got.message
            assert outcome_summary(got) == ("errno", got.message)
            assert m.call_path[-1] == "folio_lock"
    with pytest.raises(TaskHung) as e:
        w.files["f"].ftruncate(0)                                      # remove_inode_hugepages
    assert e.value.folio == 0


def test_checkpoint_restore_undoes_the_leak():
    m, w, out, proc = flood("sign_posted", KIB32, KIB4)
    f = w.files["f"].folio_at(0)
    assert f.locked
    m2, w2, _, _ = flood("sign_posted", KIB32, KIB4)
    ck = m2.checkpoint()
    # the leak is part of the state a checkpoint carries and a restore puts back
    assert m2.state(ck).scheme.locked(0) and m2.state(ck).scheme.leaked_refs(0) == 1
    m3 = hv.Machine(nr_hugepages={KIB32: 2}, geometry="toy", scheme="per_piece",
                    guard="sign_posted")
    before = m3.checkpoint()
    m3.restore(ck)
    assert m3.folios[0].locked and m3.state_digest() == m2.state_digest()
    m3.restore(before)
    assert not m3.folios[0].locked and m3.folios[0].leaked_refs == 0


# ---------------------------------------------------------------------------------------------
# the scheme level: the lookup paths check after the increment, fork before it
# ---------------------------------------------------------------------------------------------
def _one_set(scheme, folio=0):
    return {"kind": np.array([EV_SET], np.int8), "mm": np.array([1], np.int32),
            "addr": np.array([0], np.int64), "shift": np.array([12], np.int8),
            "count": np.array([1], np.int64), "pfn": np.array([int(scheme.folio_pfn[folio])], np.int64),
            "folio": np.array([folio], np.int32)}


@pytest.mark.parametrize("start,lookup,admitted", [
    (TOY_INT_MAX - 1, True, True),      # 126 -> 127: the count after it is positive
    (TOY_INT_MAX, True, False),         # 127 -> -128 seen by the posted test: refused
    (TOY_INT_MAX, False, True),         # fork's try_get_page(): 127 > 0, admitted (wraps)
    (TOY_INT_MIN, False, False),        # ... and refused once negative, as "sign"
    (-1, True, False),                  # -1 + 1 = 0 <= 0
])
@pytest.mark.parametrize("scheme", ["per_piece", "thp_like", "subtree_counted"])   # a reference
def test_scheme_admits_by_path(scheme, start, lookup, admitted):
    m = hv.Machine(nr_hugepages={KIB32: 1}, geometry="toy", scheme=scheme, guard="sign_posted")
    s = m.scheme
    s.counters["refcount"][0] = start
    ev = _one_set(s)
    if admitted:
        scratch = s.admit(ev, lookup=lookup)
        assert scratch["refcount"][0] == ((start + 1 + 128) % 256) - 128
    else:
        with pytest.raises(SchemeRefusal) as e:
            s.admit(ev, lookup=lookup)
        assert (e.value.admitted, e.value.folio, e.value.refcount) == (0, 0, start)
    assert s.counters["refcount"][0] == start and s.guard == "sign_posted"   # admit is scratch
    assert (s.leaked_refs(0), s.locked(0)) == (0, False)


def test_only_sign_posted_leaks():
    m = hv.Machine(nr_hugepages={KIB32: 1}, geometry="toy", scheme="per_piece", guard="sign")
    with pytest.raises(RuntimeError, match="only the 'sign_posted' guard"):
        m.scheme.leak_lookup_reference(0)
    assert (m.scheme.leaked_refs(0), m.scheme.locked(0)) == (0, False)
    assert "leaked" not in m.scheme.counters and "locked" not in m.scheme.counters


# ---------------------------------------------------------------------------------------------
# the name everywhere a guard is chosen; bad names say what is allowed
# ---------------------------------------------------------------------------------------------
def test_bad_guard_names_list_sign_posted():
    with pytest.raises(ValueError, match="allowed: None, 'int_max_half', 'sign', 'sign_posted'"):
        hv.Machine(geometry="toy", guard="sign-posted")
    with pytest.raises(ValueError, match="'sign_posted'"):
        overflow_math(guard="posted")
    with pytest.raises(ValueError, match="'sign_posted'"):
        parse_scenario('title = "t"\ngeometry = "toy"\nguard = "posted"\n')


SCENARIO = """\
title = "v2 35/46 as posted"
geometry = "toy"
nr_hugepages = { "32 KiB" = 1 }
schemes = ["per_piece"]
guard = "sign_posted"

[[step]]
op = "MemfdCreate"
file = "f"
size = "32 KiB"
hstate = "32 KiB"

[[step]]
op = "Fallocate"
file = "f"
offset = 0
length = "32 KiB"

[[step]]
op = "Spawn"
proc = "p"
"""


def test_scenario_and_session_accept_sign_posted():
    sc = parse_scenario(SCENARIO)
    assert sc.config["guard"] == "sign_posted"
    text = dump_scenario(sc.title, sc.description, sc.config, sc.schemes, sc.watch,
                         [(st.op, st.narration, st.expect) for st in sc.steps])
    assert 'guard = "sign_posted"' in text
    assert parse_scenario(text).config["guard"] == "sign_posted"
    assert session_from_scenario(sc).machine.scheme.guard == "sign_posted"
    s2 = Session(scheme="per_piece", geometry="toy", nr_hugepages={KIB32: 1},
                 guard="sign_posted")
    assert s2.machine.scheme.guard == "sign_posted"
    hung = parse_scenario(SCENARIO + '\n[[step]]\nop = "Spawn"\nproc = "q"\nexpect = "hung"\n')
    assert hung.steps[-1].expected("per_piece") == "hung"


def test_shipped_scenario_shows_the_leak():
    from hgmviz.scenarios import load_scenario
    s = load_scenario("overflow_toy_sign_posted")
    refused = s.history[10]
    for scheme in ("per_piece", "thp_like"):
        out = refused.outcomes[scheme]
        assert (out.status, out.mapped // KIB4, out.cause, out.kept) == ("EAGAIN", 62, "EFAULT", True)
        assert s.history[12].outcomes[scheme].status == "hung"
    s.goto(11)
    c = s.counters()["per_piece"]["f@0x0"]
    assert (c["refcount"], c["mapcount"], c["locked"], c["leaked_refs"]) == (TOY_INT_MIN, 126, True, 1)
    s.goto(14)
    c = s.counters()["per_piece"]["f@0x0"]
    # 1 (page cache) + 64 (the first mapping) + 1 leaked: no unmap can drop the last one
    assert (c["refcount"], c["mapcount"], c["leaked_refs"]) == (66, 64, 1)
    sign = load_scenario("overflow_toy_sign")
    assert sign.history[10].outcomes["per_piece"].mapped // KIB4 == 63    # one piece later
