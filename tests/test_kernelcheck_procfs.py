"""The /proc and /sys readers of hgmviz.kernelcheck, on bytes recorded from a real kernel.

tests/data/kernelcheck/ was recorded on Linux 6.18.44 x86-64 by
``python -m hgmviz.kernelcheck.record tests/data/kernelcheck`` (see manifest.json): a 4 MiB
hugetlb memfd (2 MiB hstate) mapped twice in one process, its first hugepage touched through
both mappings, the second mapping registered for userfaultfd MINOR faults.  These tests run
anywhere: no root, no Linux needed.
"""
from __future__ import annotations

import json
import os
import struct

import pytest

from hgmviz.kernelcheck import procfs

DATA = os.path.join(os.path.dirname(__file__), "data", "kernelcheck")


def _bytes(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def _text(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


@pytest.fixture(scope="module")
def manifest():
    return json.loads(_text("manifest.json"))


def test_pagemap_shows_one_hugepage_as_512_present_entries(manifest):
    entries = procfs.parse_pagemap(_bytes("pagemap.bin"))
    assert len(entries) == 1024                      # 4 MiB of 4 KiB pages
    mapped, unmapped = entries[:512], entries[512:]
    assert all(e.present for e in mapped)
    assert not any(e.present for e in unmapped)
    assert all(e.pfn is None for e in unmapped)
    head = manifest["head_pfn"]
    assert [e.pfn for e in mapped] == list(range(head, head + 512))   # physically contiguous
    assert all(e.file_shared for e in mapped)        # bit 61: file page / shared
    assert not any(e.exclusive for e in mapped)      # bit 56: mapped twice, so not exclusive
    assert not any(e.swapped or e.uffd_wp for e in mapped)


def test_pagemap_entry_bits():
    raw = (1 << 63) | (1 << 61) | (1 << 57) | (1 << 56) | (1 << 55) | 0x1234
    e = procfs.parse_pagemap_entry(raw)
    assert e.present and e.file_shared and e.uffd_wp and e.exclusive and e.soft_dirty
    assert e.pfn == 0x1234
    assert procfs.parse_pagemap_entry(0).pfn is None
    # a PFN field uses bits 0-54 only
    assert procfs.parse_pagemap_entry((1 << 63) | ((1 << 55) - 1)).pfn == (1 << 55) - 1
    with pytest.raises(ValueError):
        procfs.parse_pagemap(b"\0" * 7)


def test_kpagecount_same_for_head_and_every_tail(manifest):
    counts = procfs.parse_kpagecount(_bytes("kpagecount.bin"))
    assert len(counts) == 512
    # domain.md 2.2: hugetlb uses only the folio-level counters, so head and all tails read
    # folio_entire_mapcount(): here 2 (two PMD entries, one per mapping).
    assert set(counts) == {manifest["facts"]["mapcount"]} == {2}


def test_kpageflags_of_the_mapped_folio():
    flags = procfs.parse_kpageflags(_bytes("kpageflags.bin"))
    head, tails = flags[0], flags[1:]
    assert procfs.decode_kpageflags(head) == ["UPTODATE", "DIRTY", "MMAP", "COMPOUND_HEAD",
                                              "HUGE"]
    assert head == 0x28818                            # as domain.md 2.3 records
    assert set(tails) == {0x30818}
    assert all("COMPOUND_TAIL" in procfs.decode_kpageflags(t) for t in tails)


def test_kpageflags_through_the_folio_lifecycle():
    states = procfs.parse_kpageflags(_bytes("kpageflags_states.bin"))
    (mh, mt), (ch, ct), (fh, ft) = states[0:2], states[2:4], states[4:6]
    assert (mh, mt) == (0x28818, 0x30818)             # mapped
    assert (ch, ct) == (0x28018, 0x30018)             # page cache only: MMAP gone
    assert (fh, ft) == (0x28000, 0x30000)             # back in the pool: UPTODATE/DIRTY gone
    assert "MMAP" not in procfs.decode_kpageflags(ch)
    assert procfs.decode_kpageflags(fh) == ["COMPOUND_HEAD", "HUGE"]
    assert procfs.decode_kpageflags(1 << 40) == ["bit40"]


def test_meminfo_and_sysfs_agree_on_the_default_pool(manifest):
    mi = procfs.parse_meminfo(_text("meminfo.txt"))
    assert mi["Hugepagesize"] == 2048                 # kB, as the file gives it
    assert isinstance(mi["MemTotal"], int) and mi["MemTotal"] > 0
    pools = procfs.meminfo_hugepages(mi)
    want = manifest["pools_at_record"][str(2 << 20)]
    assert pools == {2 << 20: want}
    assert want == {"HugePages_Total": 4, "HugePages_Free": 3, "HugePages_Rsvd": 1,
                    "HugePages_Surp": 0}


def test_hugepages_sysfs_directories(manifest):
    root = os.path.join(DATA, "hugepages")
    pools = procfs.read_hugepage_pools(root)
    assert sorted(pools) == [2 << 20, 1 << 30]
    p2 = pools[2 << 20]
    facts = manifest["facts"]["hugepages_2048kB"]
    assert (p2.nr_hugepages, p2.free_hugepages, p2.resv_hugepages) == (
        facts["nr_hugepages"], facts["free_hugepages"], facts["resv_hugepages"])
    assert p2.surplus_hugepages == 0 and p2.nr_overcommit_hugepages == 0
    assert p2.as_meminfo() == manifest["pools_at_record"][str(2 << 20)]
    assert pools[1 << 30].nr_hugepages == 0


def test_parse_hugepages_dir_and_names():
    pool = procfs.parse_hugepages_dir("hugepages-1048576kB", {
        "nr_hugepages": "3\n", "free_hugepages": "2\n", "resv_hugepages": "1\n",
        "surplus_hugepages": "0\n"})
    assert pool.size == 1 << 30 and pool.nr_hugepages == 3 and pool.free_hugepages == 2
    assert procfs.hstate_size_from_dirname("/sys/kernel/mm/hugepages/hugepages-2048kB/") == 2 << 20
    with pytest.raises(ValueError):
        procfs.hstate_size_from_dirname("hugepages-2M")
    assert procfs.read_hugepage_pools("/nonexistent/hgmviz") == {}


def test_maps_and_smaps_vmflags(manifest):
    maps = procfs.parse_maps(_text("maps.txt"))
    a, b = manifest["a"], manifest["b"]
    va = procfs.find_vma(maps, a + 0x5000)
    vb = procfs.find_vma(maps, b)
    assert (va.start, va.end - va.start, va.perms) == (a, 4 << 20, "rw-s")
    assert vb.start == b and "memfd:hgmviz" in vb.path
    assert procfs.find_vma(maps, 0) is None
    smaps = {e.start: e for e in procfs.parse_smaps_vmflags(_text("smaps.txt"))}
    assert "ht" in smaps[a].vmflags and "ui" not in smaps[a].vmflags     # hugetlb
    assert {"ht", "ui", "sh"} <= set(smaps[b].vmflags)                    # + uffd minor
    assert len(smaps) == len(maps)


def test_u64_layout_is_little_endian():
    data = struct.pack("<2Q", 7, 1 << 63)
    assert procfs.parse_kpagecount(data) == [7, 1 << 63]
