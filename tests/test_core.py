"""The core kernels on their own: encoding, journal rollback, growth, events, counters."""
import numpy as np
import pytest

from hgmviz import core
from hgmviz.core import PageTablePool
from hgmviz.schemes.base import GUARD_INT_MAX_HALF, GUARD_NONE, GUARD_SIGN, guarded_increments, wrap_counter

pytestmark = pytest.mark.nojit

G = np.array([12, 3, 4, 0], dtype=np.int64)   # the toy geometry as the kernels see it


def toy_pool(tables=8):
    pt = PageTablePool(8, tables=tables, journal=8, events=4)
    pgd = core.table_alloc(pt.P, 4, -1)
    pt.meta[core.M_JLEN] = 0
    return pt, int(pgd)


@pytest.mark.parametrize("bits", [8, 32])
def test_wrap_counter_int_max_plus_one(bits):
    int_max = 2 ** (bits - 1) - 1
    assert wrap_counter(int_max + 1, bits) == -(2 ** (bits - 1))
    assert wrap_counter(int_max, bits) == int_max
    assert wrap_counter(-1, bits) == -1
    assert wrap_counter(2 ** bits + 5, bits) == 5


def test_guarded_increments():
    # INT_MAX/2 = 63 for 8 bits: refuse when refcount > 63, checked before each increment
    assert guarded_increments(60, 10, GUARD_INT_MAX_HALF, 8) == 4      # 60,61,62,63 pass
    assert guarded_increments(64, 10, GUARD_INT_MAX_HALF, 8) == 0
    assert guarded_increments(125, 10, GUARD_SIGN, 8) == 3             # 125,126,127 pass
    assert guarded_increments(-128, 1, GUARD_SIGN, 8) == 0
    assert guarded_increments(0, 1, GUARD_SIGN, 8) == 0
    assert guarded_increments(100, 1000, GUARD_NONE, 8) == 1000
    # the 32-bit numbers of domain.md 1.4: refused at 2^30
    assert guarded_increments(2**30 - 1, 5, GUARD_INT_MAX_HALF, 32) == 1


def test_install_walk_and_rollback_restore_bytes():
    pt, pgd = toy_pool()
    pc = np.array([0], dtype=np.int32)
    fpfn = np.array([64], dtype=np.int64)
    before = pt.snapshot()
    res = np.zeros(4, np.int64)
    # map 3 pieces of 4 KiB at the start of a 256 KiB hstate (level 3) via LARGEST
    st = pt.run(core.install_range, G, pgd, 7, 0x40000, 0, 18, 3, 12, pc, fpfn,
                0x40000, 0x43000, core.MODE_LARGEST, 0, -1, 0, np.zeros(0, np.int32), 0, res)
    assert st == 0 and res[1] == 3 and res[0] == 0x3000
    t, i, lvl = core.hugetlb_full_walk(pt.P, G, pgd, 0x42000, 1)
    assert lvl == 1 and pt.ent[t, i] == ((64 + 2) << 1) | 1
    ev = pt.events()
    kinds = list(ev["kind"])
    assert kinds.count(core.EV_HSTATE_POPULATED) == 1
    sets = [j for j, k in enumerate(kinds) if k == core.EV_SET]
    assert len(sets) == 1 and ev["count"][sets[0]] == 3      # merged into one ranged event
    # roll everything back: the page tables are byte-identical to before
    core.rollback(pt.P, 0)
    after = pt.state_arrays()
    for k, v in before.items():
        a = after[k]
        assert np.array_equal(a[: v.shape[0]], v), k


def test_install_eexist_on_larger_leaf_and_fault_mode():
    pt, pgd = toy_pool(tables=64)
    pc = np.array([0], dtype=np.int32)
    fpfn = np.array([128], dtype=np.int64)
    res = np.zeros(4, np.int64)
    empty = np.zeros(0, np.int32)
    # fault: an hstate-level leaf (256 KiB at level 3)
    st = pt.run(core.install_range, G, pgd, 1, 0, 0, 18, 3, 12, pc, fpfn, 0x1234, 0x1235,
                            core.MODE_FAULT, 0, -1, 0, empty, 0, res)
    assert st == 0 and res[3] == 18
    # a 4 KiB piece under an existing larger leaf: EEXIST, nothing changes
    pt.meta[core.M_JLEN] = 0
    snap = pt.snapshot()
    jm = int(pt.meta[core.M_JLEN])
    st = pt.run(core.install_range, G, pgd, 1, 0, 0, 18, 3, 12, pc, fpfn, 0x1000, 0x2000,
                            core.MODE_FIXED, 12, -1, 0, empty, 0, res)
    assert st == -core.EEXIST and res[1] == 0 and res[2] == 0x1000
    assert int(pt.meta[core.M_JLEN]) == jm
    for k, v in snap.items():
        assert np.array_equal(pt.state_arrays()[k], v)


def test_zap_and_free_tables_return_pool():
    pt, pgd = toy_pool(tables=64)
    pc = np.array([0], dtype=np.int32)
    fpfn = np.array([64], dtype=np.int64)
    fl = np.array([1, 64, 6, 0, 1], dtype=np.int64)
    res = np.zeros(4, np.int64)
    empty = np.zeros(0, np.int32)
    used0 = pt.nr_used
    st = pt.run(core.install_range, G, pgd, 1, 0x40000, 0, 18, 3, 12, pc, fpfn, 0x40000,
                            0x80000, core.MODE_FIXED, 12, -1, 0, empty, 0, res)
    assert st == 0 and res[1] == 64
    assert pt.nr_used == used0 + 1 + 8 + 1        # a PUD, a PMD and 8 PTE tables
    st = pt.run(core.zap_range, G, fl, pgd, 1, 0x40000, 0x80000, 3, res)
    assert st == 0 and res[0] == 64
    st = pt.run(core.free_empty_tables, G, pgd, 1, 0x40000, 0x80000, 3, 3, 0, res)
    assert st == 0 and pt.nr_used == used0
    kinds = list(pt.events()["kind"])
    assert kinds.count(core.EV_HSTATE_CLEARED) == 1
    assert kinds.count(core.EV_TABLE_FREE) == kinds.count(core.EV_TABLE_ALLOC)


def test_pool_growth_keeps_pop_order():
    pt, pgd = toy_pool(tables=4)
    order = [int(core.table_alloc(pt.P, 1, -1)) for _ in range(pt.nr_free)]
    assert order == [2, 3]
    pt.grow_tables()
    assert int(core.table_alloc(pt.P, 1, -1)) == 4
