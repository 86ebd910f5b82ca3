"""hgmviz.vmemmap: every number of domain.md 1.3 (= Documentation/mm/vmemmap_dedup.rst)."""
from fractions import Fraction

import pytest

import hgmviz as hv
from hgmviz.vmemmap import STRUCT_PAGE_SIZE, hvo_reserved_pages, vmemmap_cost, vmemmap_machine_cost

KIB = 1024
MIB2 = 2 << 20
GIB = 1 << 30


def test_struct_page_size():
    # "In most cases, the size of struct page is 64 bytes (e.g. x86-64 and arm64)"
    assert STRUCT_PAGE_SIZE == 64
    assert vmemmap_cost()["struct_page_size"] == 64


@pytest.mark.parametrize("hstate,struct_pages,vbytes,vpages", [
    # "a 2MB HugeTLB page consists of 512 base pages and a 1GB HugeTLB page consists of 262144"
    # "A 2MB HugeTLB page on x86_64 consists in 8 page frames while 1GB HugeTLB page consists
    # in 4096"
    (MIB2, 512, 32 * KIB, 8),
    (GIB, 262_144, 16 << 20, 4096),
])
@pytest.mark.parametrize("geometry", ["x86_64", "x86_64-5level"])
def test_vmemmap_size(hstate, struct_pages, vbytes, vpages, geometry):
    c = vmemmap_cost(hstate, geometry=geometry)
    assert c["struct_pages"] == struct_pages
    assert c["vmemmap_bytes"] == vbytes == struct_pages * 64
    assert c["vmemmap_pages"] == vpages
    # overhead without HVO: 1.5625 % of memory (64/4096)
    assert c["vmemmap_fraction"] == Fraction(64, 4096) == Fraction(15625, 1_000_000)


def test_doc_formulas():
    """struct_size(pmd) = sizeof(struct page) / sizeof(pte_t) = 64 / 8 = 8 pages;
    struct_size(pud) = PAGE_SIZE / sizeof(pmd_t) * struct_size(pmd) = PAGE_SIZE pages."""
    page, pte = 4096, 8
    assert vmemmap_cost(MIB2)["vmemmap_pages"] == 64 // pte == 8
    assert vmemmap_cost(GIB)["vmemmap_pages"] == page // pte * 8 == page


# (kernel, 2 MiB freed/kept, 1 GiB freed/kept)
HVO = [
    ("6.18", (7, 1), (4095, 1)),     # e7d324850bfc: "free the remaining 7 pages", PAGE_SIZE - 1
    ("6.2", (7, 1), (4095, 1)),
    ("5.18", (7, 1), (4095, 1)),
    ("5.17", (6, 2), (4094, 2)),     # f41f2ed43ca5: "Currently, we only free 6 vmemmap pages"
    ("5.14", (6, 2), (4094, 2)),
    ("5.13", (0, 8), (0, 4096)),     # no HVO yet
    ("4.19", (0, 8), (0, 4096)),
]


@pytest.mark.parametrize("kernel,mib2,gib", HVO)
def test_hvo_by_kernel(kernel, mib2, gib):
    for hstate, (freed, kept) in ((MIB2, mib2), (GIB, gib)):
        c = vmemmap_cost(hstate, hvo=True, kernel=kernel)
        assert (c["hvo_freed_pages"], c["hvo_kept_pages"]) == (freed, kept)
        assert c["hvo_freed_pages"] + c["hvo_kept_pages"] == c["vmemmap_pages"]
        assert c["hvo_freed_bytes"] == freed * 4096
        assert c["hvo_active"] == (freed > 0)
        off = vmemmap_cost(hstate, hvo=False, kernel=kernel)
        assert (off["hvo_freed_pages"], off["hvo_kept_pages"]) == (0, c["vmemmap_pages"])
        assert off["hvo_would_free_pages"] == freed and not off["hvo_active"]


def test_hvo_savings_in_kib():
    # "keep 1, free 7 (28 KiB saved per 2 MiB page)"; "keep 1, free 4095 (16,380 KiB saved per
    # 1 GiB page)"
    assert vmemmap_cost(MIB2)["hvo_freed_bytes"] == 28 * KIB
    assert vmemmap_cost(GIB)["hvo_freed_bytes"] == 16_380 * KIB


def test_hvo_reserved_pages():
    assert hvo_reserved_pages("6.18") == 1
    assert hvo_reserved_pages("5.18") == 1
    assert hvo_reserved_pages("5.17") == 2
    assert hvo_reserved_pages("5.14") == 2
    assert hvo_reserved_pages("5.13") is None
    assert hvo_reserved_pages("6.2") == 1


def test_toy_geometry_has_no_hvo():
    """8 and 64 base pages: at most one vmemmap page, nothing HVO can free."""
    a = vmemmap_cost(32 << 10, geometry="toy")
    assert a["struct_pages"] == 8 and a["vmemmap_bytes"] == 512
    assert a["vmemmap_pages"] == Fraction(1, 8)
    assert a["hvo_freed_pages"] == 0 and a["hvo_kept_pages"] == Fraction(1, 8)
    b = vmemmap_cost(256 << 10, geometry="toy")
    assert (b["struct_pages"], b["vmemmap_pages"], b["hvo_freed_pages"]) == (64, 1, 0)
    assert vmemmap_cost(256 << 10, geometry=hv.TOY, kernel="5.14")["hvo_freed_pages"] == 0


def test_machine_cost():
    c = vmemmap_machine_cost({MIB2: 1024, GIB: 4}, hvo=True, kernel="6.18")
    assert c["hugepages"] == 1028
    assert c["hugepage_bytes"] == 1024 * MIB2 + 4 * GIB == 6 * GIB
    assert c["struct_pages"] == 1024 * 512 + 4 * 262_144
    assert c["vmemmap_bytes"] == 1024 * 32 * KIB + 4 * (16 << 20) == 96 << 20
    assert c["vmemmap_pages"] == 1024 * 8 + 4 * 4096
    assert c["hvo_freed_pages"] == 1024 * 7 + 4 * 4095
    assert c["hvo_kept_pages"] == 1024 + 4
    assert c["hvo_kept_bytes"] == (1024 + 4) * 4096
    # the THP-like scheme needs HVO off: every freed page comes back
    assert c["thp_like_extra_pages"] == c["hvo_freed_pages"]
    assert c["thp_like_extra_bytes"] == 1024 * 28 * KIB + 4 * 16_380 * KIB
    assert c["per_hstate"][GIB]["hvo_freed_pages"] == 4095
    old = vmemmap_machine_cost({MIB2: 1024, GIB: 4}, hvo=True, kernel="5.15")
    assert old["thp_like_extra_pages"] == 1024 * 6 + 4 * 4094


def test_machine_cost_without_hvo():
    c = vmemmap_machine_cost({MIB2: 8}, hvo=False)
    assert c["vmemmap_pages"] == 64 and c["hvo_kept_pages"] == 64
    assert c["thp_like_extra_bytes"] == 0          # nothing to lose: HVO is already off
    assert c["hvo_would_free_bytes"] == 8 * 28 * KIB
    assert vmemmap_machine_cost({GIB: 1}, hvo=True, kernel="5.10")["thp_like_extra_bytes"] == 0


def test_machine_cost_empty():
    c = vmemmap_machine_cost({})
    assert c["hugepages"] == 0 and c["vmemmap_bytes"] == 0 and c["thp_like_extra_bytes"] == 0
    assert vmemmap_machine_cost()["hugepage_bytes"] == 0


@pytest.mark.parametrize("fn,kwargs,exc,match", [
    (vmemmap_cost, {"hstate": 4 << 20}, ValueError, "allowed: 2 MiB"),
    (vmemmap_cost, {"hstate": "1G"}, TypeError, "hstate must be an int"),
    (vmemmap_cost, {"hstate": True}, TypeError, "hstate must be an int"),
    (vmemmap_cost, {"hvo": 1}, TypeError, "hvo must be True or False"),
    (vmemmap_cost, {"kernel": 6}, TypeError, "kernel"),
    (vmemmap_cost, {"geometry": "sparc"}, ValueError, "allowed"),
    (vmemmap_machine_cost, {"nr_hugepages": [MIB2]}, TypeError, "must be a dict"),
    (vmemmap_machine_cost, {"nr_hugepages": {MIB2: -1}}, ValueError, r"nr_hugepages\[2 MiB\]"),
    (vmemmap_machine_cost, {"nr_hugepages": {MIB2: 1.5}}, ValueError, "int >= 0"),
    (vmemmap_machine_cost, {"nr_hugepages": {1 << 20: 1}}, ValueError, "allowed"),
    (vmemmap_machine_cost, {"hvo": "yes"}, TypeError, "hvo"),
])
def test_bad_arguments(fn, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fn(**kwargs)
