"""install_range's fast path emits the hstate-level event as its slow path does (issue 17
item 2): one UFFDIO_CONTINUE (or batch) spanning several hugepages under hstate_present."""
import pytest

import hgmviz as hv

H = 2 << 20


def _machine(scheme):
    m = hv.Machine(nr_hugepages={H: 4}, scheme=scheme)
    f = m.memfd_create(size=4 * H, hstate=H)
    p = m.spawn()
    a = p.mmap(f, 4 * H)
    f.fallocate(0, 4 * H)
    p.uffdio_register(a, 4 * H, mode="minor")
    return m, f, p, a


@pytest.mark.parametrize("scheme", ["hstate_present", "mainline", "per_piece", "subtree_counted"])
def test_one_continue_over_four_hugepages_counts_each(scheme):
    m, f, p, a = _machine(scheme)
    p.uffdio_continue(a, 4 * H)
    assert [f.folio_at(i * H).refcount for i in range(4)] == [2, 2, 2, 2]
    assert m.audit() == []
    p.exit()
    assert [f.folio_at(i * H).refcount for i in range(4)] == [1, 1, 1, 1]
    assert m.audit() == []


def test_batch_of_hugepage_pieces_counts_each():
    m, f, p, a = _machine("hstate_present")
    p.uffdio_continue_batch(a, 4 * H, H)
    assert [f.folio_at(i * H).refcount for i in range(4)] == [2, 2, 2, 2]
    assert m.audit() == []
    p.munmap(a, 4 * H)
    assert [f.folio_at(i * H).refcount for i in range(4)] == [1, 1, 1, 1]
    assert m.audit() == []


def test_hgm_vma_hugepage_pieces_then_small_ones():
    # an HGM VMA: whole hugepages via the fast path, then a split one piece by piece
    m, f, p, a = _machine("hstate_present")
    p.madvise(a, 4 * H, hv.MADV_SPLIT)
    p.uffdio_continue(a, 3 * H)
    p.uffdio_continue_batch(a + 3 * H, H, 4096)
    assert [f.folio_at(i * H).refcount for i in range(4)] == [2, 2, 2, 2]
    assert m.audit() == []
    p.exit()
    assert [f.folio_at(i * H).refcount for i in range(4)] == [1, 1, 1, 1]
