"""The cross-check's scenarios: the data table (``SCENARIOS``) and its lookup.

The types a scenario is made of (:class:`CheckScenario`, :class:`Probe`, :class:`CheckStep`,
:class:`At`), what ``expect`` / ``maps`` / ``pool`` mean, and the step builders used below live
in :mod:`hgmviz.kernelcheck.checkspec`; every name is re-exported here.

Every expectation below names the rule it comes from (section numbers of domain.md).
"""
from __future__ import annotations

from .checkspec import *  # noqa: F401,F403  (the types and step builders, re-exported)
from .checkspec import __all__ as _spec_names

__all__ = list(_spec_names) + ["SCENARIOS", "get_scenario", "scenario_names"]


# --- the scenarios ----------------------------------------------------------------------------
S: list[CheckScenario] = []

# 1
S.append(CheckScenario(
    "fault", "A fault maps the whole hugepage with one PMD entry",
    "§2.2: hugetlb_no_page() -> hugetlb_add_file_rmap(): entire_mapcount +1; kpagecount is "
    "the same for head and every tail. §2.1/meminfo: a fault takes a pool page and consumes "
    "the mapping's reservation.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("A1", "p", "a", H2M + 0x7000)),
    (
        *prologue(4 * MiB, maps={"A0": None, "A1": None}, pool=(0, +2),
                  why="MAP_SHARED reserves one page per hugepage of the range "
                      "(hugetlb_reserve_pages)"),
        touch("p", At("a", 0x5000), maps={"A0": 1}, pool=(-1, +1),
              why="the write fault maps the page at PMD level"),
        touch("p", At("a", 0x5000), maps={"A0": 1}, pool=(-1, +1),
              why="already mapped: no fault, nothing changes"),
        touch("p", At("a", H2M + 0x7000), write=False, maps={"A1": 1}, pool=(-2, 0),
              why="a read fault maps the shared page just the same"),
    )))

# 2
S.append(CheckScenario(
    "second_mapping", "Each PMD that maps the folio adds one to its mapcount",
    "§2.2: one hugetlb_add_file_rmap() per hstate-level entry, whether the entries are in one "
    "process or several; mapcount counts page-table entries, not processes.",
    {H2M: 4},
    (P("A", "p", "a", 0x5000), P("B", "p", "b", 0x1000), P("C", "q", "c", 0x3000)),
    (
        *prologue(4 * MiB, 2 * MiB, pool=(0, +1)),
        mmap("p", "b", "f", 2 * MiB, pool=(0, +1),
             why="the range is already reserved in the file's resv_map: no new reservation"),
        touch("p", At("a", 0x5000), maps={"A": 1, "B": None}, pool=(-1, 0)),
        touch("p", At("b", 0x1000), maps={"A": 2, "B": 2}, pool=(-1, 0),
              why="the page is in the page cache: mapped again, no allocation"),
        spawn("q"),
        mmap("q", "c", "f", 2 * MiB),
        touch("q", At("c", 0x3000), maps={"A": 3, "B": 3, "C": 3}),
        exit_("q", maps={"A": 2, "B": 2}, why="exit zaps q's PMD: -1"),
    )))

# 3
S.append(CheckScenario(
    "munmap_aligned", "munmap of whole hugepages removes their entries; the page cache stays",
    "§2.2: zap -1 per cleared entry; §2.1: the folio stays in the page cache (HugePages_Free "
    "unchanged) and the shared reservation stays with the file.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("A1", "p", "a", H2M + 0x5000), P("B0", "p", "b", 0x5000)),
    (
        *prologue(4 * MiB, pool=(0, +2)),
        mmap("p", "b", "f", 2 * MiB),
        touch("p", At("a", 0x5000), pool=(-1, +1)),
        touch("p", At("a", H2M + 0x5000), pool=(-2, 0)),
        touch("p", At("b", 0x5000), maps={"A0": 2, "A1": 1, "B0": 2}, pool=(-2, 0)),
        munmap("p", At("a"), 2 * MiB, maps={"A0": None, "A1": 1, "B0": 1}, pool=(-2, 0)),
        munmap("p", At("a", H2M), 2 * MiB, maps={"A1": None}, pool=(-2, 0)),
    )))

# 4
S.append(CheckScenario(
    "munmap_unaligned", "munmap not aligned to the hugepage fails with EINVAL",
    "§2.2: hugetlb_vm_op_split() refuses a split inside a hugepage (start or end) with EINVAL; "
    "nothing is unmapped.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000),),
    (
        *prologue(4 * MiB),
        touch("p", At("a", 0x5000), maps={"A0": 1}, pool=(-1, +1)),
        munmap("p", At("a", 0x1000), 2 * MiB, expect="EINVAL", why="unaligned start"),
        munmap("p", At("a"), 4 * KiB, expect="EINVAL", why="aligned start, 4 KiB: end unaligned"),
        munmap("p", At("a"), 2 * MiB + 4 * KiB, expect="EINVAL", why="end inside the 2nd page"),
        touch("p", At("a", 0x5000), maps={"A0": 1}, pool=(-1, +1), why="still mapped"),
    )))

# 5
S.append(CheckScenario(
    "madv_dontneed_aligned", "MADV_DONTNEED on a whole hugepage zaps its entry only",
    "§2.2 MADV_DONTNEED: aligned start, end rounded down; the zap is -1; the folio stays in "
    "the page cache, so the next touch maps it again without allocating.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("B0", "p", "b", 0x5000)),
    (
        *prologue(4 * MiB, pool=(0, +2)),
        mmap("p", "b", "f", 2 * MiB),
        touch("p", At("a", 0x5000), pool=(-1, +1)),
        touch("p", At("b", 0x5000), maps={"A0": 2, "B0": 2}, pool=(-1, +1)),
        madvise("p", At("a"), 2 * MiB, maps={"A0": None, "B0": 1}, pool=(-1, +1)),
        touch("p", At("a", 0x5000), maps={"A0": 2, "B0": 2}, pool=(-1, +1)),
    )))

# 6
S.append(CheckScenario(
    "madv_dontneed_unaligned", "MADV_DONTNEED with an unaligned start fails with EINVAL",
    "§2.2 MADV_DONTNEED: start must be hugepage-aligned, otherwise EINVAL.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000),),
    (
        *prologue(4 * MiB),
        touch("p", At("a", 0x5000), maps={"A0": 1}),
        madvise("p", At("a", 0x1000), 2 * MiB, expect="EINVAL", maps={"A0": 1}),
        madvise("p", At("a", 0x1000), 4 * KiB, expect="EINVAL", maps={"A0": 1}),
    )))

# 7
S.append(CheckScenario(
    "madv_dontneed_rounding", "MADV_DONTNEED rounds the end down: 4 KiB is a no-op",
    "§2.2 MADV_DONTNEED: end = ALIGN_DOWN(end, hugepage size); start == end returns 0 without "
    "doing anything; 2 MiB + 4 KiB zaps only the first hugepage.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("A1", "p", "a", H2M + 0x5000)),
    (
        *prologue(4 * MiB),
        touch("p", At("a", 0x5000)),
        touch("p", At("a", H2M + 0x5000), maps={"A0": 1, "A1": 1}, pool=(-2, 0)),
        madvise("p", At("a"), 4 * KiB, maps={"A0": 1, "A1": 1}, why="silent no-op"),
        madvise("p", At("a"), 2 * MiB + 4 * KiB, maps={"A0": None, "A1": 1}, pool=(-2, 0)),
    )))

# 7b
S.append(CheckScenario(
    "madv_dontneed_hole", "MADV_DONTNEED over a hole zaps the mapped parts, then fails with ENOMEM",
    "madvise_walk_vmas() (mm/madvise.c): every VMA of the range gets the advice in turn; a hole "
    "only sets unmapped_error = -ENOMEM, which is returned once the walk is done, so the pages "
    "on both sides of the hole are zapped although the call fails.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("B0", "p", "b", 0x5000)),
    (
        *prologue(4 * MiB, 2 * MiB, addr=PUD_ALIGNED, pool=(0, +1)),
        mmap("p", "b", "f", 2 * MiB, offset=2 * MiB, addr=PUD_ALIGNED + 4 * MiB, pool=(0, +2),
             why="2 MiB of nothing between a and b"),
        touch("p", At("a", 0x5000), pool=(-1, +1)),
        touch("p", At("b", 0x5000), maps={"A0": 1, "B0": 1}, pool=(-2, 0)),
        madvise("p", At("a"), 6 * MiB, expect="ENOMEM", maps={"A0": None, "B0": None},
                pool=(-2, 0), why="both sides zapped, then -ENOMEM for the hole"),
        madvise("p", At("a", 2 * MiB), 2 * MiB, expect="ENOMEM", maps={"A0": None, "B0": None},
                pool=(-2, 0), why="only the hole: no VMA, ENOMEM"),
        touch("p", At("a", 0x5000), maps={"A0": 1, "B0": None}, pool=(-2, 0),
              why="the folio stayed in the page cache"),
    )))


def _minor_setup(extra_pages_in_cache=(0,)):
    """p maps f twice: b (plain) to fill the page cache, a registered for MINOR faults."""
    steps = [*prologue(4 * MiB, bind="b", pool=(0, +2)),
             mmap("p", "a", "f", 4 * MiB, pool=(0, +2))]
    for n, i in enumerate(extra_pages_in_cache, 1):
        steps.append(touch("p", At("b", i * H2M + 0x5000), pool=(-n, 2 - n)))
    steps.append(register("p", At("a"), 4 * MiB, "minor"))
    return steps


# 8
S.append(CheckScenario(
    "uffd_minor_continue", "A MINOR userfault, resolved with UFFDIO_CONTINUE at 2 MiB",
    "§2.2: UFFDIO_CONTINUE -> hugetlb_mfill_atomic_pte() maps the page-cache folio: +1. A "
    "MINOR fault is raised only for a page already in the page cache; an absent page is "
    "allocated by the normal fault path.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("B0", "p", "b", 0x5000), P("A1", "p", "a", H2M + 0x5000)),
    tuple(_minor_setup()) + (
        touch("p", At("a", 0x5000), expect="userfault:minor", maps={"A0": None, "B0": 1},
              pool=(-1, +1)),
        cont("p", At("a"), 2 * MiB, maps={"A0": 2, "B0": 2}, pool=(-1, +1)),
        touch("p", At("a", 0x5000), maps={"A0": 2}, why="present now: no fault"),
        touch("p", At("a", H2M + 0x5000), maps={"A1": 1}, pool=(-2, 0),
              why="not in the page cache: no MINOR fault, a normal allocation"),
    ),
    userfaultfd=True))

# 9
S.append(CheckScenario(
    "uffd_continue_4k", "UFFDIO_CONTINUE below the hugepage size fails with EINVAL",
    "§4.5 / mainline hugetlb_mfill_atomic_pte(): start and length must be multiples of the "
    "VMA's hugepage size (no HGM on mainline), otherwise EINVAL.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("B0", "p", "b", 0x5000)),
    tuple(_minor_setup()) + (
        cont("p", At("a"), 4 * KiB, expect="EINVAL", maps={"A0": None, "B0": 1}),
        cont("p", At("a", 0x1000), 2 * MiB, expect="EINVAL", maps={"A0": None}),
        cont("p", At("a"), 2 * MiB, maps={"A0": 2, "B0": 2}),
    ),
    userfaultfd=True))

# 10
S.append(CheckScenario(
    "uffd_continue_eexist", "UFFDIO_CONTINUE on a present entry fails with EEXIST",
    "mainline hugetlb_mfill_atomic_pte(): the destination entry must be none, otherwise "
    "EEXIST; the mapcount does not change.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("B0", "p", "b", 0x5000)),
    tuple(_minor_setup()) + (
        cont("p", At("a"), 2 * MiB, maps={"A0": 2, "B0": 2}),
        cont("p", At("a"), 2 * MiB, expect="EEXIST", maps={"A0": 2, "B0": 2}),
    ),
    userfaultfd=True))

# 11
S.append(CheckScenario(
    "uffd_continue_not_in_cache", "UFFDIO_CONTINUE needs the page in the page cache",
    "mainline hugetlb_mfill_atomic_pte(), is_continue: no folio in the page cache -> EFAULT. "
    "fs/userfaultfd.c: when some pages were mapped before the failure, the ioctl returns "
    "EAGAIN with uffdio_continue.mapped = bytes mapped.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("A1", "p", "a", H2M + 0x5000), P("B0", "p", "b", 0x5000)),
    tuple(_minor_setup()) + (
        cont("p", At("a", H2M), 2 * MiB, expect="EFAULT", maps={"A0": None, "A1": None},
             pool=(-1, +1)),
        cont("p", At("a"), 4 * MiB, expect="EAGAIN mapped=0x200000",
             maps={"A0": 2, "A1": None, "B0": 2}, pool=(-1, +1)),
    ),
    userfaultfd=True))

# 12
S.append(CheckScenario(
    "uffd_missing", "A MISSING userfault only for pages absent from the page cache",
    "hugetlb_no_page(): a page not in the page cache in a VM_UFFD_MISSING VMA goes to "
    "handle_userfault() (nothing allocated); a page already in the page cache is mapped "
    "normally.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("B0", "p", "b", 0x5000)),
    (
        *prologue(4 * MiB, pool=(0, +2)),
        mmap("p", "b", "f", 4 * MiB),
        register("p", At("a"), 4 * MiB, "missing"),
        touch("p", At("a", 0x5000), expect="userfault:missing", maps={"A0": None},
              pool=(0, +2)),
        touch("p", At("b", 0x5000), maps={"A0": None, "B0": 1}, pool=(-1, +1)),
        touch("p", At("a", 0x5000), maps={"A0": 2, "B0": 2}, pool=(-1, +1)),
    ),
    userfaultfd=True))

# 13
S.append(CheckScenario(
    "fork_shared_lazy", "fork() does not copy MAP_SHARED hugetlb page tables",
    "§2.4: since bcd51a3c679d (v6.0) vma_needs_copy() is false for a plain MAP_SHARED hugetlb "
    "VMA: the child starts with nothing mapped and the mapcount does not change; the child's "
    "own faults add entries.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("A1", "p", "a", H2M + 0x5000),
     P("C0", "c", "a", 0x5000), P("C1", "c", "a", H2M + 0x5000)),
    (
        *prologue(4 * MiB),
        touch("p", At("a", 0x5000), maps={"A0": 1, "A1": None}, pool=(-1, +1)),
        fork("p", "c", maps={"A0": 1, "C0": None, "C1": None}),
        touch("c", At("a", 0x5000), maps={"A0": 2, "C0": 2}),
        touch("c", At("a", H2M + 0x5000), maps={"A1": None, "C1": 1}, pool=(-2, 0)),
        exit_("c", maps={"A0": 1, "A1": None}, pool=(-2, 0),
              why="exit zaps the child's entries; the pages stay in the page cache"),
    )))

# 14
S.append(CheckScenario(
    "fork_uffd_wp_event_fork", "fork() copies page tables of a uffd-wp VMA (EVENT_FORK)",
    "§2.4: vma_needs_copy() is true when the child VMA keeps VM_UFFD_WP, which it does when "
    "the userfaultfd has UFFD_FEATURE_EVENT_FORK: copy_hugetlb_page_range() copies every "
    "present entry, +1 each (hugetlb_add_file_rmap).",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("A1", "p", "a", H2M + 0x5000),
     P("C0", "c", "a", 0x5000), P("C1", "c", "a", H2M + 0x5000)),
    (
        *prologue(4 * MiB),
        touch("p", At("a", 0x5000), maps={"A0": 1, "A1": None}, pool=(-1, +1)),
        register("p", At("a"), 4 * MiB, "wp", event_fork=True),
        fork("p", "c", maps={"A0": 2, "C0": 2, "C1": None, "A1": None}),
        exit_("c", maps={"A0": 1}),
    ),
    userfaultfd=True))

# 15
S.append(CheckScenario(
    "fork_uffd_wp_no_event_fork", "Without EVENT_FORK a uffd-wp VMA is not copied at fork",
    "§2.4 [LIVE]: without UFFD_FEATURE_EVENT_FORK the child VMA loses its userfaultfd flags "
    "(dup_userfaultfd), so vma_needs_copy() is false: lazy, as for plain MAP_SHARED.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("C0", "c", "a", 0x5000)),
    (
        *prologue(4 * MiB),
        touch("p", At("a", 0x5000), maps={"A0": 1}, pool=(-1, +1)),
        register("p", At("a"), 4 * MiB, "wp"),
        fork("p", "c", maps={"A0": 1, "C0": None}),
        touch("c", At("a", 0x5000), maps={"A0": 2, "C0": 2}),
        exit_("c", maps={"A0": 1}),
    ),
    userfaultfd=True))

# 16
S.append(CheckScenario(
    "fork_uffd_minor_child", "A fork child without EVENT_FORK faults normally where the "
    "parent gets MINOR userfaults",
    "§2.4 [LIVE]/dup_userfaultfd(): without EVENT_FORK the child's VMA has no userfaultfd, so "
    "its fault maps the page-cache folio (+1) while the parent's still goes to userfaultfd.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("B0", "p", "b", 0x5000), P("C0", "c", "a", 0x5000)),
    tuple(_minor_setup()) + (
        fork("p", "c", maps={"A0": None, "B0": 1, "C0": None}),
        touch("c", At("a", 0x5000), maps={"B0": 2, "C0": 2}),
        touch("p", At("a", 0x5000), expect="userfault:minor", maps={"A0": None, "B0": 2}),
        exit_("c", maps={"B0": 1}),
    ),
    userfaultfd=True))

# 17
S.append(CheckScenario(
    "child_exit", "A child's exit removes exactly the child's entries",
    "§2.2: exit -> exit_mmap -> __unmap_hugepage_range(): -1 per entry the child had; the "
    "pages stay in the page cache (HugePages_Free unchanged).",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("A1", "p", "a", H2M + 0x5000),
     P("C0", "c", "a", 0x5000), P("C1", "c", "a", H2M + 0x5000)),
    (
        *prologue(4 * MiB, pool=(0, +2)),
        fork("p", "c"),
        touch("c", At("a", 0x5000), pool=(-1, +1)),
        touch("c", At("a", H2M + 0x5000), maps={"C0": 1, "C1": 1, "A0": None, "A1": None},
              pool=(-2, 0)),
        touch("p", At("a", 0x5000), maps={"A0": 2, "C0": 2}),
        exit_("c", maps={"A0": 1, "A1": None}, pool=(-2, 0)),
        exit_("p", pool=(-2, 0), why="the memfd still holds the pages"),
    )))

# 18
S.append(CheckScenario(
    "pmd_sharing", "Shared PMD tables: a second process maps pages without changing mapcount",
    "§2.2: with a 2 MiB hstate and a MAP_SHARED VMA covering a whole 1 GiB-aligned range, "
    "huge_pmd_share() attaches the other mm's PMD table: the entries (and their mapcount) are "
    "shared, so a fork child or another process sees pages it never faulted, and its faults "
    "appear in the others; mapcount counts entries, not processes.",
    {H2M: 4},
    (P("A4", "p", "a", 4 * MiB + 0x5000), P("A6", "p", "a", 6 * MiB + 0x1000),
     P("A8", "p", "a", 8 * MiB + 0x2000),
     P("C4", "c", "a", 4 * MiB + 0x5000), P("C6", "c", "a", 6 * MiB + 0x1000),
     P("Q4", "q", "b", 4 * MiB + 0x5000), P("Q8", "q", "b", 8 * MiB + 0x2000)),
    (
        *prologue(GiB, addr=PUD_ALIGNED, noreserve=True, pool=(0, 0),
                  why="MAP_NORESERVE: no reservation for the 512 pages"),
        touch("p", At("a", 4 * MiB + 0x5000), maps={"A4": 1, "A6": None, "A8": None},
              pool=(-1, 0)),
        fork("p", "c", maps={"C4": None, "C6": None}, why="lazy: nothing copied"),
        touch("c", At("a", 6 * MiB + 0x1000), maps={"A4": 1, "A6": 1, "C4": 1, "C6": 1},
              pool=(-2, 0), why="the child's fault shares p's PMD table"),
        spawn("q"),
        mmap("q", "b", "f", GiB, addr=PUD_ALIGNED, noreserve=True),
        touch("q", At("b", 8 * MiB + 0x2000), maps={"A8": 1, "Q4": 1, "Q8": 1}, pool=(-3, 0),
              why="an unrelated process with the same file range shares the table too"),
        exit_("c", maps={"A4": 1, "A6": 1, "A8": 1, "Q4": 1}),
        exit_("q", maps={"A4": 1, "A6": 1, "A8": 1}),
    )))

# 18b
S.append(CheckScenario(
    "pmd_sharing_same_process", "PMD sharing also joins two VMAs of one process",
    "§2.2: huge_pmd_share() looks for any VMA of the file mapping the same offsets with the "
    "same flags (i_mmap), including one in the same mm: the second VMA's PUD entry points at "
    "the first one's PMD table, so a fault through either shows in both and the mapcount "
    "stays 1.",
    {H2M: 4},
    (P("A", "p", "a", 4 * MiB + 0x5000), P("B", "p", "b", 4 * MiB + 0x5000),
     P("A6", "p", "a", 6 * MiB), P("B6", "p", "b", 6 * MiB)),
    (
        *prologue(GiB, addr=PUD_ALIGNED, noreserve=True),
        mmap("p", "b", "f", GiB, addr=PUD_ALIGNED + 2 * GiB, noreserve=True, pool=(0, 0)),
        touch("p", At("a", 4 * MiB + 0x5000), maps={"A": 1, "B": None}, pool=(-1, 0),
              why="b has no page table below its PUD entry yet"),
        touch("p", At("b", 4 * MiB + 0x5000), maps={"A": 1, "B": 1}, pool=(-1, 0),
              why="b's fault attaches a's PMD table: the entry exists already, no +1"),
        touch("p", At("b", 6 * MiB), maps={"A6": 1, "B6": 1}, pool=(-2, 0)),
        munmap("p", At("b"), GiB, maps={"A": 1, "A6": 1, "B": None, "B6": None}, pool=(-2, 0),
               why="unmapping b only drops its reference to the shared table"),
    )))

# 19
S.append(CheckScenario(
    "close_releases_page_cache", "The last close frees the page cache back to the pool",
    "§2.1: removing the folios from the page cache at the last reference to the memfd returns "
    "them to the pool (HugePages_Free back) and drops the file's reservations.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000),),
    (
        *prologue(4 * MiB, pool=(0, +2)),
        touch("p", At("a", 0x5000), pool=(-1, +1)),
        touch("p", At("a", H2M + 0x5000), maps={"A0": 1}, pool=(-2, 0)),
        munmap("p", At("a"), 4 * MiB, maps={"A0": None}, pool=(-2, 0),
               why="unmapped, but still in the page cache"),
        close("f", pool=(0, 0)),
    )))

# 20
S.append(CheckScenario(
    "close_while_mapped", "close() while still mapped frees nothing: the VMA holds the file",
    "§2.1 [INFERRED from the VFS]: a VMA keeps a reference to its struct file; the page cache "
    "goes only when the last reference (fd or mapping) goes, here at munmap.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000),),
    (
        *prologue(4 * MiB, pool=(0, +2)),
        touch("p", At("a", 0x5000), maps={"A0": 1}, pool=(-1, +1)),
        close("f", maps={"A0": 1}, pool=(-1, +1)),
        touch("p", At("a", H2M + 0x5000), pool=(-2, 0), why="the mapping still works"),
        munmap("p", At("a"), 4 * MiB, maps={"A0": None}, pool=(0, 0)),
    )))

# 21
S.append(CheckScenario(
    "reservations", "HugePages_Rsvd: taken at mmap, consumed by faults, kept after munmap",
    "hugetlb_reserve_pages() at mmap of a MAP_SHARED range reserves the pages not yet in the "
    "file's resv_map; a fault consumes one; munmap keeps them (they belong to the file); a "
    "second mapping of a reserved range adds nothing; the last close releases them.",
    {H2M: 4},
    (P("A0", "p", "a", 0x5000), P("B1", "p", "b", H2M + 0x5000)),
    (
        *prologue(8 * MiB, pool=(0, +4)),
        touch("p", At("a", 0x5000), maps={"A0": 1}, pool=(-1, +3)),
        munmap("p", At("a"), 8 * MiB, maps={"A0": None}, pool=(-1, +3)),
        mmap("p", "b", "f", 4 * MiB, pool=(-1, +3)),
        touch("p", At("b", H2M + 0x5000), maps={"B1": 1}, pool=(-2, +2)),
        munmap("p", At("b"), 4 * MiB, maps={"B1": None}, pool=(-2, +2)),
        close("f", pool=(0, 0)),
    )))

# 22
S.append(CheckScenario(
    "map_noreserve", "MAP_NORESERVE: no reservation, and SIGBUS when the pool runs dry",
    "hugetlb_reserve_pages() skips VM_NORESERVE; a fault then allocates from the free pool and "
    "gets VM_FAULT_SIGBUS when it is empty; a reserving mmap that cannot reserve fails with "
    "ENOMEM.",
    {H2M: 2},
    (P("A0", "p", "a", 0x5000), P("A1", "p", "a", H2M + 0x5000),
     P("A2", "p", "a", 2 * H2M + 0x5000)),
    (
        *prologue(8 * MiB, noreserve=True, pool=(0, 0)),
        touch("p", At("a", 0x5000), maps={"A0": 1}, pool=(-1, 0)),
        touch("p", At("a", H2M + 0x5000), maps={"A1": 1}, pool=(-2, 0)),
        touch("p", At("a", 2 * H2M + 0x5000), expect="SIGBUS", maps={"A2": None},
              pool=(-2, 0)),
        mmap("p", "b", "f", 8 * MiB, expect="ENOMEM", pool=(-2, 0),
             why="pages 2 and 3 would need reservations the empty pool cannot give"),
    ),
    exclusive=True))

# 23
S.append(CheckScenario(
    "hugetlb_1g", "A 1 GiB hugepage: one PUD entry; 2 MiB is unaligned for it",
    "§2.2 at the 1 GiB hstate: a fault maps the whole folio with one PUD entry, kpagecount is "
    "the same for head and all 262,143 tails; munmap of 2 MiB is unaligned (EINVAL); "
    "MADV_DONTNEED of 2 MiB rounds down to nothing (no-op).",
    {H1G: 1},
    (P("A", "p", "a", 0x5000), P("A2", "p", "a", 2 * MiB + 0x1000), P("B", "p", "b", 0x3000)),
    (
        *prologue(GiB, hstate=H1G, pool=(0, +1)),
        touch("p", At("a", 0x5000), maps={"A": 1, "A2": 1}, pool=(-1, 0)),
        mmap("p", "b", "f", GiB),
        touch("p", At("b", 0x3000), maps={"A": 2, "A2": 2, "B": 2}),
        munmap("p", At("a"), 2 * MiB, expect="EINVAL", maps={"A": 2}),
        madvise("p", At("a"), 2 * MiB, maps={"A": 2, "A2": 2}, why="rounded down to 0"),
        madvise("p", At("a"), GiB, maps={"A": None, "A2": None, "B": 1}, pool=(-1, 0)),
    ),
    hstate=H1G))

# --- issue 13: MAP_PRIVATE and copy on write (docs/kernel-notes/issue13.md §1) ---------------
# A read of a private page is made only before any fork: a read through process_vm_readv pins
# the page, and pinning an anonymous page that two processes map unshares it (a copy), which a
# CPU load would not do.
S.append(CheckScenario(
    "private_cow_pagecache", "MAP_PRIVATE over a page-cache page: read maps it, write copies it",
    "hugetlb_reserve_pages gives a private VMA its own reservation per page; hugetlb_no_page maps "
    "the page the page cache holds read-only (kpagecount 2); a write goes through hugetlb_wp into "
    "a new anonymous folio, consuming the reservation (each side 1); munmap frees the copy.",
    {H2M: 2},
    (P("S", "p", "s", 0x5000), P("Q", "p", "q", 0x5000)),
    (
        *prologue(2 * MiB, bind="s", pool=(0, +1)),
        touch("p", At("s", 0x5000), maps={"S": 1}, pool=(-1, 0)),
        mmap("p", "q", "f", 2 * MiB, shared=False, pool=(-1, +1),
             why="a private VMA reserves every page of its range"),
        touch("p", At("q", 0x5000), write=False, maps={"S": 2, "Q": 2}, pool=(-1, +1)),
        touch("p", At("q", 0x5000), maps={"S": 1, "Q": 1}, pool=(-2, 0)),
        munmap("p", At("q"), 2 * MiB, maps={"Q": None}, pool=(-1, 0)),
    )))

S.append(CheckScenario(
    "private_anon_fault", "MAP_PRIVATE without a page-cache page: an anonymous folio",
    "hugetlb_no_page allocates for a private VMA a folio that never enters the page cache: a "
    "shared mapping of the same index then gets a different page.",
    {H2M: 2},
    (P("Q", "p", "q", 0x3000), P("S", "p", "s", 0x3000)),
    (
        *prologue(2 * MiB, bind="q", shared=False, pool=(0, +1)),
        touch("p", At("q", 0x3000), write=False, maps={"Q": 1}, pool=(-1, 0)),
        mmap("p", "s", "f", 2 * MiB, pool=(-1, +1)),
        touch("p", At("s", 0x3000), maps={"Q": 1, "S": 1}, pool=(-2, 0),
              why="a different page: kpagecount stays 1 on both"),
        touch("p", At("q", 0x3000), maps={"Q": 1, "S": 1}, pool=(-2, 0),
              why="exclusive anonymous page: hugetlb_wp reuses it"),
    )))

S.append(CheckScenario(
    "private_fork_cow", "fork shares a private page; the child's write copies it",
    "copy_hugetlb_page_range copies a private VMA that has an anon_vma and write-protects both "
    "sides (kpagecount 2); the child, which owns no reservation, copies on its write; its exit "
    "frees the copy.",
    {H2M: 2},
    (P("A", "p", "q", 0x1000), P("C", "c", "q", 0x1000)),
    (
        *prologue(2 * MiB, bind="q", shared=False, pool=(0, +1)),
        touch("p", At("q", 0x1000), maps={"A": 1}, pool=(-1, 0)),
        fork("p", "c", maps={"A": 2, "C": 2}),
        touch("c", At("q", 0x1000), maps={"A": 1, "C": 1}, pool=(-2, 0)),
        exit_("c", pool=(-1, 0)),
    )))

S.append(CheckScenario(
    "private_cow_unmap_ref", "The owner's COW with an empty pool unmaps the child's page",
    "hugetlb_wp: the reservation owner cannot get a page for the copy of a page it shares with "
    "a child, so unmap_ref_private unmaps the page from the child (HPAGE_RESV_UNMAPPED) and the "
    "owner keeps it; the child's next fault there is SIGBUS.",
    {H2M: 1},
    (P("A", "p", "q", 0x1000), P("C", "c", "q", 0x1000)),
    (
        *prologue(2 * MiB, bind="q", shared=False, pool=(0, +1)),
        touch("p", At("q", 0x1000), maps={"A": 1}, pool=(-1, 0)),
        fork("p", "c", maps={"A": 2, "C": 2}),
        touch("p", At("q", 0x1000), maps={"A": 1, "C": None}, pool=(-1, 0)),
        touch("c", At("q", 0x1000), expect="SIGBUS", maps={"C": None}, pool=(-1, 0)),
    ),
    exclusive=True))

# --- issue 13: truncation, hole punching, MADV_REMOVE (docs/kernel-notes/issue13.md §2-§4) ------
PUNCH = 0x03                     # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
MADV_REMOVE = 9

S.append(CheckScenario(
    "ftruncate_shrink", "ftruncate: shrinking zaps every process, growing reserves nothing",
    "hugetlbfs_setattr: a size off the hugepage size is EINVAL; hugetlb_vmtruncate zaps the "
    "pages past the new end in every VMA, frees them and drops the reserve map past it (the "
    "never-faulted page's reservation goes back); a touch past EOF is SIGBUS; growing again "
    "reserves nothing, so the next fault takes an unreserved page.",
    {H2M: 2},
    (P("A", "p", "a", 0x5000), P("C", "c", "a", 0x5000)),
    (
        *prologue(4 * MiB, pool=(0, +2)),
        touch("p", At("a", 0x5000), maps={"A": 1}, pool=(-1, +1)),
        fork("p", "c", maps={"A": 1, "C": None}),
        touch("c", At("a", 0x5000), maps={"A": 2, "C": 2}),
        ftruncate("f", MiB, expect="EINVAL", maps={"A": 2, "C": 2}, pool=(-1, +1)),
        ftruncate("f", 0, maps={"A": None, "C": None}, pool=(0, 0)),
        touch("p", At("a", 0x5000), expect="SIGBUS", pool=(0, 0)),
        ftruncate("f", 4 * MiB, pool=(0, 0)),
        touch("p", At("a", 0x5000), maps={"A": 1}, pool=(-1, 0)),
    )))

S.append(CheckScenario(
    "punch_hole", "fallocate(PUNCH_HOLE|KEEP_SIZE): whole pages go, partial ones stay",
    "hugetlbfs_punch_hole: a reserved, never-faulted page keeps its reservation; a mapped page "
    "is zapped, freed and loses its reserve-map entry (the next touch is unreserved); a punch "
    "inside one hugepage only zeroes bytes; PUNCH_HOLE without KEEP_SIZE is EOPNOTSUPP.",
    {H2M: 2},
    (P("A", "p", "a", 0x5000),),
    (
        *prologue(4 * MiB, pool=(0, +2)),
        touch("p", At("a", 0x5000), maps={"A": 1}, pool=(-1, +1)),
        fallocate("f", 2 * MiB, 2 * MiB, PUNCH, pool=(-1, +1)),
        fallocate("f", 0, 2 * MiB, PUNCH, maps={"A": None}, pool=(0, +1)),
        touch("p", At("a", 0x5000), maps={"A": 1}, pool=(-1, +1)),
        fallocate("f", 0x1000, 0x2000, PUNCH, maps={"A": 1}, pool=(-1, +1)),
        fallocate("f", 0, 2 * MiB, 0x02, expect="EOPNOTSUPP", maps={"A": 1}),
    )))

S.append(CheckScenario(
    "madv_remove", "MADV_REMOVE punches the file range for every process",
    "madvise_remove: on a shared VMA, vfs_fallocate(PUNCH_HOLE|KEEP_SIZE) of the range it maps, "
    "so the other process loses the page too; on a private VMA, EACCES.",
    {H2M: 2},
    (P("A", "p", "a", 0x5000), P("C", "c", "a", 0x5000), P("Q", "p", "q", 0x5000)),
    (
        *prologue(2 * MiB, pool=(0, +1)),
        touch("p", At("a", 0x5000), maps={"A": 1}, pool=(-1, 0)),
        fork("p", "c"),
        touch("c", At("a", 0x5000), maps={"A": 2, "C": 2}),
        madvise("p", At("a"), 2 * MiB, MADV_REMOVE, maps={"A": None, "C": None}, pool=(0, 0)),
        mmap("p", "q", "f", 2 * MiB, shared=False, pool=(0, +1)),
        touch("p", At("q", 0x5000), maps={"Q": 1}, pool=(-1, 0)),
        madvise("p", At("q"), 2 * MiB, MADV_REMOVE, expect="EACCES", maps={"Q": 1}),
    )))

S.append(CheckScenario(
    "fallocate_enospc", "fallocate that runs out of pages keeps the pages it added",
    "hugetlbfs_fallocate: the loop stops at the first page it cannot allocate (ENOSPC); the "
    "pages added before stay in the page cache and i_size is not written; close frees them.",
    {H2M: 2},
    (),
    (
        memfd("f", 0),
        fallocate("f", 0, 6 * MiB, expect="ENOSPC", pool=(-2, 0)),
        close("f", pool=(0, 0)),
    ),
    exclusive=True))

# --- issue 13: failed calls that keep partial progress (docs/kernel-notes/issue13.md §8) -------
S.append(CheckScenario(
    "munmap_split_kept", "munmap with an aligned start and an unaligned end keeps the start split",
    "vms_gather_munmap_vmas splits at the start, then the end split fails in hugetlb_vm_op_split "
    "(EINVAL) and the first split is not undone.  The kept split is visible through PMD sharing: "
    "splitting off a PUD boundary unshares the PMD page (hugetlb_vm_op_split -> "
    "hugetlb_unshare_pmds), so the caller's page is no longer mapped; nothing was unmapped in the "
    "other process.",
    {H2M: 1},
    (P("A", "p", "a", 0x5000), P("C", "c", "a", 0x5000)),
    (
        *prologue(GiB, addr=PUD_ALIGNED, noreserve=True, pool=(0, 0)),
        touch("p", At("a", 0x5000), maps={"A": 1}, pool=(-1, 0)),
        fork("p", "c"),
        touch("c", At("a", 0x5000), maps={"A": 1, "C": 1},
              why="the child shares the parent's PMD page: one mapping"),
        munmap("p", At("a", 2 * MiB), 2 * MiB + 0x1000, expect="EINVAL",
               maps={"A": None, "C": 1}, pool=(-1, 0)),
    )))

S.append(CheckScenario(
    "map_fixed_hole", "MAP_FIXED over a mapping, then hugetlbfs_file_mmap fails: a hole",
    "__mmap_region unmaps the old range and clears its page tables before hugetlbfs_file_mmap "
    "refuses the unaligned offset (EINVAL); the old mapping is gone, its page stays in the page "
    "cache.  An unaligned MAP_FIXED address is refused before anything (EINVAL, mapping kept).",
    {H2M: 2},
    (P("A", "p", "a", 0x5000),),
    (
        *prologue(4 * MiB, 2 * MiB, addr=PUD_ALIGNED, pool=(0, +1)),
        touch("p", At("a", 0x5000), maps={"A": 1}, pool=(-1, 0)),
        mmap("p", "x", "f", 2 * MiB, addr=PUD_ALIGNED + 0x1000, expect="EINVAL", maps={"A": 1}),
        mmap("p", "y", "f", 2 * MiB, offset=0x1000, addr=PUD_ALIGNED, expect="EINVAL",
             maps={"A": None}, pool=(-1, 0)),
    )))

S.append(CheckScenario(
    "uffd_unregister_partial", "UFFDIO_UNREGISTER that fails in a later VMA keeps the earlier ones",
    "userfaultfd_unregister checks only the start up front and then works VMA by VMA: the first "
    "VMA is unregistered before the split of the second off a hugepage boundary fails (EINVAL); a "
    "touch of the first is then an ordinary fault, of the second still a userfault.",
    {H2M: 2},
    (P("A", "p", "a", 0x5000), P("B", "p", "b", 0x5000)),
    (
        *prologue(4 * MiB, 2 * MiB, addr=PUD_ALIGNED, pool=(0, +1)),
        mmap("p", "b", "f", 2 * MiB, offset=2 * MiB, addr=PUD_ALIGNED + 2 * MiB, pool=(0, +2)),
        register("p", At("a"), 4 * MiB, "missing"),
        unregister("p", At("a"), 3 * MiB, expect="EINVAL"),
        touch("p", At("a", 0x5000), maps={"A": 1}, pool=(-1, +1)),
        touch("p", At("b", 0x5000), expect="userfault:missing", maps={"B": None}),
    ),
    userfaultfd=True))

S.append(CheckScenario(
    "mprotect_split", "mprotect splits at hugepage boundaries; read-only is SIGSEGV on write",
    "do_mprotect_pkey: a split off a hugepage boundary is EINVAL before anything changed; a "
    "2 MiB-aligned range splits the VMA and a write there is SIGSEGV (a read is fine); walking "
    "into a hole is ENOMEM after the VMAs before it got the new protection.",
    {H2M: 2},
    (P("A", "p", "a", 0x5000), P("B", "p", "a", 2 * MiB + 0x5000)),
    (
        *prologue(4 * MiB, addr=PUD_ALIGNED, pool=(0, +2)),
        touch("p", At("a", 0x5000), maps={"A": 1}, pool=(-1, +1)),
        mprotect("p", At("a"), 2 * MiB + 0x1000, 1, expect="EINVAL"),
        mprotect("p", At("a", 2 * MiB), 2 * MiB, 1),
        touch("p", At("a", 2 * MiB + 0x5000), expect="SIGSEGV", maps={"B": None}),
        touch("p", At("a", 2 * MiB + 0x5000), write=False, maps={"B": 1}, pool=(-2, 0)),
        touch("p", At("a", 0x5000), maps={"A": 1}),
        mprotect("p", At("a"), 6 * MiB, 3, expect="ENOMEM",
                 why="the read-only VMA became writable before the walk met the hole"),
        touch("p", At("a", 2 * MiB + 0x6000), maps={"A": 1, "B": 1}, pool=(-2, 0)),
    )))

S.append(CheckScenario(
    "mremap_hugetlb", "mremap of a hugetlb mapping: rounded up, never grown, moved with its pages",
    "mm/mremap.c for hugetlb: lengths are rounded up to the hugepage (2M -> 4K is a no-op, 4M -> "
    "4K shrinks to 2M and unmaps the rest), growth and an unaligned address are EINVAL; a move "
    "(MREMAP_MAYMOVE|MREMAP_FIXED) carries the entry over with its counters.",
    {H2M: 2},
    (P("A", "p", "a", 0x5000), P("B", "p", "a", 2 * MiB + 0x5000),
     P("N", "p", "n", 0x5000)),
    (
        *prologue(4 * MiB, addr=PUD_ALIGNED, pool=(0, +2)),
        mmap("p", "n", "f", 2 * MiB, addr=PUD_ALIGNED + GiB, pool=(0, +2)),
        munmap("p", At("n"), 2 * MiB),
        touch("p", At("a", 0x5000), maps={"A": 1}, pool=(-1, +1)),
        touch("p", At("a", 2 * MiB + 0x5000), maps={"B": 1}, pool=(-2, 0)),
        mremap("p", At("a", 2 * MiB), 2 * MiB, 0x1000, maps={"B": 1}),
        mremap("p", At("a"), 2 * MiB, 4 * MiB, expect="EINVAL"),
        mremap("p", At("a", 0x1000), 2 * MiB, 2 * MiB, expect="EINVAL"),
        mremap("p", At("a"), 4 * MiB, 0x1000, maps={"A": 1, "B": None}, pool=(-2, 0),
               why="the tail's page stays in the page cache"),
        mremap("p", At("a"), 2 * MiB, 2 * MiB, flags=3, new_addr=PUD_ALIGNED + GiB,
               maps={"A": None, "N": 1}, pool=(-2, 0)),
    )))

S.append(CheckScenario(
    "uffdio_copy", "UFFDIO_COPY fills a missing page, and every mapping sees it",
    "A touch of a missing page in a MISSING-registered VMA is a userfault; UFFDIO_COPY "
    "(hugetlb_mfill_atomic_pte) allocates the page with the reservation, puts it in the page "
    "cache and maps it (kpagecount 1); a second COPY is EEXIST; less than a hugepage is EINVAL; "
    "UFFDIO_WAKE changes nothing; another mapping of the file finds the copied page.",
    {H2M: 2},
    (P("A", "p", "a", 0x5000), P("B", "p", "b", 0x5000)),
    (
        *prologue(4 * MiB, pool=(0, +2)),
        register("p", At("a"), 4 * MiB, "missing"),
        touch("p", At("a", 0x5000), expect="userfault:missing", maps={"A": None}),
        copy("p", At("a"), 2 * MiB, maps={"A": 1}, pool=(-1, +1)),
        touch("p", At("a", 0x5000), maps={"A": 1}),
        copy("p", At("a"), 2 * MiB, expect="EEXIST"),
        copy("p", At("a", 2 * MiB), 0x1000, expect="EINVAL"),
        wake("p", At("a", 2 * MiB), 2 * MiB, pool=(-1, +1)),
        mmap("p", "b", "f", 2 * MiB),
        touch("p", At("b", 0x5000), maps={"A": 2, "B": 2}, pool=(-1, +1)),
    ),
    userfaultfd=True))

SCENARIOS: tuple[CheckScenario, ...] = tuple(S)
del S


def scenario_names() -> list[str]:
    return [s.name for s in SCENARIOS]


def get_scenario(name: str) -> CheckScenario:
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError("no scenario %r; there are: %s" % (name, ", ".join(scenario_names())))
