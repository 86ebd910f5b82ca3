"""Layer 0: which kernel version each function name in the simulator's call paths comes from.

The simulator models mainline v6.2 (the thread's base, January 2023) and the HGM series on top
of it, but its call paths (``Machine.call_path``, the operation records' ``call_path`` in
:mod:`hgmviz.ops.records`) use the function names of current mainline, where a function was
renamed since, so that a reader can find them in today's source.  This table says, for every
name that did not exist under that name in v6.2, the version it first appears in and what v6.2
called it (:func:`name_at`); :data:`HGM_ONLY` lists the functions that only the HGM series has.
Every other name in a call path exists under the same name in v6.2 (tests/test_kernel_names.py
checks that every name of every call path is classified).

Sources: the patches that introduced each name, read with the search tool, where ``seen`` says
so (the v2 HGM patch 35/46, ``20230218002819.1486479-36-jthoughton@google.com``, based on the
mm tree of February 2023, still patches ``hugetlb_mcopy_atomic_pte`` and calls
``filemap_lock_folio(mapping, idx)``); the version is the merge window of that patch.
"""
from __future__ import annotations

__all__ = ["RENAMED_SINCE_V6_2", "HGM_ONLY", "SAME_IN_V6_2", "USER_API", "name_at",
           "version_note"]

#: name -> (first mainline version with the name, what v6.2 had instead, source)
RENAMED_SINCE_V6_2 = {
    "hugetlb_mfill_atomic_pte": (
        "v6.4", "hugetlb_mcopy_atomic_pte",
        "Axel Rasmussen, 'mm: userfaultfd: rename functions for clarity + consistency' (v6.4); "
        "seen: HGM v2 35/46 patches hugetlb_mcopy_atomic_pte"),
    "mfill_atomic_hugetlb": (
        "v6.4", "__mcopy_atomic_hugetlb",
        "the same rename (v6.4)"),
    "filemap_lock_hugetlb_folio": (
        "v6.7", "find_lock_page(mapping, idx) (v6.3 and HGM v2: filemap_lock_folio(mapping, idx))",
        "seen: a08c7193e4f1 'mm/filemap: remove hugetlb special casing in filemap.c' (Sidhartha "
        "Kumar, rebased on mm-unstable of 26 Sep 2023)"),
    "alloc_hugetlb_folio": (
        "v6.3", "alloc_huge_page",
        "Sidhartha Kumar's hugetlb folio conversion (January 2023, v6.3)"),
    "hugetlb_add_to_page_cache": (
        "v6.3", "huge_add_to_page_cache",
        "seen: the rename patch, still on struct page (v6.3)"),
    "copy_user_large_folio": (
        "v6.3", "copy_user_huge_page",
        "the folio conversion of hugetlb_wp (v6.3)"),
    "do_vmi_munmap": (
        "v6.3", "do_mas_munmap",
        "seen: Liam R. Howlett, 'mmap: Change do_mas_munmap and do_mas_aligned_munmap() to use "
        "vma iterator' (29 Nov 2022, the VMA iterator series merged for v6.3)"),
    "free_huge_folio": (
        "v6.6", "free_huge_page",
        "Matthew Wilcox (Oracle), 'mm: convert free_huge_page() to free_huge_folio()' (v6.6)"),
    "vma_modify_flags_uffd": (
        "v6.7", "vma_merge() + split_vma() in userfaultfd_register()",
        "Lorenzo Stoakes, 'mm: abstract the vma_merge()/split_vma() pattern for mprotect() et "
        "al.' (v6.7); seen in use by June 2024"),
    "userfaultfd_clear_vma": (
        "v6.11", "vma_merge() + split_vma() in userfaultfd_unregister()",
        "seen: Lorenzo Stoakes, 'userfaultfd: move core VMA manipulation logic to "
        "mm/userfaultfd.c' (RFC 27 Jun 2024)"),
    "hugetlb_add_file_rmap": (
        "v6.8", "page_dup_file_rmap(page, true)",
        "David Hildenbrand, 'mm/rmap: introduce and use hugetlb_add_file_rmap()' (v6.8)"),
    "hugetlb_remove_rmap": (
        "v6.8", "page_remove_rmap(page, vma, true)",
        "David Hildenbrand, 'mm/rmap: introduce and use hugetlb_remove_rmap()' (v6.8)"),
}

#: Functions only the HGM series has (RFC v1, 24 Jun 2022; v1, 5 Jan 2023; v2, 18 Feb 2023).
HGM_ONLY = {
    "madvise_split": "HGM v1/v2 (MADV_SPLIT: 'mm: add MADV_SPLIT to enable HugeTLB HGM')",
    "madvise_collapse": "mainline v6.1 for THP; hugetlb VMAs: HGM v2 34/46 (hugetlb_collapse)",
    "hugetlb_collapse": "HGM v2 34/46 ('hugetlb: add MADV_COLLAPSE for hugetlb')",
    "hugetlb_alloc_largest_pte": "HGM v2 (the largest aligned leaf for UFFDIO_CONTINUE)",
}


#: Call-path names that v6.2 has under the same name (and current mainline still has).
SAME_IN_V6_2 = frozenset("""
    __unmap_hugepage_range copy_hugetlb_page_range copy_page_range copy_process copy_vma
    do_exit do_madvise do_mmap do_mprotect_pkey do_truncate dup_mmap dup_userfaultfd exit_mmap
    filemap_lock_folio folio_lock fput free_pgtables handle_mm_fault huge_pmd_share
    huge_ptep_clear_flush hugepage_add_new_anon_rmap hugetlb_change_protection hugetlb_fault
    hugetlb_file_setup hugetlb_free_pgd_range hugetlb_no_page hugetlb_reserve_pages
    hugetlb_unreserve_pages hugetlb_unshare_all_pmds hugetlb_vm_op_close hugetlb_vmdelete_list
    hugetlb_vmtruncate hugetlb_wp hugetlbfs_evict_inode hugetlbfs_fallocate hugetlbfs_file_mmap
    hugetlbfs_punch_hole hugetlbfs_setattr hugetlbfs_zero_partial_page madvise_dontneed_free
    madvise_remove madvise_vma_behavior madvise_walk_vmas mm_alloc move_hugetlb_page_tables
    move_vma mprotect_fixup mremap_to page_move_anon_rmap pgd_alloc remove_inode_hugepages
    unmap_ref_private unmap_vmas userfaultfd_register userfaultfd_unregister userfaultfd_wake
    vfs_fallocate wake_userfault zap_page_range_single
""".split())

#: Names in call paths that are the user's side (syscalls, ioctls) or the simulator's own step.
USER_API = frozenset("""
    UFFDIO_API UFFDIO_CONTINUE UFFDIO_COPY UFFDIO_REGISTER UFFDIO_UNREGISTER UFFDIO_WAKE close
    exec fallocate fork ftruncate madvise memfd_create mprotect mremap munmap userfaultfd inject
""".split())


def name_at(name: str, version: str = "v6.2") -> str:
    """What ``version`` ("v6.2" only, or any later "vX.Y") calls the function the call paths
    name ``name``: the v6.2 name when ``name`` is newer than ``version``, else ``name``."""
    if not isinstance(name, str):
        raise TypeError("name must be a function name (str), not %r" % (name,))
    entry = RENAMED_SINCE_V6_2.get(name)
    if entry is None:
        return name
    since = tuple(int(x) for x in entry[0].lstrip("v").split("."))
    want = tuple(int(x) for x in str(version).lstrip("v").split(".")[:2])
    return entry[1] if want < since else name


def version_note(name: str) -> str:
    """One line on where ``name`` comes from, for a call path's reader."""
    if name in RENAMED_SINCE_V6_2:
        since, old, _ = RENAMED_SINCE_V6_2[name]
        return "%s: mainline since %s; v6.2 has %s" % (name, since, old)
    if name in HGM_ONLY:
        return "%s: %s" % (name, HGM_ONLY[name])
    if name in SAME_IN_V6_2:
        return "%s: the same name in v6.2 and current mainline" % name
    if name in USER_API:
        return "%s: the user's call (a syscall or ioctl), not a kernel function" % name
    raise KeyError("%r is not a name of the simulator's call paths" % (name,))
