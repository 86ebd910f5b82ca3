"""HGM mechanics under the per_piece scheme (HGM v1/v2; domain.md 3(a), 4.5, 6.2)."""
import errno

import numpy as np
import pytest

import hgmviz as hv

from conftest import GIB, KIB4, MIB2, assert_unchanged


def hgm_1g(kernel="6.2", vmas=1, geometry="x86_64"):
    m = hv.Machine(nr_hugepages={GIB: 1} if geometry == "x86_64" else {1 << 18: 1},
                   scheme="per_piece", kernel=kernel, geometry=geometry)
    H = m.geometry.hstates[1].size
    f = m.memfd_create(size=H, hstate=H)
    p = m.spawn()
    alias = p.mmap(f, H)
    p.touch(alias)                   # in the page cache, mapped once at hstate level
    out = []
    for _ in range(vmas):
        a = p.mmap(f, H)
        p.madvise(a, H, hv.MADV_SPLIT)
        p.uffdio_register(a, H, mode="minor")
        out.append(a)
    return m, f, p, alias, out


@pytest.mark.nojit
def test_split_maps_nothing_and_4k_continue():
    m, f, p, alias, (a,) = hgm_1g()
    folio = f.folio_at(0)
    assert (folio.refcount, folio.entire_mapcount) == (2, 1)
    assert p.pagemap(a) is None
    assert p.uffdio_continue(a + 3 * KIB4, KIB4) == KIB4
    e = p.pagemap(a + 3 * KIB4)
    assert (e.size, e.index) == (KIB4, 3)
    assert p.pagemap(a + 4 * KIB4) is None
    assert (folio.refcount, folio.entire_mapcount) == (3, 2)       # +1/+1 per leaf (H12-like)
    assert_unchanged(m, lambda: p.uffdio_continue(a + 3 * KIB4, KIB4), OSError, errno.EEXIST)
    assert m.audit() == []


@pytest.mark.nojit
def test_continue_uses_the_largest_aligned_piece():
    m, f, p, alias, (a,) = hgm_1g()
    folio = f.folio_at(0)
    # H13: an aligned 2 MiB range becomes one PMD leaf
    p.uffdio_continue(a + MIB2, MIB2)
    assert p.pagemap(a + MIB2 + 5).size == MIB2
    assert folio.refcount == 3
    # 4 KiB .. 4 MiB + 4 KiB: 511 x 4 KiB, then 2 MiB at 2 MiB is taken -> EEXIST partial
    with pytest.raises(hv.PartialProgress) as info:
        p.uffdio_continue(a + KIB4, 4 * MIB2)
    assert info.value.mapped == MIB2 - KIB4 and info.value.cause.errno == errno.EEXIST
    assert folio.refcount == 3 + 511
    # H14: a 4 KiB piece under the existing 2 MiB leaf
    assert_unchanged(m, lambda: p.uffdio_continue(a + MIB2 + KIB4, KIB4), OSError, errno.EEXIST)
    # a 2 MiB piece over a PTE table: EEXIST as well (the PMD entry is not none)
    assert_unchanged(m, lambda: p.uffdio_continue(a, MIB2), OSError, errno.EEXIST)
    assert m.audit() == []


@pytest.mark.nojit
def test_faults_fill_holes_with_the_largest_leaf():
    m, f, p, alias, (a,) = hgm_1g()
    p.uffdio_unregister(a, GIB)
    folio = f.folio_at(0)
    # H10: untouched hugepage in an HGM VMA: an hstate-level leaf
    q = m.spawn()
    b = q.mmap(f, GIB)
    q.madvise(b, GIB, hv.MADV_SPLIT)
    q.touch(b + 12345)
    assert q.pagemap(b).size == GIB
    # H11: first 512 MiB by 2 MiB CONTINUEs, fault at 700 MiB: a new 2 MiB leaf
    p.uffdio_register(a, GIB, mode="minor")
    p.uffdio_continue_batch(a, 512 << 20, MIB2)
    p.uffdio_unregister(a, GIB)
    before = folio.refcount
    p.touch(a + (700 << 20))
    assert p.pagemap(a + (700 << 20)).size == MIB2
    assert folio.refcount == before + 1
    # H12: only the first 4 KiB of a 2 MiB region mapped; fault at +4 KiB: a 4 KiB leaf
    p.uffdio_register(a, GIB, mode="minor")
    p.uffdio_continue(a + (600 << 20), KIB4)
    p.uffdio_unregister(a, GIB)
    p.touch(a + (600 << 20) + KIB4)
    assert p.pagemap(a + (600 << 20) + KIB4).size == KIB4
    assert m.audit() == []


@pytest.mark.parametrize("kernel,pc", [("6.2", 1), ("6.18", 262144)])
def test_h2_4k_full_and_h15_collapse(kernel, pc):
    m, f, p, alias, (a,) = hgm_1g(kernel)
    folio = f.folio_at(0)
    assert p.uffdio_continue_batch(a, GIB, KIB4) == GIB
    assert folio.refcount == pc + 1 + 262144
    assert folio.entire_mapcount == 1 + 262144
    assert folio.page_mapcount(77) == 1 + 262144
    assert m.audit() == []
    p.madvise(a, GIB, hv.MADV_COLLAPSE)
    assert (folio.refcount, folio.entire_mapcount) == (pc + 2, 2)
    assert p.pagemap(a + 12345).size == GIB
    assert m.pt.nr_used == 2                     # PGD + one PUD page: the 513 tables are gone
    assert m.audit() == []


def test_h16_staged_collapse_and_h17_holes():
    m, f, p, alias, (a,) = hgm_1g()
    folio = f.folio_at(0)
    p.uffdio_continue_batch(a, GIB, KIB4)
    # punch a hole by remapping? holes: leave the last 4 KiB unmapped in another VMA
    q = m.spawn()
    b = q.mmap(f, GIB)
    q.madvise(b, GIB, hv.MADV_SPLIT)
    q.uffdio_register(b, GIB, mode="minor")
    q.uffdio_continue_batch(b, GIB - KIB4, KIB4)
    r0 = folio.refcount
    q.madvise(b, GIB, hv.MADV_COLLAPSE)          # H17: the hole is filled
    assert q.pagemap(b + GIB - 1).size == GIB
    assert folio.refcount == r0 - (262144 - 1) + 1
    # H16: 4K -> 2M over every 2 MiB range, then 2M -> 1G
    for off in range(0, GIB, MIB2):
        p.madvise(a + off, MIB2, hv.MADV_COLLAPSE)
    assert p.pagemap(a + 5).size == MIB2
    r1 = folio.refcount
    p.madvise(a, GIB, hv.MADV_COLLAPSE)
    assert folio.refcount == r1 - 512 + 1
    assert m.audit() == []


def test_batch_is_exactly_one_continue_per_piece():
    """The batched call equals a loop of single UFFDIO_CONTINUEs, byte for byte."""
    def build():
        m, f, p, alias, (a,) = hgm_1g(geometry="toy")
        return m, p, a
    m1, p1, a1 = build()
    m2, p2, a2 = build()
    H = m1.geometry.hstates[1].size
    P = m1.geometry.PAGE_SIZE
    # pre-map a piece in the middle so both hit EEXIST at the same place
    p1.uffdio_continue(a1 + 40 * P, P)
    p2.uffdio_continue(a2 + 40 * P, P)
    with pytest.raises(hv.PartialProgress) as info:
        p1.uffdio_continue_batch(a1, H, P)
    done = 0
    with pytest.raises(OSError) as info2:
        for addr in range(a2, a2 + H, P):
            p2.uffdio_continue(addr, P)
            done += P
    assert info.value.mapped == done == 40 * P
    assert info.value.cause.errno == info2.value.errno == errno.EEXIST
    assert m1.state_digest() == m2.state_digest()
    # and over a whole fresh range at every piece size
    for piece in (P, m1.geometry.hstates[0].size, H):
        m1, p1, a1 = build()
        m2, p2, a2 = build()
        p1.uffdio_continue_batch(a1, H, piece)
        for addr in range(a2, a2 + H, piece):
            p2.uffdio_continue(addr, piece)
        assert m1.state_digest() == m2.state_digest()
        assert m1.audit() == []


@pytest.mark.nojit
def test_fork_copies_hgm_leaves_with_uffd_wp():
    m, f, p, alias, (a,) = hgm_1g(geometry="toy")
    P = m.geometry.PAGE_SIZE
    folio = f.folio_at(0)
    p.uffdio_continue_batch(a, 16 * P, P)
    p.uffdio_unregister(a, 1 << 18)
    p.uffdio_register(a, 1 << 18, mode="minor|wp", event_fork=True)
    r0, e0 = folio.refcount, folio.entire_mapcount
    c = p.fork()                              # H8: +1/+1 per copied leaf (and the alias: lazy)
    assert (folio.refcount, folio.entire_mapcount) == (r0 + 16, e0 + 16)
    assert c.pagemap(a + 3 * P).size == P
    c.exit()
    assert (folio.refcount, folio.entire_mapcount) == (r0, e0)
    assert m.audit() == []


@pytest.mark.nojit
def test_toy_refcount_wraps_loudly_without_guard():
    m = hv.Machine(nr_hugepages={1 << 15: 1}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=1 << 15, hstate=1 << 15)
    p = m.spawn()
    f.fallocate(0, 1 << 15)
    folio = f.folio_at(0)
    n = 0
    with pytest.warns(RuntimeWarning, match="wrapped"):
        while not folio.wrapped:
            a = p.mmap(f, 1 << 15)
            p.madvise(a, 1 << 15, hv.MADV_SPLIT)
            p.uffdio_register(a, 1 << 15, mode="minor")
            p.uffdio_continue_batch(a, 1 << 15, 4096)
            n += 1
    # 1 page-cache ref + 8 per full mapping: 1 + 8*15 = 121 <= 127 < 1 + 8*16
    assert n == 16
    assert folio.refcount == 1 + 8 * 16 - 256
    assert folio.refcount < 0
    assert m.audit() == []


@pytest.mark.nojit
def test_mainline_machine_refuses_each_hgm_operation():
    m = hv.Machine(nr_hugepages={GIB: 1})
    f = m.memfd_create(size=GIB, hstate=GIB)
    p = m.spawn()
    a = p.mmap(f, GIB)
    f.fallocate(0, GIB)
    p.uffdio_register(a, GIB, mode="minor")
    assert_unchanged(m, lambda: p.madvise(a, GIB, hv.MADV_SPLIT), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.uffdio_continue(a, KIB4), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.uffdio_continue_batch(a, GIB, KIB4), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.madvise(a, GIB, hv.MADV_COLLAPSE), OSError, errno.EINVAL)
    p.uffdio_continue(a, GIB)
    assert f.folio_at(0).entire_mapcount == 1
    assert_unchanged(m, lambda: p.uffdio_continue(a, GIB), OSError, errno.EEXIST)
