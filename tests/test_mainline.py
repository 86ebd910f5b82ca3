"""Mainline hugetlb accounting and rules (domain.md section 2), through the public API."""
import errno

import pytest

import hgmviz as hv

from conftest import GIB, KIB4, MIB2, assert_unchanged

pytestmark = pytest.mark.nojit


@pytest.mark.parametrize("kernel,pc", [("6.2", 1), ("6.18", 512)])
@pytest.mark.parametrize("nvmas", [1, 2, 5])
def test_2m_folio_mapped_by_n_vmas(kernel, pc, nvmas):
    # refcount = pc + N, mapcount = N on head and every tail (domain.md 2.1 example)
    m = hv.Machine(nr_hugepages={MIB2: 2}, kernel=kernel)
    f = m.memfd_create(size=MIB2, hstate=MIB2)
    p = m.spawn()
    for _ in range(nvmas):
        a = p.mmap(f, MIB2)
        p.touch(a + 0x1234)
    folio = f.folio_at(0)
    assert folio.refcount == pc + nvmas
    assert folio.entire_mapcount == nvmas
    assert [folio.page_mapcount(i) for i in (0, 1, 511)] == [nvmas] * 3
    assert m.audit() == []


@pytest.mark.parametrize("kernel,pc", [("6.2", 1), ("6.18", 262144)])
def test_1g_folio(kernel, pc):
    m = hv.Machine(nr_hugepages={GIB: 1}, kernel=kernel)
    f = m.memfd_create(size=GIB, hstate=GIB)
    p, q = m.spawn(), m.spawn()
    a = p.mmap(f, GIB)
    b = q.mmap(f, GIB)
    p.touch(a + 5 * KIB4)
    q.touch(b)
    folio = f.folio_at(0)
    assert (folio.refcount, folio.entire_mapcount) == (pc + 2, 2)
    assert folio.page_mapcount(262143) == 2
    e = p.pagemap(a + 5 * KIB4 + 7)
    assert (e.folio, e.index, e.size, e.pfn) == (folio, 5, GIB, folio.pfn + 5)


def test_tour_example_numbers(m2):
    f = m2.memfd_create(size=8 << 20, hstate=MIB2)
    p = m2.spawn()
    a = p.mmap(f, length=4 << 20, offset=0, shared=True, addr=None, noreserve=False)
    assert m2.meminfo()[MIB2] == {"HugePages_Total": 8, "HugePages_Free": 8, "HugePages_Rsvd": 2,
                                  "HugePages_Surp": 0, "Hugepagesize": 2048}
    p.touch(a + 0x5000, write=True)
    folio = f.folio_at(0)
    assert (folio.refcount, folio.entire_mapcount, folio.page_mapcount(1)) == (2, 1, 1)
    assert m2.meminfo()[MIB2]["HugePages_Free"] == 7
    assert m2.meminfo()[MIB2]["HugePages_Rsvd"] == 1      # the fault consumed one reservation
    c = p.fork()                                          # lazy: no page-table copy
    assert c.pagemap(a + 0x5000) is None and folio.entire_mapcount == 1
    c.touch(a)                                            # the child faults its own entry
    assert (folio.refcount, folio.entire_mapcount) == (3, 2)
    c.exit()
    assert (folio.refcount, folio.entire_mapcount) == (2, 1)
    p.munmap(a, MIB2)
    assert (folio.refcount, folio.entire_mapcount) == (1, 0)   # the page cache keeps it
    assert m2.meminfo()[MIB2]["HugePages_Rsvd"] == 1            # munmap keeps reservations
    f.close()          # the second VMA still holds the file
    assert f.folio_at(0) is not None
    p.munmap(a + MIB2, MIB2)
    assert f.folio_at(0) is None
    assert m2.meminfo()[MIB2] == {"HugePages_Total": 8, "HugePages_Free": 8, "HugePages_Rsvd": 0,
                                  "HugePages_Surp": 0, "Hugepagesize": 2048}
    assert folio.refcount == 0 and not folio.in_use


def test_munmap_rules(m2):
    f = m2.memfd_create(size=4 << 20)
    p = m2.spawn()
    a = p.mmap(f, 4 << 20)
    p.touch(a)
    assert_unchanged(m2, lambda: p.munmap(a, KIB4), OSError, errno.EINVAL)
    assert_unchanged(m2, lambda: p.munmap(a + KIB4, MIB2), OSError, errno.EINVAL)
    assert_unchanged(m2, lambda: p.munmap(a + 1, MIB2), OSError, errno.EINVAL)
    p.munmap(a + MIB2, MIB2)            # aligned: splits the VMA
    assert [(v.start, v.end) for v in p.vmas] == [(a, a + MIB2)]
    p.munmap(a + 8 * MIB2, MIB2)        # nothing mapped there: success, no-op
    assert m2.audit() == []


def test_madvise_dontneed_rules(m2):
    f = m2.memfd_create(size=4 << 20)
    p = m2.spawn()
    a = p.mmap(f, 4 << 20)
    p.touch(a)
    p.touch(a + MIB2)
    folio = f.folio_at(0)
    p.madvise(a, KIB4, hv.MADV_DONTNEED)                     # end rounded down: no-op
    assert folio.entire_mapcount == 1
    assert_unchanged(m2, lambda: p.madvise(a + KIB4, MIB2, hv.MADV_DONTNEED), OSError, errno.EINVAL)
    p.madvise(a, MIB2 + KIB4, hv.MADV_DONTNEED)              # zaps the first hugepage only
    assert p.pagemap(a) is None and p.pagemap(a + MIB2) is not None
    assert (folio.refcount, folio.entire_mapcount) == (1, 0)
    assert f.folio_at(0) == folio                            # still in the page cache
    assert_unchanged(m2, lambda: p.madvise(a, MIB2, 99), OSError, errno.EINVAL)
    # madvise_walk_vmas(): a hole after the VMA is ENOMEM, once the VMA has had the advice
    with pytest.raises(hv.errors.StateKept) as info:
        p.madvise(a, 8 << 20, hv.MADV_DONTNEED)
    assert info.value.errno == errno.ENOMEM and "applied to the mapped parts" in str(info.value)
    assert p.pagemap(a + MIB2) is None and f.folio_at(MIB2).entire_mapcount == 0
    assert_unchanged(m2, lambda: p.madvise(a + (8 << 20), MIB2, hv.MADV_DONTNEED), OSError,
                     errno.ENOMEM)                           # no VMA at all: nothing to do


def test_uffdio_continue_mainline(m2):
    f = m2.memfd_create(size=4 << 20)
    p = m2.spawn()
    alias = p.mmap(f, 4 << 20)
    a = p.mmap(f, 4 << 20)
    p.uffdio_register(a, 4 << 20, mode="minor")
    assert_unchanged(m2, lambda: p.uffdio_continue(a, MIB2), OSError, errno.EFAULT)
    p.touch(alias)                                   # the page enters the page cache
    err = assert_unchanged(m2, lambda: p.touch(a), hv.UserfaultPending)
    assert err.reason == "minor"
    assert_unchanged(m2, lambda: p.uffdio_continue(a, KIB4), OSError, errno.EINVAL)
    assert p.uffdio_continue(a, MIB2) == MIB2
    folio = f.folio_at(0)
    assert (folio.refcount, folio.entire_mapcount) == (3, 2)
    assert_unchanged(m2, lambda: p.uffdio_continue(a, MIB2), OSError, errno.EEXIST)
    assert_unchanged(m2, lambda: p.uffdio_continue(alias, MIB2), OSError, errno.ENOENT)
    # partial progress: the second hugepage is not in the page cache
    f2 = m2.memfd_create(size=4 << 20)
    b = p.mmap(f2, 4 << 20)
    f2.fallocate(0, MIB2)
    p.uffdio_register(b, 4 << 20, mode="minor")
    with pytest.raises(hv.PartialProgress) as info:
        p.uffdio_continue(b, 4 << 20)
    assert info.value.errno == errno.EAGAIN and info.value.mapped == MIB2
    assert info.value.cause.errno == errno.EFAULT
    assert p.pagemap(b) is not None and p.pagemap(b + MIB2) is None
    assert m2.audit() == []


def test_missing_mode_userfault(m2):
    f = m2.memfd_create(size=MIB2)
    p = m2.spawn()
    a = p.mmap(f, MIB2)
    p.uffdio_register(a, MIB2, mode="missing")
    err = assert_unchanged(m2, lambda: p.touch(a), hv.UserfaultPending)
    assert err.reason == "missing"


@pytest.mark.parametrize("event_fork,copied", [(True, True), (False, False)])
def test_fork_with_uffd_wp(m2, event_fork, copied):
    f = m2.memfd_create(size=4 << 20)
    p = m2.spawn()
    a = p.mmap(f, 4 << 20)
    p.touch(a)
    p.touch(a + MIB2)
    p.uffdio_register(a, 4 << 20, mode="wp", event_fork=event_fork)
    c = p.fork()
    folio = f.folio_at(0)
    n = 2 if copied else 1
    assert (folio.refcount, folio.entire_mapcount) == (1 + n, n)
    assert (c.pagemap(a) is not None) == copied
    assert c.vmas[0].uffd_modes == (("wp",) if event_fork else ())
    c.exit()
    assert (folio.refcount, folio.entire_mapcount) == (2, 1)
    assert m2.audit() == []


def test_pmd_sharing_does_not_change_mapcount():
    m = hv.Machine(nr_hugepages={MIB2: 512})
    f = m.memfd_create(size=GIB, hstate=MIB2)
    p, q = m.spawn(), m.spawn()
    a = p.mmap(f, GIB, addr=4 * GIB)                  # PUD-aligned, covers a whole PUD range
    b = q.mmap(f, GIB, addr=8 * GIB)
    p.touch(a + 3 * MIB2)
    folio = f.folio_at(3 * MIB2)
    assert folio.entire_mapcount == 1
    q.touch(b + 3 * MIB2)                             # attaches p's PMD page: no new entry
    assert (folio.refcount, folio.entire_mapcount) == (2, 1)
    assert q.pagemap(b + 3 * MIB2).folio == folio
    p.touch(a)                                        # a new entry in the shared page
    assert q.pagemap(b) is not None                   # ... appears in both processes
    assert f.folio_at(0).entire_mapcount == 1
    assert m.last_events["kind"].size > 0
    q.exit()                                          # huge_pmd_unshare: no mapcount change
    assert folio.entire_mapcount == 1 and p.pagemap(a + 3 * MIB2) is not None
    assert m.audit() == []


def test_no_sharing_when_vma_does_not_cover_the_pud():
    m = hv.Machine(nr_hugepages={MIB2: 4})
    f = m.memfd_create(size=4 << 20, hstate=MIB2)
    p, q = m.spawn(), m.spawn()
    a, b = p.mmap(f, 4 << 20), q.mmap(f, 4 << 20)
    p.touch(a)
    q.touch(b)
    assert f.folio_at(0).entire_mapcount == 2


def test_sigbus_when_pool_is_empty():
    m = hv.Machine(nr_hugepages={MIB2: 1})
    f = m.memfd_create(size=4 << 20)
    p = m.spawn()
    a = p.mmap(f, 4 << 20, noreserve=True)
    p.touch(a)
    err = assert_unchanged(m, lambda: p.touch(a + MIB2), hv.SigBus)
    assert "HugePages_Free 0" in str(err)


def test_reservation_failure_and_noreserve():
    m = hv.Machine(nr_hugepages={MIB2: 2})
    f = m.memfd_create(size=8 << 20)
    p = m.spawn()
    assert_unchanged(m, lambda: p.mmap(f, 8 << 20), OSError, errno.ENOMEM)
    a = p.mmap(f, 8 << 20, noreserve=True)
    assert m.meminfo()[MIB2]["HugePages_Rsvd"] == 0
    p.mmap(f, 4 << 20)                                # reserves indices 0 and 1
    assert m.meminfo()[MIB2]["HugePages_Rsvd"] == 2
    p.touch(a + MIB2)                                 # consumes the reservation of index 1
    assert m.meminfo()[MIB2] | {} == {"HugePages_Total": 2, "HugePages_Free": 1,
                                      "HugePages_Rsvd": 1, "HugePages_Surp": 0, "Hugepagesize": 2048}
    assert_unchanged(m, lambda: p.touch(a + 2 * MIB2), hv.SigBus)   # the last page is reserved


def test_hgm_refused_on_mainline(m2):
    f = m2.memfd_create(size=MIB2)
    p = m2.spawn()
    a = p.mmap(f, MIB2)
    assert_unchanged(m2, lambda: p.madvise(a, MIB2, hv.MADV_SPLIT), OSError, errno.EINVAL)
    assert_unchanged(m2, lambda: p.madvise(a, MIB2, hv.MADV_COLLAPSE), OSError, errno.EINVAL)


def test_exit_frees_everything(m2):
    f = m2.memfd_create(size=8 << 20)
    p = m2.spawn()
    a = p.mmap(f, 8 << 20)
    for i in range(4):
        p.touch(a + i * MIB2)
    used = m2.pt.nr_used
    assert used == 3                 # PGD, one PUD page, one PMD page
    p.exit()
    assert m2.pt.nr_used == 0
    assert not p.alive
    assert_unchanged(m2, lambda: p.touch(a), OSError, errno.ESRCH)
    f.close()
    assert m2.meminfo()[MIB2]["HugePages_Free"] == 8


def test_state_is_a_read_only_view_of_the_live_machine_or_a_snapshot():
    m = hv.Machine(nr_hugepages={2 << 20: 2})
    f = m.memfd_create(size=4 << 20, hstate=2 << 20)
    p = m.spawn()
    a = p.mmap(f, 4 << 20)
    before = m.snapshot()
    p.touch(a)
    digest = m.state_digest()
    now, then = m.state(), m.state(before)
    for arr in (now.ent, now.tlevel, now.folio_used, now.files[f.id].pc, then.ent, now.fl):
        with pytest.raises(ValueError):
            arr[...] = 0
    assert now.scheme is m.scheme and then.scheme is not m.scheme
    assert now.scheme.folio_ref_count(0) == 2 and then.scheme.folio_ref_count(0) == 0
    assert now.mms[p.pid].alive and now.mms[p.pid].vmas[0].start == a
    assert (now.version, then.version) == (m.version, before.version)
    assert m.state_digest() == digest
    other = hv.Machine(nr_hugepages={2 << 20: 3})
    with pytest.raises(ValueError, match="snapshot of another machine"):
        other.state(before)
    with pytest.raises(TypeError, match="must be a snapshot"):
        m.state({"nope": 1})
