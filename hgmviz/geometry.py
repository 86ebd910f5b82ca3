"""Layer 0: page-table geometry, hstates and kernel-version profiles.

Geometry is plain data handed to the jitted kernels as integers and arrays; nothing in
compiled code reads a global.  The x86-64 constants follow
``arch/x86/include/asm/pgtable_64_types.h`` (torvalds/linux @ 02390b87a945, unchanged since):
PAGE_SHIFT 12, PMD_SHIFT 21, PUD_SHIFT 30, PGDIR_SHIFT 39 (4-level) or 48 with P4D_SHIFT 39
(5-level), 512 entries per table.  Levels are numbered as HGM v1 11/46 numbers them
(``enum hugetlb_level``: PTE = 1, PMD, PUD, P4D, PGD).

The toy geometry keeps every rule and shrinks the numbers for a classroom: 8 entries a level,
hstates of 8 and 64 base pages, and 8-bit counters so an overflow takes a handful of clicks.
"""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field

from .units import format_size

__all__ = [
    "HugetlbLevel", "Hstate", "Geometry", "X86_64", "X86_64_5LEVEL", "TOY",
    "KernelProfile", "get_geometry", "get_kernel_profile", "PAGE_SHIFT", "PAGE_SIZE",
    "PMD_SHIFT", "PUD_SHIFT", "INT_MAX",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PMD_SHIFT = 21
PUD_SHIFT = 30
INT_MAX = (1 << 31) - 1


class HugetlbLevel(enum.IntEnum):
    """``enum hugetlb_level`` from HGM v1 11/46 (include/linux/hugetlb.h)."""

    PTE = 1
    PMD = 2
    PUD = 3
    P4D = 4
    PGD = 5


@dataclass(frozen=True)
class Hstate:
    """``struct hstate`` reduced to what the simulator needs (include/linux/hugetlb.h).

    ``order`` is ``huge_page_order(h)``; ``level`` is the page-table level whose leaf maps
    exactly one hugepage (HGM v1 13/46 ``hpage_size_to_level``).
    """

    order: int
    shift: int
    level: int
    index: int  # position in Geometry.hstates

    def huge_page_size(self) -> int:
        return 1 << self.shift

    def huge_page_shift(self) -> int:
        return self.shift

    def huge_page_order(self) -> int:
        return self.order

    def pages_per_huge_page(self) -> int:
        return 1 << self.order

    def huge_page_mask(self) -> int:
        return ~((1 << self.shift) - 1)

    @property
    def size(self) -> int:
        return 1 << self.shift

    @property
    def name(self) -> str:
        return "hugepages-%dkB" % (self.size >> 10)


_fmt_size = format_size       # the one size formatter (hgmviz.units), under its old name


@dataclass(frozen=True)
class Geometry:
    """A page-table geometry: level shifts, table width, hstates and counter width.

    Level ``l`` (1 = PTE) holds entries that each map ``1 << level_shift(l)`` bytes.  With
    ``levels == 4`` the P4D is folded into the PGD (``pgtable-nop4d``), so the top table is
    level 4 and is called PGD.
    """

    name: str
    page_shift: int
    bits_per_level: int
    levels: int
    hstate_shifts: tuple
    counter_bits: int
    mmap_base: int
    hstates: tuple = field(init=False, compare=False)

    def __post_init__(self):
        self._validate()
        hs = []
        for i, sh in enumerate(self.hstate_shifts):
            order = sh - self.page_shift
            hs.append(Hstate(order=order, shift=sh, level=order // self.bits_per_level + 1, index=i))
        object.__setattr__(self, "hstates", tuple(hs))

    def _validate(self):
        """Refuse, at construction, a geometry the jitted kernels cannot run: every field
        checked for its type and range, the error naming the field and what is allowed."""
        def whole(name, lo, hi, why=""):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError("Geometry %s must be an int in [%d, %d]%s, not %r"
                                % (name, lo, hi, why, v))
            if not lo <= v <= hi:
                raise ValueError("Geometry %s must be in [%d, %d]%s, not %r"
                                 % (name, lo, hi, why, v))
            return v

        if not isinstance(self.name, str) or not self.name:
            raise TypeError("Geometry name must be a non-empty str, not %r" % (self.name,))
        if self.levels not in (4, 5) or isinstance(self.levels, bool):
            raise ValueError("Geometry levels must be 4 or 5, not %r" % (self.levels,))
        ps = whole("page_shift", 1, 30)
        bits = whole("bits_per_level", 1, 16, " (PTRS_PER_TABLE = 2**bits_per_level entries)")
        top = ps + self.levels * bits
        if top > 63:
            raise ValueError(
                "Geometry page_shift + levels * bits_per_level must be <= 63 (addresses are "
                "int64; the top table then covers 2**63 bytes), not %d + %d * %d = %d"
                % (ps, self.levels, bits, top))
        whole("counter_bits", 2, 32, " (the width of the signed counters; atomic_t is 32)")
        if isinstance(self.mmap_base, bool) or not isinstance(self.mmap_base, int):
            raise TypeError("Geometry mmap_base must be an int, not %r" % (self.mmap_base,))
        if not (0 < self.mmap_base < 1 << 63) or self.mmap_base % (1 << ps):
            raise ValueError(
                "Geometry mmap_base must be a multiple of the page size (%d) in (0, 2**63) "
                "(addresses are int64), not %r" % (1 << ps, self.mmap_base))
        shifts = self.hstate_shifts
        if not isinstance(shifts, tuple) or not shifts:
            raise TypeError("Geometry hstate_shifts must be a non-empty tuple of ints, not %r"
                            % (shifts,))
        allowed = ", ".join(str(ps + k * bits) for k in range(1, self.levels - 1))
        for sh in shifts:
            if isinstance(sh, bool) or not isinstance(sh, int):
                raise TypeError("Geometry hstate_shifts must hold ints, not %r" % (sh,))
            order = sh - ps
            if order <= 0 or order % bits or order // bits + 1 >= self.levels:
                raise ValueError(
                    "hstate shift %d is not a page-table level of %s below the top table; "
                    "allowed: %s" % (sh, self.name, allowed))
        if len(set(shifts)) != len(shifts) or list(shifts) != sorted(shifts):
            raise ValueError("Geometry hstate_shifts must be increasing without repeats, not %r"
                             % (shifts,))

    # -- constants in the kernel's spelling ---------------------------------------------
    @property
    def PAGE_SHIFT(self) -> int:
        return self.page_shift

    @property
    def PAGE_SIZE(self) -> int:
        return 1 << self.page_shift

    @property
    def PTRS_PER_TABLE(self) -> int:
        return 1 << self.bits_per_level

    @property
    def PMD_SHIFT(self) -> int:
        return self.level_shift(HugetlbLevel.PMD)

    @property
    def PUD_SHIFT(self) -> int:
        return self.level_shift(HugetlbLevel.PUD)

    @property
    def PGDIR_SHIFT(self) -> int:
        return self.level_shift(self.levels)

    @property
    def INT_MAX(self) -> int:
        return (1 << (self.counter_bits - 1)) - 1

    @property
    def INT_MIN(self) -> int:
        return -(1 << (self.counter_bits - 1))

    @property
    def TASK_SIZE(self) -> int:
        """Top of the user address space: half of what the top table covers."""
        return 1 << (self.level_shift(self.levels) + self.bits_per_level - 1)

    def level_shift(self, level: int) -> int:
        return self.page_shift + (int(level) - 1) * self.bits_per_level

    def level_size(self, level: int) -> int:
        return 1 << self.level_shift(level)

    def table_index(self, addr: int, level: int) -> int:
        """The entry of a ``level`` table that the walk reads for ``addr``: the kernel's
        ``pgd_index()``, ``pud_index()``, ``pmd_index()`` and ``pte_index()``
        (include/linux/pgtable.h, v6.2): ``(addr >> level_shift) & (PTRS_PER_TABLE - 1)``."""
        if isinstance(addr, bool) or not isinstance(addr, int) or not 0 <= addr < 1 << 64:
            raise ValueError("addr must be an int in [0, 2**64), not %r" % (addr,))
        if not 1 <= int(level) <= self.levels:
            raise ValueError("level must be 1 (PTE) to %d (PGD), not %r" % (self.levels, level))
        return (addr >> self.level_shift(level)) & (self.PTRS_PER_TABLE - 1)

    def walk_indices(self, addr: int) -> dict:
        """``{level name: table_index(addr, level)}`` from the PGD down to the PTE level."""
        return {self.level_name(lv): self.table_index(addr, lv)
                for lv in range(self.levels, 0, -1)}

    def level_name(self, level: int) -> str:
        level = int(level)
        if level == self.levels:
            return "PGD"
        return HugetlbLevel(level).name

    def hstate(self, size: int) -> Hstate:
        """The hstate whose hugepage is ``size`` bytes (``size_to_hstate``)."""
        for h in self.hstates:
            if h.size == size:
                return h
        raise ValueError(
            "no hstate of %s in the %s geometry; allowed: %s"
            % (_fmt_size(size) if isinstance(size, int) else repr(size), self.name,
               ", ".join("%s (%d)" % (_fmt_size(h.size), h.size) for h in self.hstates)))

    def hstate_of_shift(self, shift: int) -> Hstate:
        for h in self.hstates:
            if h.shift == shift:
                return h
        raise ValueError("no hstate with shift %d" % shift)

    def fmt_size(self, n: int) -> str:
        return _fmt_size(n)


X86_64 = Geometry(name="x86_64", page_shift=12, bits_per_level=9, levels=4,
                  hstate_shifts=(21, 30), counter_bits=32, mmap_base=0x7F0000000000)
X86_64_5LEVEL = Geometry(name="x86_64-5level", page_shift=12, bits_per_level=9, levels=5,
                         hstate_shifts=(21, 30), counter_bits=32, mmap_base=0x7F0000000000)
TOY = Geometry(name="toy", page_shift=12, bits_per_level=3, levels=4,
               hstate_shifts=(15, 18), counter_bits=8, mmap_base=0x600000)

_GEOMETRIES = {"x86_64": X86_64, "x86-64": X86_64, "x86_64-5level": X86_64_5LEVEL, "toy": TOY}


def get_geometry(geometry) -> Geometry:
    if isinstance(geometry, Geometry):
        return geometry
    try:
        return _GEOMETRIES[geometry]
    except (KeyError, TypeError):
        raise ValueError("unknown geometry %r; allowed: %s or a Geometry"
                         % (geometry, ", ".join(sorted(_GEOMETRIES)))) from None


@dataclass(frozen=True)
class KernelProfile:
    """Behaviour that changed between kernel versions and matters to the counters.

    ``pagecache_refs_nr_pages``: since v6.7 (commit a08c7193e4f1 "mm/filemap: remove hugetlb
    special casing in filemap.c") ``__filemap_add_folio()`` takes ``folio_nr_pages()``
    references for a hugetlb folio; before it took one (domain.md 2.1).
    """

    version: tuple
    label: str

    @property
    def pagecache_refs_nr_pages(self) -> bool:
        return self.version >= (6, 7)

    def pagecache_refs(self, nr_pages: int) -> int:
        """References the page cache holds on a folio of ``nr_pages`` base pages."""
        return nr_pages if self.pagecache_refs_nr_pages else 1


def _parse_version(text: str) -> tuple:
    parts = []
    for tok in text.split(".")[:2]:
        digits = ""
        for ch in tok:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    if len(parts) < 2:
        raise ValueError("kernel must look like '6.2' or '6.18' (or 'running'), not %r" % (text,))
    return tuple(parts)


def get_kernel_profile(kernel) -> KernelProfile:
    """``"6.2"`` (the thread's era, default), ``"6.18"``, any ``"X.Y"``, or ``"running"``."""
    if isinstance(kernel, KernelProfile):
        return kernel
    if kernel is None:
        kernel = "6.2"
    if not isinstance(kernel, str):
        raise TypeError("kernel must be a string such as '6.2', '6.18' or 'running', not %r" % (kernel,))
    if kernel == "running":
        release = os.uname().release
        return KernelProfile(version=_parse_version(release), label=release)
    return KernelProfile(version=_parse_version(kernel), label=kernel)
