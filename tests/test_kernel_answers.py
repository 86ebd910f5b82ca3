"""What the kernel answers, not what a reader might expect (issue 14, items 2-4).

* MADV_COLLAPSE skips an hstate-level entry that does not point to page tables (HGM v2 34/46
  ``__hugetlb_collapse``: "There is no work to do if the PTE doesn't point to page tables").
* UFFDIO_CONTINUE's partial progress is EAGAIN plus the bytes mapped; the failing piece's errno
  is not part of the kernel's answer (fs/userfaultfd.c ``userfaultfd_continue``).
* A wrapped refcount is negative, not yet zero: the use-after-free needs the count back at 0.
"""
import errno
import warnings

import pytest

import hgmviz as hv

from conftest import MIB2, KIB4


def _split_2m(scheme="per_piece"):
    m = hv.Machine(nr_hugepages={MIB2: 1}, scheme=scheme)
    f = m.memfd_create(size=MIB2, hstate=MIB2)
    p = m.spawn()
    alias = p.mmap(f, MIB2)
    p.touch(alias)                                # the page is in the page cache, mapped once
    a = p.mmap(f, MIB2)
    p.madvise(a, MIB2, hv.MADV_SPLIT)
    return m, f, p, a


@pytest.mark.nojit
@pytest.mark.parametrize("scheme", ["per_piece", "thp_like", "hstate_present", "subtree_counted"])
def test_collapse_skips_an_entry_with_no_table(scheme):
    m, f, p, a = _split_2m(scheme)
    folio = f.folio_at(0)
    before = (folio.refcount, folio.entire_mapcount)
    p.madvise(a, MIB2, hv.MADV_COLLAPSE)
    assert p.pagemap(a) is None                   # nothing mapped: the hole stays a hole
    assert (folio.refcount, folio.entire_mapcount) == before
    assert m.audit() == []


@pytest.mark.nojit
def test_collapse_still_fills_holes_inside_a_subtree():
    m, f, p, a = _split_2m()
    p.uffdio_register(a, MIB2, mode="minor")
    p.uffdio_continue(a, KIB4)                    # one 4 KiB leaf: a PTE table exists
    folio = f.folio_at(0)
    r0 = folio.refcount
    p.madvise(a, MIB2, hv.MADV_COLLAPSE)
    assert p.pagemap(a + MIB2 - 1).size == MIB2   # the whole subtree became one leaf
    assert folio.refcount == r0                   # one leaf dropped, one leaf taken
    assert m.audit() == []


def test_partial_continue_reports_bytes_and_labels_the_cause_as_the_simulators():
    m, f, p, a = _split_2m()
    p.uffdio_register(a, MIB2, mode="minor")
    p.uffdio_continue(a + 2 * KIB4, KIB4)         # the third piece is already mapped
    with pytest.raises(hv.PartialProgress) as ei:
        p.uffdio_continue(a, 3 * KIB4)
    e = ei.value
    assert e.errno == errno.EAGAIN and e.mapped == 2 * KIB4
    assert e.cause.errno == errno.EEXIST
    msg = str(e)
    assert "the kernel reports no cause" in msg and "simulator's insight" in msg


def test_wrap_warning_says_negative_and_zero_is_the_danger():
    m = hv.Machine(nr_hugepages={1 << 15: 1}, scheme="per_piece", geometry="toy", guard=None)
    f = m.memfd_create(size=1 << 15, hstate=1 << 15)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for _ in range(m.geometry.INT_MAX + 1):
            p = m.spawn()
            p.touch(p.mmap(f, 1 << 15))
            if m.last_wrapped:
                break
    texts = [str(x.message) for x in w if "wrapped past INT_MAX" in str(x.message)]
    assert texts, "the wrap raised no warning"
    assert "is negative" in texts[0] and "drops to 0" in texts[0]
