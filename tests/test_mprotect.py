"""mprotect on hugetlb VMAs (docs/kernel-notes/issue13.md §5: do_mprotect_pkey, mprotect_fixup,
hugetlb_vm_op_split, hugetlb_change_protection) and SIGSEGV on a forbidden access."""
import errno

import pytest

import hgmviz as hv
from hgmviz.errors import StateKept

from conftest import BASE, KIB4, MIB2, assert_unchanged

pytestmark = pytest.mark.nojit


def prots(p):
    return [(v.start - BASE, v.end - BASE, v.prot) for v in p.vmas]


def test_mprotect_splits_and_a_write_is_sigsegv(mapped_at_base):
    m, f, p, a = mapped_at_base
    folio = p.pagemap(a).folio
    refs = folio.refcount
    p.mprotect(a, MIB2, hv.PROT_READ)
    assert prots(p) == [(0, MIB2, hv.PROT_READ), (MIB2, 4 * MIB2, hv.PROT_READ | hv.PROT_WRITE)]
    assert folio.refcount == refs and p.pagemap(a).folio == folio    # counters do not move
    with pytest.raises(hv.SigSegv, match="PROT_READ"):
        p.touch(a + KIB4)
    p.touch(a + KIB4, write=False)
    p.touch(a + MIB2)                                  # the other piece is still writable
    p.mprotect(a, MIB2, hv.PROT_NONE)
    with pytest.raises(hv.SigSegv, match="PROT_NONE"):
        p.touch(a, write=False)
    assert m.audit() == []


def test_same_protection_does_not_split(mapped_at_base):
    m, f, p, a = mapped_at_base
    p.mprotect(a + MIB2, MIB2, hv.PROT_READ | hv.PROT_WRITE)
    assert len(p.vmas) == 1


def test_mprotect_refusals_change_nothing(mapped_at_base):
    m, f, p, a = mapped_at_base
    assert_unchanged(m, lambda: p.mprotect(a, MIB2 + KIB4, hv.PROT_READ), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.mprotect(a + 1, MIB2, hv.PROT_READ), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.mprotect(a, MIB2, 8), OSError, errno.EINVAL)
    assert_unchanged(m, lambda: p.mprotect(a - MIB2, 2 * MIB2, hv.PROT_READ), OSError,
                     errno.ENOMEM)
    assert_unchanged(m, lambda: p.mprotect(a, MIB2, "r"), TypeError)


def test_mprotect_stopped_by_a_failing_split_keeps_the_vmas_before(mapped_at_base):
    m, f, p, a = mapped_at_base
    b = p.mmap(f, 2 * MIB2, offset=4 * MIB2, addr=BASE + 4 * MIB2)
    with pytest.raises(StateKept) as info:
        p.mprotect(a, 5 * MIB2 + KIB4, hv.PROT_READ)
    assert info.value.errno == errno.EINVAL
    assert prots(p)[0] == (0, 4 * MIB2, hv.PROT_READ)           # changed before the failure
    assert prots(p)[1] == (4 * MIB2, 6 * MIB2, 3) and b


def test_mprotect_into_a_hole_keeps_the_vmas_before(mapped_at_base):
    m, f, p, a = mapped_at_base
    with pytest.raises(StateKept) as info:
        p.mprotect(a, 6 * MIB2, hv.PROT_READ)
    assert info.value.errno == errno.ENOMEM
    assert prots(p) == [(0, 4 * MIB2, hv.PROT_READ)]
    assert m.audit() == []
