"""Readers for the files through which Linux shows page tables, mapcounts and the hugetlb pool.

Every ``parse_*`` function is pure: it takes the bytes or text of a file and returns plain
values, so it runs anywhere on recorded data (``tests/data/kernelcheck/``).  The ``read_*``
functions open the live files; most of them need root (a PFN in ``/proc/<pid>/pagemap`` reads
as 0 without CAP_SYS_ADMIN, and ``/proc/kpagecount`` is mode 0400).

Formats (Documentation/admin-guide/mm/pagemap.rst, Documentation/admin-guide/mm/hugetlbpage.rst):

``/proc/<pid>/pagemap``
    one little-endian u64 per 4 KiB virtual page, at offset ``(vaddr >> 12) * 8``: bits 0-54 the
    PFN when present, 55 soft-dirty, 56 exclusively mapped, 57 uffd-wp write-protected,
    61 file-page or shared-anon, 62 swapped, 63 present.  A hugetlb leaf shows as 512 (2 MiB)
    or 262,144 (1 GiB) consecutive present entries with consecutive PFNs.
``/proc/kpagecount``
    one u64 per PFN: the page's mapcount.  On 6.18 with CONFIG_PAGE_MAPCOUNT this is
    ``folio_precise_page_mapcount()``, for a hugetlb folio ``folio_entire_mapcount()`` on head
    and tails alike (domain.md section 2.2).
``/proc/kpageflags``
    one u64 per PFN of ``KPF_*`` bits (include/uapi/linux/kernel-page-flags.h).
``/sys/kernel/mm/hugepages/hugepages-<size>kB/``
    ``nr_hugepages``, ``free_hugepages``, ``resv_hugepages``, ``surplus_hugepages``,
    ``nr_overcommit_hugepages``: one decimal number each, per hstate.
``/proc/meminfo``
    ``HugePages_Total/Free/Rsvd/Surp`` and ``Hugepagesize``, for the default hstate only.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from typing import Iterable, Mapping

__all__ = [
    "PAGE_SHIFT", "PAGE_SIZE", "PM_PFN_MASK", "PagemapEntry", "parse_pagemap",
    "parse_pagemap_entry", "parse_kpagecount", "parse_kpageflags", "KPF", "decode_kpageflags",
    "parse_meminfo", "meminfo_hugepages", "hstate_size_from_dirname", "parse_hugepages_dir",
    "HugepagePool", "parse_maps", "MapsEntry", "parse_smaps_vmflags",
    "read_pagemap", "read_kpagecount", "read_kpageflags", "read_meminfo", "read_hugepage_pools",
    "read_maps", "find_vma", "HUGEPAGES_SYSFS", "POOL_FILES",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
HUGEPAGES_SYSFS = "/sys/kernel/mm/hugepages"
POOL_FILES = ("nr_hugepages", "free_hugepages", "resv_hugepages", "surplus_hugepages",
              "nr_overcommit_hugepages")

# pagemap bits (fs/proc/task_mmu.c: PM_PFRAME_BITS 55, PM_SOFT_DIRTY 55, PM_MMAP_EXCLUSIVE 56,
# PM_UFFD_WP 57, PM_FILE 61, PM_SWAP 62, PM_PRESENT 63)
PM_PFN_MASK = (1 << 55) - 1
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56
PM_UFFD_WP = 1 << 57
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63


@dataclass(frozen=True)
class PagemapEntry:
    """One decoded /proc/<pid>/pagemap entry."""

    raw: int

    @property
    def present(self) -> bool:
        return bool(self.raw & PM_PRESENT)

    @property
    def swapped(self) -> bool:
        return bool(self.raw & PM_SWAP)

    @property
    def pfn(self) -> int | None:
        """The PFN, or None when not present (0 when present but hidden: not root)."""
        return (self.raw & PM_PFN_MASK) if self.present else None

    @property
    def soft_dirty(self) -> bool:
        return bool(self.raw & PM_SOFT_DIRTY)

    @property
    def exclusive(self) -> bool:
        return bool(self.raw & PM_MMAP_EXCLUSIVE)

    @property
    def uffd_wp(self) -> bool:
        return bool(self.raw & PM_UFFD_WP)

    @property
    def file_shared(self) -> bool:
        return bool(self.raw & PM_FILE)


def parse_pagemap_entry(value: int) -> PagemapEntry:
    return PagemapEntry(int(value))


def _u64s(data: bytes) -> list[int]:
    if len(data) % 8:
        raise ValueError("expected a multiple of 8 bytes, got %d" % len(data))
    return list(struct.unpack("<%dQ" % (len(data) // 8), data))


def parse_pagemap(data: bytes) -> list[PagemapEntry]:
    """Entries for consecutive 4 KiB pages, from bytes read at ``(vaddr >> 12) * 8``."""
    return [PagemapEntry(v) for v in _u64s(data)]


def parse_kpagecount(data: bytes) -> list[int]:
    """Mapcounts for consecutive PFNs, from bytes read at ``pfn * 8``."""
    return _u64s(data)


def parse_kpageflags(data: bytes) -> list[int]:
    return _u64s(data)


# include/uapi/linux/kernel-page-flags.h (bits 0-26 are the stable ABI)
KPF = {
    "LOCKED": 0, "ERROR": 1, "REFERENCED": 2, "UPTODATE": 3, "DIRTY": 4, "LRU": 5,
    "ACTIVE": 6, "SLAB": 7, "WRITEBACK": 8, "RECLAIM": 9, "BUDDY": 10, "MMAP": 11,
    "ANON": 12, "SWAPCACHE": 13, "SWAPBACKED": 14, "COMPOUND_HEAD": 15, "COMPOUND_TAIL": 16,
    "HUGE": 17, "UNEVICTABLE": 18, "HWPOISON": 19, "NOPAGE": 20, "KSM": 21, "THP": 22,
    "OFFLINE": 23, "ZERO_PAGE": 24, "IDLE": 25, "PGTABLE": 26,
}
_KPF_NAMES = {bit: name for name, bit in KPF.items()}


def decode_kpageflags(flags: int) -> list[str]:
    """Names of the set bits, lowest first; bits outside the uapi header show as ``bit<n>``."""
    out = []
    for bit in range(64):
        if flags >> bit & 1:
            out.append(_KPF_NAMES.get(bit, "bit%d" % bit))
    return out


_MEMINFO_LINE = re.compile(r"^([^:\s]+):\s+(\d+)(?:\s+kB)?\s*$")


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as {field: number}; ``kB`` fields stay in kB, as the file gives them."""
    out = {}
    for line in text.splitlines():
        m = _MEMINFO_LINE.match(line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def meminfo_hugepages(meminfo: Mapping[str, int]) -> dict[int, dict[str, int]]:
    """The default hstate's pool from a parsed /proc/meminfo: {hstate bytes: {HugePages_*}}."""
    size = meminfo["Hugepagesize"] * 1024
    return {size: {k: meminfo[k] for k in ("HugePages_Total", "HugePages_Free",
                                            "HugePages_Rsvd", "HugePages_Surp")}}


_HSTATE_DIR = re.compile(r"^hugepages-(\d+)kB$")


def hstate_size_from_dirname(name: str) -> int:
    """``hugepages-2048kB`` -> 2097152."""
    m = _HSTATE_DIR.match(os.path.basename(name.rstrip("/")))
    if not m:
        raise ValueError("not a hugepages-<size>kB directory: %r" % name)
    return int(m.group(1)) * 1024


@dataclass(frozen=True)
class HugepagePool:
    """One hstate's pool as /sys/kernel/mm/hugepages/hugepages-<size>kB shows it."""

    size: int
    nr_hugepages: int
    free_hugepages: int
    resv_hugepages: int
    surplus_hugepages: int
    nr_overcommit_hugepages: int = 0

    def as_meminfo(self) -> dict[str, int]:
        """The same numbers under /proc/meminfo's names."""
        return {"HugePages_Total": self.nr_hugepages, "HugePages_Free": self.free_hugepages,
                "HugePages_Rsvd": self.resv_hugepages, "HugePages_Surp": self.surplus_hugepages}


def parse_hugepages_dir(dirname: str, files: Mapping[str, str]) -> HugepagePool:
    """Build a pool from a directory name and {file name: contents}."""
    vals = {k: int(files[k].strip()) for k in POOL_FILES if k in files}
    return HugepagePool(size=hstate_size_from_dirname(dirname), **vals)


@dataclass(frozen=True)
class MapsEntry:
    start: int
    end: int
    perms: str
    offset: int
    path: str
    vmflags: tuple[str, ...] = ()


def parse_maps(text: str) -> list[MapsEntry]:
    """/proc/<pid>/maps (or the header lines of smaps) as entries."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or "-" not in parts[0] or ":" in parts[0]:
            continue
        try:
            s, e = (int(x, 16) for x in parts[0].split("-"))
            off = int(parts[2], 16)
        except ValueError:
            continue
        out.append(MapsEntry(s, e, parts[1], off, parts[5].strip() if len(parts) > 5 else ""))
    return out


def parse_smaps_vmflags(text: str) -> list[MapsEntry]:
    """/proc/<pid>/smaps: entries with their ``VmFlags`` (e.g. ``ht`` hugetlb, ``um``/``uw``/
    ``ui`` userfaultfd missing/wp/minor, ``sd`` soft-dirty)."""
    out: list[MapsEntry] = []
    for line in text.splitlines():
        if line.startswith("VmFlags:"):
            if out:
                last = out[-1]
                out[-1] = MapsEntry(last.start, last.end, last.perms, last.offset, last.path,
                                    tuple(line.split()[1:]))
            continue
        got = parse_maps(line)
        if got:
            out.extend(got)
    return out


# --- live readers ---------------------------------------------------------------------------
def _pread(path: str, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def read_pagemap(pid: int | str, vaddr: int, n: int = 1) -> list[PagemapEntry]:
    return parse_pagemap(_pread("/proc/%s/pagemap" % pid, (vaddr >> PAGE_SHIFT) * 8, 8 * n))


def read_kpagecount(pfn: int, n: int = 1) -> list[int]:
    return parse_kpagecount(_pread("/proc/kpagecount", pfn * 8, 8 * n))


def read_kpageflags(pfn: int, n: int = 1) -> list[int]:
    return parse_kpageflags(_pread("/proc/kpageflags", pfn * 8, 8 * n))


def read_meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    with open(path) as f:
        return parse_meminfo(f.read())


def read_hugepage_pools(root: str = HUGEPAGES_SYSFS) -> dict[int, HugepagePool]:
    """{hstate bytes: pool} for every hstate this kernel offers."""
    out = {}
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return out
    for name in names:
        if not _HSTATE_DIR.match(name):
            continue
        files = {}
        for k in POOL_FILES:
            try:
                with open(os.path.join(root, name, k)) as f:
                    files[k] = f.read()
            except OSError:
                pass
        pool = parse_hugepages_dir(name, files)
        out[pool.size] = pool
    return out


def read_maps(pid: int | str) -> list[MapsEntry]:
    with open("/proc/%s/maps" % pid) as f:
        return parse_maps(f.read())


def find_vma(entries: Iterable[MapsEntry], addr: int) -> MapsEntry | None:
    for e in entries:
        if e.start <= addr < e.end:
            return e
    return None
