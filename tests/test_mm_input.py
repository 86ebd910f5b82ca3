"""Bad input to the mm layer (issue 17 items 4 and 9): a typed error naming what was wrong,
and the machine unchanged (equal state digests)."""
import errno
import math

import numpy as np
import pytest

import hgmviz as hv
from hgmviz.errors import ProcessExited
from hgmviz.mm import File, Process

pytestmark = pytest.mark.nojit

MIB2 = 2 << 20
PAGE = 4096
U64 = 1 << 64


def setup(scheme="per_piece"):
    """Two VMAs, the upper one touched (the wrap bug zapped it) and minor-registered."""
    m = hv.Machine(nr_hugepages={MIB2: 8}, scheme=scheme)
    f = m.memfd_create(size=8 * MIB2, hstate=MIB2)
    f.fallocate(0, 8 * MIB2)
    p = m.spawn()
    low = p.mmap(f, 2 * MIB2, addr=0x40000000)
    high = p.mmap(f, 2 * MIB2, offset=2 * MIB2, addr=0x80000000)
    p.touch(low)
    p.touch(high)
    return m, f, p, low, high


def refused(m, call, exc, code=None, match=None):
    d, version = m.state_digest(), m.version
    with pytest.raises(exc, match=match) as info:
        call()
    if code is not None:
        assert info.value.errno == code, info.value
    assert m.state_digest() == d and m.version == version
    assert m.audit() == []
    return info.value


# --- item 4: a range whose end wraps past 2**64, or a length >= 2**64, is EINVAL ----------
@pytest.mark.parametrize("advice", [hv.MADV_DONTNEED, hv.MADV_SPLIT, hv.MADV_COLLAPSE])
def test_madvise_wrapping_past_2_64_is_einval_and_keeps_every_mapping(advice):
    m, f, p, low, high = setup()
    for length in (U64 - low + PAGE, U64 - low, U64 - low - PAGE + 1, U64, U64 + PAGE, 2 * U64):
        e = refused(m, lambda: p.madvise(low, length, advice), OSError, errno.EINVAL)
        assert "2**64" in str(e)
    assert p.pagemap(high) is not None and p.pagemap(low) is not None
    # the largest length that does not wrap still reaches every VMA above: ENOMEM (holes)
    with pytest.raises(OSError) as info:
        p.madvise(low, U64 - low - PAGE, hv.MADV_DONTNEED)
    assert info.value.errno == errno.ENOMEM


def test_an_address_at_or_past_2_64_is_einval():
    m, f, p, low, high = setup()
    for call in (lambda: p.madvise(U64, PAGE, hv.MADV_DONTNEED),
                 lambda: p.munmap(U64, PAGE),
                 lambda: p.uffdio_register(U64, MIB2, "minor"),
                 lambda: p.uffdio_continue(U64, MIB2)):
        refused(m, call, OSError, errno.EINVAL)


@pytest.mark.parametrize("syscall", ["munmap", "uffdio_register", "uffdio_unregister",
                                     "uffdio_continue", "uffdio_continue_batch"])
def test_every_ranged_syscall_refuses_a_wrapping_range(syscall):
    m, f, p, low, high = setup()
    p.uffdio_register(high, MIB2, "minor")
    for length in (U64 - high, U64 - high + MIB2, U64, U64 + MIB2):
        call = {"munmap": lambda: p.munmap(high, length),
                "uffdio_register": lambda: p.uffdio_register(low, length, "minor"),
                "uffdio_unregister": lambda: p.uffdio_unregister(high, length),
                "uffdio_continue": lambda: p.uffdio_continue(high, length),
                "uffdio_continue_batch": lambda: p.uffdio_continue_batch(high, length, MIB2),
                }[syscall]
        refused(m, call, OSError, errno.EINVAL)


def test_mmap_lengths_and_offsets_past_the_limits():
    m, f, p, low, high = setup()
    refused(m, lambda: p.mmap(f, U64), OSError, errno.ENOMEM)
    refused(m, lambda: p.mmap(f, m.geometry.TASK_SIZE + MIB2), OSError, errno.ENOMEM)
    refused(m, lambda: p.mmap(f, MIB2, offset=1 << 63), OSError, errno.EINVAL)
    refused(m, lambda: p.mmap(f, MIB2, offset=(1 << 63) - MIB2), OSError, errno.EINVAL)
    refused(m, lambda: p.mmap(f, MIB2, offset=U64), OSError, errno.EINVAL)


def test_file_sizes_past_s_maxbytes_are_efbig():
    m, f, p, low, high = setup()
    refused(m, lambda: m.memfd_create(size=1 << 63, hstate=MIB2), OSError, errno.EFBIG)
    refused(m, lambda: f.fallocate(1 << 62, 1 << 62), OSError, errno.EFBIG)
    refused(m, lambda: f.fallocate((1 << 63) - MIB2, MIB2 + 1), OSError, errno.EFBIG)


# --- item 9: validation gaps ------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, 1.0 * MIB2, "0x80000000"])
def test_uffdio_continue_batch_refuses_an_address_that_is_no_int(bad):
    m, f, p, low, high = setup()
    p.uffdio_register(high, MIB2, "minor")
    refused(m, lambda: p.uffdio_continue_batch(bad, MIB2, MIB2), TypeError, match="addr")


def test_uffdio_continue_batch_refuses_bad_lengths_and_pieces_with_typed_errors():
    m, f, p, low, high = setup()
    p.uffdio_register(high, MIB2, "minor")
    refused(m, lambda: p.uffdio_continue_batch(np.uint64(U64 - 1), MIB2, MIB2), OSError,
            errno.EINVAL)
    for bad in (math.nan, math.inf, None, float(MIB2)):
        refused(m, lambda: p.uffdio_continue_batch(high, bad, MIB2), TypeError, match="length")
        refused(m, lambda: p.uffdio_continue_batch(high, MIB2, bad), TypeError, match="piece")
    # numpy ints are ints: no OverflowError from int8 arithmetic, the ordinary checks apply
    refused(m, lambda: p.uffdio_continue_batch(high, np.int8(64), MIB2), ValueError,
            match="multiple of piece")
    refused(m, lambda: p.uffdio_continue_batch(high, MIB2, np.int8(64)), ValueError,
            match="leaf size")
    refused(m, lambda: p.uffdio_continue_batch(np.int8(0), MIB2, MIB2), OSError, errno.ENOENT)
    refused(m, lambda: p.uffdio_continue_batch(-MIB2, MIB2, MIB2), ValueError, match="addr")
    # and a right call (numpy ints included) still works
    c = p.mmap(f, MIB2, offset=4 * MIB2, addr=0xC0000000)
    p.uffdio_register(c, MIB2, "minor")
    assert p.uffdio_continue_batch(np.int64(c), np.int64(MIB2), MIB2) == MIB2


@pytest.mark.parametrize("advice", [4.0, "4", "MADV_DONTNEED", None, True, [4]])
def test_madvise_advice_must_be_an_int(advice):
    m, f, p, low, high = setup()
    refused(m, lambda: p.madvise(low, MIB2, advice), TypeError, match="advice must be an int")
    assert p.pagemap(low) is not None


def test_madvise_unknown_int_advice_is_einval():
    m, f, p, low, high = setup()
    for advice in (-1, 999, np.int32(3)):
        refused(m, lambda: p.madvise(low, MIB2, advice), OSError, errno.EINVAL)
    p.madvise(low, MIB2, np.int64(hv.MADV_DONTNEED))         # a numpy int is fine
    assert p.pagemap(low) is None


@pytest.mark.parametrize("name", [None, 7, b"memfd"])
def test_memfd_create_name_must_be_a_str(name):
    m, f, p, low, high = setup()
    refused(m, lambda: m.memfd_create(size=MIB2, hstate=MIB2, name=name), TypeError,
            match="name must be a str")


def test_memfd_create_name_longer_than_the_kernel_allows_is_einval():
    m, f, p, low, high = setup()
    refused(m, lambda: m.memfd_create(size=MIB2, hstate=MIB2, name="x" * 250), OSError,
            errno.EINVAL)
    assert m.memfd_create(size=MIB2, hstate=MIB2, name="x" * 249).name == "x" * 249


@pytest.mark.parametrize("size", [2097152.0, "2097152", None, True])
def test_machine_pool_keys_must_be_int_sizes(size):
    with pytest.raises(TypeError, match="hugepage size in bytes") as info:
        hv.Machine(nr_hugepages={size: 2})
    assert "2097152" in str(info.value) and "1073741824" in str(info.value)


def test_memfd_create_hstate_must_be_an_int():
    m, f, p, low, high = setup()
    refused(m, lambda: m.memfd_create(size=MIB2, hstate=float(MIB2)), TypeError, match="hstate")


def test_forged_process_handle_is_esrch_not_keyerror():
    m, f, p, low, high = setup()
    q = Process(m, 999)
    for call in (lambda: q.touch(low), lambda: q.mmap(f, MIB2), lambda: q.fork(),
                 lambda: q.exit(), lambda: q.madvise(low, MIB2, hv.MADV_DONTNEED),
                 lambda: q.pagemap(low), lambda: q.smaps_hugetlb(low), lambda: q.vmas,
                 lambda: q.alive, lambda: q.find_vma(low)):
        e = refused(m, call, ProcessExited, errno.ESRCH, match="no process 999")
        assert "spawn()" in str(e)
    assert "no such process" in repr(q)


def test_forged_file_handle_is_ebadf_not_keyerror():
    m, f, p, low, high = setup()
    g = File(m, 99)
    for call in (lambda: g.fallocate(0, MIB2), lambda: g.close(), lambda: p.mmap(g, MIB2),
                 lambda: g.size, lambda: g.folio_at(0), lambda: g.page_cache()):
        refused(m, call, OSError, errno.EBADF, match="no file 99")
    assert "no such file" in repr(g)


def test_pool_too_large_is_refused_before_allocating():
    # 10**12 hugepages: the check comes before any per-hugepage allocation
    with pytest.raises(ValueError, match="too large"):
        hv.Machine(nr_hugepages={MIB2: 10 ** 12})
