"""The vmemmap / HugeTLB Vmemmap Optimization (HVO) cost model.

Numbers follow ``Documentation/mm/vmemmap_dedup.rst`` (torvalds/linux @ 17b6fc88eb31,
"A vmemmap diet for HugeTLB and Device DAX"; domain.md 1.3):

* every base page has a ``struct page``; "In most cases, the size of struct page is 64 bytes
  (e.g. x86-64 and arm64)";
* ``struct_size = n * sizeof(struct page) / PAGE_SIZE`` pages: "A 2MB HugeTLB page on x86_64
  consists in 8 page frames while 1GB HugeTLB page consists in 4096";
* HVO remaps the tail vmemmap pages read-only onto the head vmemmap page and frees them:
  "free the remaining 7 pages" for 2 MiB, "free (PAGE_SIZE - 1) vmemmap pages" (4,095) for
  1 GiB; a HugeTLB page "can be optimized only when its size of the struct page structs is
  greater than 1 page".

Kernel history (domain.md 0.1 ML-HVO):

* before v5.14: no HVO; nothing is freed;
* v5.14 to v5.17, f41f2ed43ca5 "mm: hugetlb: free the vmemmap pages associated with each
  HugeTLB page": two vmemmap pages are kept ("we need to reserve two pages as vmemmap areas"),
  6 of 8 and 4,094 of 4,096 are freed;
* v5.18 on, e7d324850bfc "mm: hugetlb: free the 2nd vmemmap page associated with each HugeTLB
  page": one is kept, 7 and 4,095 are freed (the kernel's ``HUGETLB_VMEMMAP_RESERVE_SIZE`` is
  one PAGE_SIZE).

Why it matters for HGM: the THP-like mapcount scheme (what v2 implemented) writes the tail
pages' ``_mapcount``, which HVO maps read-only onto the head vmemmap page, so it cannot coexist
with HVO: "HGM is incompatible with the HugeTLB Vmemmap Optimization (HVO)" (v2 cover,
``20230218002819.1486479-1-jthoughton@google.com``); "doing it this way will use _mapcount, so
we won't be able to use the vmemmap optimization" (T6). The pages HVO would have freed come
back: :func:`vmemmap_machine_cost` reports that as ``thp_like_extra_bytes``.

The toy geometry's hugepages (8 and 64 base pages) have at most one page of struct pages, so
HVO frees nothing there and ``vmemmap_pages`` may be a :class:`fractions.Fraction`.
"""
from __future__ import annotations

from fractions import Fraction

from .geometry import _fmt_size, get_geometry, get_kernel_profile

__all__ = ["vmemmap_cost", "vmemmap_machine_cost", "STRUCT_PAGE_SIZE", "hvo_reserved_pages"]

#: sizeof(struct page) on x86-64 and arm64 (vmemmap_dedup.rst).
STRUCT_PAGE_SIZE = 64


_fmt = _fmt_size


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError("%s must be True or False, not %r" % (name, value))
    return value


def hvo_reserved_pages(kernel) -> int | None:
    """Vmemmap pages HVO keeps per hugepage on ``kernel``: 1 since v5.18 (e7d324850bfc),
    2 for v5.14 to v5.17 (f41f2ed43ca5), ``None`` before v5.14 (no HVO)."""
    v = get_kernel_profile(kernel).version
    if v >= (5, 18):
        return 1
    if v >= (5, 14):
        return 2
    return None


def _pages(nbytes: int, page_size: int):
    q, rem = divmod(nbytes, page_size)
    return q if rem == 0 else Fraction(nbytes, page_size)


def vmemmap_cost(hstate=1 << 30, hvo=True, kernel="6.18", geometry="x86_64") -> dict:
    """The struct pages of one hugepage and what HVO frees of them.

    Returns ``struct_pages`` (base pages of the hugepage), ``vmemmap_bytes`` (× 64 B),
    ``vmemmap_pages`` (of PAGE_SIZE), ``hvo_freed_pages`` and ``hvo_kept_pages`` (resident),
    ``hvo_freed_bytes``, ``hvo_active`` (HVO on and available on this kernel),
    ``hvo_would_free_pages`` (what HVO frees on this kernel whether ``hvo`` is on or not) and
    ``vmemmap_fraction`` (vmemmap bytes per hugepage byte, 1/64 on x86-64).

    >>> c = vmemmap_cost(2 << 20)
    >>> c["vmemmap_pages"], c["hvo_freed_pages"], c["hvo_kept_pages"]
    (8, 7, 1)
    """
    g = get_geometry(geometry)
    prof = get_kernel_profile(kernel)
    _check_bool("hvo", hvo)
    if isinstance(hstate, bool) or not isinstance(hstate, int):
        raise TypeError("hstate must be an int (bytes), not %r" % (hstate,))
    h = g.hstate(hstate)                       # ValueError naming the allowed hstates
    page_size = g.PAGE_SIZE
    struct_pages = h.pages_per_huge_page()
    vbytes = struct_pages * STRUCT_PAGE_SIZE
    vpages = _pages(vbytes, page_size)
    reserve = hvo_reserved_pages(prof)
    # hugetlb_vmemmap_optimizable_size(): vmemmap size minus the reserve, if positive
    if reserve is None or vbytes <= reserve * page_size:
        would_free = 0
    else:
        would_free = (vbytes - reserve * page_size) // page_size
    active = hvo and reserve is not None
    freed = would_free if hvo else 0
    return {
        "hstate": hstate,
        "kernel": prof.label,
        "geometry": g.name,
        "hvo": hvo,
        "hvo_active": active,
        "page_size": page_size,
        "struct_page_size": STRUCT_PAGE_SIZE,
        "struct_pages": struct_pages,
        "vmemmap_bytes": vbytes,
        "vmemmap_pages": vpages,
        "hvo_reserved_pages": reserve,
        "hvo_would_free_pages": would_free,
        "hvo_freed_pages": freed,
        "hvo_kept_pages": vpages - freed,
        "hvo_freed_bytes": freed * page_size,
        "vmemmap_fraction": Fraction(vbytes, hstate),
    }


_SUMMED = ("hugepages", "hugepage_bytes", "struct_pages", "vmemmap_bytes", "vmemmap_pages",
           "hvo_freed_pages", "hvo_kept_pages", "hvo_freed_bytes", "hvo_would_free_pages")


def vmemmap_machine_cost(nr_hugepages=None, hvo=True, kernel="6.18", geometry="x86_64") -> dict:
    """Totals of :func:`vmemmap_cost` over a pool ``{hugepage size in bytes: count}``.

    Adds ``hvo_kept_bytes`` (vmemmap that stays resident), ``thp_like_extra_bytes`` /
    ``thp_like_extra_pages``: what the THP-like mapcount scheme costs on this machine by
    losing HVO (it writes tail struct pages, so HVO must be off and every page HVO freed
    comes back; 0 when HVO is already off or unavailable), ``hvo_would_free_bytes`` (the
    same, whether or not ``hvo`` is on) and ``per_hstate`` (each size's per-hugepage cost).

    >>> vmemmap_machine_cost({2 << 20: 1024})["thp_like_extra_bytes"] == 1024 * 28 * 1024
    True
    """
    g = get_geometry(geometry)
    get_kernel_profile(kernel)
    _check_bool("hvo", hvo)
    if nr_hugepages is None:
        nr_hugepages = {}
    if not isinstance(nr_hugepages, dict):
        raise TypeError("nr_hugepages must be a dict {hugepage size in bytes: count}, not %r"
                        % (nr_hugepages,))
    tot = dict.fromkeys(_SUMMED, 0)
    per = {}
    for size, n in nr_hugepages.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError("nr_hugepages[%s] must be an int >= 0, not %r"
                             % (_fmt(size) if isinstance(size, int) else repr(size), n))
        c = vmemmap_cost(size, hvo=hvo, kernel=kernel, geometry=g)
        per[size] = c
        tot["hugepages"] += n
        tot["hugepage_bytes"] += n * size
        for key in _SUMMED[2:]:
            tot[key] += n * c[key]
    page_size = g.PAGE_SIZE
    tot.update({
        "kernel": get_kernel_profile(kernel).label,
        "geometry": g.name,
        "hvo": hvo,
        "hvo_active": hvo and hvo_reserved_pages(kernel) is not None,
        "nr_hugepages": dict(nr_hugepages),
        "hvo_kept_bytes": tot["vmemmap_bytes"] - tot["hvo_freed_bytes"],
        "hvo_would_free_bytes": tot["hvo_would_free_pages"] * page_size,
        "thp_like_extra_pages": tot["hvo_freed_pages"],
        "thp_like_extra_bytes": tot["hvo_freed_bytes"],
        "per_hstate": per,
    })
    return tot
