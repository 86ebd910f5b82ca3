"""A custom hv.Geometry is validated at construction (issue 17 item 9): each bad field is a
typed error naming the field and the allowed range, before any kernel runs."""
import pytest

import hgmviz as hv
from hgmviz.geometry import Geometry

pytestmark = pytest.mark.nojit

GOOD = dict(name="custom", page_shift=12, bits_per_level=3, levels=4, hstate_shifts=(15, 18),
            counter_bits=8, mmap_base=0x600000)


def make(**kw):
    return Geometry(**(GOOD | kw))


def test_good_custom_geometry_builds_and_runs():
    g = make()
    assert [h.level for h in g.hstates] == [2, 3]
    m = hv.Machine(nr_hugepages={1 << 15: 2}, geometry=g)
    f = m.memfd_create(size=1 << 15, hstate=1 << 15)
    p = m.spawn()
    p.touch(p.mmap(f, 1 << 15))
    p.exit()
    assert m.audit() == []


@pytest.mark.parametrize("kw, exc, words", [
    # page_shift + levels * bits >= 64 used to hang exit() inside a jitted loop
    (dict(page_shift=12, bits_per_level=13, levels=4, hstate_shifts=(25,)), ValueError,
     ["page_shift + levels * bits_per_level", "<= 63", "12 + 4 * 13 = 64"]),
    (dict(page_shift=30, bits_per_level=9, levels=4, hstate_shifts=(39,)), ValueError,
     ["<= 63", "66"]),
    # mmap_base >= 2**63 used to be a numba TypingError
    (dict(mmap_base=2 ** 63), ValueError, ["mmap_base", "(0, 2**63)"]),
    (dict(mmap_base=2 ** 64 + 4096), ValueError, ["mmap_base"]),
    (dict(mmap_base=0), ValueError, ["mmap_base"]),
    (dict(mmap_base=0x600001), ValueError, ["mmap_base", "multiple of the page size"]),
    (dict(mmap_base=6.0e6), TypeError, ["mmap_base must be an int"]),
    # counter_bits 0 or -5 used to be accepted
    (dict(counter_bits=0), ValueError, ["counter_bits", "[2, 32]"]),
    (dict(counter_bits=-5), ValueError, ["counter_bits", "[2, 32]"]),
    (dict(counter_bits=64), ValueError, ["counter_bits", "[2, 32]"]),
    (dict(counter_bits=8.0), TypeError, ["counter_bits", "int"]),
    # bits_per_level 0 used to be a ZeroDivisionError
    (dict(bits_per_level=0), ValueError, ["bits_per_level", "[1, 16]"]),
    (dict(bits_per_level=True), TypeError, ["bits_per_level", "int"]),
    (dict(page_shift=0), ValueError, ["page_shift", "[1, 30]"]),
    (dict(levels=3), ValueError, ["levels must be 4 or 5"]),
    (dict(hstate_shifts=()), TypeError, ["hstate_shifts", "non-empty"]),
    (dict(hstate_shifts=[15]), TypeError, ["hstate_shifts", "tuple"]),
    (dict(hstate_shifts=(16,)), ValueError, ["hstate shift 16", "allowed: 15, 18"]),
    (dict(hstate_shifts=(21,)), ValueError, ["hstate shift 21", "allowed: 15, 18"]),
    (dict(hstate_shifts=(18, 15)), ValueError, ["increasing"]),
    (dict(name=""), TypeError, ["name"]),
])
def test_bad_geometry_is_refused_at_construction(kw, exc, words):
    with pytest.raises(exc) as e:
        make(**kw)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_shipped_geometries_still_build():
    for g in (hv.TOY, hv.X86_64, hv.X86_64_5LEVEL):
        assert Geometry(name=g.name, page_shift=g.page_shift, bits_per_level=g.bits_per_level,
                        levels=g.levels, hstate_shifts=g.hstate_shifts,
                        counter_bits=g.counter_bits, mmap_base=g.mmap_base) == g
