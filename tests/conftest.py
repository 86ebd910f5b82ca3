import os
import pathlib

# A writable numba cache for test runs (scripts/test.sh sets its own; this is the fallback).
os.environ.setdefault("NUMBA_CACHE_DIR", str(pathlib.Path(__file__).resolve().parent.parent
                                             / ".numba_cache"))

import pytest  # noqa: E402

import hgmviz as hv  # noqa: E402
import hypothesis_profiles  # noqa: E402

hypothesis_profiles.register()        # "ci" by default, "long" with HGMVIZ_HYPOTHESIS_PROFILE=long

MIB2 = 2 << 20
GIB = 1 << 30
KIB4 = 4096
BASE = 64 << 30                       # a 1 GiB-aligned address that is free in a fresh process


@pytest.fixture
def m2():
    """x86-64, mainline, eight 2 MiB pages, kernel 6.2."""
    return hv.Machine(nr_hugepages={MIB2: 8})


def map_at_base(length=4 * MIB2, touched=(0,)):
    """Eight 2 MiB pages, an 8 MiB file, one process mapping ``length`` bytes of it at
    :data:`BASE`, the hugepages at the ``touched`` offsets faulted in: ``(m, f, p, a)``."""
    m = hv.Machine(nr_hugepages={MIB2: 8})
    f = m.memfd_create(8 << 20)
    p = m.spawn()
    a = p.mmap(f, length, addr=BASE)
    for off in touched:
        p.touch(a + off)
    return m, f, p, a


@pytest.fixture
def mapped_at_base():
    """:func:`map_at_base`: 8 MiB of the file mapped at BASE, its first hugepage faulted in
    (the set-up of test_mprotect.py and test_mremap.py)."""
    return map_at_base()


def assert_unchanged(m, fn, exc, errno_=None):
    """``fn()`` raises ``exc`` (with ``errno_``) and leaves ``m`` byte-identical."""
    before = m.state_digest()
    version = m.version
    with pytest.raises(exc) as info:
        fn()
    if errno_ is not None:
        assert info.value.errno == errno_, info.value
    assert m.state_digest() == before
    assert m.version == version
    assert m.audit() == []
    return info.value
