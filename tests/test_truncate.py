"""ftruncate, fallocate modes (KEEP_SIZE, PUNCH_HOLE), MADV_REMOVE and fallocate's ENOSPC
partial progress, against docs/kernel-notes/issue13.md §2-§4 (hugetlb_vmtruncate,
hugetlbfs_fallocate, hugetlbfs_punch_hole, madvise_remove) and the live 6.18 probe there."""
import errno

import pytest

import hgmviz as hv

from conftest import MIB2, assert_unchanged

pytestmark = pytest.mark.nojit

PUNCH = hv.FALLOC_FL_PUNCH_HOLE | hv.FALLOC_FL_KEEP_SIZE


def pool(m):
    mi = m.meminfo()[MIB2]
    return mi["HugePages_Free"], mi["HugePages_Rsvd"]


@pytest.fixture
def two():
    """A 2-page file mapped shared in two processes; page 0 faulted, page 1 only reserved."""
    m = hv.Machine(nr_hugepages={MIB2: 4})
    f = m.memfd_create(2 * MIB2)
    p = m.spawn()
    a = p.mmap(f, 2 * MIB2)
    p.touch(a)
    c = p.fork()
    c.touch(a)
    return m, f, p, c, a


def test_ftruncate_shrink_zaps_every_process_and_returns_unused_reservations(two):
    m, f, p, c, a = two
    assert pool(m) == (3, 1)
    folio = f.folio_at(0)
    f.ftruncate(0)
    assert p.pagemap(a) is None and c.pagemap(a) is None
    assert f.page_cache() == {} and not folio.in_use and f.size == 0
    assert pool(m) == (4, 0)              # the page freed; page 1's reservation returned
    assert "hugetlb_vmtruncate" in m.call_path
    with pytest.raises(hv.SigBus, match="end of the file"):
        p.touch(a)
    f.ftruncate(2 * MIB2)                 # growing reserves nothing
    assert pool(m) == (4, 0) and f.size == 2 * MIB2
    p.touch(a + MIB2)                     # an unreserved page
    assert pool(m) == (3, 0)
    assert m.audit() == []


def test_ftruncate_keeps_pages_below_the_new_end(two):
    m, f, p, c, a = two
    p.touch(a + MIB2)
    f.ftruncate(MIB2)
    assert p.pagemap(a).folio.page_mapcount(0) == 2
    assert p.pagemap(a + MIB2) is None
    assert pool(m) == (3, 0)
    assert m.audit() == []


def test_ftruncate_refusals_change_nothing(two):
    m, f, p, c, a = two
    e = assert_unchanged(m, lambda: f.ftruncate(MIB2 // 2), OSError, errno.EINVAL)
    assert "multiple of the hugepage size" in str(e)
    assert_unchanged(m, lambda: f.ftruncate(-1), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: f.ftruncate("0"), TypeError)


def test_ftruncate_zaps_a_private_copy_too():
    m = hv.Machine(nr_hugepages={MIB2: 4})
    f = m.memfd_create(MIB2)
    p = m.spawn()
    q = p.mmap(f, MIB2, shared=False)
    p.touch(q)                            # an anonymous page
    f.ftruncate(0)
    assert p.pagemap(q) is None and pool(m) == (4, 0)
    assert m.audit() == []


def test_punch_hole_of_a_mapped_page(two):
    m, f, p, c, a = two
    f.fallocate(0, MIB2, PUNCH)
    assert p.pagemap(a) is None and c.pagemap(a) is None and f.page_cache() == {}
    assert pool(m) == (4, 1)              # freed; page 1 still reserved; page 0's entry gone
    p.touch(a)                            # unreserved now: Rsvd stays 1
    assert pool(m) == (3, 1)
    assert f.size == 2 * MIB2
    assert m.audit() == []


def test_punch_hole_of_a_reserved_unfaulted_page_keeps_the_reservation(two):
    m, f, p, c, a = two
    f.fallocate(MIB2, MIB2, PUNCH)        # the live 6.18 probe: Rsvd unchanged
    assert pool(m) == (3, 1)


def test_punch_inside_one_hugepage_only_zeroes(two):
    m, f, p, c, a = two
    cache = f.page_cache()
    f.fallocate(0x1000, 0x2000, PUNCH)
    assert p.pagemap(a).folio.page_mapcount(0) == 2
    assert "hugetlbfs_zero_partial_page" in m.call_path
    assert f.page_cache() == cache and pool(m) == (3, 1)


def test_fallocate_mode_refusals(two):
    m, f, p, c, a = two
    e = assert_unchanged(m, lambda: f.fallocate(0, MIB2, hv.FALLOC_FL_PUNCH_HOLE), OSError,
                         errno.EOPNOTSUPP)
    assert "KEEP_SIZE" in str(e)
    assert_unchanged(m, lambda: f.fallocate(0, MIB2, 0x10), OSError, errno.EOPNOTSUPP)
    assert_unchanged(m, lambda: f.fallocate(0, 0, PUNCH), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: f.fallocate(0, MIB2, "punch"), TypeError)


def test_fallocate_keep_size_allocates_past_eof():
    m = hv.Machine(nr_hugepages={MIB2: 4})
    f = m.memfd_create(MIB2)
    f.fallocate(0, 3 * MIB2, hv.FALLOC_FL_KEEP_SIZE)
    assert f.size == MIB2 and sorted(f.page_cache()) == [0, 1, 2]
    f.fallocate(0, 3 * MIB2 + 5)
    assert f.size == 3 * MIB2 + 5 and len(f.page_cache()) == 4


def test_fallocate_enospc_keeps_the_pages_added_before():
    m = hv.Machine(nr_hugepages={MIB2: 3})
    f = m.memfd_create(0)
    with pytest.raises(OSError) as info:
        f.fallocate(0, 5 * MIB2)
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value, hv.errors.StateKept)
    assert sorted(f.page_cache()) == [0, 1, 2] and f.size == 0
    assert pool(m) == (0, 0)
    assert m.audit() == []


def test_madv_remove_punches_the_file_range(two):
    m, f, p, c, a = two
    p.madvise(a, 2 * MIB2, hv.MADV_REMOVE)
    assert c.pagemap(a) is None and f.page_cache() == {}
    assert pool(m) == (4, 1)
    assert m.audit() == []


def test_madv_remove_on_a_private_mapping_is_eacces():
    m = hv.Machine(nr_hugepages={MIB2: 4})
    f = m.memfd_create(MIB2)
    p = m.spawn()
    q = p.mmap(f, MIB2, shared=False)
    p.touch(q)
    assert_unchanged(m, lambda: p.madvise(q, MIB2, hv.MADV_REMOVE), OSError, errno.EACCES)


def test_madv_remove_stops_at_a_private_vma_keeping_what_it_did():
    m = hv.Machine(nr_hugepages={MIB2: 4})
    f = m.memfd_create(2 * MIB2)
    p = m.spawn()
    a = p.mmap(f, MIB2, addr=64 << 30)
    p.mmap(f, MIB2, offset=MIB2, addr=(64 << 30) + MIB2, shared=False)
    p.touch(a)
    with pytest.raises(OSError) as info:
        p.madvise(a, 2 * MIB2, hv.MADV_REMOVE)
    assert info.value.errno == errno.EACCES and isinstance(info.value, hv.errors.StateKept)
    assert p.pagemap(a) is None and f.page_cache() == {}
