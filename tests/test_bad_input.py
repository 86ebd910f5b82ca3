"""Every bad input gets a clear, typed error naming what was wrong, and changes nothing."""
import errno

import pytest

import hgmviz as hv

from conftest import GIB, KIB4, MIB2, assert_unchanged

pytestmark = pytest.mark.nojit


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"geometry": "sparc"}, ValueError, "allowed"),
    ({"scheme": "magic"}, ValueError, "mainline"),
    ({"kernel": "five"}, ValueError, "6.2"),
    ({"nr_hugepages": {3 << 20: 1}}, ValueError, "2 MiB"),
    ({"nr_hugepages": {MIB2: -1}}, ValueError, ">= 0"),
    ({"nr_hugepages": {MIB2: 1.5}}, TypeError, "int"),
    ({"nr_hugepages": [1]}, TypeError, "dict"),
    ({"guard": "always"}, ValueError, "int_max_half"),
    ({"errors": "lenient"}, ValueError, "proposed"),
    ({"hvo": "yes"}, TypeError, "hvo"),
])
def test_machine_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        hv.Machine(**kwargs)


@pytest.fixture
def world():
    m = hv.Machine(nr_hugepages={MIB2: 8, GIB: 1})
    f = m.memfd_create(size=4 << 20, hstate=MIB2)
    p = m.spawn()
    a = p.mmap(f, 4 << 20)
    p.touch(a)
    return m, f, p, a


def test_memfd_create(world):
    m, f, p, a = world
    assert_unchanged(m, lambda: m.memfd_create(size=MIB2, hstate=4096), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: m.memfd_create(size=MIB2 + KIB4, hstate=MIB2), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: m.memfd_create(size=-1, hstate=MIB2), ValueError)
    assert_unchanged(m, lambda: m.memfd_create(size="big", hstate=MIB2), TypeError)


def test_mmap(world):
    m, f, p, a = world
    assert_unchanged(m, lambda: p.mmap(f, 0), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.mmap(f, MIB2, offset=KIB4), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.mmap(f, MIB2, addr=a + KIB4), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.mmap(f, MIB2, addr=1 << 50), OSError, errno.ENOMEM)
    assert_unchanged(m, lambda: p.mmap(f, 64 << 20, shared=False), OSError, errno.ENOMEM)
    assert_unchanged(m, lambda: p.mmap(f, MIB2, shared=1), TypeError)
    assert_unchanged(m, lambda: p.mmap("f", MIB2), TypeError)
    assert_unchanged(m, lambda: p.mmap(f, 64 << 20), OSError, errno.ENOMEM)   # reservation
    other = hv.Machine(nr_hugepages={MIB2: 1})
    assert_unchanged(m, lambda: p.mmap(other.memfd_create(size=MIB2), MIB2), TypeError)
    g = m.memfd_create(size=MIB2)
    g.close()
    assert_unchanged(m, lambda: p.mmap(g, MIB2), OSError, errno.EBADF)
    assert_unchanged(m, lambda: g.close(), OSError, errno.EBADF)


def test_fixed_mmap_replacing_must_not_split_off_boundary(world):
    m, f, p, a = world
    g = m.memfd_create(size=GIB, hstate=GIB)
    # an unaligned MAP_FIXED address fails before anything is replaced
    assert_unchanged(m, lambda: p.mmap(g, GIB, addr=a + KIB4), OSError, errno.EINVAL)


def test_touch(world):
    m, f, p, a = world
    assert_unchanged(m, lambda: p.touch(a - KIB4), hv.SigSegv)
    assert_unchanged(m, lambda: p.touch("a"), TypeError)
    assert_unchanged(m, lambda: p.touch(-5), ValueError)


def test_munmap_and_madvise(world):
    m, f, p, a = world
    assert_unchanged(m, lambda: p.munmap(a, 0), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.munmap(a + 3, MIB2), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.munmap(a, MIB2 + KIB4), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.munmap(a, 1 << 48), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.madvise(a, MIB2, 12345), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.madvise(a + 1, MIB2, hv.MADV_DONTNEED), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.madvise(a + KIB4, MIB2, hv.MADV_DONTNEED), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.madvise(a - 2 * MIB2, MIB2, hv.MADV_DONTNEED), OSError,
                     errno.ENOMEM)                   # no VMA in the range (a hole only)


def test_userfaultfd(world):
    m, f, p, a = world
    assert_unchanged(m, lambda: p.uffdio_register(a, MIB2, mode="sometimes"), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.uffdio_register(a, MIB2, mode=3), TypeError)
    assert_unchanged(m, lambda: p.uffdio_register(a, MIB2, mode="minor", event_fork=1), TypeError)
    assert_unchanged(m, lambda: p.uffdio_register(a + KIB4, MIB2, mode="minor"), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.uffdio_register(a, MIB2 + KIB4, mode="minor"), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.uffdio_register(a - 8 * MIB2, MIB2, mode="minor"), OSError,
                     errno.EINVAL)
    assert_unchanged(m, lambda: p.uffdio_continue(a, MIB2), OSError, errno.ENOENT)
    p.uffdio_register(a, 4 << 20, mode="minor")
    assert_unchanged(m, lambda: p.uffdio_register(a, MIB2, mode="wp"), OSError, errno.EBUSY)
    assert_unchanged(m, lambda: p.uffdio_continue(a + KIB4, KIB4), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.uffdio_continue(a, 0), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.uffdio_continue(a, 8 * MIB2), OSError, errno.ENOENT)
    assert_unchanged(m, lambda: p.uffdio_continue(a, MIB2), OSError, errno.EEXIST)
    assert_unchanged(m, lambda: p.uffdio_continue(a + MIB2, MIB2), OSError, errno.EFAULT)
    assert_unchanged(m, lambda: p.uffdio_continue_batch(a, MIB2, 3 * KIB4), ValueError)
    assert_unchanged(m, lambda: p.uffdio_continue_batch(a, MIB2 + KIB4, MIB2), ValueError)


def test_exited_process_and_views(world):
    m, f, p, a = world
    c = p.fork()
    c.exit()
    assert_unchanged(m, lambda: c.exit(), OSError, errno.ESRCH)
    assert_unchanged(m, lambda: c.mmap(f, MIB2), OSError, errno.ESRCH)
    assert c.pagemap(a) is None
    folio = f.folio_at(0)
    with pytest.raises(IndexError, match="0..511"):
        folio.page_mapcount(512)
    with pytest.raises(IndexError):
        m.folio(99)
    with pytest.raises(ValueError):
        f.folio_at(-1)


def test_fallocate_enospc_keeps_the_pages_added_before():
    # hugetlbfs_fallocate "goto out": not atomic (the live 6.18 probe, docs/kernel-notes/issue13.md)
    m = hv.Machine(nr_hugepages={MIB2: 2})
    f = m.memfd_create(size=8 << 20)
    with pytest.raises(hv.errors.StateKept) as info:
        f.fallocate(0, 8 << 20)
    assert info.value.errno == errno.ENOSPC
    assert sorted(f.page_cache()) == [0, 1] and f.size == 8 << 20
    assert m.meminfo()[MIB2]["HugePages_Free"] == 0 and m.audit() == []
