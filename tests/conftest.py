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


@pytest.fixture
def m2():
    """x86-64, mainline, eight 2 MiB pages, kernel 6.2."""
    return hv.Machine(nr_hugepages={MIB2: 8})


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
