"""UFFDIO_COPY and UFFDIO_WAKE on hugetlb (docs/kernel-notes/issue13.md §7:
hugetlb_mfill_atomic_pte, userfaultfd_wake)."""
import errno

import pytest

import hgmviz as hv

from conftest import KIB4, MIB2, assert_unchanged

pytestmark = pytest.mark.nojit


@pytest.fixture
def world():
    m = hv.Machine(nr_hugepages={MIB2: 4})
    f = m.memfd_create(4 * MIB2)
    p = m.spawn()
    a = p.mmap(f, 2 * MIB2)
    p.uffdio_register(a, 2 * MIB2, mode="missing")
    return m, f, p, a


def pool(m):
    mi = m.meminfo()[MIB2]
    return mi["HugePages_Free"], mi["HugePages_Rsvd"]


def test_copy_fills_the_missing_page_for_every_mapping(world):
    m, f, p, a = world
    with pytest.raises(hv.UserfaultPending):
        p.touch(a + KIB4)
    assert pool(m) == (4, 2)
    assert p.uffdio_copy(a, MIB2) == MIB2
    folio = f.folio_at(0)
    assert p.pagemap(a).folio == folio and (folio.refcount, folio.entire_mapcount) == (2, 1)
    assert pool(m) == (3, 1)                        # the reservation was used
    p.touch(a + KIB4)                               # the woken access finds the page
    b = p.mmap(f, MIB2)
    p.touch(b)
    assert p.pagemap(b).folio == folio and folio.entire_mapcount == 2
    assert m.audit() == []


def test_copy_refusals(world):
    m, f, p, a = world
    p.uffdio_copy(a, MIB2)
    assert_unchanged(m, lambda: p.uffdio_copy(a, MIB2), OSError, errno.EEXIST)
    assert_unchanged(m, lambda: p.uffdio_copy(a + MIB2, KIB4), OSError, errno.EINVAL)
    b = p.mmap(f, MIB2, offset=2 * MIB2)
    assert_unchanged(m, lambda: p.uffdio_copy(b, MIB2), OSError, errno.ENOENT)


def test_copy_keeps_the_pages_before_a_failure(world):
    m, f, p, a = world
    p.uffdio_copy(a + MIB2, MIB2)
    with pytest.raises(hv.PartialProgress) as info:
        p.uffdio_copy(a, 2 * MIB2)
    assert info.value.mapped == MIB2 and info.value.cause.errno == errno.EEXIST
    assert sorted(f.page_cache()) == [0, 1]


def test_copy_into_a_private_mapping_is_anonymous():
    m = hv.Machine(nr_hugepages={MIB2: 2})
    f = m.memfd_create(MIB2)
    p = m.spawn()
    q = p.mmap(f, MIB2, shared=False)
    p.uffdio_register(q, MIB2, mode="missing")
    p.uffdio_copy(q, MIB2)
    assert p.pagemap(q).folio.file is None and f.page_cache() == {}
    assert m.audit() == []


def test_wake_changes_nothing(world):
    m, f, p, a = world
    before = m.state_digest()
    assert p.uffdio_wake(a, MIB2) == 0
    assert m.state_digest() == before
    assert_unchanged(m, lambda: p.uffdio_wake(a + 1, MIB2), OSError, errno.EINVAL)
