"""Every scenario H1-H22 of domain.md 6.2 the schemes can express, with the expected numbers."""
import errno

import numpy as np
import pytest

import hgmviz as hv
from hgmviz.comparison import compare_schemes
from hgmviz.ops import MemfdCreate, Fallocate, Madvise, Mmap, Spawn, UffdioContinue, UffdioRegister

from conftest import GIB, KIB4, MIB2, assert_unchanged

HGM = ("per_piece", "thp_like", "hstate_present", "subtree_counted")


def setup(scheme, hsize=GIB, kernel="6.2", **kw):
    m = hv.Machine(nr_hugepages={hsize: 1}, scheme=scheme, kernel=kernel, **kw)
    f = m.memfd_create(size=hsize, hstate=hsize)
    f.fallocate(0, hsize)
    p = m.spawn()
    a = p.mmap(f, hsize)
    p.madvise(a, hsize, hv.MADV_SPLIT)
    p.uffdio_register(a, hsize, mode="minor|wp", event_fork=True)
    return m, f, p, a, f.folio_at(0)


def state(folio, pages=(0, 1, 2)):
    return folio.refcount, [folio.page_mapcount(i) for i in pages]


@pytest.mark.parametrize("scheme,expect", [
    ("per_piece", (1 + 512, [512, 512, 512])),
    ("thp_like", (1 + 512, [1, 1, 1])),
    ("hstate_present", (2, [1, 1, 1])),
    ("subtree_counted", (2, [1, 1, 1])),
])
def test_h1_2m_page_by_512_ptes(scheme, expect):
    m, f, p, a, folio = setup(scheme, MIB2)
    p.uffdio_continue_batch(a, MIB2, KIB4)
    assert state(folio) == expect
    assert m.audit() == []


@pytest.mark.parametrize("scheme,expect", [
    ("per_piece", (1 + 262144, [262144] * 3)),
    ("thp_like", (1 + 262144, [1] * 3)),
    ("hstate_present", (2, [1] * 3)),
])
def test_h2_1g_4k_full(scheme, expect):
    m, f, p, a, folio = setup(scheme)
    p.uffdio_continue_batch(a, GIB, KIB4)
    assert state(folio) == expect


@pytest.mark.parametrize("scheme,expect,smaps", [
    ("per_piece", (3, [2, 2, 2]), {"Shared_Hugetlb": 8, "Private_Hugetlb": 0}),
    ("thp_like", (3, [1, 1, 0]), {"Shared_Hugetlb": 0, "Private_Hugetlb": 8}),
    ("hstate_present", (2, [1, 1, 1]), {"Shared_Hugetlb": 0, "Private_Hugetlb": 8}),
    ("subtree_counted", (2, [1, 1, 1]), {"Shared_Hugetlb": 0, "Private_Hugetlb": 8}),
])
def test_h3_two_pieces_and_h22_smaps(scheme, expect, smaps):
    m, f, p, a, folio = setup(scheme)
    p.uffdio_continue(a, 2 * KIB4)
    assert state(folio) == expect            # hstate_present: the caveat, pfn 2 unmapped but 1
    assert p.smaps_hugetlb(a) == smaps


@pytest.mark.parametrize("scheme,d_ref,d_pages", [
    ("per_piece", 262144, [262144] * 3),
    ("thp_like", 262144, [1] * 3),
    ("hstate_present", 1, [1] * 3),
    ("subtree_counted", 1, [1] * 3),
])
def test_h8_fork_with_uffd_wp(scheme, d_ref, d_pages):
    m, f, p, a, folio = setup(scheme)
    p.uffdio_continue_batch(a, GIB, KIB4)
    r0, pm0 = state(folio)
    c = p.fork()
    r1, pm1 = state(folio)
    assert r1 - r0 == d_ref and list(np.subtract(pm1, pm0)) == d_pages
    c.exit()
    assert state(folio) == (r0, pm0)
    assert m.audit() == []


@pytest.mark.parametrize("errors,code", [("v2", errno.EFAULT), ("proposed", errno.ENOMEM)])
def test_h9_fork_fails_when_the_refcount_is_not_positive(errors, code):
    m = hv.Machine(nr_hugepages={1 << 15: 1}, geometry="toy", scheme="per_piece", guard="sign",
                   errors=errors)
    f = m.memfd_create(size=1 << 15, hstate=1 << 15)
    f.fallocate(0, 1 << 15)
    p = m.spawn()
    full = 0
    with pytest.warns(RuntimeWarning) as warned:
        while f.folio_at(0).refcount > 0:       # 1 + 15 * 8 = 121; 7 more pieces reach -128
            a = p.mmap(f, 1 << 15)
            p.madvise(a, 1 << 15, hv.MADV_SPLIT)
            p.uffdio_register(a, 1 << 15, mode="minor|wp", event_fork=True)
            try:
                p.uffdio_continue_batch(a, 1 << 15, 4096)
                full += 1
            except hv.PartialProgress as e:
                assert e.mapped == 7 * 4096 and e.cause.errno == code
    assert full == 15 and f.folio_at(0).refcount == -128
    messages = [str(w.message) for w in warned]
    assert any("wrapped" in t for t in messages)
    assert sum("WARN_ON_ONCE" in t for t in messages) == 1   # the refused piece, once
    assert_unchanged(m, p.fork, OSError, code)


@pytest.mark.parametrize("scheme", HGM)
def test_h10_fault_on_untouched_hugepage(scheme):
    m, f, p, a, folio = setup(scheme)
    p.uffdio_unregister(a, GIB)
    p.touch(a + 12345)
    assert p.pagemap(a).size == GIB
    assert (folio.refcount, folio.entire_mapcount) == (2, 1)


@pytest.mark.parametrize("scheme,d_ref,d_page", [
    ("per_piece", 1, 1), ("thp_like", 1, 1), ("hstate_present", 0, 0), ("subtree_counted", 0, 0)])
def test_h11_h12_faults_fill_holes(scheme, d_ref, d_page):
    m, f, p, a, folio = setup(scheme)
    p.uffdio_continue_batch(a, 512 << 20, MIB2)
    p.uffdio_continue(a + (600 << 20), KIB4)
    p.uffdio_unregister(a, GIB)
    off = 700 << 20
    r0, p0 = folio.refcount, folio.page_mapcount(off >> 12)
    p.touch(a + off)                                    # H11: a 2 MiB leaf
    assert p.pagemap(a + off).size == MIB2
    assert (folio.refcount - r0, folio.page_mapcount(off >> 12) - p0) == (d_ref, d_page)
    if scheme == "thp_like":
        assert folio.page_mapcount((off >> 12) + 511) == 1 and folio.page_mapcount((off >> 12) + 512) == 0
    off = (600 << 20) + KIB4
    r0, p0 = folio.refcount, folio.page_mapcount(off >> 12)
    p.touch(a + off)                                    # H12: a 4 KiB leaf
    assert p.pagemap(a + off).size == KIB4
    assert (folio.refcount - r0, folio.page_mapcount(off >> 12) - p0) == (d_ref, d_page)
    assert m.audit() == []


@pytest.mark.parametrize("scheme,first,second", [
    ("per_piece", (1, 1), (1, 1)), ("thp_like", (1, 1), (1, 1)),
    ("hstate_present", (1, 1), (0, 0)), ("subtree_counted", (1, 1), (0, 0))])
def test_h13_continue_2m_and_h14_eexist(scheme, first, second):
    m, f, p, a, folio = setup(scheme)
    r0, e0 = folio.refcount, folio.page_mapcount(0)
    p.uffdio_continue(a, MIB2)                          # makes the hstate entry present
    assert (folio.refcount - r0, folio.page_mapcount(0) - e0) == first
    assert p.pagemap(a).size == MIB2
    if scheme == "thp_like":
        assert folio.page_mapcount(511) == 1 and folio.page_mapcount(512) == 0
    r0, e0 = folio.refcount, folio.page_mapcount(512)
    p.uffdio_continue(a + MIB2, MIB2)
    assert (folio.refcount - r0, folio.page_mapcount(512) - e0) == second
    assert_unchanged(m, lambda: p.uffdio_continue(a + KIB4, KIB4), OSError, errno.EEXIST)


@pytest.mark.parametrize("scheme", HGM)
def test_h15_h16_collapse(scheme):
    m, f, p, a, folio = setup(scheme)
    p.uffdio_continue_batch(a, GIB, KIB4)
    for off in range(0, GIB, MIB2):                     # H16 stage 1: 4K -> 2M
        p.madvise(a + off, MIB2, hv.MADV_COLLAPSE)
    expect_mid = {"per_piece": (1 + 512, 512), "thp_like": (1 + 512, 1),
                  "hstate_present": (2, 1), "subtree_counted": (2, 1)}[scheme]
    assert (folio.refcount, folio.page_mapcount(7)) == expect_mid
    p.madvise(a, GIB, hv.MADV_COLLAPSE)                 # H16 stage 2 / H15: one 1 GiB leaf
    assert (folio.refcount, folio.page_mapcount(7), folio.entire_mapcount) == (2, 1, 1)
    assert p.pagemap(a + 5).size == GIB
    assert m.audit() == []


@pytest.mark.parametrize("scheme", HGM)
def test_h17_collapse_fills_holes(scheme):
    m, f, p, a, folio = setup(scheme)
    p.uffdio_continue(a + KIB4, KIB4)
    p.madvise(a, GIB, hv.MADV_COLLAPSE)
    assert p.pagemap(a).size == GIB and (folio.refcount, folio.entire_mapcount) == (2, 1)


@pytest.mark.parametrize("scheme", HGM)
def test_h18_dontneed_of_a_4k_piece_follows_mainline_rules(scheme):
    m, f, p, a, folio = setup(scheme)
    p.uffdio_continue(a, 2 * KIB4)
    before = state(folio)
    p.madvise(a, KIB4, hv.MADV_DONTNEED)                # end rounded down: a no-op
    assert state(folio) == before and p.pagemap(a) is not None
    assert_unchanged(m, lambda: p.madvise(a + KIB4, KIB4, hv.MADV_DONTNEED), OSError, errno.EINVAL)


@pytest.mark.parametrize("scheme,count_at,lookup_first,consistent", [
    ("hstate_present", "alloc", False, True),
    ("hstate_present", "set", False, False),           # the lost increment: audit catches it
    ("hstate_present", "set", True, True),             # James's remedy
    ("per_piece", "alloc", False, True),
    ("thp_like", "alloc", False, True),
    ("subtree_counted", "alloc", False, True),
])
def test_h19_error_between_allocating_and_setting(scheme, count_at, lookup_first, consistent):
    m, f, p, a, folio = setup(scheme, count_at=count_at, lookup_first=lookup_first)
    m.inject("pagecache_vanish")
    if lookup_first:
        assert_unchanged(m, lambda: p.uffdio_continue(a, KIB4), OSError, errno.EFAULT)
    else:
        used = m.pt.nr_used
        with pytest.raises(hv.errors.StateKept):
            p.uffdio_continue(a, KIB4)
        assert m.pt.nr_used == used + 3     # a PUD, a PMD and a PTE page stay behind
    p.uffdio_continue(a, KIB4)
    assert (m.audit() == []) == consistent


@pytest.mark.parametrize("count_at,consistent", [("alloc", True), ("set", False)])
def test_error_after_pte_alloc_is_not_covered_by_the_lookup_first_remedy(count_at, consistent):
    # James's remedy moves the page-cache lookup before the walk; an error of another kind
    # between allocating the tables and setting the entry still leaves them behind
    m, f, p, a, folio = setup("hstate_present", count_at=count_at, lookup_first=True)
    m.inject("after_pte_alloc")
    with pytest.raises(hv.errors.StateKept):
        p.uffdio_continue(a, KIB4)
    p.uffdio_continue(a, KIB4)
    assert (m.audit() == []) == consistent


def test_h20_split_unshares_pmds():
    m = hv.Machine(nr_hugepages={MIB2: 512}, scheme="per_piece")
    f = m.memfd_create(size=GIB, hstate=MIB2)
    p, q = m.spawn(), m.spawn()
    a = p.mmap(f, GIB, addr=4 * GIB)
    b = q.mmap(f, GIB, addr=8 * GIB)
    p.touch(a)
    q.touch(b)
    assert m.pt.tshare.max() == 1 and f.folio_at(0).entire_mapcount == 1
    q.madvise(b, GIB, hv.MADV_SPLIT)
    assert m.pt.tshare.max() == 0 and q.pagemap(b) is None and p.pagemap(a) is not None
    q.uffdio_register(b, GIB, mode="minor")
    q.uffdio_continue(b, KIB4)
    assert f.folio_at(0).entire_mapcount == 2
    assert m.audit() == []


@pytest.mark.parametrize("scheme,allowed", [("per_piece", True), ("thp_like", False),
                                            ("hstate_present", True), ("subtree_counted", True)])
def test_h21_hvo_excludes_thp_like(scheme, allowed):
    m = hv.Machine(nr_hugepages={GIB: 1}, scheme=scheme, hvo=True)
    f = m.memfd_create(size=GIB, hstate=GIB)
    p = m.spawn()
    a = p.mmap(f, GIB)
    if allowed:
        p.madvise(a, GIB, hv.MADV_SPLIT)
        assert p.vmas[0].hgm
    else:
        err = assert_unchanged(m, lambda: p.madvise(a, GIB, hv.MADV_SPLIT), OSError, errno.EINVAL)
        assert "HVO" in str(err)


def test_subtree_counted_knows_the_last_unmap_and_costs_metadata():
    m, f, p, a, folio = setup("subtree_counted")
    p.uffdio_continue(a, 2 * KIB4)
    assert m.scheme.metadata_bytes() == 8
    q = m.spawn()
    b = q.mmap(f, GIB)
    q.touch(b)
    assert m.scheme.metadata_bytes() == 16
    q.exit()
    p.munmap(a, GIB)
    assert m.scheme.metadata_bytes() == 0 and (folio.refcount, folio.entire_mapcount) == (1, 0)


def test_compare_runner_gives_plain_data_per_step():
    steps = [MemfdCreate("f", GIB, GIB), Fallocate("f", 0, GIB), Spawn("p"),
             Mmap("p", "f", GIB, "a"), Madvise("p", "a", GIB, "MADV_SPLIT"),
             UffdioRegister("p", "a", GIB, "minor"), UffdioContinue("p", ("a", KIB4), KIB4)]
    rows = compare_schemes(steps, watch=[("f", 0)], pages=(0, 1), nr_hugepages={GIB: 1})
    assert [r["op"]["op"] for r in rows] == [type(s).__name__ for s in steps]
    split = rows[4]["results"]
    assert split["mainline"]["outcome"].status == "EINVAL"
    assert all(split[s]["outcome"].ok for s in HGM)
    last = rows[-1]["results"]
    got = {s: (r["folios"]["f@0x0"]["refcount"], r["folios"]["f@0x0"]["page_mapcount"])
           for s, r in last.items()}
    assert got == {"mainline": (1, {0: 0, 1: 0}), "per_piece": (2, {0: 1, 1: 1}),
                   "thp_like": (2, {0: 0, 1: 1}), "hstate_present": (2, {0: 1, 1: 1}),
                   "subtree_counted": (2, {0: 1, 1: 1})}
    assert "hugetlb_alloc_largest_pte" in last["per_piece"]["call_path"]
