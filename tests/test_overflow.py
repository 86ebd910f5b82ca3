"""hgmviz.overflow: every number of domain.md 1.4, and the closed form checked against the
simulator run step by step in the toy geometry (and against a brute-force count)."""
import errno
import warnings

import pytest

import hgmviz as hv
from hgmviz.geometry import Geometry
from hgmviz.overflow import MAX_MAP_COUNT, overflow_math

KIB4 = 4096
KIB32 = 32 << 10
KIB256 = 256 << 10
MIB2 = 2 << 20
GIB = 1 << 30
INT_MAX = 2**31 - 1
INT_MIN = -2**31


# ---------------------------------------------------------------------------------------------
# domain.md 1.4, the constants and the quotes
# ---------------------------------------------------------------------------------------------
def test_limits():
    r = overflow_math()
    assert r["int_max"] == INT_MAX == 2_147_483_647
    assert r["int_max"] // 2 == 1_073_741_823 == 2**30 - 1
    assert r["int_min"] == INT_MIN
    assert overflow_math(geometry="toy", hstate=KIB32)["int_max"] == 127


def test_v2_35_commit_message_typo():
    """"increase by 2^19 (512 * 512) ... Do that 2^13 times (8192), and you reach 2^31":
    512 * 512 is 2^18, and 2^18 * 2^13 = 2^31."""
    r = overflow_math(GIB, KIB4, guard=None)
    assert r["refs_per_mapping"] == 512 * 512 == 2**18 != 2**19
    assert 2**18 * 2**13 == 2**31
    assert r["wraps_during_mapping"] == 8192 == 2**13


def test_t9_t10_quotes():
    # T9: "we only need 8192 (2^13) VMAs for the same 1G page to overflow refcount"
    assert overflow_math(GIB, KIB4, "6.2", None)["wraps_during_mapping"] == 8192
    # T10: "You'd need 8k VMAs. With 2 MiB THP you'd need 4096k VMAs. So ~64 processes with
    # 64k VMAs."
    r = overflow_math(MIB2, KIB4, "6.2", None)
    assert r["wraps_during_mapping"] == 4096 * 1024
    assert r["min_processes_at_max_map_count"] == 65       # 4,194,304 / 65,530 = 64.006
    assert overflow_math(GIB, KIB4, "6.2", None)["min_processes_at_max_map_count"] == 1
    assert MAX_MAP_COUNT == 65530


# The overflow table of domain.md 1.4, row by row.
TABLE = [
    # hstate, kernel, page-cache base, refs/mapping, wraps during mapping #, guard (full, extra)
    (GIB, "6.2", 1, 262_144, 8_192, (4_095, 262_143)),
    (GIB, "6.18", 262_144, 262_144, 8_191, (4_095, 0)),
    (MIB2, "6.2", 1, 512, 4_194_304, (2_097_151, 511)),
    (MIB2, "6.18", 512, 512, 4_194_303, (2_097_151, 0)),
]


@pytest.mark.parametrize("hstate,kernel,base,per,wrap_at,guarded", TABLE)
def test_domain_table(hstate, kernel, base, per, wrap_at, guarded):
    r = overflow_math(hstate, KIB4, kernel, guard=None)
    assert r["page_cache_refs"] == base
    assert r["refs_per_mapping"] == per
    assert r["wraps_during_mapping"] == wrap_at
    assert r["int_max"] == INT_MAX
    g = overflow_math(hstate, KIB4, kernel, guard="int_max_half")
    assert (g["full_mappings"], g["extra_pieces"]) == guarded
    assert g["refused_at_refcount"] == 1_073_741_824 == 2**30
    assert g["page_cache_refs"] == base and g["refs_per_mapping"] == per
    assert g["int_max"] == INT_MAX
    assert g["wraps_during_mapping"] is None


def test_domain_table_1g_details():
    # "after 8,191 full mappings the count is 2,147,221,505; piece 262,143 of the 8,192nd wraps it"
    r = overflow_math(GIB, KIB4, "6.2", None)
    assert r["full_mappings_before_wrap"] == 8_191
    assert r["refcount_after_full_mappings"] == 2_147_221_505
    assert r["pieces_into_wrapping_mapping"] == 262_143
    # "8,191st (its last piece takes the count to 2^31, i.e. INT_MIN)"
    r = overflow_math(GIB, KIB4, "6.18", None)
    assert r["pieces_into_wrapping_mapping"] == 262_144
    assert r["refcount_after_wrapping_mapping"] == INT_MIN
    # "exactly 4,095 full mappings (refcount = 2^30); the first piece of the 4,096th is refused"
    g = overflow_math(GIB, KIB4, "6.18", "int_max_half")
    assert g["refcount_after_full_mappings"] == 2**30
    g = overflow_math(MIB2, KIB4, "6.18", "int_max_half")
    assert g["refcount_after_full_mappings"] == 2**30


@pytest.mark.parametrize("hstate", [MIB2, GIB])
@pytest.mark.parametrize("kernel", ["6.2", "6.18"])
def test_hstate_level_only(hstate, kernel):
    """One ref per mapping: ~2^31 mappings, unreachable with max_map_count = 65,530."""
    r = overflow_math(hstate, hstate, kernel, None)
    base = 1 if kernel == "6.2" else hstate // KIB4
    assert r["refs_per_mapping"] == 1
    assert r["wraps_during_mapping"] == 2**31 - base
    assert r["min_processes_at_max_map_count"] > 30_000
    g = overflow_math(hstate, hstate, kernel, "int_max_half")
    assert g["full_mappings"] == 2**30 - base and g["extra_pieces"] == 0


def test_2m_pieces_of_1g():
    r = overflow_math(GIB, MIB2, "6.2", None)
    assert r["refs_per_mapping"] == 512
    assert r["wraps_during_mapping"] == 4_194_304
    g = overflow_math(GIB, MIB2, "6.18", "int_max_half")
    # (2^30 - 2^18) / 512 = 2^21 - 2^9
    assert (g["full_mappings"], g["extra_pieces"]) == (2**21 - 2**9, 0)


# v2's sign check: the increment that reaches INT_MIN is admitted, the next one is refused.
SIGN = [
    (GIB, "6.2", 8_191, 262_143, 8_192),
    (GIB, "6.18", 8_191, 0, 8_191),
    (MIB2, "6.2", 4_194_303, 511, 4_194_304),
    (MIB2, "6.18", 4_194_303, 0, 4_194_303),
]


@pytest.mark.parametrize("hstate,kernel,full,extra,wrap_at", SIGN)
def test_sign_guard(hstate, kernel, full, extra, wrap_at):
    s = overflow_math(hstate, KIB4, kernel, "sign")
    assert (s["full_mappings"], s["extra_pieces"]) == (full, extra)
    assert s["refused_at_refcount"] == INT_MIN < 0
    assert s["wraps_during_mapping"] == wrap_at == overflow_math(hstate, KIB4, kernel, None)[
        "wraps_during_mapping"]
    assert s["admitted_references"] == INT_MAX - s["page_cache_refs"] + 1
    assert s["page_cache_refs"] + s["admitted_references"] == 2**31


def test_result_keys():
    for guard in (None, "int_max_half", "sign"):
        r = overflow_math(guard=guard)
        assert {"page_cache_refs", "refs_per_mapping", "int_max", "wraps_during_mapping"} <= set(r)
        if guard is not None:
            assert {"full_mappings", "extra_pieces", "refused_at_refcount"} <= set(r)
        else:
            assert "full_mappings" not in r and "refused_at_refcount" not in r


# ---------------------------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,exc,match", [
    ({"guard": "int_max"}, ValueError, "allowed: None, 'int_max_half', 'sign'"),
    ({"guard": True}, ValueError, "allowed"),
    ({"hstate": 4 << 20}, ValueError, "allowed: 2 MiB"),
    ({"hstate": 1 << 15}, ValueError, "allowed"),
    ({"hstate": 1.0 * GIB}, TypeError, "hstate must be an int"),
    ({"hstate": True}, TypeError, "hstate must be an int"),
    ({"piece": 8192}, ValueError, "page-table leaf size"),
    ({"piece": 0}, ValueError, "allowed: 4 KiB"),
    ({"piece": "4096"}, TypeError, "piece must be an int"),
    ({"hstate": MIB2, "piece": GIB}, ValueError, "no larger than the 2 MiB hstate"),
    ({"piece": 512 << 30}, ValueError, "leaf"),
    ({"kernel": 6.2}, TypeError, "kernel"),
    ({"kernel": "six"}, ValueError, "kernel"),
    ({"geometry": "arm64"}, ValueError, "allowed"),
    ({"geometry": "toy"}, ValueError, "toy"),              # 1 GiB is no toy hstate
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        overflow_math(**kwargs)


def test_page_cache_alone_overflows():
    g = Geometry(name="tiny", page_shift=12, bits_per_level=4, levels=4, hstate_shifts=(20,),
                 counter_bits=8, mmap_base=0x600000)
    assert overflow_math(1 << 20, KIB4, "6.2", None, geometry=g)["wraps_during_mapping"] == 1
    with pytest.raises(ValueError, match="page cache's 256 references"):
        overflow_math(1 << 20, KIB4, "6.18", None, geometry=g)


def test_allowed_pieces():
    assert overflow_math(KIB256, KIB32, geometry="toy")["refs_per_mapping"] == 8
    assert overflow_math(GIB, GIB, geometry="x86_64-5level")["refs_per_mapping"] == 1
    with pytest.raises(ValueError, match="32 KiB"):
        overflow_math(KIB32, KIB256, geometry="toy")


# ---------------------------------------------------------------------------------------------
# brute force: increment by increment, as the guards in hgmviz/schemes/base.py check
# ---------------------------------------------------------------------------------------------
def _wrap(x, bits):
    half = 1 << (bits - 1)
    return ((x + half) % (2 * half)) - half


def brute(hstate, piece, kernel, guard, g):
    int_max = (1 << (g.counter_bits - 1)) - 1
    r = hstate // piece
    ref = hv.KernelProfile(version=tuple(map(int, kernel.split("."))), label=kernel) \
        .pagecache_refs(hstate >> g.page_shift)
    taken = 0
    wrap_at = None
    while True:
        if guard == "int_max_half" and ref > int_max // 2:
            break
        if guard == "sign" and ref <= 0:
            break
        if guard == "sign_posted" and (ref < 0 or ref + 1 > int_max):
            # v2 35/46 as posted: the lookup's reference first, then the test on the count
            # after it; the refused reference stays (leaked)
            if ref + 1 > int_max and wrap_at is None:
                wrap_at = taken // r + 1
            ref = _wrap(ref + 1, g.counter_bits)
            break
        if ref + 1 > int_max and wrap_at is None:
            wrap_at = taken // r + 1
            if guard is None:
                return {"wraps_during_mapping": wrap_at}
        ref = _wrap(ref + 1, g.counter_bits)
        taken += 1
    return {"full_mappings": taken // r, "extra_pieces": taken % r, "refused_at_refcount": ref,
            "wraps_during_mapping": wrap_at}


SMALL = [
    hv.TOY,
    Geometry(name="g10", page_shift=12, bits_per_level=2, levels=5, hstate_shifts=(16, 18),
             counter_bits=10, mmap_base=0x600000),
    Geometry(name="g12", page_shift=12, bits_per_level=3, levels=5, hstate_shifts=(15, 18, 21),
             counter_bits=12, mmap_base=0x600000),
    Geometry(name="g16", page_shift=10, bits_per_level=4, levels=4, hstate_shifts=(14, 18),
             counter_bits=16, mmap_base=0x600000),
]


@pytest.mark.parametrize("g", SMALL, ids=lambda g: g.name)
@pytest.mark.parametrize("guard", [None, "int_max_half", "sign", "sign_posted"])
@pytest.mark.parametrize("kernel", ["6.2", "6.18"])
def test_closed_form_equals_brute_force(g, guard, kernel):
    for h in g.hstates:
        for lvl in range(1, h.level + 1):
            piece = g.level_size(lvl)
            want = brute(h.size, piece, kernel, guard, g)
            got = overflow_math(h.size, piece, kernel, guard, geometry=g)
            assert {k: got[k] for k in want} == want, (h.size, piece)


# ---------------------------------------------------------------------------------------------
# the simulator, by explicit steps, in the toy geometry
# ---------------------------------------------------------------------------------------------
def run_until_refused(hstate, piece, guard, kernel, errors="proposed", max_mappings=400):
    """Map one folio in VMA after VMA (each fully at ``piece``) until the guard refuses or,
    without a guard, the refcount wraps.  A new process is spawned when an address space is
    full (the toy user address space holds a few dozen hugepage-sized VMAs)."""
    m = hv.Machine(nr_hugepages={hstate: 1}, geometry="toy", scheme="per_piece", guard=guard,
                   kernel=kernel, errors=errors)
    f = m.memfd_create(size=hstate, hstate=hstate)
    f.fallocate(0, hstate)
    folio = f.folio_at(0)
    out = {"start": folio.refcount, "wraps_during_mapping": None, "warnings": [],
           "refcount_before_wrap_mapping": None, "processes": 1}
    p = m.spawn()
    full = 0
    for _ in range(max_mappings):
        try:
            a = p.mmap(f, hstate)
        except OSError as e:
            assert e.errno == errno.ENOMEM and "address space" in str(e)
            p = m.spawn()
            out["processes"] += 1
            a = p.mmap(f, hstate)
        if piece < hstate:
            p.madvise(a, hstate, hv.MADV_SPLIT)
        p.uffdio_register(a, hstate, mode="minor")
        before = folio.refcount
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            try:
                mapped = p.uffdio_continue_batch(a, hstate, piece)
            except hv.PartialProgress as e:
                out.update(error=e.cause, extra=e.mapped // piece, mapped=e.mapped)
            except OSError as e:
                out.update(error=e, extra=0, mapped=0)
            else:
                assert mapped == hstate
        out["warnings"] += [(x.category, str(x.message)) for x in w]
        if folio.wrapped and out["wraps_during_mapping"] is None:
            out["wraps_during_mapping"] = full + 1          # this mapping, 1-based
            out["refcount_before_wrap_mapping"] = before
            out["refcount_after_wrap_mapping"] = folio.refcount
        if "error" in out:
            break
        full += 1
        if guard is None and folio.wrapped:
            break
    else:
        pytest.fail("no refusal and no wrap after %d mappings" % max_mappings)
    out.update(full=full, refcount=folio.refcount, wrapped=folio.wrapped,
               mapcount=folio.mapcount, machine=m)
    return out


TOY_CASES = [(KIB32, KIB4), (KIB32, KIB32), (KIB256, KIB4), (KIB256, KIB32), (KIB256, KIB256)]


@pytest.mark.parametrize("hstate,piece", TOY_CASES, ids=lambda v: "%dk" % (v >> 10))
@pytest.mark.parametrize("kernel", ["6.2", "6.18"])
@pytest.mark.parametrize("guard", ["int_max_half", "sign"])
def test_simulator_guarded_matches_closed_form(hstate, piece, kernel, guard):
    want = overflow_math(hstate, piece, kernel, guard, geometry="toy")
    got = run_until_refused(hstate, piece, guard, kernel)
    assert got["start"] == want["page_cache_refs"]
    assert (got["full"], got["extra"]) == (want["full_mappings"], want["extra_pieces"])
    assert got["refcount"] == want["refused_at_refcount"]
    assert got["mapped"] == want["extra_pieces"] * piece
    # the refusal: ENOMEM for UFFDIO_CONTINUE (T9), as PartialProgress.cause when pieces went in
    assert isinstance(got["error"], OSError) and got["error"].errno == errno.ENOMEM
    assert not isinstance(got["error"], hv.PartialProgress)
    # per_piece: one head mapcount per leaf, and every admitted reference is a leaf
    assert got["mapcount"] == want["admitted_references"]
    assert got["wraps_during_mapping"] == want["wraps_during_mapping"]
    cats = {c for c, _ in got["warnings"]}
    if guard == "int_max_half":
        assert not got["wrapped"] and got["warnings"] == []
        assert want["refused_at_refcount"] == 64                    # toy INT_MAX/2 + 1
    else:
        assert got["wrapped"] and cats == {RuntimeWarning}
        assert want["refused_at_refcount"] == -128                  # toy INT_MIN
        msgs = [m for _, m in got["warnings"]]
        assert any("refcount overflow" in m for m in msgs)
        assert any("WARN_ON_ONCE(folio_ref_count(folio) <= 0)" in m for m in msgs)
    assert got["machine"].audit() == []


@pytest.mark.parametrize("hstate,piece", TOY_CASES, ids=lambda v: "%dk" % (v >> 10))
@pytest.mark.parametrize("kernel", ["6.2", "6.18"])
def test_simulator_unguarded_wrap_matches_closed_form(hstate, piece, kernel):
    want = overflow_math(hstate, piece, kernel, None, geometry="toy")
    got = run_until_refused(hstate, piece, None, kernel)
    assert "error" not in got
    assert got["start"] == want["page_cache_refs"]
    assert got["wraps_during_mapping"] == want["wraps_during_mapping"]
    assert got["refcount_before_wrap_mapping"] == want["refcount_after_full_mappings"]
    assert got["refcount_after_wrap_mapping"] == want["refcount_after_wrapping_mapping"] < 0
    assert got["wrapped"]
    overflow = [m for c, m in got["warnings"] if c is RuntimeWarning and "refcount overflow" in m]
    assert len(overflow) == 1 and "use-after-free" in overflow[0]


def test_simulator_wrap_warns_at_the_wrapping_step():
    """Guard None, toy 32 KiB at 4 KiB on 6.2: 15 quiet mappings, the 16th wraps loudly."""
    m = hv.Machine(nr_hugepages={KIB32: 1}, geometry="toy", scheme="per_piece", guard=None)
    f = m.memfd_create(size=KIB32, hstate=KIB32)
    f.fallocate(0, KIB32)
    p = m.spawn()
    want = overflow_math(KIB32, KIB4, "6.2", None, geometry="toy")
    assert want["wraps_during_mapping"] == 16 and want["pieces_into_wrapping_mapping"] == 7
    for i in range(want["wraps_during_mapping"]):
        a = p.mmap(f, KIB32)
        p.madvise(a, KIB32, hv.MADV_SPLIT)
        p.uffdio_register(a, KIB32, mode="minor")
        if i < want["full_mappings_before_wrap"]:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                p.uffdio_continue_batch(a, KIB32, KIB4)
        else:
            assert f.folio_at(0).refcount == want["refcount_after_full_mappings"] == 121
            # pieces one by one: the 7th wraps
            for j in range(1, 9):
                if j == want["pieces_into_wrapping_mapping"]:
                    with pytest.warns(RuntimeWarning, match="refcount overflow"):
                        p.uffdio_continue(a + (j - 1) * KIB4, KIB4)
                    assert f.folio_at(0).refcount == -128 and f.folio_at(0).wrapped
                else:
                    p.uffdio_continue(a + (j - 1) * KIB4, KIB4)
                    assert f.folio_at(0).wrapped == (j > 7)
    assert f.folio_at(0).refcount == want["refcount_after_wrapping_mapping"] == -127


@pytest.mark.parametrize("guard", ["int_max_half", "sign"])
def test_simulator_v2_errors_give_efault(guard):
    want = overflow_math(KIB32, KIB4, "6.2", guard, geometry="toy")
    got = run_until_refused(KIB32, KIB4, guard, "6.2", errors="v2")
    assert (got["full"], got["extra"]) == (want["full_mappings"], want["extra_pieces"])
    assert got["error"].errno == errno.EFAULT


@pytest.mark.parametrize("hstate", [KIB32, KIB256])
@pytest.mark.parametrize("kernel", ["6.2", "6.18"])
@pytest.mark.parametrize("guard", ["int_max_half", "sign"])
def test_simulator_faults_at_hstate_level(hstate, kernel, guard):
    """piece == hstate through page faults (no userfaultfd): the refusal is SIGBUS."""
    want = overflow_math(hstate, hstate, kernel, guard, geometry="toy")
    m = hv.Machine(nr_hugepages={hstate: 1}, geometry="toy", scheme="per_piece", guard=guard,
                   kernel=kernel)
    f = m.memfd_create(size=hstate, hstate=hstate)
    f.fallocate(0, hstate)
    p = m.spawn()
    full = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        while True:
            try:
                a = p.mmap(f, hstate)
            except OSError:
                p = m.spawn()
                a = p.mmap(f, hstate)
            try:
                p.touch(a)
            except hv.SigBus:
                break
            full += 1
    assert (full, 0) == (want["full_mappings"], want["extra_pieces"])
    assert f.folio_at(0).refcount == want["refused_at_refcount"]
