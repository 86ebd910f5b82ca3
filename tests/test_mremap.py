"""mremap of hugetlb VMAs (docs/kernel-notes/issue13.md §6: mm/mremap.c, move_vma,
move_hugetlb_page_tables)."""
import errno

import pytest

import hgmviz as hv

from conftest import BASE, KIB4, MIB2, assert_unchanged

pytestmark = pytest.mark.nojit

MOVE = hv.MREMAP_MAYMOVE | hv.MREMAP_FIXED


def spans(p):
    return [(v.start - BASE, v.end - BASE) for v in p.vmas]


def test_lengths_round_up_to_the_hugepage(mapped_at_base):
    m, f, p, a = mapped_at_base
    before = m.state_digest()
    assert p.mremap(a + 3 * MIB2, MIB2, KIB4) == a + 3 * MIB2     # 2 MiB -> 2 MiB: a no-op
    assert spans(p) == [(0, 4 * MIB2)]
    assert p.mremap(a, 4 * MIB2, KIB4) == a                       # 8 MiB -> 2 MiB: a shrink
    assert spans(p) == [(0, MIB2)] and m.state_digest() != before
    assert m.audit() == []


def test_refusals(mapped_at_base):
    m, f, p, a = mapped_at_base
    e = assert_unchanged(m, lambda: p.mremap(a, MIB2, 2 * MIB2), OSError, errno.EINVAL)
    assert "cannot grow" in str(e)
    assert_unchanged(m, lambda: p.mremap(a + KIB4, MIB2, MIB2), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.mremap(a, MIB2, MIB2, MOVE, BASE + (1 << 30) + KIB4), OSError,
                     errno.EINVAL)
    assert_unchanged(m, lambda: p.mremap(a, MIB2, MIB2, hv.MREMAP_FIXED, BASE + (1 << 30)),
                     OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.mremap(BASE - (1 << 30), MIB2, MIB2), OSError, errno.EFAULT)
    assert_unchanged(m, lambda: p.mremap(a, 2 * MIB2, 2 * MIB2, MOVE, a + MIB2), OSError,
                     errno.EINVAL)                                  # the ranges overlap


def test_a_move_keeps_the_entries_and_the_counters(mapped_at_base):
    m, f, p, a = mapped_at_base
    folio = p.pagemap(a).folio
    counts = (folio.refcount, folio.entire_mapcount)
    new = p.mremap(a, MIB2, MIB2, MOVE, BASE + (1 << 30))
    assert new == BASE + (1 << 30)
    assert p.pagemap(a) is None and p.pagemap(new + KIB4).folio == folio
    assert (folio.refcount, folio.entire_mapcount) == counts
    assert spans(p) == [(MIB2, 4 * MIB2), (1 << 30, (1 << 30) + MIB2)]
    assert m.meminfo()[MIB2]["HugePages_Rsvd"] == 3
    assert m.audit() == []


def test_a_private_move_takes_its_reserve_map_along():
    m = hv.Machine(nr_hugepages={MIB2: 4})
    f = m.memfd_create(2 * MIB2)
    p = m.spawn()
    q = p.mmap(f, 2 * MIB2, shared=False, addr=BASE)
    p.touch(q)
    assert m.meminfo()[MIB2]["HugePages_Rsvd"] == 1
    new = p.mremap(q, 2 * MIB2, 2 * MIB2, MOVE, BASE + (1 << 30))
    assert m.meminfo()[MIB2]["HugePages_Rsvd"] == 1           # not returned twice, not lost
    assert p.pagemap(new).folio.file is None
    p.munmap(new, 2 * MIB2)
    assert m.meminfo()[MIB2] ["HugePages_Rsvd"] == 0 and m.meminfo()[MIB2]["HugePages_Free"] == 4
    assert m.audit() == []
