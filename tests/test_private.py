"""MAP_PRIVATE hugetlb mappings and copy on write, against docs/kernel-notes/issue13.md §1
(hugetlb_reserve_pages, hugetlb_no_page, hugetlb_wp, unmap_ref_private,
copy_hugetlb_page_range, hugetlb_vm_op_close) and the live 6.18 probe recorded there."""
import errno

import pytest

import hgmviz as hv

from conftest import MIB2, assert_unchanged

pytestmark = pytest.mark.nojit


def pool(m):
    mi = m.meminfo()[MIB2]
    return mi["HugePages_Free"], mi["HugePages_Rsvd"]


def folio(p, a):
    return p.pagemap(a).folio


@pytest.fixture
def shared_page():
    """A file whose page 0 is in the page cache, mapped shared once and touched."""
    m = hv.Machine(nr_hugepages={MIB2: 4})
    f = m.memfd_create(MIB2)
    p = m.spawn()
    s = p.mmap(f, MIB2)
    p.touch(s)
    return m, f, p, s


@pytest.fixture
def private_map():
    """``private_map(pages=4, size=MIB2, **mmap_kw)``: a machine with ``pages`` 2 MiB pages,
    a file of ``size`` bytes and one process mapping all of it MAP_PRIVATE: ``(m, f, p, q)``."""
    def make(pages=4, size=MIB2, **kw):
        m = hv.Machine(nr_hugepages={MIB2: pages})
        f = m.memfd_create(size)
        p = m.spawn()
        return m, f, p, p.mmap(f, size, shared=False, **kw)
    return make


def test_private_read_maps_the_page_cache_page(shared_page):
    m, f, p, s = shared_page
    assert pool(m) == (3, 0)
    q = p.mmap(f, MIB2, shared=False)
    assert pool(m) == (3, 1)                       # the VMA's own reservation
    p.touch(q + 0x5000, write=False)
    fo = folio(p, q)
    assert fo == folio(p, s) and fo.file == f and fo.index == 0
    assert (fo.refcount, fo.page_mapcount(0)) == (3, 2)
    assert pool(m) == (3, 1)                       # nothing consumed
    assert m.audit() == []


def test_private_write_copies_into_an_anonymous_folio(shared_page):
    m, f, p, s = shared_page
    q = p.mmap(f, MIB2, shared=False)
    p.touch(q, write=False)
    p.touch(q + 0x1000, write=True)
    anon, cached = folio(p, q), folio(p, s)
    assert anon != cached
    assert anon.file is None and anon.index is None
    assert (anon.refcount, anon.page_mapcount(0)) == (1, 1)
    assert (cached.refcount, cached.page_mapcount(0)) == (2, 1)
    assert f.page_cache() == {0: cached}           # the copy never enters the page cache
    assert pool(m) == (2, 0)                       # the COW consumed the reservation
    assert "hugetlb_wp" in m.call_path
    p.munmap(q, MIB2)
    assert pool(m) == (3, 0) and not anon.in_use   # the anonymous folio went back
    assert m.audit() == []


def test_private_write_fault_on_a_page_cache_page_copies_at_once(shared_page):
    m, f, p, s = shared_page
    q = p.mmap(f, MIB2, shared=False)
    p.touch(q, write=True)                         # hugetlb_no_page, then hugetlb_wp
    assert folio(p, q).file is None
    assert folio(p, s).page_mapcount(0) == 1
    assert pool(m) == (2, 0)


def test_private_fault_without_a_page_cache_page_is_anonymous(private_map):
    m, f, p, q = private_map()
    assert pool(m) == (4, 1)
    p.touch(q, write=False)
    anon = folio(p, q)
    assert anon.file is None and f.page_cache() == {}
    assert (anon.refcount, anon.page_mapcount(0)) == (1, 1)
    assert pool(m) == (3, 0)
    p.touch(q, write=True)                         # exclusive: reused, no second page
    assert folio(p, q) == anon and pool(m) == (3, 0)
    s = p.mmap(f, MIB2)                            # a shared mapping sees another page
    p.touch(s)
    assert folio(p, s) != anon and folio(p, s).file == f
    assert pool(m) == (2, 0)
    assert m.audit() == []


def test_fork_shares_then_the_child_copies(private_map):
    m, f, p, q = private_map()
    p.touch(q)
    c = p.fork()
    anon = folio(p, q)
    assert folio(c, q) == anon and anon.page_mapcount(0) == 2 and anon.refcount == 2
    assert c.vmas[0].resv == -1 and p.vmas[0].resv >= 0      # the child owns no reserve map
    c.touch(q, write=True)
    assert folio(c, q) != anon and folio(c, q).file is None
    assert anon.page_mapcount(0) == 1
    assert pool(m) == (2, 0)
    c.exit()
    assert pool(m) == (3, 0)
    p.touch(q, write=True)                         # mapped once again: reused
    assert folio(p, q) == anon
    assert m.audit() == []


def test_owner_cow_without_a_page_unmaps_the_child(private_map):
    m, f, p, q = private_map(pages=1)
    p.touch(q)
    c = p.fork()
    assert pool(m) == (0, 0)
    p.touch(q, write=True)                         # no page for the copy: unmap_ref_private
    assert "unmap_ref_private" in m.call_path
    assert c.pagemap(q) is None and folio(p, q).page_mapcount(0) == 1
    assert c.vmas[0].resv_unmapped
    with pytest.raises(hv.SigBus, match="unmap_ref_private"):
        c.touch(q, write=False)
    assert m.audit() == []


def test_child_cow_without_a_page_is_sigbus_and_changes_nothing(private_map):
    m, f, p, q = private_map(pages=1)
    p.touch(q)
    c = p.fork()
    assert_unchanged(m, lambda: c.touch(q, write=True), hv.SigBus)


def test_private_mmap_reserves_every_page_or_fails(shared_page):
    m, f, p, s = shared_page
    e = assert_unchanged(m, lambda: p.mmap(f, 4 * MIB2, shared=False), OSError, errno.ENOMEM)
    assert "MAP_PRIVATE" in str(e)
    q = p.mmap(f, 2 * MIB2, shared=False)          # the cached page 0 counts too (chg = to - from)
    assert pool(m) == (3, 2)
    p.munmap(q + MIB2, MIB2)                        # hugetlb_vm_op_close: its unused one back
    assert pool(m) == (3, 1)
    p.munmap(q, MIB2)
    assert pool(m) == (3, 0)


def test_split_pieces_share_the_reserve_map(private_map):
    m, f, p, q = private_map(size=2 * MIB2)
    p.touch(q + MIB2)                               # consumes index 1
    p.munmap(q, MIB2)                               # the other piece returns index 0 only
    assert pool(m) == (3, 0)
    p.madvise(q + MIB2, MIB2, hv.MADV_DONTNEED)     # the anonymous page goes
    assert pool(m) == (4, 0)
    p.touch(q + MIB2)                               # consumed already: an unreserved page
    assert pool(m) == (3, 0)


def test_private_noreserve_takes_unreserved_pages(private_map):
    m, f, p, q = private_map(pages=1, size=2 * MIB2, noreserve=True)
    assert pool(m) == (1, 0)
    p.touch(q)
    with pytest.raises(hv.SigBus):
        p.touch(q + MIB2)


def test_snapshot_restore_is_exact_across_cow(shared_page):
    m, f, p, s = shared_page
    q = p.mmap(f, MIB2, shared=False)
    snap = m.snapshot()
    digest = m.state_digest()
    p.touch(q, write=True)
    c = p.fork()
    c.touch(q, write=True)
    assert m.state_digest() != digest
    m.restore(snap)
    assert m.state_digest() == digest
    assert m.audit() == []
