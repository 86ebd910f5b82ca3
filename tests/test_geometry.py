import pytest

import hgmviz as hv
from hgmviz.geometry import get_geometry, get_kernel_profile

pytestmark = pytest.mark.nojit


def test_x86_64_constants():
    g = hv.X86_64
    assert (g.PAGE_SHIFT, g.PMD_SHIFT, g.PUD_SHIFT, g.PGDIR_SHIFT) == (12, 21, 30, 39)
    assert g.PTRS_PER_TABLE == 512
    assert g.INT_MAX == 2**31 - 1 and g.INT_MIN == -(2**31)
    assert [h.size for h in g.hstates] == [2 << 20, 1 << 30]
    assert [h.level for h in g.hstates] == [hv.HugetlbLevel.PMD, hv.HugetlbLevel.PUD]
    assert [h.order for h in g.hstates] == [9, 18]
    assert g.hstate(1 << 30).pages_per_huge_page() == 262144
    assert g.level_name(4) == "PGD" and g.level_name(3) == "PUD"
    assert g.TASK_SIZE == 1 << 47


def test_five_level():
    g = hv.X86_64_5LEVEL
    assert g.PGDIR_SHIFT == 48 and g.level_name(4) == "P4D" and g.level_name(5) == "PGD"
    m = hv.Machine(nr_hugepages={1 << 30: 1}, geometry="x86_64-5level")
    f = m.memfd_create(size=1 << 30, hstate=1 << 30)
    p = m.spawn()
    a = p.mmap(f, 1 << 30)
    p.touch(a + 12345)
    assert f.folio_at(0).entire_mapcount == 1
    assert p.pagemap(a + 12345).index == 3


def test_toy_geometry_small_numbers():
    g = hv.TOY
    assert g.PTRS_PER_TABLE == 8
    assert [h.pages_per_huge_page() for h in g.hstates] == [8, 64]
    assert g.INT_MAX == 127
    assert g.level_shift(2) == 15 and g.level_shift(3) == 18


def test_geometry_and_hstate_errors():
    with pytest.raises(ValueError, match="allowed"):
        get_geometry("arm64")
    with pytest.raises(ValueError, match="2 MiB"):
        hv.X86_64.hstate(4 << 20)


def test_kernel_profiles():
    assert get_kernel_profile("6.2").pagecache_refs(512) == 1
    assert get_kernel_profile("6.6").pagecache_refs(512) == 1
    assert get_kernel_profile("6.7").pagecache_refs(512) == 512
    assert get_kernel_profile("6.18").pagecache_refs(262144) == 262144
    assert get_kernel_profile("running").version >= (2, 6)
    with pytest.raises(ValueError, match="6.2"):
        get_kernel_profile("banana")
    with pytest.raises(TypeError):
        get_kernel_profile(6.2)


@pytest.mark.parametrize("name", ["x86_64", "x86_64-5level", "toy"])
def test_table_index_is_the_cores_walk_index(name):
    """Geometry.table_index (the Python face of pgd_index()...pte_index()) against the jitted
    index the core's walks use, at random addresses of the user address space."""
    import random

    import numpy as np

    from hgmviz import core
    g = get_geometry(name)
    garr = np.array([g.page_shift, g.bits_per_level, g.levels, 0], dtype=np.int64)   # as Machine
    rng = random.Random(7)
    for _ in range(200):
        addr = rng.randrange(g.TASK_SIZE)
        idx = g.walk_indices(addr)
        assert list(idx) == [g.level_name(lv) for lv in range(g.levels, 0, -1)]
        # the indices put back together give the page's address
        page = sum(i << g.level_shift(lv) for lv, i in zip(range(g.levels, 0, -1), idx.values()))
        assert page == addr & ~(g.PAGE_SIZE - 1)
        for lv in range(1, g.levels + 1):
            assert g.table_index(addr, lv) == core.pte_index(garr, np.int64(addr), lv)


def test_table_index_bad_input():
    g = hv.TOY
    with pytest.raises(ValueError, match="level must be 1 \\(PTE\\) to 4 \\(PGD\\)"):
        g.table_index(0, 5)
    with pytest.raises(ValueError, match="addr must be an int"):
        g.table_index(-1, 1)


def test_fmt_size_units_and_thousands():
    from hgmviz.describe import fmt_size
    from hgmviz.render.scene import fmt_size as scene_fmt
    cases = {4096: "4 KiB", 2 << 20: "2 MiB", 1 << 30: "1 GiB", (1 << 30) - (2 << 20): "1,022 MiB",
             16380 << 10: "16,380 KiB", 1000: "1,000 B", 3: "3 B", 0: "0 B"}
    for n, text in cases.items():
        assert hv.X86_64.fmt_size(n) == fmt_size(n) == scene_fmt(n) == text
