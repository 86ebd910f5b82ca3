"""The reference model (``refmodel.py``) alone against the numbers domain.md documents.

Section 2 (mainline: refcount, mapcounts, MADV_DONTNEED / munmap rules, fork, PMD sharing,
page-cache release) and the section 3(a) / 6.2 rows of the ``per_piece`` scheme that the model
implements (H1, H3, H4, H8, H10-H18).  These check the model itself, so that the property test
compares the simulator with something that is right.
"""
import errno

import pytest

from refmodel import MADV_COLLAPSE, MADV_DONTNEED, MADV_SPLIT, RefMachine

from hgmviz.errors import PartialProgress, UserfaultPending

KIB4 = 4 << 10
MIB2 = 2 << 20
GIB = 1 << 30
PC = {"6.2": (1, 1), "6.18": (512, 262144)}       # page-cache refs for (2 MiB, 1 GiB) folios


# ---------------------------------------------------------------- domain.md 2.1 / 2.2 -----
@pytest.mark.parametrize("kernel", ["6.2", "6.18"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_2m_folio_mapped_by_n_vmas(kernel, n):
    # 2.1 example: refcount = 512 + N (>= 6.7) or 1 + N (< 6.7); 2.2: head and every tail
    # report N (the number of PMD entries mapping the folio)
    m = RefMachine(nr_hugepages={MIB2: 2}, kernel=kernel)
    f = m.memfd_create(size=MIB2, hstate=MIB2)
    p = m.spawn()
    for _ in range(n):
        a = p.mmap(f, MIB2)
        p.touch(a + 0x1234)
    folio = f.folio_at(0)
    assert folio.refcount == PC[kernel][0] + n
    assert folio.entire_mapcount == n
    assert [folio.page_mapcount(i) for i in (0, 1, 511)] == [n] * 3


@pytest.mark.parametrize("kernel", ["6.2", "6.18"])
def test_1g_folio_same_formula(kernel):
    m = RefMachine(nr_hugepages={GIB: 1}, kernel=kernel)
    f = m.memfd_create(size=GIB, hstate=GIB)
    p, q = m.spawn(), m.spawn()
    p.touch(p.mmap(f, GIB) + 5 * KIB4)
    q.touch(q.mmap(f, GIB))
    folio = f.folio_at(0)
    assert (folio.refcount, folio.entire_mapcount, folio.page_mapcount(262143)) == \
        (PC[kernel][1] + 2, 2, 2)


def test_lifecycle_fault_fork_munmap_close():
    # 2.1 rows: allocation + page cache; fault on a cached page +1; munmap -1; the page cache
    # lets go on the last close ([LIVE] HugePages_Free 7 -> 8); reservations (hugetlb_reserve_pages)
    m = RefMachine(nr_hugepages={MIB2: 8})
    f = m.memfd_create(size=8 * MIB2, hstate=MIB2)
    p = m.spawn()
    a = p.mmap(f, 4 * MIB2)
    assert m.meminfo()[MIB2]["HugePages_Rsvd"] == 4
    p.touch(a + 0x5000)
    folio = f.folio_at(0)
    assert (folio.refcount, folio.entire_mapcount) == (2, 1)
    assert (m.meminfo()[MIB2]["HugePages_Free"], m.meminfo()[MIB2]["HugePages_Rsvd"]) == (7, 3)
    c = p.fork()                                   # lazy: no page-table copy (2.4)
    assert c.pagemap(a) is None and folio.entire_mapcount == 1
    c.touch(a)                                     # the child's own fault on a cached page
    assert (folio.refcount, folio.entire_mapcount) == (3, 2)
    c.exit()
    p.munmap(a, MIB2)
    assert (folio.refcount, folio.entire_mapcount) == (1, 0)       # the page cache keeps it
    assert m.meminfo()[MIB2]["HugePages_Rsvd"] == 3                  # munmap keeps reservations
    f.close()                                      # the other VMA still holds the file
    assert f.folio_at(0) is not None
    p.munmap(a + MIB2, 3 * MIB2)
    assert f.folio_at(0) is None
    assert m.meminfo()[MIB2] == {"HugePages_Total": 8, "HugePages_Free": 8, "HugePages_Rsvd": 0,
                                 "HugePages_Surp": 0, "Hugepagesize": 2048}


def test_madvise_dontneed_and_munmap_alignment():
    # 2.2: DONTNEED start must be hugepage aligned (EINVAL), end rounded down, so a 4 KiB
    # DONTNEED at an aligned address is a no-op; munmap off a hugepage boundary is EINVAL
    m = RefMachine(nr_hugepages={MIB2: 4})
    f = m.memfd_create(size=2 * MIB2, hstate=MIB2)
    p = m.spawn()
    a = p.mmap(f, 2 * MIB2)
    p.touch(a)
    p.touch(a + MIB2)
    assert p.madvise(a, KIB4, MADV_DONTNEED) == 0
    assert p.pagemap(a) is not None
    with pytest.raises(OSError) as e:
        p.madvise(a + KIB4, MIB2, MADV_DONTNEED)
    assert e.value.errno == errno.EINVAL
    assert p.madvise(a, MIB2 + KIB4, MADV_DONTNEED) == 0     # zaps the first hugepage only
    assert p.pagemap(a) is None and p.pagemap(a + MIB2) is not None
    for length in (KIB4, MIB2 + KIB4):
        with pytest.raises(OSError) as e:
            p.munmap(a, length)
        assert e.value.errno == errno.EINVAL


def test_pmd_sharing_counts_entries_not_processes():
    # 2.2 last row: a second process attaching the shared PMD page changes no counter; its
    # pagemap sees the page (want_pmd_share / huge_pmd_share)
    m = RefMachine(nr_hugepages={MIB2: 2}, kernel="6.18")
    f = m.memfd_create(size=GIB, hstate=MIB2)
    p, q = m.spawn(), m.spawn()
    a = p.mmap(f, GIB, addr=GIB, noreserve=True)
    b = q.mmap(f, GIB, addr=2 * GIB, noreserve=True)
    p.touch(a + 3 * MIB2)
    q.touch(b)                                     # attaches p's PMD page, then faults index 0
    folio = f.folio_at(3 * MIB2)
    assert q.pagemap(b + 3 * MIB2).folio == folio
    assert (folio.refcount, folio.entire_mapcount) == (512 + 1, 1)
    assert f.folio_at(0).entire_mapcount == 1      # faulted into the shared table: once
    q.madvise(b, MIB2, MADV_DONTNEED)              # huge_pmd_unshare: q only lets go of it
    assert q.pagemap(b + 3 * MIB2) is None and p.pagemap(a) is not None
    assert f.folio_at(0).entire_mapcount == 1


@pytest.mark.parametrize("event_fork,copied", [(True, True), (False, False)])
def test_fork_copies_only_uffd_wp_with_event_fork(event_fork, copied):
    # 2.4: vma_needs_copy is true for a uffd-wp child VMA; without EVENT_FORK the child loses
    # its uffd flags ([LIVE]) and nothing is copied
    m = RefMachine(nr_hugepages={MIB2: 2})
    f = m.memfd_create(size=MIB2, hstate=MIB2)
    p = m.spawn()
    a = p.mmap(f, MIB2)
    p.touch(a)
    p.uffdio_register(a, MIB2, mode="wp", event_fork=event_fork)
    c = p.fork()
    folio = f.folio_at(0)
    assert (c.pagemap(a) is not None) == copied
    assert (folio.refcount, folio.entire_mapcount) == ((3, 2) if copied else (2, 1))
    assert c.vmas[0][5] == (("wp",) if event_fork else ())


def test_mainline_refuses_hgm():
    # issue 2: UFFDIO_CONTINUE of 4 KiB is EINVAL, again on a present entry EEXIST; MADV_SPLIT
    # is unknown advice
    m = RefMachine(nr_hugepages={MIB2: 2})
    f = m.memfd_create(size=MIB2, hstate=MIB2)
    f.fallocate(0, MIB2)
    p = m.spawn()
    a = p.mmap(f, MIB2)
    p.uffdio_register(a, MIB2, mode="minor")
    for call, code in ((lambda: p.uffdio_continue(a, KIB4), errno.EINVAL),
                       (lambda: p.madvise(a, MIB2, MADV_SPLIT), errno.EINVAL)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == code
    with pytest.raises(UserfaultPending):
        p.touch(a)                                 # a MINOR fault: the page is cached
    assert p.uffdio_continue(a, MIB2) == MIB2
    with pytest.raises(OSError) as e:
        p.uffdio_continue(a, MIB2)
    assert e.value.errno == errno.EEXIST
    assert f.folio_at(0).refcount == 2


# ---------------------------------------------------------------- per_piece (3(a), 6.2) -----
def _hgm(size, hstate, kernel="6.2", geometry="x86_64", pool=1):
    m = RefMachine(nr_hugepages={hstate: pool}, scheme="per_piece", kernel=kernel,
                   geometry=geometry)
    f = m.memfd_create(size=size, hstate=hstate)
    f.fallocate(0, size)
    p = m.spawn()
    a = p.mmap(f, size)
    p.madvise(a, size, MADV_SPLIT)
    p.uffdio_register(a, size, mode="minor")
    return m, f, p, a


@pytest.mark.parametrize("kernel", ["6.2", "6.18"])
def test_h1_2m_page_mapped_by_512_ptes(kernel):
    m, f, p, a = _hgm(MIB2, MIB2, kernel)
    assert p.uffdio_continue_batch(a, MIB2, KIB4) == MIB2
    folio = f.folio_at(0)
    assert folio.refcount == PC[kernel][0] + 512
    assert [folio.page_mapcount(i) for i in (0, 7, 511)] == [512] * 3


def test_h3_two_pieces_of_1g_count_on_every_pfn():
    m, f, p, a = _hgm(GIB, GIB)
    p.uffdio_continue(a, 2 * KIB4)
    folio = f.folio_at(0)
    assert (folio.refcount, folio.page_mapcount(0), folio.page_mapcount(262143)) == (1 + 2, 2, 2)
    assert p.pagemap(a + 2 * KIB4) is None and p.pagemap(a + KIB4).size == KIB4


@pytest.mark.parametrize("kernel,refcount,refcount2", [("6.2", 65, -127), ("6.18", -128, -64)])
def test_h4_refcount_wraps_with_8_bit_counters(kernel, refcount, refcount2):
    # 1.4 / H4 on the toy geometry (8-bit atomic_t): a 256 KiB folio fully mapped at 4 KiB
    # takes 64 references; with the 64 page-cache references of >= 6.7 that is 128 = INT_MIN
    k = 256 << 10
    m, f, p, a = _hgm(k, k, kernel, geometry="toy")
    p.uffdio_continue_batch(a, k, KIB4)
    folio = f.folio_at(0)
    assert folio.refcount == refcount
    assert folio.entire_mapcount == 64          # stored biased: wrap(64 - 1) + 1
    q = p.fork()                                 # lazy (no uffd-wp): nothing copied, and the
    q.uffdio_register(a, k, mode="minor")        # child's VMA lost its registration
    q.uffdio_continue_batch(a, k, KIB4)          # (its VMA inherited VM_HUGETLB_HGM)
    # 128 leaves: the biased mapcount holds 127 (INT_MAX), refcount pc + 128 wraps
    assert folio.entire_mapcount == 128
    assert folio.refcount == refcount2


def test_h8_fork_with_uffd_wp_event_fork_copies_every_leaf():
    m, f, p, a = _hgm(MIB2, MIB2, pool=2)
    p.uffdio_continue_batch(a, MIB2, KIB4)
    p.uffdio_unregister(a, MIB2)
    p.uffdio_register(a, MIB2, mode="wp", event_fork=True)
    p.fork()
    assert f.folio_at(0).entire_mapcount == 1024 and f.folio_at(0).refcount == 1 + 1024


def test_h10_h11_h12_faults_install_the_first_none_entry():
    m, f, p, a = _hgm(GIB, GIB)
    p.uffdio_unregister(a, GIB)
    # H11: the first 512 MiB mapped by 2 MiB CONTINUEs, then a fault at 700 MiB: a 2 MiB leaf
    p.uffdio_register(a, GIB, mode="minor")
    p.uffdio_continue(a, 512 << 20)
    p.uffdio_unregister(a, GIB)
    folio = f.folio_at(0)
    assert folio.refcount == 1 + 256
    p.touch(a + (700 << 20))
    assert (folio.refcount, p.pagemap(a + (700 << 20)).size) == (1 + 257, MIB2)
    # H12: only the first 4 KiB of another 1 GiB page; a fault at +4 KiB: a 4 KiB leaf
    m, f, p, a = _hgm(GIB, GIB)
    p.uffdio_continue(a, KIB4)
    p.uffdio_unregister(a, GIB)
    p.touch(a + KIB4)
    assert (f.folio_at(0).refcount, p.pagemap(a + KIB4).size) == (1 + 2, KIB4)
    # H10: an untouched hugepage of an MADV_SPLIT VMA: an hstate-level leaf
    m = RefMachine(nr_hugepages={MIB2: 1}, scheme="per_piece")
    f = m.memfd_create(size=MIB2, hstate=MIB2)
    p = m.spawn()
    a = p.mmap(f, MIB2)
    p.madvise(a, MIB2, MADV_SPLIT)
    p.touch(a + 5 * KIB4)
    assert (f.folio_at(0).refcount, p.pagemap(a).size) == (2, MIB2)


def test_h13_h14_continue_largest_piece_and_eexist():
    m, f, p, a = _hgm(GIB, GIB)
    assert p.uffdio_continue(a + MIB2, MIB2) == MIB2          # H13: one PMD leaf
    assert p.pagemap(a + MIB2).size == MIB2 and f.folio_at(0).refcount == 2
    with pytest.raises(OSError) as e:                           # H14: a larger entry exists
        p.uffdio_continue(a + MIB2 + KIB4, KIB4)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(PartialProgress) as e:                   # maps a..a+2M, then EEXIST
        p.uffdio_continue(a, 2 * MIB2)
    assert (e.value.mapped, e.value.cause.errno) == (MIB2, errno.EEXIST)


def test_h15_h16_h17_collapse():
    k = 256 << 10                                # toy: 256 KiB hstate at the PUD level
    m, f, p, a = _hgm(k, k, geometry="toy")
    p.uffdio_continue_batch(a, k - KIB4, KIB4)                 # a hole at the last page
    folio = f.folio_at(0)
    assert folio.entire_mapcount == 63
    p.madvise(a, 32 << 10, MADV_COLLAPSE)                      # H16: 4K -> 32K (PMD) leaf
    assert folio.entire_mapcount == 63 - 8 + 1
    assert p.pagemap(a).size == 32 << 10
    p.madvise(a, k, MADV_COLLAPSE)                             # H15/H17: one leaf, hole filled
    assert (folio.refcount, folio.entire_mapcount, p.pagemap(a + k - KIB4).size) == (2, 1, k)


def test_h18_dontneed_of_one_piece_is_a_noop_or_einval():
    m, f, p, a = _hgm(MIB2, MIB2)
    p.uffdio_continue(a, 2 * KIB4)
    assert p.madvise(a, KIB4, MADV_DONTNEED) == 0
    with pytest.raises(OSError) as e:
        p.madvise(a + KIB4, KIB4, MADV_DONTNEED)
    assert e.value.errno == errno.EINVAL
    assert f.folio_at(0).entire_mapcount == 2
