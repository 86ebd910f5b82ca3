"""Write every notebook under notebooks/ from the contents held here as data.

    python notebooks/build.py            # (re)write the notebooks
    python notebooks/build.py --check    # exit 1 if a committed notebook differs

The chapters, their solution notebooks, the tour's table of contents and the navigation
cells at the top and bottom of every notebook are all generated here: edit this file, never
the .ipynb files (``tests/test_notebook_sources.py`` fails when they differ). Notebooks are
written output-free, with deterministic cell ids.

Rules the cells follow (checked by the same test): the library holds the logic, notebooks the
narrative; one import cell; short cells; no function or class definitions; every number a
reader sees is printed by the package, never typed into the markdown (except in quotes of the
thread and inside ``<details>`` answers, where the prose discusses what a cell printed).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent
from urllib.parse import quote as _urlquote

HERE = Path(__file__).resolve().parent
TOUR = "00-tour.ipynb"
GLOSSARY = "../docs/glossary.md"          # from notebooks/
SOLUTIONS_DIR = "solutions"

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

# --------------------------------------------------------------------------------------------
# The thread's mails (docs/domain.md section 0.1): tag -> (date, author, Message-ID or URL)
# --------------------------------------------------------------------------------------------
MAILS = {
    "T4": ("12 Jan 2023", "James Houghton",
           "CADrL8HWFfqCqbpmvv8BSpvvzJ9aEeBEN30bMLuWGancsfMXv2w@mail.gmail.com"),
    "T6": ("12 Jan 2023", "James Houghton",
           "CADrL8HUi-j4ais45Xq8Jpb6a7DsWiXrKNeJfsqBRMi1Lier8xA@mail.gmail.com"),
    "T8": ("16 Jan 2023", "David Hildenbrand", "06423461-c543-56fe-cc63-cabda6871104@redhat.com"),
    "T9": ("17 Jan 2023", "James Houghton",
           "CADrL8HUdg1Fr=tLEQRkDjeTzNzzSM6EPhvDgzURxSZSBMLgjoQ@mail.gmail.com"),
    "T10": ("18 Jan 2023", "David Hildenbrand", "6548b3b3-30c9-8f64-7d28-8a434e0a0b80@redhat.com"),
    "T11": ("18 Jan 2023", "Peter Xu", "Y8gRpEonhXgqfb41@x1n"),
    "T12": ("18 Jan 2023", "James Houghton",
            "CADrL8HVGMTowH4trJhS+eM_EwZKoUgu7LmfwyTGyGRnNnwL3Zg@mail.gmail.com"),
    "T13": ("18 Jan 2023", "Mike Kravetz", "Y8hITxr/BBMuO6WX@monkey"),
    "T14": ("19 Jan 2023", "James Houghton",
            "CADrL8HUggALQET-09Zw3BhFjZdw_G9+v6CU=qtGtK=KZ_DeAsw@mail.gmail.com"),
    "T19": ("26 Jan 2023", "James Houghton",
            "CADrL8HV92DaNm5bUwcOxsG8Lg4yLT6F13KWSbjkySPNAsgCfpA@mail.gmail.com"),
    "T20": ("30 Jan 2023", "James Houghton",
            "CADrL8HX3sf6OO3PXS1g6b2dKf8b5phQ7oyNR0dVT=sAOdTmmqw@mail.gmail.com"),
    "T23": ("7 Feb 2023", "James Houghton",
            "CADrL8HUVCXHsaWU7beYQsLw0C7J730PQm45caKE26V8mCFHjKQ@mail.gmail.com"),
    "v1 cover letter": ("5 Jan 2023", "James Houghton",
                        "20230105101844.1893104-1-jthoughton@google.com"),
    "v2 cover letter": ("18 Feb 2023", "James Houghton",
                        "20230218002819.1486479-1-jthoughton@google.com"),
    "v2 35/46": ("18 Feb 2023", "James Houghton",
                 "20230218002819.1486479-36-jthoughton@google.com"),
    # not a mail: the merge message of the 2019 refcount-overflow series (CVE-2019-11487)
    "merge 6b3a70773630": ("April 2019", "Linus Torvalds",
                           "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/"
                           "commit/?id=6b3a707736301c2128ca85ce85fb13f60b5e350a"),
}


def lore(msgid: str) -> str:
    """The lore.kernel.org address of a Message-ID (a full URL is returned as it is)."""
    if msgid.startswith("https://"):
        return msgid
    return "https://lore.kernel.org/r/" + _urlquote(msgid, safe="@=+-._")


# --------------------------------------------------------------------------------------------
# Cell constructors (build-time helpers: this file is not a notebook)
# --------------------------------------------------------------------------------------------
def md(text: str):
    return ("markdown", dedent(text).strip("\n"))


def code(text: str):
    return ("code", dedent(text).strip("\n"))


def quote(tags, text: str, who: str | None = None):
    """A blockquote of the thread's own words, then "— author, date (tag links)"."""
    tags = [tags] if isinstance(tags, str) else list(tags)
    date, author, _ = MAILS[tags[0]]
    if len(tags) > 1:
        date = " and ".join(MAILS[t][0].rsplit(" ", 1)[0] for t in tags) + " " + date.rsplit(" ", 1)[1]
    links = ", ".join("[%s](%s)" % (t, lore(MAILS[t][2])) for t in tags)
    body = "\n>\n".join("> " + p.strip() for p in dedent(text).strip().split("\n\n"))
    return ("markdown", "%s\n>\n> — %s, %s (%s)" % (body, who or author, date, links))


def check(answer: str, summary: str = "Check"):
    """A predict-run-check answer, hidden until the reader opens it."""
    return ("markdown", "<details><summary>%s</summary>\n\n%s\n\n</details>"
            % (summary, dedent(answer).strip()))


@dataclass
class Chapter:
    number: int
    slug: str
    title: str
    promise: str
    cells: list
    solutions: list = field(default_factory=list)

    @property
    def file(self) -> str:
        return "%02d-%s.ipynb" % (self.number, self.slug)

    @property
    def solutions_file(self) -> str:
        return "%s/%02d-%s-solutions.ipynb" % (SOLUTIONS_DIR, self.number, self.slug)

    @property
    def label(self) -> str:
        return "%d · %s" % (self.number, self.title)


# Set-up cells shared by several chapters.
TOY_SIZES = code("""
    t = hv.TOY                                        # the classroom geometry
    SMALL, BIG = (h.size for h in t.hstates)          # its two hstates: the toy "2 MiB" and "1 GiB"
    PAGE = hv.PAGE_SIZE
    MIB2, GIB = (h.size for h in hv.X86_64.hstates)   # the real ones
""")

ONE_MAPPING = code("""
    setup = [ops.MemfdCreate("f", SMALL, SMALL), ops.Fallocate("f", 0, SMALL), ops.Spawn("p")]
    one_mapping = [ops.Mmap("p", "f", SMALL, "a"),            # "a" names the newest mapping
                   ops.Madvise("p", "a", SMALL, "MADV_SPLIT"),
                   ops.UffdioRegister("p", "a", SMALL, "minor"),
                   ops.UffdioContinueBatch("p", "a", SMALL, PAGE)]   # one CONTINUE per 4 KiB
""")

# ============================================================================================
# 00 · Tour
# ============================================================================================
TOUR_CELLS = [
    md("""
    # A tour of hgmviz

    hgmviz simulates the page tables, the hugetlb pool and the folio counters that Linux keeps for hugetlb memory — and the accounting schemes proposed for HugeTLB high-granularity mapping (HGM) in the January 2023 LKML thread “[PATCH 21/46] hugetlb: use struct hugetlb_pte for walk_hugetlb_range”. Every number below is computed by the simulator when you run the cell.

    The machine here has the real x86-64 geometry (4 KiB base pages, 2 MiB and 1 GiB hstates) and mainline accounting. For the classroom, `hv.Machine(..., geometry="toy")` gives the same rules with small numbers. Run the cells in order (Shift-Enter).
    """),
    code("import hgmviz as hv"),
    md("""
    ## A machine with a hugetlb pool

    `nr_hugepages` sets the pool of each hstate, as `/sys/kernel/mm/hugepages/*/nr_hugepages` does. `meminfo()` reports what `/proc/meminfo` and sysfs would: total, free and reserved huge pages per hstate.
    """),
    code("""
    m = hv.Machine(nr_hugepages={2 << 20: 8, 1 << 30: 1})
    m.meminfo()
    """),
    md("""
    ## A hugetlb memfd, a process, a shared mapping

    `memfd_create` makes a file on hugetlbfs (`MFD_HUGETLB`) backed by 2 MiB pages. A shared `mmap` reserves huge pages up front (`hugetlb_reserve_pages`) but allocates none yet: look at `HugePages_Rsvd`.
    """),
    code("""
    f = m.memfd_create(size=8 << 20, hstate=2 << 20)
    p = m.spawn()
    a = p.mmap(f, length=4 << 20, offset=0, shared=True)
    print("mapped at", hex(a))
    m.meminfo()
    """),
    md("""
    ## A page fault

    Writing one byte at `a + 0x5000` faults (`hugetlb_fault` → `hugetlb_no_page`): a huge page is taken from the pool, consuming a reservation, added to the file's page cache and mapped by one PMD-level entry. The folio's counters, as the kernel keeps them:
    """),
    code("""
    before = m.snapshot()
    p.touch(a + 0x5000, write=True)
    folio = f.folio_at(0)
    print("refcount:", folio.refcount)
    print("entire_mapcount:", folio.entire_mapcount)
    print("page_mapcount(1), what /proc/kpagecount shows for page 1:", folio.page_mapcount(1))
    """),
    md("""
    Two references: one held by the page cache, which keeps the page for the file, and one by the PMD entry that maps it (`folio_get()` in the fault). One mapcount: one entry maps the folio, and every page of it reports that. Chapter 1 takes these apart.

    ## Reading the diagrams

    `hv.draw(m)` draws the machine; `hv.draw(m, before=snapshot)` also marks what changed since `snapshot = m.snapshot()` was taken. How to read it:

    - **Boxes in a process** are page tables, top-down (PGD → PUD → PMD → PTE). Each row is an entry: `→ PMD table 3` points at the next table; `2 MiB → folio 0` is a **leaf** mapping memory; alike entries are folded into one row such as `PMD[3..511] none`.
    - **Folio boxes** at the bottom show each folio's counters — refcount, the mapcounts — and how far the refcount is from `INT_MAX/2` and `INT_MAX`.
    - **Changes**: `+` new (bold), `−` removed (dashed), `~` changed, with the old value (`was N`).
    - **The caption** names the kernel functions the last operation went through (the call path) and the page-table events it caused; a legend explains the folding.
    """),
    code("hv.draw(m, before=before)"),
    md("""
    `pagemap()` answers like `/proc/self/pagemap`: which folio and which page of it backs an address, or `None` where nothing is mapped yet (the second 2 MiB of the mapping has not been touched).
    """),
    code("""
    e = p.pagemap(a + 0x5000)
    print("a + 0x5000 ->", e, "page index", e.index)
    print("a + 2 MiB  ->", p.pagemap(a + (2 << 20)))
    """),
    md("""
    ## fork, exit, munmap, close

    For a plain `MAP_SHARED` mapping, `fork` copies no hugetlb entries (`vma_needs_copy` says no: the child would fault them in later), so the counters do not move. `exit` and `munmap` drop mappings, but the page cache keeps the folio and the file keeps its reservations until its last reference goes: the fd *and* every mapping (the second 2 MiB is still mapped after `close`).
    """),
    code("""
    c = p.fork()
    print("after fork:  refcount", folio.refcount, "entire_mapcount", folio.entire_mapcount)
    c.exit()
    p.munmap(a, 2 << 20)
    print("after munmap: refcount", folio.refcount, "entire_mapcount", folio.entire_mapcount)
    m.meminfo()
    """),
    code("""
    f.close()
    print("after close, still mapped:", m.meminfo()[2 << 20])
    p.munmap(a + (2 << 20), 2 << 20)
    m.meminfo()
    """),
    md("""
    ## The explorer

    Open [the explorer](explorer-demo.ipynb), or run `hv.explore()` in any notebook. Pick a process, a VMA, an address and a length, then press an operation — `touch`, `UFFDIO_CONTINUE`, `MADV_SPLIT`, `MADV_COLLAPSE`, `fork`, … (each button's tooltip names the kernel path it takes): the diagram, the folio counters and the log of kernel calls are redrawn together. The controls snap addresses and lengths to what the VMA can be mapped at; a toggle lets you type illegal values and see the kernel's error. Change the scheme, the guard or the error policy to replay the same clicks under other rules; *Undo* goes back one step, exactly.

    `hv.compare()` runs every click under several schemes side by side, and `hv.explore(scenario=name)` opens one of the shipped scenarios (`hgmviz.scenarios.list_scenarios()`). The chapters drive the same machine from short cells, as above, so that every step can be read and re-run.
    """),
    # The contents and the ways on are generated (see tour_contents below).
]

# ============================================================================================
# 01 · Page tables
# ============================================================================================
CH01 = [
    md("""
    # 1 · Hugetlb page tables, and what HGM changes

    *Promise: read a hugetlb page-table diagram, and say what high-granularity mapping (HGM) adds to it and why anyone wanted it.*

    Learning goals:
    1. Name the page-table levels, and the **hstate level** of 2 MiB and 1 GiB pages.
    2. Predict the refcount and mapcount one mainline fault leaves on a hugetlb folio.
    3. Say what `MADV_SPLIT`, a 4 KiB `UFFDIO_CONTINUE` and `MADV_COLLAPSE` do to the page tables.
    4. Explain why postcopy live migration of guests backed by 1 GiB pages needed HGM.
    """),
    code("""
    import hgmviz as hv
    from hgmviz import ops
    """),
    md("""
    ## Levels and hstates

    On x86-64 a virtual address is translated by a tree of page tables, PGD → PUD → PMD → PTE, each table one page of entries. An entry either points at the next table or is a **leaf** that maps memory directly; the higher the level, the bigger the leaf. A *hstate* (`struct hstate`) is a hugepage size the kernel keeps a pool of; its **hstate level** is the level whose leaf maps exactly one hugepage. The simulator's geometry says:
    """),
    code("""
    g = hv.X86_64
    for level in range(g.levels, 0, -1):
        print(f"{g.level_name(level):4} entries map {g.fmt_size(g.level_size(level)):>8}, "
              f"{g.PTRS_PER_TABLE} entries a table")
    for h in g.hstates:
        print(f"hstate {g.fmt_size(h.size)}: {h.pages_per_huge_page():,} base pages, "
              f"leaf at the {g.level_name(h.level)} level")
    """),
    md("""
    The classroom uses a **toy geometry**: the same rules, 8 entries a table, and two hstates that play the parts of 2 MiB and 1 GiB. Its counters are 8 bits wide, so an overflow takes a handful of steps instead of billions (chapter 2). We call its hstates `SMALL` and `BIG`.
    """),
    code("""
    t = hv.TOY
    SMALL, BIG = (h.size for h in t.hstates)
    PAGE = t.PAGE_SIZE
    for h in t.hstates:
        print(f"toy hstate {t.fmt_size(h.size)}: {h.pages_per_huge_page()} base pages, "
              f"leaf at the {t.level_name(h.level)} level")
    print("a toy counter holds at most", t.INT_MAX)
    """),
    md("""
    ## A mainline fault

    A program maps a hugetlbfs file (`memfd_create(MFD_HUGETLB)`) shared and writes one byte. `hugetlb_fault()` allocates a hugepage from the pool, adds it to the file's page cache, and maps it with **one leaf at the hstate level**. Two counters of the folio move: `_refcount` (who holds the page) and the mapcount (how many page-table entries map it).

    **Predict** for the thread's kernel, v6.2: after the fault, what are the folio's refcount and `folio_entire_mapcount()`? (Who holds the page now, and how many entries map it?)
    """),
    code("""
    m = hv.Machine(nr_hugepages={BIG: 2}, geometry="toy")     # mainline accounting, kernel 6.2
    f = m.memfd_create(size=BIG, hstate=BIG)
    p = m.spawn()
    a = p.mmap(f, BIG)
    before = m.snapshot()
    p.touch(a + 5 * PAGE)
    folio = f.folio_at(0)
    print("refcount", folio.refcount, "· entire_mapcount", folio.entire_mapcount)
    """),
    check("""
    Refcount 2: one reference held by the page cache (`hugetlb_add_to_page_cache`), one kept by the new leaf. Entire mapcount 1: one hstate-level entry maps the folio.

    The kernel stores mapcounts biased by −1 (`_entire_mapcount` starts at −1, “Note: mapcounts start at -1”); `folio_entire_mapcount()` adds the 1 back, and so do the simulator's accessors. Since v6.7 the page cache holds `folio_nr_pages()` references instead of one: try `kernel="6.18"`.
    """),
    md("""
    ## Reading the diagram

    `hv.draw(m, before=snapshot)` draws the page tables of every process, the folios they map with their counters, and what changed since the snapshot: **+** new, **−** removed, **~** changed (with the old value: `was N`). The caption names the kernel functions the fault went through and the page-table events it caused. The walk stopped at the PUD entry: the leaf is there, mapping the whole folio.
    """),
    code("hv.draw(m, before=before)"),
    md("""
    ## Worked example, by hand: which entries does the walk read?

    Each level takes its own bits of the address. In the toy geometry the low 12 bits are the offset in a 4 KiB page, and each level above takes the next 3 bits (8 entries a table): PTE index = bits 12–14, PMD = 15–17, PUD = 18–20, PGD = 21–23 (the kernel's `pte_index()`, `pmd_index()`, `pud_index()`, `pgd_index()`).

    Take the address `0x5c5000`. Drop the 12 offset bits: `0x5c5` = `0b10‿111‿000‿101`. From the right, three bits a level: **PTE 5, PMD 0, PUD 7, PGD 2**. So the walk reads `PGD[2]`, which points to a PUD table, then `PUD[7]` — the hstate level of the toy `BIG` page, where a mainline fault puts its leaf. The PMD and PTE indices are not walked at all: the leaf covers them, and together they give the page within the folio, 0 × 8 + 5 = page 5.

    **Predict**, then check: is `0x5c5000` the address the fault above touched, and does the diagram show those entries?
    """),
    code("""
    print("walk of 0x5c5000:", t.walk_indices(0x5c5000))
    print("the fault touched", hex(a + 5 * PAGE), "· page of the folio:", p.pagemap(a + 5 * PAGE).index)
    """),
    check("""
    Yes: the mapping starts at 0x5c0000 (the top-down `mmap` placement of this small address space), so `a + 5 * PAGE` is 0x5c5000, and the diagram's process has `PGD[2] → PUD table`, then the leaf in `PUD[7]`. On x86-64 the same recipe takes 9 bits a level: try `hv.X86_64.walk_indices(addr)` on an address of the tour.
    """),
    md("""
    ## What HGM changes

    The HGM series by James Houghton (RFC v1 in June 2022, v1 on 5 Jan 2023, v2 on 18 Feb 2023) lets a hugetlb page be mapped **in pieces**, by leaves below the hstate level:

    - `struct hugetlb_pte` (`ptep`, `shift`, `level`) describes an entry of any size, and the walk (`hugetlb_hgm_walk`, `hugetlb_walk_step`) descends below the hstate level;
    - `MADV_SPLIT` marks a VMA as allowed to be mapped in pieces (it maps nothing itself);
    - `UFFDIO_CONTINUE` then maps page-cache pages at 4 KiB granularity, with the largest aligned leaf that fits;
    - `MADV_COLLAPSE` replaces the pieces by one hstate-level leaf.

    It never reached mainline, and a `mainline` machine refuses `MADV_SPLIT` as unknown advice. `ops.run_step` runs one operation and returns what the kernel would answer, instead of raising:
    """),
    code("""
    w = ops.World(m, procs={"p": p}, files={"f": f})
    out = ops.run_step(w, ops.Madvise("p", a, BIG, "MADV_SPLIT"))
    print(out.status, "—", out.message)
    """),
    md("""
    Now the same file on a machine with HGM v1's accounting (`scheme="per_piece"`: one reference and one mapcount per leaf, whatever its size — chapter 2 is about it). The page is put in the page cache first (`fallocate`), and the VMA is registered with userfaultfd in *minor* mode, as postcopy does (below).

    **Predict:** after `MADV_SPLIT` and one 4 KiB `UFFDIO_CONTINUE` at the start of the VMA, how many new page tables are there *below the hstate level*, and which leaf?
    """),
    code("""
    m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=BIG, hstate=BIG)
    f.fallocate(0, BIG)
    p = m.spawn()
    a = p.mmap(f, BIG)
    p.madvise(a, BIG, hv.MADV_SPLIT)
    p.uffdio_register(a, BIG, mode="minor")
    before = m.snapshot()
    p.uffdio_continue(a, PAGE)
    hv.draw(m, before=before)
    """),
    check("""
    Two: the walk allocated a PMD table under the PUD entry and a PTE table under the first PMD entry, then set one 4 KiB leaf, `PTE[0]`. (The PUD table above is new too, because this process had mapped nothing yet: three `pgtable_alloc` events in the caption.) The PUD entry that a mainline fault makes a leaf now points to a table: that is what “below the hstate level” means. The folio gained one reference and one mapcount, for one 4 KiB piece.
    """),
    md("""
    **Predict:** now `UFFDIO_CONTINUE` the next PMD-sized range (`SMALL` bytes at `a + SMALL`). One leaf, or one per 4 KiB page?
    """),
    code("""
    before = m.snapshot()
    p.uffdio_continue(a + SMALL, SMALL)
    print("leaf mapping a + SMALL:", t.fmt_size(p.pagemap(a + SMALL).size))
    hv.draw(m, before=before)
    """),
    check("""
    One PMD-level leaf: `hugetlb_alloc_largest_pte()` (v2 33/46) picks the largest leaf that is aligned and fits the range. The refcount grows by one for it, as for the 4 KiB leaf: `per_piece` counts leaves, not bytes.
    """),
    md("""
    `MADV_COLLAPSE` undoes the pieces: it zaps every leaf, frees the tables below the hstate level and installs one hstate-level leaf, filling the holes since the page is in the page cache. **Predict** the refcount and mapcount afterwards.
    """),
    code("""
    before = m.snapshot()
    p.madvise(a, BIG, hv.MADV_COLLAPSE)
    print("refcount", f.folio_at(0).refcount, "· entire_mapcount", f.folio_at(0).entire_mapcount)
    hv.draw(m, before=before)
    """),
    check("""
    The mainline picture again: one PUD leaf, the page cache's reference plus one, mapcount 1.
    """),
    md("""
    ## Why: postcopy live migration

    In postcopy, a guest already runs on the new host while its memory is still arriving. When the guest touches a page that has not arrived, the VMM (QEMU) must fetch it before the guest can go on. With userfaultfd minor faults the VMM (1) maps the guest's memfd twice, the guest's view and an alias; (2) `MADV_SPLIT`s the guest's view; (3) registers it in minor mode; (4) on each fault, writes the 4 KiB it fetched through the alias and `UFFDIO_CONTINUE`s those 4 KiB in the guest's view; (5) `MADV_COLLAPSE`s a hugepage once it is complete.

    Without HGM the unit of (4) is a whole hugepage. The v1 cover letter reports Google's median fetch latency on a 48-vCPU guest, under 100 µs for 4 KiB against more than 10 ms for 2 MiB, and calls postcopy of 1 GiB-backed guests without HGM “completely infeasible”.
    """),
    code("""
    m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=BIG, hstate=BIG)
    f.fallocate(0, BIG)                                      # the guest's memory, contents to come
    qemu = m.spawn()
    guest, alias = qemu.mmap(f, BIG), qemu.mmap(f, BIG)      # (1)
    qemu.madvise(guest, BIG, hv.MADV_SPLIT)                  # (2)
    qemu.uffdio_register(guest, BIG, mode="minor")           # (3)
    w = ops.World(m, procs={"qemu": qemu}, files={"f": f})
    print(ops.run_step(w, ops.Touch("qemu", guest + 3 * PAGE)).message)   # the guest faults
    """),
    code("""
    qemu.touch(alias + 3 * PAGE)                    # (4) the fetched 4 KiB, written via the alias
    qemu.uffdio_continue(guest + 3 * PAGE, PAGE)    #     ... and mapped in the guest's view
    print("the guest retries:", ops.run_step(w, ops.Touch("qemu", guest + 3 * PAGE)).status)
    hv.draw(m)
    """),
    md("""
    **Predict:** the guest now touches the next page, `guest + 4 * PAGE`. Does it fault again?
    """),
    code("""
    print(ops.run_step(w, ops.Touch("qemu", guest + 4 * PAGE)).status)
    """),
    check("""
    Yes — a `userfault`: only the 4 KiB at `guest + 3 * PAGE` is mapped, and every 4 KiB not yet fetched still faults to the VMM. That is the point: the guest waits for 4 KiB at a time, not for a whole hugepage. Once everything has arrived, step (5):
    """),
    code("""
    qemu.madvise(guest, BIG, hv.MADV_COLLAPSE)                 # (5)
    print("leaf mapping the guest's view:", t.fmt_size(qemu.pagemap(guest).size))
    """),
    md("""
    ## Summary

    - A hugetlb page is mapped by one leaf at the hstate level (PMD for 2 MiB, PUD for 1 GiB); each such entry holds one reference and one mapcount.
    - HGM maps it in pieces below that level (`struct hugetlb_pte`, `MADV_SPLIT`, 4 KiB `UFFDIO_CONTINUE`, `MADV_COLLAPSE`) so that postcopy can fetch 4 KiB at a time.
    - The question the thread argued about: how should the counters move when one hugepage is mapped by many leaves? Mike Kravetz closed the mail this project is built around with it:
    """),
    quote("T13", """
    I think Peter mentioned it elsewhere, we should come up with a workable scheme for HGM ref/map counting. This can be done somewhat independently.
    """),
    md("""
    ## Exercises

    1. **x86-64, by hand, then check.** A 1 GiB page is mapped in one HGM VMA: its first 4 KiB by one `UFFDIO_CONTINUE`, then `[a + 2 MiB, a + 1 GiB)` by **one** `UFFDIO_CONTINUE`. How many leaves of each size, how many page tables below the PUD entry, and what refcount under `per_piece`? The cell below sets the machine up; finish it and check with `hv.draw`.
    2. **Page-table cost.** How many page tables does mapping a toy `BIG` page fully at 4 KiB take below its PUD entry? And a 1 GiB page on x86-64? Compute it from the geometry, then check both with `hv.draw`.
    3. **Faults in an HGM VMA.** Map piece 0 of a toy `BIG` page at 4 KiB, then unregister the VMA from userfaultfd (`p.uffdio_unregister(a, BIG)`) and touch `a + PAGE` and `a + 2 * SMALL`. Predict the size of the leaf each fault installs, then check with `pagemap`.
    """),
    code("""
    MIB2, GIB = (h.size for h in hv.X86_64.hstates)
    m = hv.Machine(nr_hugepages={GIB: 1}, scheme="per_piece")
    f = m.memfd_create(size=GIB, hstate=GIB)
    f.fallocate(0, GIB)
    p = m.spawn()
    a = p.mmap(f, GIB)
    p.madvise(a, GIB, hv.MADV_SPLIT)
    p.uffdio_register(a, GIB, mode="minor")
    folio = f.folio_at(0)
    # your turn: the two UFFDIO_CONTINUE calls, then hv.draw(m)
    """),
]

SOL01 = [
    code("""
    import hgmviz as hv
    """),
    code("""
    t = hv.TOY
    SMALL, BIG = (h.size for h in t.hstates)
    PAGE = hv.PAGE_SIZE
    MIB2, GIB = (h.size for h in hv.X86_64.hstates)
    """),
    md("""
    ## Exercise 1

    By hand: the first call makes a PMD table and a PTE table and sets one 4 KiB leaf. The second, `hugetlb_alloc_largest_pte()`, picks the largest aligned leaf that fits at each step: from `a + 2 MiB` on, every step is a 2 MiB PMD-level leaf (a 1 GiB leaf would not fit, the range starts 2 MiB in). So: one 4 KiB leaf, 511 2 MiB leaves, two page tables below the PUD entry; `per_piece` refcount = page cache (1) + 1 + 511.
    """),
    code("""
    m = hv.Machine(nr_hugepages={GIB: 1}, scheme="per_piece")
    f = m.memfd_create(size=GIB, hstate=GIB)
    f.fallocate(0, GIB)
    p = m.spawn()
    a = p.mmap(f, GIB)
    p.madvise(a, GIB, hv.MADV_SPLIT)
    p.uffdio_register(a, GIB, mode="minor")
    p.uffdio_continue(a, PAGE)
    p.uffdio_continue(a + MIB2, GIB - MIB2)
    print("refcount", f.folio_at(0).refcount)
    hv.draw(m)
    """),
    md("""
    The diagram folds the 2 MiB leaves into one row, `PMD[1..511]`, each mapping the next 512 pages of the folio. Note that the 4 KiB piece leaves `PTE[1..511]` of its table none: the rest of the first 2 MiB is not mapped.

    ## Exercise 2

    Fully mapped at 4 KiB, every PMD entry below the hstate level points to a PTE table: one PMD table plus one PTE table per PMD entry.
    """),
    code("""
    for geo, size in ((hv.TOY, BIG), (hv.X86_64, GIB)):
        print(f"{geo.name}: {geo.PTRS_PER_TABLE + 1} page tables "
              f"= {geo.fmt_size((geo.PTRS_PER_TABLE + 1) * geo.PAGE_SIZE)}")
    """),
    code("""
    m = hv.Machine(nr_hugepages={GIB: 1}, scheme="per_piece")
    f = m.memfd_create(size=GIB, hstate=GIB)
    f.fallocate(0, GIB)
    p = m.spawn()
    a = p.mmap(f, GIB)
    p.madvise(a, GIB, hv.MADV_SPLIT)
    p.uffdio_register(a, GIB, mode="minor")
    p.uffdio_continue_batch(a, GIB, PAGE)
    hv.draw(m)
    """),
    md("""
    The diagram draws the PTE tables as one box standing for all of them (“N tables, each:”); the toy version is left to you (same cells with `geometry="toy"` and `BIG`).

    ## Exercise 3

    A fault in an HGM VMA installs a leaf of the size of the first none entry its walk meets (HGM v2 24/46): at `a + PAGE` the walk reaches the existing PTE table, whose entry 1 is none, so a 4 KiB leaf; at `a + 2 * SMALL` it meets a none PMD entry, so a `SMALL` (PMD-sized) leaf.
    """),
    code("""
    m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=BIG, hstate=BIG)
    f.fallocate(0, BIG)
    p = m.spawn()
    a = p.mmap(f, BIG)
    p.madvise(a, BIG, hv.MADV_SPLIT)
    p.uffdio_register(a, BIG, mode="minor")
    p.uffdio_continue(a, PAGE)
    p.uffdio_unregister(a, BIG)
    p.touch(a + PAGE)
    p.touch(a + 2 * SMALL)
    print(t.fmt_size(p.pagemap(a + PAGE).size), t.fmt_size(p.pagemap(a + 2 * SMALL).size))
    """),
]

# ============================================================================================
# 02 · How big can the refcount get?
# ============================================================================================
CH02 = [
    md("""
    # 2 · How big can the refcount get?

    *Promise: overflow a hugetlb folio's refcount with per-piece counting, one mapping at a time, and see why the thread called that an attack.*

    Learning goals:
    1. Derive the refcount of a folio mapped in pieces: the page cache's references plus one per leaf.
    2. Predict, then watch, the mapping during which a toy refcount wraps, with `hv.overflow_math` alongside.
    3. Use `hv.overflow_math` for the real sizes: how many 4 KiB mappings of a 1 GiB page, and how many processes.
    4. Say why a wrapped refcount is a use-after-free — an attack, not a curiosity.
    """),
    code("""
    import hgmviz as hv
    """),
    TOY_SIZES,
    md("""
    ## The counter

    `folio->_refcount` is an `atomic_t`, a signed 32-bit integer; when the last reference is dropped and it reaches 0, the page is freed. HGM v1 as posted counted **one reference and one mapcount per leaf**, whatever its size — the simulator's `per_piece` scheme:
    """),
    quote("v1 cover letter", """
    The mapcount for a high-granularity mapped HugeTLB page is the total number of page table references to that page. So if we have a 2M page that is mapped in a single VMA with 512 4K PTEs, the mapcount will be 512.
    """),
    code("""
    print("INT_MAX on x86-64:", hv.INT_MAX, "· in the toy geometry:", t.INT_MAX)
    print("toy SMALL hstate:", t.hstates[0].pages_per_huge_page(), "pieces of", t.fmt_size(PAGE))
    """),
    md("""
    ## Worked example, by hand

    Take the toy `SMALL` hstate (8 pieces of 4 KiB) on kernel 6.2, where the page cache holds 1 reference. Map the page in a new VMA at 4 KiB, all 8 pieces, again and again. After *k* complete mappings the refcount is 1 + 8*k*. The toy `INT_MAX` is 127: after 15 mappings the count is 121; the 16th mapping's first six pieces take it to 127, and its **7th** piece takes 127 to 128, which does not fit in 8 bits: it wraps to −128. The 8th piece leaves −127.

    Check it: the cell maps the page over and over, one `UFFDIO_CONTINUE` per 4 KiB piece, printing the refcount after each mapping. The simulator warns when a counter wraps; a production kernel would carry on without a word.
    """),
    code("""
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=SMALL, hstate=SMALL)
    f.fallocate(0, SMALL)
    p, folio = m.spawn(), f.folio_at(0)
    for k in range(1, 17):
        a = p.mmap(f, SMALL)
        p.madvise(a, SMALL, hv.MADV_SPLIT)
        p.uffdio_register(a, SMALL, mode="minor")
        p.uffdio_continue_batch(a, SMALL, PAGE)     # = one UFFDIO_CONTINUE per 4 KiB piece
        print(f"mapping {k:2}: refcount {folio.refcount:4}  wrapped: {folio.wrapped}")
    """),
    md("""
    `hv.overflow_math` gives the same answer in closed form, without simulating:
    """),
    code("""
    o = hv.overflow_math(hstate=SMALL, piece=PAGE, kernel="6.2", guard=None, geometry="toy")
    print("wraps during mapping", o["wraps_during_mapping"],
          "at piece", o["pieces_into_wrapping_mapping"],
          "· refcount once that mapping is complete:", o["refcount_after_wrapping_mapping"])
    """),
    md("""
    The last VMA and the folio, drawn. The folio box shows what the kernel would hold:
    """),
    code("hv.draw(m, start=a, end=a + SMALL)"),
    md("""
    ## The real sizes

    On x86-64 a 1 GiB page mapped at 4 KiB takes 512 × 512 leaves per mapping. James's arithmetic in the thread:
    """),
    quote("T9", """
    INT_MAX is 2^31. We increment the refcount once for each 4K mapping in 1G: that's 512 * 512 (2^18). That means we only need 8192 (2^13) VMAs for the same 1G page to overflow refcount.
    """),
    code("""
    o = hv.overflow_math(hstate=GIB, piece=PAGE, kernel="6.2", guard=None)
    for key in ("page_cache_refs", "refs_per_mapping", "full_mappings_before_wrap",
                "wraps_during_mapping", "pieces_into_wrapping_mapping"):
        print(f"{key:30} {o[key]:>10,}")
    """),
    md("""
    **Quiz — a misconception.** The mail says “INT_MAX is 2^31” and that so many VMAs “overflow refcount”. Does the count pass INT_MAX only once the last of those mappings is complete?
    """),
    check("""
    No, a little before. INT_MAX is 2^31 − 1, not 2^31, and the page cache holds a reference of its own, so the count passes INT_MAX at piece `pieces_into_wrapping_mapping` of mapping `wraps_during_mapping` — one piece short of the end (the cell above). The round numbers of the mail are right to within one mapping, which is all the argument needed. (The v2 35/46 commit message says the refcount grows by 2^19 per mapping: 512 × 512 is 2^18, a typo.)
    """),
    md("""
    ## How many processes?

    A process may hold at most `vm.max_map_count` VMAs. David's estimate in the thread, for both page sizes:
    """),
    quote("T10", """
    You'd need 8k VMAs. With 2 MiB THP you'd need 4096k VMAs. So ~64 processes with 64k VMAs.
    """),
    md("""
    **Predict:** how many processes does the 1 GiB attack need?
    """),
    code("""
    print("vm.max_map_count default:", hv.overflow.MAX_MAP_COUNT)
    for size in (GIB, MIB2):
        o = hv.overflow_math(hstate=size, piece=PAGE, guard=None)
        print(f"{hv.X86_64.fmt_size(size)}: wraps during mapping {o['wraps_during_mapping']:,}; "
              f"at least {o['min_processes_at_max_map_count']:,} process(es)")
    """),
    check("""
    One. The mappings the 1 GiB attack needs fit many times over in one process's `max_map_count`; no cooperation, no `fork`, no privileges. For 2 MiB pages the attack needs many processes — David's “~64 processes”.
    """),
    md("""
    ## Kernel 6.7 moved the starting line

    Since v6.7 (commit `a08c7193e4f1`, “mm/filemap: remove hugetlb special casing in filemap.c”) the page cache holds `folio_nr_pages()` references on a hugetlb folio, not one. **Predict:** does the overflow come sooner or later on a 6.18 kernel, and by how much?
    """),
    code("""
    for kernel in ("6.2", "6.18"):
        o = hv.overflow_math(hstate=GIB, piece=PAGE, kernel=kernel, guard=None)
        print(f"kernel {kernel:4}: page cache holds {o['page_cache_refs']:,}, "
              f"wraps during mapping {o['wraps_during_mapping']:,}")
    """),
    check("""
    One mapping sooner: the page cache's share is now exactly one full 4 KiB mapping's worth of references.
    """),
    md("""
    ## Why it is an attack

    A wrapped count is not just a wrong number. The kernel frees a page when its refcount drops to 0. If an attacker makes the count **land on 0 while the page is still mapped**, the next `folio_put()` anywhere — a transient reference taken and dropped by `get_user_pages()`, say — frees memory that user space still reaches through its page tables: a use-after-free, the classic first step to taking over a kernel. Linus Torvalds's 2019 series against `CVE-2019-11487` closed the same hole for pipes and `get_user_pages()`; its merge message explains why that overflow had been so expensive:
    """),
    quote("merge 6b3a70773630", """
    To have more than four billion references to a page requires a minimum of 32GB of kernel memory just for the pointers to the pages
    """),
    md("""
    With per-piece counting, one reference costs one 8-byte page-table entry, and a single `UFFDIO_CONTINUE` call makes it. Can the count land exactly on 0? Take kernel 6.18, where the page cache holds `folio_nr_pages()` references (printed below), and keep adding 4 KiB mappings until the refcount is 0:
    """),
    code("""
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="per_piece", kernel="6.18")
    f = m.memfd_create(size=SMALL, hstate=SMALL)
    f.fallocate(0, SMALL)
    p, folio = m.spawn(), f.folio_at(0)
    print("the page cache's references:", folio.refcount)
    """),
    code("""
    while folio.refcount != 0:
        a = p.mmap(f, SMALL)
        p.madvise(a, SMALL, hv.MADV_SPLIT)
        p.uffdio_register(a, SMALL, mode="minor")
        p.uffdio_continue_batch(a, SMALL, PAGE)
    print(len(p.vmas), "VMAs map the folio at 4 KiB, and its refcount is", folio.refcount)
    print("the last VMA still maps it:", p.pagemap(a))
    """),
    md("""
    Every one of those VMAs still maps the page, yet its refcount says nobody holds it — not even the page cache. (The per-piece mapcount wrapped too: hence the negative `entire_mapcount`.) That is why the thread treated the overflow as a security bug to be prevented, not a limit to be documented — chapters 3 to 5 are about how.

    ## Summary

    - Per-piece counting takes one reference per leaf: a 1 GiB page mapped at 4 KiB holds `refs_per_mapping` references per mapping, and a few thousand mappings overflow the 32-bit refcount.
    - One unprivileged process can hold that many mappings; the page cache's starting share moved with v6.7 but changes nothing essential.
    - A refcount that wraps can be steered to 0 while the page is mapped: a use-after-free.
    """),
    md("""
    ## Exercises

    1. The same 1 GiB page mapped by **2 MiB** pieces (`piece=MIB2`): how many mappings does the overflow take, and how many processes?
    2. **The attack's bill.** Each 4 KiB-mapped 1 GiB mapping needs one PMD table and 512 PTE tables (chapter 1). How much page-table memory do all the mappings up to the wrap take? Use `hv.X86_64` and `overflow_math`.
    3. On kernel 6.2 the toy loop above would never stop: the refcount never lands on 0. Why not (hint: parity)? Make it land on 0 anyway, then check in the simulator.
    """),
    code("""
    # your turn
    """),
]

SOL02 = [
    code("""
    import hgmviz as hv
    """),
    TOY_SIZES,
    md("""
    ## Exercise 1

    Each 2 MiB-piece mapping takes 512 references instead of 512 × 512, so it takes 512 times as many mappings — and with them, more processes than one:
    """),
    code("""
    o = hv.overflow_math(hstate=GIB, piece=MIB2, guard=None)
    print(f"refs per mapping {o['refs_per_mapping']:,}; wraps during mapping "
          f"{o['wraps_during_mapping']:,}; at least {o['min_processes_at_max_map_count']:,} processes")
    """),
    md("""
    ## Exercise 2

    Page tables per mapping: one PMD table and `PTRS_PER_TABLE` PTE tables, each one page.
    """),
    code("""
    g = hv.X86_64
    o = hv.overflow_math(hstate=GIB, piece=PAGE, guard=None)
    tables = o["wraps_during_mapping"] * (g.PTRS_PER_TABLE + 1)
    print(f"{tables:,} page tables = {tables * g.PAGE_SIZE / GIB:.1f} GiB of kernel memory")
    """),
    md("""
    Large, but a machine that offers 1 GiB hugepages to its users is a large machine; and page tables are charged to the process that makes them, not to an administrator's quota of hugepages.

    ## Exercise 3

    On 6.2 the page cache holds 1 reference and every full mapping adds 8, so the count is always odd: it can never be a multiple of 256, which is what wrapping to exactly 0 in 8 bits needs. Add pieces one at a time instead of whole mappings — 31 full mappings and 7 more pieces make 1 + 248 + 7 = 256:
    """),
    code("""
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="per_piece", kernel="6.2")
    f = m.memfd_create(size=SMALL, hstate=SMALL)
    f.fallocate(0, SMALL)
    p, folio = m.spawn(), f.folio_at(0)
    for k in range(32):
        a = p.mmap(f, SMALL)
        p.madvise(a, SMALL, hv.MADV_SPLIT)
        p.uffdio_register(a, SMALL, mode="minor")
        p.uffdio_continue_batch(a, SMALL if k < 31 else 7 * PAGE, PAGE)
    print("refcount", folio.refcount, "with", len(p.vmas), "VMAs mapping the folio")
    """),
]

# ============================================================================================
# 03 · Guards and errors
# ============================================================================================
CH03 = [
    md("""
    # 3 · Where to guard, and which error

    *Promise: compare the two refcount guards the thread weighed, and the error each caller should see when a guard refuses.*

    Learning goals:
    1. Say where the INT_MAX/2 guard and the sign check (`<= 0`) stop the count, and what room each leaves.
    2. Predict what a refused `UFFDIO_CONTINUE`, page fault and fork return, under the thread's proposal and under v2.
    3. Explain why a refused fault must not return `VM_FAULT_OOM`.
    """),
    code("""
    import hgmviz as hv
    from hgmviz import ops
    """),
    TOY_SIZES,
    md("""
    ## The proposal

    James's answer to the overflow of chapter 2:
    """),
    quote("T9", """
    To deal with this, the best solution we've been able to come up with is to check if refcount is > INT_MAX/2 (similar to try_get_page()), and if it is, stop the operation (UFFDIO_CONTINUE or a page fault) from proceeding. In the UFFDIO_CONTINUE case, return ENOMEM. In the page fault cause, return VM_FAULT_SIGBUS (not VM_FAULT_OOM; we don't want to kill a random process).
    """),
    md("""
    `try_get_page()`, the helper added in 2019 against refcount overflows through `get_user_pages()` and pipes, does not compare with INT_MAX/2 — it refuses a page whose count is already zero or **negative**:

    ```c
    page = compound_head(page);
    if (WARN_ON_ONCE(page_ref_count(page) <= 0))
            return false;
    page_ref_inc(page);
    return true;
    ```

    Peter thought that would do (“I think checking negative as try_get_page would suffice too”, T11), and v2 35/46 shipped exactly that test. The simulator has both, each checked before every single increment: `guard="int_max_half"` refuses when the refcount is above INT_MAX/2; `guard="sign"` refuses when it is `<= 0`, and warns once (`WARN_ON_ONCE`).
    """),
    md("""
    ## Worked example, by hand

    Toy `SMALL` page, 8 pieces, page cache 1, INT_MAX 127, so INT_MAX/2 = 63. **INT_MAX/2:** after 7 full mappings the count is 57; the 8th mapping's first 7 pieces take it to 64; its 8th piece finds 64 > 63 and is refused. **Sign:** every increment from a positive count is admitted, including the one from 127 to −128 (the count was positive when checked); the next one finds −128 and is refused: the 16th mapping, at its 8th piece.

    Check both. Each mapping is the same four steps, written once as plain data (`ops.*` operations; `"a"` always names the newest mapping), and `ops.run_step` reports what the kernel answers:
    """),
    ONE_MAPPING,
    code("""
    for guard in ("int_max_half", "sign"):
        m = hv.Machine(nr_hugepages={SMALL: 2}, geometry="toy", scheme="per_piece", guard=guard)
        w = ops.World(m)
        outs = [ops.run_step(w, op) for op in setup]
        while outs[-1].ok:
            outs = [ops.run_step(w, op) for op in one_mapping]
        out = outs[-1]
        print(f"{guard:13} mapping {len(w.procs['p'].vmas)}: {out.status} (cause {out.cause}) "
              f"after {out.mapped // PAGE} pieces; refcount {w.files['f'].folio_at(0).refcount}")
        print("              warnings:", out.warnings or "none")
    """),
    md("""
    `EAGAIN` with a cause is how the kernel reports a partly done `UFFDIO_CONTINUE`: it maps what it can, says how many bytes (`mapped`), and returns the error of the piece that failed — here `ENOMEM`. The closed form agrees:
    """),
    code("""
    for guard in ("int_max_half", "sign"):
        o = hv.overflow_math(hstate=SMALL, piece=PAGE, guard=guard, geometry="toy")
        print(f"{guard:13} full mappings {o['full_mappings']}, then {o['extra_pieces']} pieces; "
              f"refused at refcount {o['refused_at_refcount']}")
    """),
    md("""
    ## What room is left

    The real sizes. **Predict** for each guard: at what refcount does the 1 GiB attack stop, and how many references could still be taken *without* a check before the count passes INT_MAX?
    """),
    code("""
    for guard in ("int_max_half", "sign"):
        o = hv.overflow_math(hstate=GIB, piece=PAGE, guard=guard)
        print(f"{guard:13} {o['full_mappings']:,} full mappings + {o['extra_pieces']:,} pieces; "
              f"refused at refcount {o['refused_at_refcount']:,} (INT_MAX {o['int_max']:,})")
    """),
    check("""
    INT_MAX/2 stops at `INT_MAX/2 + 1`, leaving about a billion references of room for paths that take references without asking (chapter 5 lists them). The sign check stops only after the count has wrapped to `INT_MIN`: no room at all — the overflow already happened once.
    """),
    md("""
    **Quiz — a misconception.** “The sign check lets the overflow happen, so it is useless.”
    """),
    check("""
    Not useless: after the one wrap it refuses every further reference, so the count can no longer be pushed round to 0 by new references, and the `WARN_ON_ONCE` leaves a trace in the log. What it gives up is the margin: any unguarded path that takes a reference near INT_MAX wraps the count with nobody checking. INT_MAX/2 refuses a billion references earlier and keeps that margin.
    """),
    md("""
    ## Which error

    When a guard refuses, the operation fails; what it returns depends on who asked:

    | caller | the proposal (T9) | what v2 35/46 did |
    |---|---|---|
    | `UFFDIO_CONTINUE` (an ioctl) | `ENOMEM`, as `get_user_pages()` does | `EFAULT` |
    | page fault | `VM_FAULT_SIGBUS`: the process gets SIGBUS | `VM_FAULT_SIGBUS` |
    | `fork()` (`copy_hugetlb_page_range`) | not spelled out; the simulator: `ENOMEM`, the whole fork fails (chapter 4) | `-EFAULT`, the whole fork fails |

    The simulator follows `errors="proposed"` or `errors="v2"`. **Predict** both columns at the INT_MAX/2 limit, for a `UFFDIO_CONTINUE` of the refused piece and for a fault on a plain (not split) mapping of the same page. (In an operation, an address is a mapping's name, `"plain"`, or a name and an offset into it: `("a", 7 * PAGE)` is the 8th piece of the newest mapping.)
    """),
    code("""
    o = hv.overflow_math(hstate=SMALL, piece=PAGE, guard="int_max_half", geometry="toy")
    for errors in ("proposed", "v2"):
        m = hv.Machine(nr_hugepages={SMALL: 2}, geometry="toy", scheme="per_piece",
                       guard="int_max_half", errors=errors)
        w = ops.World(m)
        for op in setup + one_mapping * (o["full_mappings"] + 1) + [ops.Mmap("p", "f", SMALL, "plain")]:
            ops.run_step(w, op)
        cont = ops.run_step(w, ops.UffdioContinue("p", ("a", o["extra_pieces"] * PAGE), PAGE))
        fault = ops.run_step(w, ops.Touch("p", "plain"))
        print(f"{errors:8} UFFDIO_CONTINUE → {cont.status:6}  fault → {fault.status}")
    print(fault.message)
    """),
    md("""
    ## Why not VM_FAULT_OOM

    A fault handler reports failure with a `VM_FAULT_*` code. `VM_FAULT_OOM` hands the fault to the out-of-memory killer, which picks a process to kill by its size, not its guilt — quite possibly not the one that faulted. But no memory is short here: the pool still has a free hugepage.
    """),
    code("""
    print(m.meminfo()[SMALL])
    print("VM_FAULT_OOM =", hex(hv.VM_FAULT_OOM), "· VM_FAULT_SIGBUS =", hex(hv.VM_FAULT_SIGBUS))
    """),
    quote("v2 35/46", """
    We don't want to invoke the OOM killer here, as we aren't actually OOMing.
    """),
    md("""
    **Quiz.** `ENOMEM` means “out of memory”. Is it an honest answer for a refused `UFFDIO_CONTINUE`?
    """),
    check("""
    Not literally — memory is not short — but it is the established one: `get_user_pages()` has answered a refused reference with `-ENOMEM` since the 2019 series (`try_grab_folio()` still does), so callers already treat it as “could not take a reference”. `EFAULT`, v2's choice, usually means a bad address, which is no more honest. What matters more is that the caller gets an error it can report, and that no innocent process is killed.
    """),
    md("""
    ## Summary

    - INT_MAX/2 refuses about a billion references before the wrap and leaves that much room for unguarded paths; the sign check refuses only after one wrap and leaves none.
    - A refused `UFFDIO_CONTINUE` returns an errno (`ENOMEM` proposed, `EFAULT` in v2), a refused fault SIGBUS — never `VM_FAULT_OOM`, which would kill an unrelated process although memory is plentiful.
    """),
    md("""
    ## Exercises

    1. For a **2 MiB** page on x86-64 (4 KiB pieces), how many full mappings does each guard allow, and at what refcount does it refuse?
    2. In the toy, run the attack with `guard="sign", errors="v2"`: what does the refused `UFFDIO_CONTINUE` return, what does a fault on a plain mapping return, and how many times does the warning appear?
    3. **Who gets the SIGBUS?** Once the guard refuses, a *second* process maps the same file and touches it. What happens to it? What does that mean for an attacker who shares a page with a victim?
    """),
    code("""
    # your turn
    """),
]

SOL03 = [
    code("""
    import hgmviz as hv
    from hgmviz import ops
    """),
    TOY_SIZES,
    ONE_MAPPING,
    md("## Exercise 1"),
    code("""
    for guard in ("int_max_half", "sign"):
        o = hv.overflow_math(hstate=MIB2, piece=PAGE, guard=guard)
        print(f"{guard:13} {o['full_mappings']:,} full mappings + {o['extra_pieces']} pieces; "
              f"refused at {o['refused_at_refcount']:,}")
    """),
    md("""
    ## Exercise 2

    The refused `UFFDIO_CONTINUE` reports `EAGAIN` with cause `EFAULT` (v2's errno); the fault is SIGBUS under both policies; the `WARN_ON_ONCE` warning is printed once, the overflow warning once (at the admitted wrap).
    """),
    code("""
    m = hv.Machine(nr_hugepages={SMALL: 2}, geometry="toy", scheme="per_piece", guard="sign", errors="v2")
    w = ops.World(m)
    outs = [ops.run_step(w, op) for op in setup]
    while outs[-1].ok:
        outs = [ops.run_step(w, op) for op in one_mapping]
    print(outs[-1].status, outs[-1].cause, outs[-1].warnings)
    ops.run_step(w, ops.Mmap("p", "f", SMALL, "plain"))
    fault = ops.run_step(w, ops.Touch("p", "plain"))
    print(fault.status, fault.warnings)
    """),
    md("""
    ## Exercise 3

    The guard protects the folio, not a process: any process that faults on that page after the limit gets SIGBUS, including one that never took part. An attacker who can map a page a victim uses (a shared file, a VM's memory) turns the would-be use-after-free into a denial of service for the victim. Still far better than a use-after-free — and one more reason the thread wanted the limit out of reach of ordinary use.
    """),
    code("""
    o = hv.overflow_math(hstate=SMALL, piece=PAGE, guard="int_max_half", geometry="toy")
    m = hv.Machine(nr_hugepages={SMALL: 2}, geometry="toy", scheme="per_piece", guard="int_max_half")
    w = ops.World(m)
    for op in setup + one_mapping * (o["full_mappings"] + 1):
        ops.run_step(w, op)
    for op in (ops.Spawn("victim"), ops.Mmap("victim", "f", SMALL, "v"), ops.Touch("victim", "v")):
        out = ops.run_step(w, op)
    print(out.status, "—", out.message)
    """),
]

# ============================================================================================
# 04 · fork
# ============================================================================================
CH04 = [
    md("""
    # 4 · fork() as an amplifier

    *Promise: see when fork() copies hugetlb page tables, and how one fork multiplies the references of an HGM mapping.*

    Learning goals:
    1. Say when mainline copies a shared hugetlb VMA's page tables at fork: lazily never, with uffd-wp and `UFFD_FEATURE_EVENT_FORK` always.
    2. Count the references one fork adds for a 4 KiB-mapped HGM VMA under each scheme.
    3. Watch the guard in `copy_hugetlb_page_range()` fail a whole fork, and spot the inverted test in v2.
    """),
    code("""
    import hgmviz as hv
    from hgmviz import ops
    from hgmviz.comparison import compare_schemes
    """),
    TOY_SIZES,
    md("""
    Right after James proposed guarding faults and `UFFDIO_CONTINUE`, David pointed at a third way in:
    """),
    quote("T10", """
    You'd have to also make sure that fork() won't do the same. At least with uffd-wp, Peter also added page table copying during fork() for MAP_SHARED mappings, which would have to be handled.
    """),
    quote("T12", """
    Indeed, thank you! copy_hugetlb_page_range() (and therefore fork() in some cases) would need this check too.
    """),
    md("""
    ## When does fork copy?

    Since Mike Kravetz's “hugetlb: lazy page table copies in fork()” (commit `bcd51a3c679d`, 2022), a shared hugetlb VMA is **not** copied at fork: the child starts without entries and faults its own later (`vma_needs_copy()` says no). The exception: a VMA registered for userfaultfd write-protect (uffd-wp) is copied, because its page tables carry the write-protect markers — provided the userfaultfd asked for `UFFD_FEATURE_EVENT_FORK`; otherwise the child's VMA loses its registration and is not copied either.

    **Predict:** a parent has one faulted hugepage and forks. Which of these three forks changes the folio's refcount?
    """),
    code("""
    for mode, event_fork in ((None, False), ("wp", False), ("wp", True)):
        m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy")
        f = m.memfd_create(size=SMALL, hstate=SMALL)
        p = m.spawn()
        a = p.mmap(f, SMALL)
        p.touch(a)
        if mode:
            p.uffdio_register(a, SMALL, mode=mode, event_fork=event_fork)
        before = f.folio_at(0).refcount
        p.fork()
        print(f"uffd {mode}, EVENT_FORK {event_fork}: refcount {before} -> {f.folio_at(0).refcount}")
    """),
    check("""
    Only the last: uffd-wp with `EVENT_FORK`. `copy_hugetlb_page_range()` copies the entry and takes a reference for it (`folio_get` + `hugetlb_add_file_rmap`). The middle case was measured on a live 6.18 kernel, and chapter 10 checks it on yours (scenario `fork_uffd_wp_no_event_fork`): without `EVENT_FORK` the child's VMA loses its userfaultfd registration (`dup_userfaultfd()`) and nothing is copied.
    """),
    md("""
    ## Worked example, by hand

    An HGM VMA of a toy `SMALL` page, registered for minor faults and uffd-wp with `EVENT_FORK`, fully mapped at 4 KiB: `per_piece` refcount 1 + 8 = 9. Fork copies the VMA leaf by leaf, each leaf with its reference: +8, so 17. A parent with **three** such VMAs starts at 1 + 3 × 8 = 25, and one fork adds 24: 49.
    """),
    code("""
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=SMALL, hstate=SMALL)
    f.fallocate(0, SMALL)
    p, folio = m.spawn(), f.folio_at(0)
    for _ in range(3):
        a = p.mmap(f, SMALL)
        p.madvise(a, SMALL, hv.MADV_SPLIT)
        p.uffdio_register(a, SMALL, mode="minor|wp", event_fork=True)
        p.uffdio_continue_batch(a, SMALL, PAGE)
    print("before fork: refcount", folio.refcount)
    """),
    code("""
    child = p.fork()
    print("after one fork: refcount", folio.refcount)
    hv.draw(m, start=a, end=a + SMALL)      # the last VMA, in the parent and in the child
    """),
    md("""
    ## The amplifier

    Without fork, every reference costs the attacker one `UFFDIO_CONTINUE`. With fork, the attacker maps one VMA piece by piece once, and every fork then copies all of it in a single system call. **Predict** the number of system calls of the 1 GiB attack of chapter 2, both ways.
    """),
    code("""
    o = hv.overflow_math(hstate=GIB, piece=PAGE, guard=None)
    n, pieces = o["wraps_during_mapping"], o["refs_per_mapping"]
    print(f"UFFDIO_CONTINUE only:  {n * pieces:,} calls")
    print(f"one mapping, then fork: {pieces:,} UFFDIO_CONTINUE calls and {n - 1:,} forks")
    """),
    check("""
    The number of references is the same; the work to make them is not. Every fork is one system call that takes `refs_per_mapping` references — and each child, whose VMA is still registered with `EVENT_FORK`, can fork again.
    """),
    md("""
    ## Under each scheme

    **Predict** what one fork adds for one fully 4 KiB-mapped toy `SMALL` VMA under `per_piece`, `thp_like`, `hstate_present` and `subtree_counted` (chapters 6 and 7 introduce the last three). `compare_schemes` runs the same steps on one machine per scheme:
    """),
    code("""
    steps = [ops.MemfdCreate("f", SMALL, SMALL), ops.Fallocate("f", 0, SMALL), ops.Spawn("p"),
             ops.Mmap("p", "f", SMALL, "a"), ops.Madvise("p", "a", SMALL, "MADV_SPLIT"),
             ops.UffdioRegister("p", "a", SMALL, "minor|wp", event_fork=True),
             ops.UffdioContinueBatch("p", "a", SMALL, PAGE), ops.Fork("p", "c")]
    table = compare_schemes(steps, schemes=("per_piece", "thp_like", "hstate_present", "subtree_counted"),
                            watch=[("f", 0)], nr_hugepages={SMALL: 1}, geometry="toy")
    for scheme, result in table[-1]["results"].items():
        before = table[-2]["results"][scheme]["folios"]["f@0x0"]["refcount"]
        print(f"{scheme:16} refcount {before} -> {result['folios']['f@0x0']['refcount']}")
    """),
    check("""
    `per_piece` and `thp_like` count references per leaf, so the fork adds one per copied leaf. `hstate_present` and `subtree_counted` count one per (mapping, hugepage), so the child's copy of the subtree adds one — James disliked even that “'inc' business in copy_hugetlb_page_range” (T23), but it is bounded: fork cannot amplify what is counted once per mapping.
    """),
    md("""
    ## The guard in copy_hugetlb_page_range

    With a guard, each reference fork copies is taken with a check, and one refusal fails **the whole fork**: no child is created. **Predict:** in the toy, with `guard="int_max_half"`, how many forks succeed?
    """),
    code("""
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="per_piece", guard="int_max_half")
    w = ops.World(m)
    for op in steps[:-1]:
        ops.run_step(w, op)
    out = ops.Outcome("ok")
    while out.ok:
        out = ops.run_step(w, ops.Fork("p", "c"))
        print(f"fork: {out.status:6} refcount {w.files['f'].folio_at(0).refcount:3}, "
              f"{len(m.processes)} processes")
    print(out.message)
    """),
    check("""
    Six. The seventh fork's copy takes the count from 57 up to the limit leaf by leaf; at its eighth leaf the guard finds 64 and refuses. The whole fork fails: the child is never created and the references its copy had taken are given back, so the count is 57 again. (The message reports the refcount the guard saw.)
    """),
    md("""
    **Quiz — read the patch.** v2 35/46 changed the copy in `copy_hugetlb_page_range()` to:

    ```c
    if (try_get_page(hpage)) {
            ret = -EFAULT;
            break;
    }
    ```

    `try_get_page()` returns true when it *took* the reference. What does this code do to a fork that should succeed?
    """),
    check("""
    It fails it: every successful `try_get_page()` returns true, so the copy stops with `-EFAULT` at the first leaf, and fork of any HGM VMA that needs copying fails. The intended test is `!try_get_page(hpage)`; the simulator models the intent. A one-character bug that only a test forking a uffd-wp HGM VMA would have caught — the kind of path this chapter is about.
    """),
    md("""
    ## Summary

    - Mainline copies a shared hugetlb VMA at fork only when it is registered for uffd-wp with `EVENT_FORK`; then every leaf is copied with its reference.
    - Under per-leaf counting one fork takes a whole mapping's worth of references in one system call, and children can fork again: an amplifier. The guard must cover `copy_hugetlb_page_range()`, and a refusal fails the whole fork.
    - Schemes that count once per mapping make fork add one per copied subtree.
    """),
    md("""
    ## Exercises

    1. **Grandchildren.** Does the child's own fork copy the HGM VMA again? Predict, then run it (start from the three-VMA parent above).
    2. In the toy with `guard="int_max_half"`, a parent has **two** fully 4 KiB-mapped HGM VMAs (uffd-wp, `EVENT_FORK`). By hand: how many forks succeed? Then run it.
    3. On x86-64, a parent holds 64 fully 4 KiB-mapped VMAs of one 1 GiB page. How many forks does the overflow take (no guard)? Use `overflow_math`.
    """),
    code("""
    # your turn
    """),
]

SOL04 = [
    code("""
    import hgmviz as hv
    from hgmviz import ops
    """),
    TOY_SIZES,
    md("""
    ## Exercise 1

    Yes: with `EVENT_FORK` the child's VMA keeps its uffd-wp registration, so `vma_needs_copy()` says yes again and the grandchild copies every leaf.
    """),
    code("""
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=SMALL, hstate=SMALL)
    f.fallocate(0, SMALL)
    p, folio = m.spawn(), f.folio_at(0)
    for _ in range(3):
        a = p.mmap(f, SMALL)
        p.madvise(a, SMALL, hv.MADV_SPLIT)
        p.uffdio_register(a, SMALL, mode="minor|wp", event_fork=True)
        p.uffdio_continue_batch(a, SMALL, PAGE)
    child = p.fork()
    grandchild = child.fork()
    print("refcount", folio.refcount, "·", child.vmas[-1].uffd_modes, "in the child")
    """),
    md("""
    ## Exercise 2

    Two VMAs: 1 + 2 × 8 = 17. Each fork would add 16: 33, 49, 65 — but the third fork's copy reaches the limit: the guard refuses when the count is above 63, so that fork fails after admitting 63 − 49 + 1 = 15 of its 16 references, and all of them are rolled back with the fork. Two forks succeed.
    """),
    code("""
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="per_piece", guard="int_max_half")
    w = ops.World(m)
    steps = [ops.MemfdCreate("f", SMALL, SMALL), ops.Fallocate("f", 0, SMALL), ops.Spawn("p")]
    for label in ("a", "b"):
        steps += [ops.Mmap("p", "f", SMALL, label), ops.Madvise("p", label, SMALL, "MADV_SPLIT"),
                  ops.UffdioRegister("p", label, SMALL, "minor|wp", event_fork=True),
                  ops.UffdioContinueBatch("p", label, SMALL, PAGE)]
    outs = [ops.run_step(w, op) for op in steps]
    while outs[-1].ok:
        outs.append(ops.run_step(w, ops.Fork("p", "c")))
    print([o.status for o in outs[len(steps):]], "refcount", w.files["f"].folio_at(0).refcount)
    """),
    md("""
    ## Exercise 3

    Each fork adds 64 mappings' worth of references; the parent itself holds 64 and the page cache its share.
    """),
    code("""
    o = hv.overflow_math(hstate=GIB, piece=PAGE, guard=None)
    per_fork = 64 * o["refs_per_mapping"]
    room = o["int_max"] - o["page_cache_refs"] - per_fork      # references left before INT_MAX
    print("forks to pass INT_MAX:", room // per_fork + 1)
    """),
]

# ============================================================================================
# 05 · Guard or restrict
# ============================================================================================
CH05 = [
    md("""
    # 5 · Guard every page_ref_*, annotate, or restrict HGM?

    *Promise: weigh the two ways of making overflow checks complete, and the restrictions that would make them unnecessary, against what QEMU postcopy needs.*

    Learning goals:
    1. List the paths that take a folio reference, and which of them the thread (and the simulator) guards.
    2. See an unguarded path take the count past the guard's limit, and why the INT_MAX/2 margin matters then.
    3. Judge “no fork with HGM” and “one HGM VMA per hugepage” against multi-process postcopy.
    """),
    code("""
    import hgmviz as hv
    from hgmviz import ops
    from hgmviz.describe import op_label
    """),
    TOY_SIZES,
    md("""
    ## Guard everything, or annotate?

    Peter asked how complete a check at three call sites could be:
    """),
    quote("T11", """
    If we want such a check to make a real difference, IIUC we may want to consider having similar check in: page_ref_add page_ref_inc page_ref_inc_return page_ref_add_unless

    But it's unfortunate that mostly all the callers to these functions (especially the first two) do not have a retval yet at all. Considering the low possibility so far on having it overflow, maybe it can also be done for later (and I think checking negative as try_get_page would suffice too).
    """),
    quote("T12", """
    I think as long as we annotate the few cases that userspace can exploit to overflow refcount, we should be ok. I think this was the same idea with try_get_page(): it is supposed to be used in places that userspace could reasonably exploit to overflow refcount.
    """),
    md("""
    ## Worked example: which paths take a reference?

    By hand, from chapters 1–4: a **fault** (`hugetlb_no_page`), **`UFFDIO_CONTINUE`** (`hugetlb_mfill_atomic_pte`) and **fork** (`copy_hugetlb_page_range`) each take one per leaf they install — the three annotated paths. **`MADV_COLLAPSE`** takes one for the leaf it installs (`filemap_get_folio`), and the **page cache** takes its share when the folio is added. Neither of those two was guarded, in v2 or in the proposal. Collapse can fill holes, so it can take a reference where there was none.

    **Predict:** bring a toy folio to the INT_MAX/2 limit, then try each path once. Which ones are refused?
    """),
    code("""
    setup = [ops.MemfdCreate("f", SMALL, SMALL), ops.Fallocate("f", 0, SMALL), ops.Spawn("p")]
    one_mapping = [ops.Mmap("p", "f", SMALL, "a"), ops.Madvise("p", "a", SMALL, "MADV_SPLIT"),
                   ops.UffdioRegister("p", "a", SMALL, "minor|wp", event_fork=True),
                   ops.UffdioContinueBatch("p", "a", SMALL, PAGE)]
    o = hv.overflow_math(hstate=SMALL, piece=PAGE, guard="int_max_half", geometry="toy")
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="per_piece", guard="int_max_half")
    w = ops.World(m)
    for op in setup + one_mapping * (o["full_mappings"] + 1):
        ops.run_step(w, op)
    print("refcount", w.files["f"].folio_at(0).refcount, "· the guard refuses above", t.INT_MAX // 2)
    """),
    code("""
    attempts = [ops.Mmap("p", "f", SMALL, "plain"), ops.Mmap("p", "f", SMALL, "spare"),
                ops.Madvise("p", "spare", SMALL, "MADV_SPLIT"),        # set-up: no reference taken
                ops.Touch("p", "plain"), ops.UffdioContinue("p", ("a", o["extra_pieces"] * PAGE), PAGE),
                ops.Fork("p", "c"), ops.Madvise("p", "spare", SMALL, "MADV_COLLAPSE")]
    for op in attempts:
        out = ops.run_step(w, op)
        print(f"{op_label(op):32} {out.status:7} refcount {w.files['f'].folio_at(0).refcount}")
        print("    ", " → ".join(m.call_path))
    """),
    check("""
    The fault (SIGBUS), `UFFDIO_CONTINUE` (ENOMEM) and fork (ENOMEM) are refused: the three annotated paths. `MADV_COLLAPSE` succeeds and takes the count **past** the limit: it fills the empty split VMA with one leaf, and its reference is not checked. Nothing breaks, because INT_MAX/2 leaves a margin of about a billion references for exactly such paths. Under the sign check there is no margin: an unguarded reference at INT_MAX wraps the count (exercise 1).
    """),
    md("""
    **Quiz.** Why not put the check inside `page_ref_inc()` itself, as Peter's list suggests, and be complete?
    """),
    check("""
    Because most callers cannot fail: `page_ref_inc()` returns nothing and its callers have no error path (Peter's own “do not have a retval yet at all”). A check there could only warn or saturate the counter, not refuse. Annotating means giving the user-reachable paths a `try_`-style variant that can fail and an error to return — what `try_get_page()` did in 2019 — and relying on the margin for the rest.
    """),
    md("""
    ## Or restrict HGM

    David's alternative: make the problem impossible instead of guarding it.
    """),
    quote("T10", """
    Of course, one can just disallow fork() with any HGM right from the start and keep it all simpler to not open up a can of worms there.

    Is it reasonable, to have more than one (or a handful) of VMAs mapping a huge page via a HGM? Restricting it to a single one, would make handling much easier.
    """),
    md("""
    **Predict:** (a) does “no fork with HGM” prevent the overflow? (b) does “one HGM VMA per hugepage”?
    """),
    code("""
    o = hv.overflow_math(hstate=GIB, piece=PAGE, guard=None)
    print("processes the 1 GiB attack needs, without any fork:", o["min_processes_at_max_map_count"])
    print(f"references one HGM mapping can take: {o['refs_per_mapping']:,} "
          f"(+ {o['page_cache_refs']} from the page cache), INT_MAX {o['int_max']:,}")
    """),
    check("""
    (a) No: one process can hold every mapping the attack needs (chapter 2), so forbidding fork removes only the amplifier of chapter 4. (b) Yes: a single HGM mapping takes at most `refs_per_mapping` references, far below INT_MAX; every other mapping of the page is an ordinary hstate-level one, one reference each, as on mainline.
    """),
    md("""
    ## … but postcopy needs more than one

    """),
    quote("T11", """
    Yes, any form of multi-proc QEMU will need that for supporting HGM postcopy.
    """),
    quote("T12", """
    +1. Disallowing fork() entirely is quite a restrictive limitation.
    """),
    md("""
    In a multi-process VMM, QEMU and its helpers (virtiofsd and the like) each map the guest's memory, and each must see a page only once it has arrived, so each maps it in pieces. Two processes, two HGM VMAs on one hugepage:
    """),
    code("""
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=SMALL, hstate=SMALL)
    f.fallocate(0, SMALL)
    for name in ("qemu", "virtiofsd"):
        proc = m.spawn()
        view = proc.mmap(f, SMALL)
        proc.madvise(view, SMALL, hv.MADV_SPLIT)
        proc.uffdio_register(view, SMALL, mode="minor")
        proc.uffdio_continue(view + 3 * PAGE, PAGE)
    hv.draw(m)
    """),
    md("""
    ## Summary

    - The thread chose to **annotate**: guard the paths user space can drive to take references in bulk (fault, `UFFDIO_CONTINUE`, fork's copy) and leave the rest (collapse, the page cache) to the margin. INT_MAX/2 keeps a margin; the sign check, which v2 shipped, keeps none.
    - Restricting HGM to one VMA per hugepage would bound the count, but multi-process postcopy needs several; forbidding fork alone bounds nothing.
    """),
    md("""
    ## Exercises

    1. Under `guard="sign"`, bring the toy count to exactly `INT_MAX` (15 full mappings and 6 pieces), then collapse an empty split VMA of the same page. What happens?
    2. Under “one HGM VMA per hugepage”, what is the most references HGM can hold on a 1 GiB page on kernel 6.2, and on 6.18? On a 2 MiB page?
    3. Extend the postcopy cell to three processes, each with 4 pieces mapped. Predict the `per_piece` refcount, then check it.
    """),
    code("""
    # your turn
    """),
]

SOL05 = [
    code("""
    import hgmviz as hv
    from hgmviz import ops
    """),
    TOY_SIZES,
    md("""
    ## Exercise 1

    1 + 15 × 8 + 6 = 127 = INT_MAX: every increment was admitted (the count was positive). The collapse takes one unchecked reference: 127 + 1 wraps to −128. The sign check never had a chance — and now the count is negative with nobody refused.
    """),
    code("""
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="per_piece", guard="sign")
    f = m.memfd_create(size=SMALL, hstate=SMALL)
    f.fallocate(0, SMALL)
    p, folio = m.spawn(), f.folio_at(0)
    for k in range(16):
        a = p.mmap(f, SMALL)
        p.madvise(a, SMALL, hv.MADV_SPLIT)
        p.uffdio_register(a, SMALL, mode="minor")
        p.uffdio_continue_batch(a, SMALL if k < 15 else 6 * PAGE, PAGE)
    print("refcount", folio.refcount)
    """),
    code("""
    spare = p.mmap(f, SMALL)
    p.madvise(spare, SMALL, hv.MADV_SPLIT)
    p.madvise(spare, SMALL, hv.MADV_COLLAPSE)
    print("after an unguarded collapse: refcount", folio.refcount, "· wrapped:", folio.wrapped)
    """),
    md("""
    ## Exercise 2

    The page cache's share plus one mapping's pieces (other mappings are hstate-level, one reference each).
    """),
    code("""
    for size in (GIB, MIB2):
        for kernel in ("6.2", "6.18"):
            o = hv.overflow_math(hstate=size, piece=PAGE, kernel=kernel, guard=None)
            print(f"{hv.X86_64.fmt_size(size)} kernel {kernel:4}: "
                  f"{o['page_cache_refs'] + o['refs_per_mapping']:,}")
    """),
    md("""
    ## Exercise 3

    Page cache 1, plus 4 leaves in each of three processes: 13.
    """),
    code("""
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=SMALL, hstate=SMALL)
    f.fallocate(0, SMALL)
    for name in ("qemu", "virtiofsd", "helper"):
        proc = m.spawn()
        view = proc.mmap(f, SMALL)
        proc.madvise(view, SMALL, hv.MADV_SPLIT)
        proc.uffdio_register(view, SMALL, mode="minor")
        proc.uffdio_continue_batch(view, 4 * PAGE, PAGE)
    print("refcount", f.folio_at(0).refcount)
    """),
]

# ============================================================================================
# 06 · What page_mapcount should mean; THP-like vs HVO
# ============================================================================================
CH06 = [
    md("""
    # 6 · What should page_mapcount mean? THP-like counts and HVO

    *Promise: see what each scheme's page_mapcount tells smaps and the rest of mm, and what the THP-like answer costs in vmemmap.*

    Learning goals:
    1. Read `page_mapcount()` under `per_piece`, `thp_like` and `hstate_present` for the same mapping, and what smaps concludes from it.
    2. Explain why `thp_like` cannot coexist with the HugeTLB Vmemmap Optimization (HVO).
    3. Compute with `hv.vmemmap_cost` what HVO saves, and what giving it up costs a host.
    """),
    code("""
    import hgmviz as hv
    from hgmviz import ops
    """),
    code("""
    PAGE = hv.PAGE_SIZE
    MIB2, GIB = (h.size for h in hv.X86_64.hstates)
    SCHEMES = ("per_piece", "thp_like", "hstate_present")
    """),
    md("""
    ## Who reads the mapcount?

    Besides `/proc/kpagecount`, the kernel asks `page_mapcount()` whether a page is shared. `/proc/pid/smaps` splits hugetlb memory into `Shared_Hugetlb` and `Private_Hugetlb` by `mapcount >= 2` (the hunk of v1 21/46 the thread started from, where each leaf's size is added); migration with `MPOL_MF_MOVE` moves only pages mapped once; memory-failure handling checks whether a poisoned page is still mapped. They all ask one of two questions: is it mapped by more than one, and is it mapped at all?

    The three answers on the table (James named them #1, #2, #3 in T21):

    - **`per_piece`** (v1, #1): the head's mapcount counts every leaf; every page of the folio reports it.
    - **`thp_like`** (v2, #2): a leaf at the hstate level counts in the folio's entire mapcount; a smaller leaf increments the `_mapcount` of each 4 KiB page it covers, as THPs do.
    - **`hstate_present`** (RFC v1, #3): one count while the hstate-level entry is present (chapter 7).
    """),
    md("""
    ## Worked example, by hand

    One process, one VMA, a 2 MiB page of which only pages 0 and 1 are mapped, each by its own 4 KiB leaf. `per_piece`: two leaves, so the head count is 2 and **every** page reports 2 — smaps sees `mapcount >= 2` and files the 8 KiB under `Shared_Hugetlb`, although one process maps them. `thp_like`: pages 0 and 1 report 1, page 2 reports 0; 8 KiB `Private_Hugetlb`. `hstate_present`: the hstate-level entry is present, so every page reports 1, even the unmapped page 2; 8 KiB private.

    Check it — the same steps on one machine per scheme:
    """),
    code("""
    steps = [ops.MemfdCreate("f", MIB2, MIB2), ops.Fallocate("f", 0, MIB2), ops.Spawn("p"),
             ops.Mmap("p", "f", MIB2, "a"), ops.Madvise("p", "a", MIB2, "MADV_SPLIT"),
             ops.UffdioRegister("p", "a", MIB2, "minor"),
             ops.UffdioContinue("p", "a", PAGE), ops.UffdioContinue("p", ("a", PAGE), PAGE)]
    worlds = {s: ops.World(hv.Machine(nr_hugepages={MIB2: 1}, scheme=s)) for s in SCHEMES}
    outcomes = {s: [ops.run_step(w, op).status for op in steps] for s, w in worlds.items()}
    for s, w in worlds.items():
        folio = w.files["f"].folio_at(0)
        print(f"{s:15} page_mapcount of pages 0, 1, 2: {[folio.page_mapcount(i) for i in range(3)]}"
              f"   smaps (kB): {w.procs['p'].smaps_hugetlb(w.addrs['a'])}")
    """),
    code("hv.draw_compare([w.machine for w in worlds.values()])"),
    md("""
    **Quiz.** `per_piece` says the page is shared. Which other process maps it?
    """),
    check("""
    None. The mapcount counts page-table entries, not mappers, and per-piece counting makes one mapper look like many. Mainline's mapcount counts entries too, and errs the other way: with PMD sharing, several processes share one page of PMD entries and are counted once. Anything that reads “mapcount > 1” as “shared” — smaps, `MPOL_MF_MOVE`, CoW decisions in private mappings — is misled.
    """),
    md("""
    ## The THP-like answer, and its price

    James put the choice to the list:
    """),
    quote("T9", """
    I'm curious what others think (Mike, Matthew?). I'm guessing the THP-like way is probably what most people would want, though it would be a real shame to lose the vmemmap optimization.
    """),
    quote("T10", """
    Heh, not me :) Having a single mapcount is certainly much cleaner. ... and if we're dealing with refcount overflows already, mapcount overflows are not an issue.
    """),
    md("""
    Every 4 KiB page has a 64-byte `struct page` in the *vmemmap*. For a hugepage most of them are identical tails, so HVO (`hugetlb_optimize_vmemmap`) maps the tail pages of the vmemmap read-only onto the first one and frees the rest:
    """),
    quote("T4", """
    The first page of page structs is mapped RW; all the others are mapped RO to a single physical page
    """),
    md("""
    **Predict:** how many vmemmap pages describe a 1 GiB page, and how many does HVO free?
    """),
    code("""
    for size in (MIB2, GIB):
        c = hv.vmemmap_cost(size)
        print(f"{hv.X86_64.fmt_size(size)}: {c['struct_pages']:,} struct pages in "
              f"{c['vmemmap_pages']:,} vmemmap pages; HVO keeps {c['hvo_kept_pages']}, "
              f"frees {c['hvo_freed_pages']:,} ({hv.X86_64.fmt_size(c['hvo_freed_bytes'])})")
    print("vmemmap per byte of hugepage:", hv.vmemmap_cost(GIB)["vmemmap_fraction"])
    """),
    md("""
    `thp_like` writes the tail pages' `_mapcount`. Under HVO those are read-only aliases of the first page: writing them is impossible. So v2 made the two exclusive:
    """),
    quote("v2 cover letter", """
    This behavior means that HGM is incompatible with the HugeTLB Vmemmap Optimization (HVO). HGM is disabled by default, and if it gets enabled, HVO will be disabled.
    """),
    md("""
    **Predict:** on a machine with HVO on (`hvo=True`), which schemes can still `MADV_SPLIT`?
    """),
    code("""
    for s in SCHEMES:
        w = ops.World(hv.Machine(nr_hugepages={MIB2: 1}, scheme=s, hvo=True))
        print(f"{s:15}", [ops.run_step(w, op).status for op in steps])
    """),
    check("""
    `per_piece` and `hstate_present` write only the head's fields, so HVO stays. `thp_like` is refused at `MADV_SPLIT` (`EINVAL`), and the 4 KiB `UFFDIO_CONTINUE`s that follow fail with it, since the VMA never became an HGM VMA.
    """),
    md("""
    What losing HVO costs a host with 64 GiB in 1 GiB pages:
    """),
    code("""
    c = hv.vmemmap_machine_cost({GIB: 64})
    print(f"vmemmap HVO frees: {c['hvo_freed_bytes'] / 2**20:,.0f} MiB; "
          f"the THP-like scheme gives it back: {c['thp_like_extra_bytes'] / 2**20:,.0f} MiB")
    """),
    md("""
    James's preference, the day after he asked:
    """),
    quote("T12", """
    Given that this approach allows us to retain the hugetlb vmemmap optimization (and it wouldn't require a horrible amount of complexity), I prefer this approach over the THP-like approach.
    """),
    md("""
    (“This approach” is one count per hstate-level subtree: chapter 7. Mike answered “Me too.” v2 nevertheless shipped the THP-like scheme; chapter 9 follows why.)

    ## Summary

    - A mapcount is read as “shared?” and “mapped?”. `per_piece` answers “shared” for one process; `thp_like` answers per 4 KiB page, as for THPs; `hstate_present` answers per hugepage, and says “mapped” for unmapped pieces.
    - `thp_like` writes tail struct pages, which HVO makes read-only: HGM with it excludes HVO, giving back almost all of the vmemmap (about 1/64 of the memory).
    """),
    md("""
    ## Exercises

    1. On a 5.15 kernel (`kernel="5.15"`), how many vmemmap pages does HVO keep per 1 GiB page, and why does it differ from 6.2?
    2. A host has 512 × 2 MiB pages and 16 × 1 GiB pages with HVO on. What does switching to the THP-like scheme cost?
    3. Two processes each map **one different** 4 KiB piece of the same 2 MiB page. Which schemes' smaps report the pieces as shared? Is that right?
    """),
    code("""
    # your turn
    """),
]

SOL06 = [
    code("""
    import hgmviz as hv
    from hgmviz import ops
    """),
    code("""
    PAGE = hv.PAGE_SIZE
    MIB2, GIB = (h.size for h in hv.X86_64.hstates)
    SCHEMES = ("per_piece", "thp_like", "hstate_present")
    """),
    md("""
    ## Exercise 1

    HVO as first merged (v5.14, `f41f2ed43ca5`) kept two vmemmap pages per hugepage; since v5.18 (`e7d324850bfc`, “free the 2nd vmemmap page”) it keeps one.
    """),
    code("""
    for kernel in ("5.15", "6.2"):
        c = hv.vmemmap_cost(GIB, kernel=kernel)
        print(kernel, "keeps", c["hvo_kept_pages"], "frees", c["hvo_freed_pages"])
    """),
    md("## Exercise 2"),
    code("""
    c = hv.vmemmap_machine_cost({MIB2: 512, GIB: 16})
    print(f"{c['thp_like_extra_bytes'] / 2**20:,.0f} MiB of vmemmap comes back without HVO")
    """),
    md("""
    ## Exercise 3

    `per_piece` counts both leaves on the head: 2, shared — and here it is right that two processes map the folio, though no single 4 KiB page is mapped twice. `thp_like`: each page is mapped once: private. `hstate_present`: two hstate-level entries (one per process) are present: 2, shared. Which answer is “right” depends on whether “shared” is asked of the folio or of the page; smaps asks per leaf.
    """),
    code("""
    for s in SCHEMES:
        w = ops.World(hv.Machine(nr_hugepages={MIB2: 1}, scheme=s))
        steps = [ops.MemfdCreate("f", MIB2, MIB2), ops.Fallocate("f", 0, MIB2)]
        for n, proc in enumerate(("p", "q")):
            steps += [ops.Spawn(proc), ops.Mmap(proc, "f", MIB2, proc + "a"),
                      ops.Madvise(proc, proc + "a", MIB2, "MADV_SPLIT"),
                      ops.UffdioRegister(proc, proc + "a", MIB2, "minor"),
                      ops.UffdioContinue(proc, (proc + "a", n * PAGE), PAGE)]
        outs = [ops.run_step(w, op) for op in steps]
        print(f"{s:15}", w.procs["p"].smaps_hugetlb(w.addrs["pa"]), w.procs["q"].smaps_hugetlb(w.addrs["qa"]))
    """),
]

# ============================================================================================
# 07 · One logical mapping per hstate-level subtree
# ============================================================================================
CH07 = [
    md("""
    # 7 · One logical mapping per hstate-level subtree

    *Promise: follow David's “single large logical mapping” through the page tables — when it counts, its caveat, and where the information it needs has to live.*

    Learning goals:
    1. Predict when `hstate_present` moves the refcount and mapcount, and why the overflow of chapter 2 disappears.
    2. Show the caveat: a piece that is not mapped with a positive `page_mapcount()`.
    3. Compare keeping the information in the page tables (`hstate_present`) with keeping metadata (`subtree_counted`), and what the metadata costs.
    """),
    code("""
    import hgmviz as hv
    from hgmviz import ops
    from hgmviz.describe import op_label
    """),
    TOY_SIZES,
    md("""
    ## The idea
    """),
    quote("T10", """
    I wonder if the following crazy idea has already been discussed: treat the whole mapping as a single large logical mapping. One reference and one mapping, no matter how the individual parts are mapped into the assigned page table sub-tree.

    Because for hugetlb with MAP_SHARED, we know that the complete assigned sub-tree of page tables can only map the given hugetlb page, no fragments of something else. That's very different to THP in private mappings ...

    So as soon as the first piece gets mapped, we increment refcount+mapcount. Other pieces in the same subtree don't do that.

    Once the last piece is unmapped (or simpler: once the complete subtree of page tables is gone), we decrement refcount+mapcount.
    """),
    quote("T12", """
    This is actually how mapcount was treated in HGM RFC v1 (though not refcount); it is doable for both.
    """),
    md("""
    The simulator's `hstate_present` is the “simpler” form, RFC v1's rule: count **+1/+1 when the hstate-level entry becomes present** — as a leaf, or as a table on the way down to smaller leaves — and −1/−1 when it becomes none again (the leaf is cleared, or its page table is freed). Peter stated the same rule (“increase the hpage mapcount only when hstate pXd … entry being populated (no matter as leaf or a non-leaf)”, quoted in T20).

    ## Worked example, by hand

    Toy `BIG` page (the toy's “1 GiB”: its hstate level is the PUD), page cache 1. Map piece 0 at 4 KiB: the PUD entry goes none → table: refcount 2, mapcount 1. Map piece 1: nothing. Map a whole PMD-sized range: nothing. `MADV_COLLAPSE`: the PUD entry goes table → leaf, present throughout: nothing. `munmap`: the entry goes away: refcount 1, mapcount 0.
    """),
    code("""
    setup = [ops.MemfdCreate("f", BIG, BIG), ops.Fallocate("f", 0, BIG), ops.Spawn("p"),
             ops.Mmap("p", "f", BIG, "a"), ops.Madvise("p", "a", BIG, "MADV_SPLIT"),
             ops.UffdioRegister("p", "a", BIG, "minor")]
    pieces = [ops.UffdioContinue("p", "a", PAGE), ops.UffdioContinue("p", ("a", PAGE), PAGE),
              ops.UffdioContinue("p", ("a", SMALL), SMALL)]       # piece 0, piece 1, a PMD range
    """),
    code("""
    m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme="hstate_present")
    w = ops.World(m)
    for op in setup:
        ops.run_step(w, op)
    folio = w.files["f"].folio_at(0)
    for op in pieces + [ops.Madvise("p", "a", BIG, "MADV_COLLAPSE"), ops.Munmap("p", "a", BIG)]:
        out = ops.run_step(w, op)
        print(f"{op_label(op):36} {out.status:3} refcount {folio.refcount} "
              f"mapcount {folio.entire_mapcount}")
    """),
    md("""
    ## No more overflow

    A mapping counts once however it is mapped, so the attack of chapter 2 gains one reference per VMA, as on mainline. **Predict** the toy refcount after as many 4 KiB mappings as overflowed `per_piece`:
    """),
    code("""
    o = hv.overflow_math(hstate=SMALL, piece=PAGE, guard=None, geometry="toy")
    m = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="hstate_present")
    w = ops.World(m)
    for op in [ops.MemfdCreate("f", SMALL, SMALL), ops.Fallocate("f", 0, SMALL), ops.Spawn("p")]:
        ops.run_step(w, op)
    for _ in range(o["wraps_during_mapping"]):
        for op in [ops.Mmap("p", "f", SMALL, "a"), ops.Madvise("p", "a", SMALL, "MADV_SPLIT"),
                   ops.UffdioRegister("p", "a", SMALL, "minor"),
                   ops.UffdioContinueBatch("p", "a", SMALL, PAGE)]:
            ops.run_step(w, op)
    print(o["wraps_during_mapping"], "mappings: refcount", w.files["f"].folio_at(0).refcount)
    """),
    code("""
    o = hv.overflow_math(hstate=GIB, piece=GIB, guard=None)     # one reference per mapping
    print(f"x86-64, one reference per mapping: wraps during mapping {o['wraps_during_mapping']:,}, "
          f"needs at least {o['min_processes_at_max_map_count']:,} processes")
    """),
    md("""
    ## The caveat
    """),
    quote("T12", """
    One caveat here: if a page is unmapped in small pieces, it is difficult to know if the page is legitimately completely unmapped (we would have to check all the PTEs in the page table). In RFC v1, I sidestepped this caveat by saying that "page_mapcount() is incremented if the hstate-level PTE is present". A single unmap on the whole hugepage will clear the hstate-level PTE, thus decrementing the mapcount.

    On a related note, there still exists an (albeit minor) API difference vs. THPs: a piece of a page that is legitimately unmapped can still have a positive page_mapcount().
    """),
    md("""
    **Predict:** only piece 0 of a toy `BIG` page is mapped. What do `pagemap` and `page_mapcount` say about page 5?
    """),
    code("""
    m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme="hstate_present")
    w = ops.World(m)
    for op in setup + pieces[:1]:                          # only piece 0 is mapped
        ops.run_step(w, op)
    p, a, folio = w.procs["p"], w.addrs["a"], w.files["f"].folio_at(0)
    print("pagemap(a + 5 pages):", p.pagemap(a + 5 * PAGE), "· page_mapcount(5):", folio.page_mapcount(5))
    """),
    check("""
    Not mapped (`None`), yet `page_mapcount(5)` is 1: the count belongs to the subtree, not to the page. Anything asking “is this page mapped?” gets yes for every page of a folio of which one piece is mapped.
    """),
    md("""
    The picture: the PUD entry points to a table (that is what `hstate_present` counts), one 4 KiB leaf below it, and the folio's mapcount says 1 for all of it.
    """),
    code("hv.draw(m)"),
    md("""
    Mike's question on the caveat was how a page would get unmapped in small pieces at all:
    """),
    quote("T13", """
    Are we allowing unmapping of small (non-huge page sized) areas with HGM? We must be if you are concerned with it. What API would cause this? I just do not remember this discussion.
    """),
    md("""
    **Predict:** `MADV_DONTNEED` of 4 KiB, then of the whole hugepage. What is mapped afterwards, and what mapcount does `hstate_present` report?
    """),
    code("""
    for length in (PAGE, BIG):
        out = ops.run_step(w, ops.Madvise("p", "a", length, "MADV_DONTNEED"))
        print(f"MADV_DONTNEED {t.fmt_size(length):>7}: {out.status}; piece 0 mapped: "
              f"{p.pagemap(a) is not None}; mapcount {folio.entire_mapcount}")
    """),
    check("""
    The 4 KiB `MADV_DONTNEED` does nothing: mainline rounds the end of a hugetlb range *down* to the hugepage (Rik van Riel's fix), so the range is empty — the series added no sub-hugepage unmap, which answers Mike. The whole-hugepage one zaps the leaves, but, in the simulator as in the kernel's `zap_page_range`, the page tables stay until `munmap` or exit: the hstate-level entry still points to a table, and `hstate_present` still says mapcount 1 with nothing mapped. “Once the complete subtree of page tables is gone” is when it drops.
    """),
    md("""
    ## Where the information lives

    To drop the count when the last piece goes, something must know how many pieces are left — per mapping and per page:
    """),
    quote("T11", """
    The question is how to maintaining above information.

    It needs to be per-map (so one page mapped multiple times can be accounted differently), and per-page (so one mapping/vma can contain multiple pages). So far I think that's exactly the pgtable. If we can squeeze information into the pgtable it'll work out, but definitely not trivial. Or we can maintain seperate allocates for such information, but that can be extra overheads too.
    """),
    quote("T12", """
    I don't think we necessarily need to check the page table if we allow for the limitations stated above.
    """),
    md("""
    `hstate_present` keeps nothing extra: the page tables are the information, at the price of the caveat. `subtree_counted` (not a kernel scheme — Peter's “separate allocates”, and Mike's “keep metadata”) keeps a count of mapped pieces per (process, hugepage), takes the reference when it leaves 0 and drops it when it returns to 0, and reports its metadata bytes. **Predict** both after the whole-hugepage `MADV_DONTNEED`:
    """),
    code("""
    worlds = {s: ops.World(hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme=s))
              for s in ("hstate_present", "subtree_counted")}
    for scheme, w in worlds.items():
        for op in setup + pieces[:2]:
            ops.run_step(w, op)
        print(f"{scheme:16} pieces 0 and 1 mapped: mapcount {w.files['f'].folio_at(0).entire_mapcount}"
              f", metadata {w.machine.scheme.metadata_bytes()} bytes")
    """),
    code("""
    for scheme, w in worlds.items():
        ops.run_step(w, ops.Madvise("p", "a", BIG, "MADV_DONTNEED"))
        print(f"{scheme:16} after MADV_DONTNEED: mapcount {w.files['f'].folio_at(0).entire_mapcount}"
              f", metadata {w.machine.scheme.metadata_bytes()} bytes")
    """),
    md("""
    The metadata is small per entry but lives as long as the mapping, for every hugepage any process maps in pieces (exercise 3 sizes it for a guest).

    Other costs the thread found for one-count-per-subtree: `folio_mapcount()` of a page mapped by 512 PTEs in one VMA is 1, which breaks an early exit in `folio_referenced()` that trusts it (T21, T22); and fork has to take a reference per copied subtree (“The 'inc' business in copy_hugetlb_page_range”, T23).

    ## Summary

    - One reference and one mapcount per hstate-level subtree: overflow becomes as hard as on mainline, collapse is free (chapter 9), HVO stays (chapter 6).
    - The caveat: a piece that is not mapped can report a positive mapcount, and with the “simpler” rule the count goes only when the page tables go.
    - The information “how many pieces are still mapped” lives either in the page tables (scan them) or in metadata (`subtree_counted`), which costs memory per mapping and per hugepage.
    """),
    md("""
    ## Exercises

    1. Fork a uffd-wp (`EVENT_FORK`) HGM VMA with two 4 KiB pieces mapped, under `hstate_present`. By hand, what does the fork add? Check it.
    2. Find another sequence after which `hstate_present` and `subtree_counted` disagree. (Hint: chapter 8's `m.inject("pagecache_vanish")` with `lookup_first=False`.)
    3. A 64 GiB guest is backed by 1 GiB pages; during postcopy QEMU and virtiofsd both map a piece of every hugepage. How many bytes of `subtree_counted` metadata is that, against what HVO frees for the same pages?
    """),
    code("""
    # your turn
    """),
]

SOL07 = [
    code("""
    import hgmviz as hv
    from hgmviz import ops
    """),
    TOY_SIZES,
    md("""
    ## Exercise 1

    The child's copy of the subtree makes its own hstate-level entry present: +1 reference and +1 mapcount, however many pieces are in it.
    """),
    code("""
    m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme="hstate_present")
    f = m.memfd_create(size=BIG, hstate=BIG)
    f.fallocate(0, BIG)
    p, folio = m.spawn(), f.folio_at(0)
    a = p.mmap(f, BIG)
    p.madvise(a, BIG, hv.MADV_SPLIT)
    p.uffdio_register(a, BIG, mode="minor|wp", event_fork=True)
    p.uffdio_continue_batch(a, 2 * PAGE, PAGE)
    print("before fork:", folio.refcount, folio.entire_mapcount)
    p.fork()
    print("after fork: ", folio.refcount, folio.entire_mapcount)
    """),
    md("""
    ## Exercise 2

    An injected failure after the page tables were allocated leaves a subtree with nothing mapped: `hstate_present` counts it (the entry is present), `subtree_counted` does not (no piece is mapped).
    """),
    code("""
    for scheme in ("hstate_present", "subtree_counted"):
        m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme=scheme, lookup_first=False)
        w = ops.World(m)
        for op in [ops.MemfdCreate("f", BIG, BIG), ops.Fallocate("f", 0, BIG), ops.Spawn("p"),
                   ops.Mmap("p", "f", BIG, "a"), ops.Madvise("p", "a", BIG, "MADV_SPLIT"),
                   ops.UffdioRegister("p", "a", BIG, "minor")]:
            ops.run_step(w, op)
        m.inject("pagecache_vanish")
        out = ops.run_step(w, ops.UffdioContinue("p", "a", PAGE))
        print(f"{scheme:16} {out.status}: mapcount {w.files['f'].folio_at(0).entire_mapcount}")
    """),
    md("""
    ## Exercise 3

    Two processes × 64 hugepages, one metadata entry each; HVO frees per 1 GiB page what `vmemmap_cost` says.
    """),
    code("""
    m = hv.Machine(nr_hugepages={GIB: 64}, scheme="subtree_counted")
    f = m.memfd_create(size=64 * GIB, hstate=GIB)
    f.fallocate(0, 64 * GIB)
    for name in ("qemu", "virtiofsd"):
        proc = m.spawn()
        view = proc.mmap(f, 64 * GIB)
        proc.madvise(view, 64 * GIB, hv.MADV_SPLIT)
        proc.uffdio_register(view, 64 * GIB, mode="minor")
        for off in range(0, 64 * GIB, GIB):
            proc.uffdio_continue(view + off, PAGE)
    freed = hv.vmemmap_machine_cost({GIB: 64})["hvo_freed_bytes"]
    print(f"metadata: {m.scheme.metadata_bytes():,} bytes · HVO frees: {freed / 2**20:,.0f} MiB")
    """),
]

# ============================================================================================
# 08 · Error paths
# ============================================================================================
CH08 = [
    md("""
    # 8 · Between allocating a PTE and setting it

    *Promise: inject the failure Mike worried about, and let the audit show which way of counting survives it.*

    Learning goals:
    1. Say how a walk that allocates page tables and then fails can leave the hstate-level entry present with nothing mapped.
    2. Use `m.inject("pagecache_vanish")` and `m.audit()` to test a counting rule.
    3. Explain James's remedy: look the page up first, and count when the walk reports “made present”.
    """),
    code("""
    import hgmviz as hv
    from hgmviz import ops
    """),
    TOY_SIZES,
    md("""
    ## The worry

    Counting once per subtree (chapter 7) means incrementing when the hstate-level entry becomes present. This is the mail the project is built around:
    """),
    quote("T13", """
    When I was thinking about this I was a bit concerned about having enough information to know exactly when to inc or dec counts. I was actually worried about knowing to do the increment. I don't recall how it was done in the first RFC, but from a high level it would need to be done when the first hstate level PTE is allocated/added to the page table. Right? My concern was with all the places where we could 'error out' after allocating the PTE, but before initializing it. I was just thinking that we might need to scan the page table or keep metadata for better or easier accounting.
    """),
    quote("T14", """
    The only two places where we can *create* a high-granularity page table are: __mcopy_atomic_hugetlb (UFFDIO_CONTINUE) and copy_hugetlb_page_range ... To correctly handle these cases, we basically have to do the pagecache lookup before touching the page table
    """),
    md("""
    ## The knobs

    - `m.inject("pagecache_vanish")` arms a one-shot failure: during the next `UFFDIO_CONTINUE` the page is not found in the page cache.
    - `lookup_first=True` does the page-cache lookup before the walk (James's remedy); `False` walks and allocates first, then looks up (the order v2 kept), so the failure comes after the tables exist — and they stay.
    - `count_at="alloc"` (for `hstate_present`) counts when the walk makes the hstate-level entry present, even as a table: the rule's own definition. `count_at="set"` counts when the first leaf under an entry the walk reported “made present” is set — James's recipe of passing a flag up from `hugetlb_alloc_pmd/pte` through `hugetlb_walk_step` (T14).
    - `m.audit()` recomputes every counter from the page tables and the page cache, and lists every difference from the live counters.
    """),
    md("""
    ## Worked example, by hand

    `count_at="set"`, `lookup_first=False`, toy `BIG` page, page cache 1. (1) `UFFDIO_CONTINUE` of piece 0: the walk allocates a PMD and a PTE table; the PUD entry goes none → table and the walk reports “made present”; the lookup fails; no leaf is set, so nothing is counted; the tables stay. (2) The same call again: the walk finds the PUD entry already present, so “made present” is false; the leaf is set; nothing is counted. A mapped page now has no mapping reference: refcount 1. (3) `munmap`: the subtree is freed, the entry cleared: −1. The refcount is 0 while the page cache still holds the page — it would be freed from under the cache.

    **Predict:** which of the four combinations does the audit flag after steps (1) and (2)?
    """),
    code("""
    setup = [ops.MemfdCreate("f", BIG, BIG), ops.Fallocate("f", 0, BIG), ops.Spawn("p"),
             ops.Mmap("p", "f", BIG, "a"), ops.Madvise("p", "a", BIG, "MADV_SPLIT"),
             ops.UffdioRegister("p", "a", BIG, "minor")]
    piece0 = ops.UffdioContinue("p", "a", PAGE)
    """),
    code("""
    for count_at in ("alloc", "set"):
        for lookup_first in (False, True):
            m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme="hstate_present",
                           count_at=count_at, lookup_first=lookup_first)
            w = ops.World(m)
            for op in setup:
                ops.run_step(w, op)
            m.inject("pagecache_vanish")
            first, again = ops.run_step(w, piece0), ops.run_step(w, piece0)
            print(f"count_at={count_at:5} lookup_first={lookup_first!s:5} {first.status} then {again.status}"
                  f"; refcount {w.files['f'].folio_at(0).refcount}; audit: {m.audit() or 'clean'}")
    """),
    check("""
    Only `count_at="set"` with `lookup_first=False`: the increment is lost for good (the live refcount is one below what the page tables imply; the audit prints counters as stored, so `entire` is the mapcount biased by −1). With `count_at="alloc"` the empty subtree is counted as a mapping — consistent, if odd (chapter 7's caveat again). With `lookup_first=True` the failure comes before anything is allocated, so both rules hold.
    """),
    md("""
    What the failed call leaves behind with `lookup_first=False` — page tables, and no leaf:
    """),
    code("""
    m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme="hstate_present",
                   count_at="set", lookup_first=False)
    w = ops.World(m)
    for op in setup:
        ops.run_step(w, op)
    before = m.snapshot()
    m.inject("pagecache_vanish")
    print(ops.run_step(w, piece0).message)
    hv.draw(m, before=before)
    """),
    md("""
    **Predict** step (3): after the retry succeeds, `munmap` the VMA. Refcount?
    """),
    code("""
    print(ops.run_step(w, piece0).status, "· refcount", w.files["f"].folio_at(0).refcount)
    print(ops.run_step(w, ops.Munmap("p", "a", BIG)).status, "· refcount", w.files["f"].folio_at(0).refcount,
          "· still in the page cache:", w.files["f"].folio_at(0) is not None)
    print(m.audit())
    """),
    check("""
    0 on kernel 6.2, with the folio still in the page cache, whose reference it was: the next `put` frees a page the cache still hands out. That is Mike's worry made concrete — and why James insisted the lookup come first.
    """),
    md("""
    ## The other schemes

    `per_piece`, `thp_like` and `subtree_counted` move their counters when a **leaf** is set or cleared, never when a table is allocated. **Predict:** does the injected failure bother them?
    """),
    code("""
    for scheme in ("per_piece", "thp_like", "subtree_counted"):
        m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme=scheme, lookup_first=False)
        w = ops.World(m)
        for op in setup:
            ops.run_step(w, op)
        m.inject("pagecache_vanish")
        outs = [ops.run_step(w, piece0).status, ops.run_step(w, piece0).status]
        print(f"{scheme:16} {outs}: refcount {w.files['f'].folio_at(0).refcount}; "
              f"audit: {m.audit() or 'clean'}")
    """),
    check("""
    No: an empty page table costs them nothing, and the retry counts its leaf like any other. The question “when exactly do I increment?” exists only for schemes that count per subtree — the price of their cheap counting.
    """),
    md("""
    ## Summary

    - Between allocating page tables and setting a leaf, an operation can fail (here: the page leaves the page cache). The tables stay; the hstate-level entry is present with nothing mapped.
    - Counting at allocation (the rule's definition) stays consistent; counting at the first set loses increments unless the page-cache lookup comes first, and a lost increment ends with a refcount too low: a use-after-free.
    - `m.audit()` is Mike's “scan the page table”: it recomputes the counters from the page tables and finds the scheme that got it wrong.
    """),
    md("""
    ## Exercises

    1. Under `subtree_counted`, with `lookup_first=False`, what are the mapcount and the metadata bytes right after the injected failure, and after the retry?
    2. Repeat the bad combination (`count_at="set"`, `lookup_first=False`) on kernel 6.18. Does the refcount reach 0 after the `munmap`? Is the page safe?
    3. Mike also suggested scanning the page table. In the bad combination, how could a scan at `munmap` have saved the count?
    """),
    code("""
    # your turn
    """),
]

SOL08 = [
    code("""
    import hgmviz as hv
    from hgmviz import ops
    """),
    TOY_SIZES,
    code("""
    setup = [ops.MemfdCreate("f", BIG, BIG), ops.Fallocate("f", 0, BIG), ops.Spawn("p"),
             ops.Mmap("p", "f", BIG, "a"), ops.Madvise("p", "a", BIG, "MADV_SPLIT"),
             ops.UffdioRegister("p", "a", BIG, "minor")]
    piece0 = ops.UffdioContinue("p", "a", PAGE)
    """),
    md("""
    ## Exercise 1

    Nothing is mapped after the failure: mapcount 0, no metadata. After the retry: one piece, mapcount 1, one entry of metadata.
    """),
    code("""
    m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme="subtree_counted", lookup_first=False)
    w = ops.World(m)
    for op in setup:
        ops.run_step(w, op)
    m.inject("pagecache_vanish")
    for _ in range(2):
        out = ops.run_step(w, piece0)
        print(out.status, "mapcount", w.files["f"].folio_at(0).entire_mapcount,
              "metadata", m.scheme.metadata_bytes(), "bytes")
    """),
    md("""
    ## Exercise 2

    On 6.18 the page cache holds `folio_nr_pages()` references, so the count does not reach 0 — it ends one below the page cache's share. Not safe: the page cache's own references are now being spent, and when the file lets go of the page the count reaches 0 one `put` early, or goes negative.
    """),
    code("""
    m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme="hstate_present",
                   count_at="set", lookup_first=False, kernel="6.18")
    w = ops.World(m)
    for op in setup:
        ops.run_step(w, op)
    m.inject("pagecache_vanish")
    for op in (piece0, piece0, ops.Munmap("p", "a", BIG)):
        ops.run_step(w, op)
    folio = w.files["f"].folio_at(0)
    print("refcount", folio.refcount, "· the page cache holds", folio.nr_pages, "· audit:", m.audit())
    """),
    md("""
    ## Exercise 3

    A scan at unmap could decide “was this subtree counted?” by asking whether it ever held a leaf, not whether the walk once said “made present” — but the page tables do not record what was counted, so the scan must recompute from what it finds, exactly as `m.audit()` does. That makes every unmap pay for a walk of the subtree: the cost Mike's alternative, metadata, avoids by paying in memory instead (chapter 7).
    """),
    code("""
    m = hv.Machine(nr_hugepages={BIG: 1}, geometry="toy", scheme="hstate_present",
                   count_at="set", lookup_first=False)
    w = ops.World(m)
    for op in setup:
        ops.run_step(w, op)
    m.inject("pagecache_vanish")
    ops.run_step(w, piece0)
    ops.run_step(w, piece0)
    print("what a scan of the page tables finds:", m.audit())
    """),
]

# ============================================================================================
# 09 · The cost of collapse; v2 and mainline
# ============================================================================================
CH09 = [
    md("""
    # 9 · The cost of collapse, and where it all went

    *Promise: count what MADV_COLLAPSE must undo under each scheme, then follow what v2 chose and the road mainline took instead.*

    Learning goals:
    1. Count the counter updates a 4 KiB → 1 GiB collapse makes under `per_piece`, `thp_like` and `hstate_present`, and why a staged collapse hurts `thp_like` twice.
    2. State what HGM v2 chose: THP-like mapcount, per-leaf refcount, the sign check, HGM off by default and exclusive with HVO.
    3. Say how mainline later went David's way — no per-page mapcounts — without HGM.
    """),
    code("""
    import hgmviz as hv
    from hgmviz import ops
    from hgmviz.teach import homework
    """),
    code("""
    PAGE = hv.PAGE_SIZE
    MIB2, GIB = (h.size for h in hv.X86_64.hstates)
    SCHEMES = ("per_piece", "thp_like", "hstate_present")
    setup_1g = [ops.MemfdCreate("f", GIB, GIB), ops.Fallocate("f", 0, GIB), ops.Spawn("p"),
                ops.Mmap("p", "f", GIB, "a"), ops.Madvise("p", "a", GIB, "MADV_SPLIT"),
                ops.UffdioRegister("p", "a", GIB, "minor"),
                ops.UffdioContinueBatch("p", "a", GIB, PAGE)]        # a 1 GiB page, all at 4 KiB
    """),
    md("""
    ## What collapse must undo

    When postcopy has fetched a whole 1 GiB page, the VMM collapses it to one PUD leaf. James measured it on his prototypes:
    """),
    quote(["T19", "T20"], """
    decrementing the mapcounts for the 4K subpages becomes the vast majority of the time spent in MADV_COLLAPSE when collapsing 1G mappings. It is doing 262k atomic decrements
    """),
    md("""
    ## Worked example, by hand

    A 1 GiB page fully mapped at 4 KiB has *n* = 512 × 512 leaves. Collapse clears all *n*, frees the tables, and sets one 1 GiB leaf. `per_piece`: *n* decrements of the head's refcount and mapcount, then one increment each — all on one `struct page`. `thp_like`: *n* refcount decrements on the head and *n* `_mapcount` decrements, each on a **different** `struct page` — *n* × 64 bytes of vmemmap touched — then one entire-mapcount increment. `hstate_present`: the PUD entry is present before, during and after: nothing.

    Check the counters before and after, under each scheme:
    """),
    code("""
    machines, snaps = {}, {}
    for s in SCHEMES:
        w = ops.World(hv.Machine(nr_hugepages={GIB: 1}, scheme=s))
        for op in setup_1g:
            ops.run_step(w, op)
        folio, machines[s], snaps[s] = w.files["f"].folio_at(0), w.machine, w.machine.snapshot()
        print(f"{s:15} before: refcount {folio.refcount:>7,} mapcount {folio.mapcount:>7,}", end=";  ")
        ops.run_step(w, ops.Madvise("p", "a", GIB, "MADV_COLLAPSE"))
        print(f"after: refcount {folio.refcount} mapcount {folio.mapcount}")
    """),
    md("""
    The net change says little about the work. `m.last_counter_updates` counts the atomic updates the last operation made: to the head's `_refcount` and `_entire_mapcount`, and to subpages' `_mapcount` (each in its own `struct page`):
    """),
    code("""
    for s, m in machines.items():
        u = m.last_counter_updates
        print(f"{s:15} _refcount {u['refcount']:>7,} · _entire_mapcount {u['entire_mapcount']:>7,}"
              f" · subpage _mapcount {u['subpage_mapcount']:>7,}")
    """),
    md("""
    The three collapses side by side. The page tables change the same way in every column — the caption's events: every 4 KiB leaf cleared, the tables freed, one 1 GiB leaf set. What differs is what each scheme does per event.
    """),
    code("hv.draw_compare(list(machines.values()), before=list(snaps.values()))"),
    md("""
    ## Staged collapse: 4 KiB → 2 MiB → 1 GiB

    A VMM can collapse each 2 MiB range as soon as it is complete, and the whole 1 GiB later. **Predict** for `thp_like`: one 2 MiB collapse clears 512 4 KiB leaves and sets one 2 MiB leaf. How many subpage `_mapcount`s does it change?
    """),
    code("""
    w = ops.World(hv.Machine(nr_hugepages={GIB: 1}, scheme="thp_like"))
    for op in setup_1g:
        ops.run_step(w, op)
    m, folio, a = w.machine, w.files["f"].folio_at(0), w.addrs["a"]
    sub, before = m.scheme.subpage_mapcounts(folio.id), m.snapshot()
    ops.run_step(w, ops.Madvise("p", "a", MIB2, "MADV_COLLAPSE"))
    print("subpage _mapcounts that differ after the collapse:",
          (m.scheme.subpage_mapcounts(folio.id) != sub).sum())
    print("subpage _mapcount updates it made:", m.last_counter_updates["subpage_mapcount"])
    hv.draw(m, before=before, start=a, end=a + 2 * MIB2)
    """),
    check("""
    None differ — but the work was done twice over: the 512 cleared 4 KiB leaves each decremented one subpage `_mapcount`, and the new 2 MiB leaf incremented all 512 again (`thp_like` counts a leaf below the hstate level on every page it covers): 1,024 updates. The net change hides the work; `last_counter_updates` and the events in the caption show it. Over the whole 1 GiB, stage one costs 2*n* subpage writes and stage two another *n*; for `per_piece` the stages cost *n* + 512 and then 512 + 1 head updates; for `hstate_present`, nothing at either stage.
    """),
    quote("T20", """
    for each 2M in the 4K -> 2M collapse, we decrement the compound_mapcount 512 times (once per PTE), then increment it once
    """),
    md("""
    ## What v2 chose (18 Feb 2023)

    - **Mapcount:** THP-like (`hugetlb_add_file_rmap(subpage, shift, ...)`); hence HGM **exclusive with HVO** and off by default.
    - **Refcount:** one per leaf, on the head, as in v1.
    - **Guard:** the sign check, `WARN_ON_ONCE(folio_ref_count(folio) <= 0)` after the page-cache lookup, for faults (SIGBUS), `UFFDIO_CONTINUE` (`EFAULT`) and fork (`-EFAULT`, with the inverted test of chapter 4).
    - **Collapse:** the cost stayed:
    """),
    quote("v2 cover letter", """
    collapsing to the hugepage size requires us to decrement the subpage mapcounts for all of the subpages we had mapped. For a 1G page, this can get really slow.
    """),
    md("""
    James's way out, discussed but not posted, was an MMU notifier fired *after* the collapse, so that the slow part would not stall the guest's vCPUs inside the invalidation window (T23). In the simulator, v2 is one line of options. **Predict** what the toy attack of chapter 3 returns under them:
    """),
    code("""
    SMALL = hv.TOY.hstates[0].size
    v2 = hv.Machine(nr_hugepages={SMALL: 1}, geometry="toy", scheme="thp_like", guard="sign", errors="v2")
    w = ops.World(v2)
    outs = [ops.run_step(w, op) for op in (ops.MemfdCreate("f", SMALL, SMALL),
                                           ops.Fallocate("f", 0, SMALL), ops.Spawn("p"))]
    while outs[-1].ok:
        outs = [ops.run_step(w, op) for op in (ops.Mmap("p", "f", SMALL, "a"),
                ops.Madvise("p", "a", SMALL, "MADV_SPLIT"), ops.UffdioRegister("p", "a", SMALL, "minor"),
                ops.UffdioContinueBatch("p", "a", SMALL, PAGE))]
    print(outs[-1].status, outs[-1].cause, "· refcount", w.files["f"].folio_at(0).refcount)
    print(*outs[-1].warnings, sep="\\n")
    """),
    check("""
    `EAGAIN` with cause `EFAULT`, at `INT_MIN`: the sign check admits the wrap, then refuses — v2's behaviour, with its `WARN_ON_ONCE` (and the simulator's own overflow warning) in the output.
    """),
    md("""
    ## Where mainline went

    HGM was not merged: mainline has no `struct hugetlb_pte` and no `MADV_SPLIT`. Mainline hugetlb went on counting **per folio** only: `hugetlb_add_file_rmap()` increments `_entire_mapcount` and `_large_mapcount` and never touches a subpage's `_mapcount`, and since v6.7 the page cache holds `folio_nr_pages()` references. For large folios in general, mainline has since been moving away from per-page mapcounts (`CONFIG_NO_PAGE_MAPCOUNT`, with an average in `/proc/kpagecount`) — the direction David argued for in the thread:
    """),
    quote("T10", """
    IMHO, it would actually be great to just be able to remove the sub-page mapcounts for THP
    """),
    code("""
    m = hv.Machine(nr_hugepages={MIB2: 1}, kernel="6.18")      # mainline, today's page cache
    f = m.memfd_create(size=MIB2, hstate=MIB2)
    p = m.spawn()
    p.touch(p.mmap(f, MIB2))
    folio = f.folio_at(0)
    print("refcount", folio.refcount, "= page cache", folio.nr_pages, "+ 1 mapping")
    print("page_mapcount of the head, page 1, the last page:",
          [folio.page_mapcount(i) for i in (0, 1, folio.nr_pages - 1)])
    """),
    md("""
    The next chapter checks these mainline rules against the kernel you are running.

    ## Summary

    - Collapse undoes what mapping did: per-leaf mapcounts cost one update per piece, and `thp_like`'s updates land on every `struct page` of the folio — twice over when collapsing in stages. Counting per subtree makes collapse free.
    - v2 chose the THP-like mapcount with per-leaf references, the sign check, and HGM off by default and exclusive with HVO, and left the collapse cost in.
    - HGM did not land; mainline's large-folio work went the other way, towards folio-level mapcounts only.
    """),
    md("""
    ## Exercises

    1. Do the staged collapse (4 KiB → 2 MiB for every 2 MiB range, then → 1 GiB) under `per_piece` and `hstate_present`. Predict the refcount and mapcount after each stage, then check.
    2. **Holes.** Map only the first 10 pieces of a 1 GiB page at 4 KiB, then collapse it. Predict the refcount under each scheme (“Any holes in the mapping will be filled”, v2 34/46).
    3. **Homework.** `homework(SEED)` makes a seeded problem: steps on a small machine and questions about the counters after them. Work out `homework(2023)` by hand; the solutions notebook prints the answers.
    """),
    code("""
    print(homework(2023).text())
    """),
]

SOL09 = [
    code("""
    import hgmviz as hv
    from hgmviz import ops
    from hgmviz.teach import homework
    """),
    code("""
    PAGE = hv.PAGE_SIZE
    MIB2, GIB = (h.size for h in hv.X86_64.hstates)
    setup_1g = [ops.MemfdCreate("f", GIB, GIB), ops.Fallocate("f", 0, GIB), ops.Spawn("p"),
                ops.Mmap("p", "f", GIB, "a"), ops.Madvise("p", "a", GIB, "MADV_SPLIT"),
                ops.UffdioRegister("p", "a", GIB, "minor")]
    """),
    md("""
    ## Exercise 1

    `per_piece`: after stage one, 512 2 MiB leaves: refcount = page cache + 512, mapcount 512; after stage two, one leaf: page cache + 1, mapcount 1. `hstate_present`: page cache + 1 and mapcount 1 throughout.
    """),
    code("""
    for s in ("per_piece", "hstate_present"):
        w = ops.World(hv.Machine(nr_hugepages={GIB: 1}, scheme=s))
        for op in setup_1g + [ops.UffdioContinueBatch("p", "a", GIB, PAGE)]:
            ops.run_step(w, op)
        folio = w.files["f"].folio_at(0)
        for off in range(0, GIB, MIB2):
            ops.run_step(w, ops.Madvise("p", ("a", off), MIB2, "MADV_COLLAPSE"))
        print(f"{s:15} after 4K→2M: {folio.refcount}/{folio.mapcount}", end="; ")
        ops.run_step(w, ops.Madvise("p", "a", GIB, "MADV_COLLAPSE"))
        print(f"after 2M→1G: {folio.refcount}/{folio.mapcount}")
    """),
    md("""
    ## Exercise 2

    Collapse fills the holes because the page is in the page cache: every scheme ends with one 1 GiB leaf, so refcount = page cache + 1 whatever was mapped before.
    """),
    code("""
    for s in ("per_piece", "thp_like", "hstate_present"):
        w = ops.World(hv.Machine(nr_hugepages={GIB: 1}, scheme=s))
        for op in setup_1g + [ops.UffdioContinueBatch("p", "a", 10 * PAGE, PAGE)]:
            ops.run_step(w, op)
        folio = w.files["f"].folio_at(0)
        print(f"{s:15} before {folio.refcount}", end="; ")
        ops.run_step(w, ops.Madvise("p", "a", GIB, "MADV_COLLAPSE"))
        print(f"after {folio.refcount}; leaf {hv.X86_64.fmt_size(w.procs['p'].pagemap(w.addrs['a']).size)}")
    """),
    md("## Exercise 3"),
    code("""
    print(homework(2023).text(show_answers=True))
    """),
]

# ============================================================================================
# 10 · Your own kernel (the live cross-check; content as first written for that issue)
# ============================================================================================
CH10 = [
    md("""
    # 10 · Check it on your own kernel

    *Promise: in one minute, see the simulator's mainline predictions agree with the Linux kernel this notebook runs on.*

    Learning goals:
    1. Know which hugetlb behaviours the simulator models from the kernel's rules, and how each one is observed from user space (`/proc/self/pagemap`, `/proc/kpagecount`, `/sys/kernel/mm/hugepages`).
    2. Read a cross-check row: the step, what the kernel did, what the simulator predicted.
    3. Know why the refcount itself is not in the table: user space cannot read it; only mapcounts and the pool are visible.

    The check runs each scenario twice from **one** definition: once for real (memfd_create with MFD_HUGETLB, mmap, faults, fork, userfaultfd, madvise, munmap, close) and once through `hgmviz.Machine(kernel="running")`. The real run needs root (it reserves hugepages and reads `/proc/kpagecount`) and restores every setting it touches. Without root — on Binder, say — it says what it would need, and every prediction below still runs.
    """),
    code("""
    from hgmviz.kernelcheck.cli import LEGEND, format_prediction, format_report, format_summary, run_check
    from hgmviz.kernelcheck.scenarios import SCENARIOS
    """),
    md("""
    ## The scenarios

    Each checks one rule of mainline hugetlb; the rules cite the kernel functions behind them, and their `§` numbers are sections of [docs/domain.md](../docs/domain.md), the kernel facts with their sources.
    """),
    code("""
    for sc in SCENARIOS:
        print(f"{sc.name:28} {sc.title}")
    """),
    md("""
    ## Reading a row

    A scenario watches a few **probes**: named pages of a mapping as one process sees them (`A0` is a page in the first hugepage of mapping `a` of process `p`, `C0` the same page in the child `c`). After every step it records:
    """),
    code("print(LEGEND)"),
    md("""
    ## Worked example, by hand

    Chapter 4 began with David's reminder that fork can copy hugetlb page tables after all:
    """),
    quote("T10", """
    You'd have to also make sure that fork() won't do the same. At least with uffd-wp, Peter also added page table copying during fork() for MAP_SHARED mappings, which would have to be handled.
    """),
    md("""
    The scenario `fork_uffd_wp_event_fork` checks the mainline half of that on your kernel: a 4 MiB mapping `a` of a memfd with 2 MiB pages; probes `A0` (in the first hugepage) and `A1` (in the second), and `C0`/`C1` the same pages in the child. By hand: `mmap` reserves both hugepages (`rsvd+2`). The write fault takes a page from the pool and consumes one reservation: `A0=1`, `free-1 rsvd+1`. Registering for uffd-wp with `EVENT_FORK` maps nothing. `fork` copies the one present PMD entry (`copy_hugetlb_page_range`, one `hugetlb_add_file_rmap`): the page is mapped twice, so `A0=2` and `C0=2` (it is one page, and `/proc/kpagecount` counts its mappings, not whose they are); `A1` and `C1` stay `-`. The child's `exit` drops its entry: `A0=1`.

    **Predict** each row before you look, then check against the simulator (no root needed):
    """),
    code("""
    print(format_prediction("fork_uffd_wp_event_fork"))
    """),
    check("""
    Row by row as worked out above. The simulator's `fork` copies the entry because the VMA keeps `VM_UFFD_WP` (the userfaultfd asked for `UFFD_FEATURE_EVENT_FORK`), which makes `vma_needs_copy()` true.
    """),
    md("""
    ## Run it against the kernel

    **Predict** before you run: in the `fork_shared_lazy` scenario a process with one faulted 2 MiB page forks, without userfaultfd. Does the fork change the page's mapcount?
    """),
    check("""
    No. Since commit bcd51a3c679d ("hugetlb: lazy page table copies in fork()") a plain MAP_SHARED hugetlb VMA is not copied at fork; the child faults its own entry later. Only a uffd-wp VMA registered with UFFD_FEATURE_EVENT_FORK is copied.
    """, "Answer"),
    md("""
    Now run the check — every scenario, about 15 seconds as root — and read the verdicts:
    """),
    code("""
    report = run_check()
    print(format_summary(report))
    """),
    md("""
    The two fork scenarios, kernel and simulator side by side (without root the kernel column says `(not run)`, the reason follows the table, and the simulator's predictions are there all the same):
    """),
    code("""
    print(format_report(report, scenarios=["fork_shared_lazy", "fork_uffd_wp_event_fork"]))
    """),
    md("""
    **Quiz.** The rows show mapcounts and the pool, but never a refcount. Why not, when the refcount is what the thread was about?
    """),
    check("""
    User space cannot read `_refcount`. `/proc/kpagecount` reports a page's mapcount, `/proc/kpageflags` its flags, and meminfo the pool; no file in /proc or /sys exports a page's reference count. The simulator's refcounts rest on the kernel code (`folio_get()` next to each `hugetlb_add_file_rmap()`, the page cache's share), and the mapcounts they move in step with are what this check compares.
    """),
    md("""
    ## Summary

    - Every mainline behaviour the simulator claims is checked against the running kernel, step by step, through what user space can observe: mapcounts through pagemap and kpagecount, the pool through sysfs.
    - `format_prediction(name)` shows what the simulator predicts for a scenario, with or without root; `run_check()` compares it with the kernel.
    - HGM itself never reached mainline, so its schemes cannot be checked this way: they rest on the patches and the thread.

    From the command line: `hgmviz kernel-check` (add `--json` for tools).
    """),
    md("""
    ## Exercises

    1. **PMD sharing.** In `pmd_sharing`, a 1 GiB-aligned mapping of a 2 MiB-page file is shared by `p`, its child `c` and an unrelated process `q`. Predict step 6, the child's fault at `a + 0x601000`: which probes change, and why can the child see a page it never touched? Check with `format_prediction`, then on the kernel with `run_check(["pmd_sharing"])`.
    2. **An empty pool.** In `map_noreserve` (2 pages in the pool), at which step does the process get SIGBUS, and why does the mapping at step 7, which does reserve, fail with `ENOMEM` instead?
    3. **Reservations.** In `reservations`, `munmap` of the whole mapping at step 5 leaves `rsvd+3`. Whose are those reservations, and which step gives them back?
    """),
    code("# your turn"),
]

SOL10 = [
    code("""
    from hgmviz.kernelcheck.cli import format_prediction, format_report, run_check
    """),
    md("""
    ## Exercise 1

    Step 6 changes `A6` and `C6` from `-` to 1, and `C4` — the child's view of the page `p` faulted at step 4 — from `-` to 1 as well. With a 2 MiB hstate and a `MAP_SHARED` VMA covering a whole 1 GiB-aligned range, the child's first fault calls `huge_pmd_share()`, which attaches `p`'s PMD table to the child's PUD entry instead of allocating a new one: from then on both processes walk the same PMD table, so every entry in it, old or new, is seen by both, and counted once. The mapcount of the shared pages stays 1: it counts entries, not processes.
    """),
    code("""
    print(format_prediction("pmd_sharing"))
    """),
    md("""
    As root, the kernel's rows beside the simulator's:
    """),
    code("""
    print(format_report(run_check(["pmd_sharing"])))
    """),
    md("""
    ## Exercise 2

    Step 6: the first two faults took both pool pages (`free-2`), and with `MAP_NORESERVE` nothing was reserved for the third, so `hugetlb_no_page()` finds the pool empty and returns `VM_FAULT_SIGBUS`. Step 7 maps the same range *with* reservations: `hugetlb_reserve_pages()` must reserve the pages not yet in the file (hugepages 2 and 3), the pool has none free, and `mmap` fails up front with `ENOMEM` — no fault would ever reach an empty pool in a reserving mapping.
    """),
    code("""
    print(format_prediction("map_noreserve"))
    """),
    md("""
    ## Exercise 3

    They belong to the file, not to the mapping: hugetlbfs keeps a shared mapping's reservations in the inode's `resv_map`, so `munmap` leaves them and a later mapping of the same range (step 6) reserves nothing new. Only the last reference to the file going away — the `close` at step 9, once nothing maps it — releases them (`rsvd+0`) and frees the pages (`free+0`).
    """),
    code("""
    print(format_prediction("reservations"))
    """),
]

EXPLORER = "explorer-demo.ipynb"
EXPLORER_CELLS = [
    md("""
    # The explorer

    Pick a process, a VMA, an address and a length, then press an operation: the page tables, the folio counters and the log of kernel calls are redrawn together. Try `MADV_SPLIT`, then `UFFDIO_REGISTER`, set the granularity to 4 KiB and press `UFFDIO_CONTINUE`; change the scheme or the guard to replay the same clicks under other rules; open *Overflow drill* to run to the guard or the wrap. Undo goes back one step, exactly.
    """),
    code("import hgmviz as hv"),
    code('hv.explore(geometry="toy", scheme="per_piece")'),
]

CHAPTERS = [
    Chapter(1, "page-tables", "Hugetlb page tables, and what HGM changes",
            "read a hugetlb page-table diagram, and say what HGM adds to it and why postcopy wanted it.",
            CH01, SOL01),
    Chapter(2, "refcount-overflow", "How big can the refcount get?",
            "overflow a folio's refcount with per-piece counting, and see why that is an attack.",
            CH02, SOL02),
    Chapter(3, "guards-and-errors", "Where to guard, and which error",
            "compare INT_MAX/2 with the sign check, and ENOMEM, EFAULT and SIGBUS with VM_FAULT_OOM.",
            CH03, SOL03),
    Chapter(4, "fork", "fork() as an amplifier",
            "see when fork() copies hugetlb page tables and how one fork multiplies references.",
            CH04, SOL04),
    Chapter(5, "guard-or-restrict", "Guard every page_ref_*, annotate, or restrict HGM?",
            "weigh complete guards, annotated paths and restrictions against multi-process postcopy.",
            CH05, SOL05),
    Chapter(6, "mapcount-and-hvo", "What should page_mapcount mean? THP-like counts and HVO",
            "see what each scheme's page_mapcount tells smaps, and what THP-like counts cost in vmemmap.",
            CH06, SOL06),
    Chapter(7, "one-logical-mapping", "One logical mapping per hstate-level subtree",
            "follow David's single logical mapping: when it counts, its caveat, where its information lives.",
            CH07, SOL07),
    Chapter(8, "error-paths", "Between allocating a PTE and setting it",
            "inject the failure Mike worried about and let the audit show which counting survives.",
            CH08, SOL08),
    Chapter(9, "collapse-and-outcome", "The cost of collapse, and where it all went",
            "count what MADV_COLLAPSE undoes per scheme, what v2 chose, and where mainline went.",
            CH09, SOL09),
    Chapter(10, "your-kernel", "Check it on your own kernel",
            "see the simulator's mainline predictions agree with the kernel you run (root).",
            CH10, SOL10),
]


# --------------------------------------------------------------------------------------------
# Navigation and the tour's contents, generated
# --------------------------------------------------------------------------------------------
def _link(text, target):
    return "[%s](%s)" % (text, target)


def chapter_nav(i: int, bottom: bool) -> str:
    ch = CHAPTERS[i]
    prev = _link("← " + CHAPTERS[i - 1].label, CHAPTERS[i - 1].file) if i else \
        _link("← Tour", TOUR)
    parts = [prev, _link("Contents", TOUR + "#Contents"), _link("Glossary", GLOSSARY)]
    if bottom and ch.solutions:
        parts.append(_link("Solutions", ch.solutions_file))
    if i + 1 < len(CHAPTERS):
        parts.append(_link(CHAPTERS[i + 1].label + " →", CHAPTERS[i + 1].file))
    head = "" if bottom else "**Chapter %d of %d** · " % (ch.number, len(CHAPTERS))
    return head + " · ".join(parts)


def solution_nav(ch: Chapter) -> str:
    with_solutions = [c for c in CHAPTERS if c.solutions]
    j = with_solutions.index(ch)
    parts = [_link("← Back to chapter %d" % ch.number, "../" + ch.file),
             _link("Contents", "../" + TOUR + "#Contents"), _link("Glossary", "../" + GLOSSARY)]
    if j + 1 < len(with_solutions):
        nxt = with_solutions[j + 1]
        parts.append(_link("Solutions %d →" % nxt.number, "../" + nxt.solutions_file))
    return " · ".join(parts)


def tour_nav(bottom: bool) -> str:
    first = CHAPTERS[0]
    glossary = _link("Glossary", GLOSSARY)
    if bottom:
        return "[Contents](#Contents) · %s · %s" % (glossary, _link("Start: " + first.label + " →",
                                                                 first.file))
    return "**hgmviz notebooks** · [Contents](#Contents) · %s · %s" % (
        glossary, _link(first.label + " →", first.file))


def tour_contents():
    items = ["%d. %s — %s" % (c.number, _link(c.title, c.file), c.promise) for c in CHAPTERS]
    return [
        ("markdown", "## Contents\n" + "\n".join(items)),
        md("""
        ## Where to go next

        Start with chapter 1, or jump to the design point you care about: every chapter stands on its own after its set-up cells. New to the words? The [glossary](../docs/glossary.md) says what each means in the kernel. Each has exercises, with worked solutions in the `solutions/` folder (linked at the bottom of each chapter). The thread itself is worth reading alongside: each chapter quotes the mails that decided it, with links to lore.kernel.org.

        For teachers: `hgmviz homework -s SEED` (or `hgmviz.teach.homework(SEED)`) prints a seeded problem about the counters, and `-c` its answers; the same seed always gives the same problem.
        """),
    ]


# --------------------------------------------------------------------------------------------
# Notebook assembly
# --------------------------------------------------------------------------------------------
def _nav_cell(text):
    return ("nav", text)


def _notebook(stem: str, cells):
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook(metadata={"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})
    for i, (kind, source) in enumerate(cells):
        cid = "%s-%02d" % (stem[:56], i)
        if kind == "code":
            cell = new_code_cell(source)
        else:
            cell = new_markdown_cell(source)
            if kind == "nav":
                cell.metadata["tags"] = ["nav"]
        cell["id"] = cid
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def specs() -> dict:
    """``{path relative to notebooks/: (cell-id stem, cells)}`` for every notebook, where a
    cell is ``(kind, source)`` and kind is "markdown", "code" or "nav" (cheap: no nbformat)."""
    out = {}
    tour = [_nav_cell(tour_nav(False))] + TOUR_CELLS + tour_contents() + [_nav_cell(tour_nav(True))]
    out[TOUR] = ("00-tour", tour)
    explorer_nav = _nav_cell("[← Tour](%s) · [Contents](%s#Contents)" % (TOUR, TOUR))
    out[EXPLORER] = ("explorer-demo", [_nav_cell("**hgmviz · the explorer** · " + explorer_nav[1])]
                     + EXPLORER_CELLS + [explorer_nav])
    for i, ch in enumerate(CHAPTERS):
        cells = [_nav_cell(chapter_nav(i, False))] + ch.cells + [_nav_cell(chapter_nav(i, True))]
        out[ch.file] = (ch.file[:-6], cells)
        if ch.solutions:
            title = md("# Solutions · %s\n\nWorked solutions to the exercises of %s. Try them first!"
                       % (ch.label, _link("chapter %d" % ch.number, "../" + ch.file)))
            nav = _nav_cell(solution_nav(ch))
            out[ch.solutions_file] = (Path(ch.solutions_file).stem,
                                      [nav, title] + ch.solutions + [nav])
    return out


def notebooks() -> dict:
    """``{path relative to notebooks/: NotebookNode}`` for every notebook."""
    return {rel: _notebook(stem, cells) for rel, (stem, cells) in specs().items()}


def render(nb) -> str:
    import nbformat

    return nbformat.writes(nb, version=4) + "\n"


# --------------------------------------------------------------------------------------------
# The README's list of notebooks, with Binder links (generated: one place for titles and links)
# --------------------------------------------------------------------------------------------
# The GitHub repository (owner/name) the Binder links open.  A fork publishing elsewhere changes
# this one line and runs ``python notebooks/build.py``.
BINDER_REPO = "hgmviz/hgmviz"
BINDER_REF = "HEAD"
README = HERE.parent / "README.md"
README_START = "<!-- notebooks: generated by notebooks/build.py from its chapter list; do not edit -->"
README_END = "<!-- /notebooks -->"


def binder_url(notebook: str) -> str:
    """mybinder.org's launch URL opening ``notebooks/<notebook>`` in JupyterLab."""
    from urllib.parse import quote
    return "https://mybinder.org/v2/gh/%s/%s?labpath=%s" % (
        BINDER_REPO, BINDER_REF, quote("notebooks/" + notebook, safe=""))


def readme_notebooks() -> str:
    """The README's table of notebooks, between :data:`README_START` and :data:`README_END`."""
    rows = ["| | notebook | Binder | solutions |", "| --- | --- | --- | --- |",
            "| 0 | [A tour of hgmviz](notebooks/%s) | [launch](%s) | |" % (TOUR, binder_url(TOUR))]
    for ch in CHAPTERS:
        sol = ("[solutions](notebooks/%s)" % ch.solutions_file) if ch.solutions else ""
        rows.append("| %d | [%s](notebooks/%s) — %s | [launch](%s) | %s |" % (
            ch.number, ch.title, ch.file, ch.promise.rstrip("."), binder_url(ch.file), sol))
    rows.append("| | [The explorer](notebooks/%s), for JupyterLab or Voila | [launch](%s) | |"
                % (EXPLORER, binder_url(EXPLORER)))
    badge = "[![launch the tour on Binder](https://mybinder.org/badge_logo.svg)](%s)" % binder_url(TOUR)
    return "\n".join([README_START, badge, ""] + rows + [README_END])


def readme_with_notebooks(text: str) -> str:
    """``text`` (the README) with its generated table replaced by :func:`readme_notebooks`."""
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    return text[:start] + readme_notebooks() + text[end:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report notebooks that differ")
    args = ap.parse_args(argv)
    stale = []
    readme = README.read_text(encoding="utf-8")
    if readme_with_notebooks(readme) != readme:
        stale.append("../README.md")
        if not args.check:
            README.write_text(readme_with_notebooks(readme), encoding="utf-8")
    for rel, nb in notebooks().items():
        path = HERE / rel
        text = render(nb)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(rel)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    verb = "differ" if args.check else "written"
    print("%d file(s) %s%s" % (len(stale), verb, (": " + ", ".join(stale)) if stale else ""))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
