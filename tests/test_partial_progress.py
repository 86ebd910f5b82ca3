"""Failed calls where the kernel keeps part of what it did (docs/kernel-notes/issue13.md §8):
the errno is raised as :class:`hgmviz.errors.StateKept` (``Outcome.kept``), and exactly the
kernel's partial progress stays; refusals before any progress change nothing."""
import errno

import pytest

import hgmviz as hv
from hgmviz.errors import StateKept

from conftest import BASE, KIB4, MIB2, assert_unchanged, map_at_base

pytestmark = pytest.mark.nojit


@pytest.fixture
def world():
    return map_at_base(8 << 20, touched=(0, MIB2))


def spans(p):
    return [(v.start - BASE, v.end - BASE) for v in p.vmas]


def test_munmap_aligned_start_unaligned_end_keeps_the_start_split(world):
    m, f, p, a = world
    with pytest.raises(StateKept) as info:
        p.munmap(a + MIB2, MIB2 + KIB4)
    assert info.value.errno == errno.EINVAL and "vms_gather_munmap_vmas" in str(info.value)
    assert spans(p) == [(0, MIB2), (MIB2, 8 << 20)]       # split at the start, not undone
    assert p.pagemap(a + MIB2).folio.page_mapcount(0) == 1  # nothing unmapped
    assert m.audit() == []


def test_munmap_unaligned_start_changes_nothing(world):
    m, f, p, a = world
    assert_unchanged(m, lambda: p.munmap(a + KIB4, MIB2), OSError, errno.EINVAL)


def test_munmap_from_the_vma_start_with_an_unaligned_end_changes_nothing(world):
    m, f, p, a = world
    assert_unchanged(m, lambda: p.munmap(a, MIB2 + KIB4), OSError, errno.EINVAL)


def test_map_fixed_with_an_unaligned_offset_leaves_a_hole(world):
    m, f, p, a = world
    folio = f.folio_at(0)
    with pytest.raises(StateKept) as info:
        p.mmap(f, MIB2, offset=KIB4, addr=a)
    assert info.value.errno == errno.EINVAL and "hole" in str(info.value)
    assert spans(p) == [(MIB2, 8 << 20)]                   # the old first 2 MiB are gone
    assert p.pagemap(a) is None
    assert f.folio_at(0) == folio and folio.refcount == 1  # still in the page cache
    assert m.audit() == []


def test_map_fixed_whose_reservation_fails_leaves_a_hole(world):
    m, f, p, a = world
    g = m.memfd_create(32 << 20)
    with pytest.raises(StateKept) as info:
        p.mmap(g, 32 << 20, addr=a)
    assert info.value.errno == errno.ENOMEM
    assert spans(p) == [] and p.pagemap(a + MIB2) is None
    assert m.audit() == []


def test_map_fixed_refused_before_the_unmap_changes_nothing(world):
    m, f, p, a = world
    assert_unchanged(m, lambda: p.mmap(f, MIB2, addr=a + KIB4), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.mmap(f, MIB2, offset=1, addr=a), OSError, errno.EINVAL)


def test_map_fixed_that_replaces_nothing_and_fails_changes_nothing(world):
    m, f, p, a = world
    assert_unchanged(m, lambda: p.mmap(f, MIB2, offset=KIB4, addr=BASE + (1 << 30)), OSError,
                     errno.EINVAL)


def test_uffdio_unregister_keeps_the_vmas_before_a_failing_split():
    m = hv.Machine(nr_hugepages={MIB2: 8})
    f = m.memfd_create(8 << 20)
    p = m.spawn()
    a = p.mmap(f, 2 * MIB2, addr=BASE)
    b = p.mmap(f, 2 * MIB2, offset=2 * MIB2, addr=BASE + 2 * MIB2)
    p.uffdio_register(a, 2 * MIB2, mode="missing")
    p.uffdio_register(b, 2 * MIB2, mode="missing")
    with pytest.raises(StateKept) as info:
        p.uffdio_unregister(a, 3 * MIB2 + KIB4)
    assert info.value.errno == errno.EINVAL
    assert [v.uffd_modes for v in p.vmas] == [(), ("missing",)]
    p.touch(a)                                             # an ordinary fault now
    with pytest.raises(hv.UserfaultPending):
        p.touch(b)


def test_uffdio_unregister_failing_in_the_first_vma_changes_nothing():
    m = hv.Machine(nr_hugepages={MIB2: 8})
    f = m.memfd_create(8 << 20)
    p = m.spawn()
    a = p.mmap(f, 2 * MIB2, addr=BASE)
    p.uffdio_register(a, 2 * MIB2, mode="missing")
    assert_unchanged(m, lambda: p.uffdio_unregister(a, MIB2 + KIB4), OSError, errno.EINVAL)
