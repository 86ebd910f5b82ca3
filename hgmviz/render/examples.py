"""Layer 5: the named scenarios the diagrams are checked and measured on.

Each scenario is a function that builds its machine(s) from nothing and returns the
arguments of :func:`~hgmviz.render.draw` (or of ``draw_compare`` for comparisons); the
golden files under ``tests/data/render/`` and ``hgmviz.render.bench`` use them.  Render one::

    from hgmviz.render.examples import render_example
    d = render_example("toy_hgm_runs")
    print(d.text()); open("toy_hgm_runs.svg", "w").write(d.svg())

or all of them to a folder: ``python -m hgmviz.render.examples OUTDIR``.
"""
from __future__ import annotations

import sys
import warnings

__all__ = ["EXAMPLES", "SMALL", "render_example", "example_args"]

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
T32 = 32 * KIB      # toy hstate: 8 base pages, a PMD leaf
T256 = 256 * KIB    # toy hstate: 64 base pages, a PUD leaf


def _hv():
    """The machine API (layer 3), imported lazily."""
    from .. import mm
    return mm


def toy_fault():
    """Toy, mainline: the second fault on a 4-hugepage mapping (hugetlb_fault →
    hugetlb_no_page → hugetlb_add_file_rmap), highlighted."""
    hv = _hv()
    m = hv.Machine(nr_hugepages={T32: 4}, geometry="toy")
    f = m.memfd_create(size=4 * T32, hstate=T32)
    p = m.spawn()
    a = p.mmap(f, 4 * T32)
    p.touch(a)
    before = m.snapshot()
    p.touch(a + T32 + 0x1000)
    return {"m": m, "before": before}


def toy_hgm_runs():
    """Toy, per_piece: a 256 KiB folio mapped in pieces after MADV_SPLIT — 4 KiB runs,
    32 KiB (PMD) leaves and none runs in one tree; the last UFFDIO_CONTINUE highlighted."""
    hv = _hv()
    m = hv.Machine(nr_hugepages={T256: 1}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=T256, hstate=T256)
    f.fallocate(0, T256)
    p = m.spawn()
    a = p.mmap(f, T256)
    p.madvise(a, T256, hv.MADV_SPLIT)
    p.uffdio_register(a, T256, mode="minor")
    p.uffdio_continue(a, 4 * 0x1000)
    before = m.snapshot()
    p.uffdio_continue(a + T32, 2 * T32)
    return {"m": m, "before": before}


def toy_pmd_share():
    """Toy, mainline: two processes map the same PUD-sized range of one memfd at PUD-aligned
    addresses and touch the same page: one PMD page, two parents (huge_pmd_share)."""
    hv = _hv()
    m = hv.Machine(nr_hugepages={T32: 8}, geometry="toy")
    f = m.memfd_create(size=T256, hstate=T32)
    p1, p2 = m.spawn(), m.spawn()
    a1 = p1.mmap(f, T256, addr=1 * MIB)
    a2 = p2.mmap(f, T256, addr=2 * MIB)
    p1.touch(a1)
    before = m.snapshot()
    p2.touch(a2)
    return {"m": m, "before": before}


def toy_thp_like():
    """Toy, thp_like: per-subpage mapcounts of a 64-page folio as a strip (32 buckets of two
    pages: mixed buckets underlined), after an extra 4 KiB piece in a second mapping."""
    hv = _hv()
    m = hv.Machine(nr_hugepages={T256: 1}, geometry="toy", scheme="thp_like")
    f = m.memfd_create(size=T256, hstate=T256)
    f.fallocate(0, T256)
    p = m.spawn()
    a = p.mmap(f, T256)
    p.madvise(a, T256, hv.MADV_SPLIT)
    p.uffdio_register(a, T256, mode="minor")
    p.uffdio_continue(a, 3 * 0x1000)
    p.uffdio_continue(a + T32, T32)
    b = p.mmap(f, T256)
    p.madvise(b, T256, hv.MADV_SPLIT)
    p.uffdio_register(b, T256, mode="minor")
    before = m.snapshot()
    p.uffdio_continue(b + 0x1000, 0x1000)
    return {"m": m, "before": before}


def toy_dontneed():
    """Toy, per_piece: MADV_DONTNEED of the second hugepage of a 4-hugepage mapping: the
    removed leaf is drawn as none with what it was, its folio's counters changed."""
    hv = _hv()
    m = hv.Machine(nr_hugepages={T32: 4}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=4 * T32, hstate=T32)
    p = m.spawn()
    a = p.mmap(f, 4 * T32)
    for i in range(4):
        p.touch(a + i * T32)
    before = m.snapshot()
    p.madvise(a + T32, T32, hv.MADV_DONTNEED)
    return {"m": m, "before": before}


def toy_fork():
    """Toy, mainline: fork copies no hugetlb page tables (lazy); the child then faults."""
    hv = _hv()
    m = hv.Machine(nr_hugepages={T32: 4}, geometry="toy")
    f = m.memfd_create(size=2 * T32, hstate=T32)
    p = m.spawn()
    a = p.mmap(f, 2 * T32)
    p.touch(a)
    p.touch(a + T32)
    c = p.fork()
    before = m.snapshot()
    c.touch(a)
    return {"m": m, "before": before}


def toy_overflow():
    """Toy (8-bit counters), per_piece, no guard: two full 4 KiB mappings of a 64-page folio
    wrap the refcount past INT_MAX (127): marked WRAPPED."""
    hv = _hv()
    m = hv.Machine(nr_hugepages={T256: 1}, geometry="toy", scheme="per_piece")
    f = m.memfd_create(size=T256, hstate=T256)
    f.fallocate(0, T256)
    p = m.spawn()
    for _ in range(2):
        a = p.mmap(f, T256)
        p.madvise(a, T256, hv.MADV_SPLIT)
        p.uffdio_register(a, T256, mode="minor")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p.uffdio_continue_batch(a, T256, 0x1000)
    return {"m": m}


def toy_compare():
    """Toy: the same HGM steps under four schemes, one column each."""
    hv = _hv()
    ms, befores = [], []
    for scheme in ("per_piece", "thp_like", "hstate_present", "subtree_counted"):
        m = hv.Machine(nr_hugepages={T256: 1}, geometry="toy", scheme=scheme)
        f = m.memfd_create(size=T256, hstate=T256)
        f.fallocate(0, T256)
        p = m.spawn()
        a = p.mmap(f, T256)
        p.madvise(a, T256, hv.MADV_SPLIT)
        p.uffdio_register(a, T256, mode="minor")
        p.uffdio_continue(a, 2 * 0x1000)
        befores.append(m.snapshot())
        p.uffdio_continue(a + T32, T32)
        ms.append(m)
    return {"machines": ms, "before": befores}


def _x86_1g_4k(procs: int):
    hv = _hv()
    m = hv.Machine(nr_hugepages={GIB: 1}, scheme="per_piece")
    f = m.memfd_create(size=GIB, hstate=GIB)
    f.fallocate(0, GIB)
    for _ in range(procs):
        p = m.spawn()
        a = p.mmap(f, GIB)
        p.madvise(a, GIB, hv.MADV_SPLIT)
        p.uffdio_register(a, GIB, mode="minor")
        p.uffdio_continue_batch(a, GIB, 4096)
    return m


def x86_1g_4k():
    """x86-64, per_piece: a 1 GiB folio fully mapped at 4 KiB (512 PTE tables) in one
    process: one group node."""
    return {"m": _x86_1g_4k(1)}


def x86_1g_4k_two_procs():
    """x86-64, per_piece: the same in two processes (the QEMU + virtiofsd case)."""
    return {"m": _x86_1g_4k(2)}


def x86_collapse_diff():
    """x86-64, thp_like: a 1 GiB folio 4K-mapped in two processes, then MADV_COLLAPSE in
    one: 262,144 leaves replaced by one, every subpage mapcount changed (highlighted)."""
    hv = _hv()
    m = hv.Machine(nr_hugepages={GIB: 1}, scheme="thp_like")
    f = m.memfd_create(size=GIB, hstate=GIB)
    f.fallocate(0, GIB)
    addrs = []
    for _ in range(2):
        p = m.spawn()
        a = p.mmap(f, GIB)
        p.madvise(a, GIB, hv.MADV_SPLIT)
        p.uffdio_register(a, GIB, mode="minor")
        p.uffdio_continue_batch(a, GIB, 4096)
        addrs.append((p, a))
    before = m.snapshot()
    p, a = addrs[1]
    p.madvise(a, GIB, hv.MADV_COLLAPSE)
    return {"m": m, "before": before}


def x86_pmd_share():
    """x86-64, mainline, 2 MiB hstate: two processes map the same 1 GiB of a memfd at
    1 GiB-aligned addresses and touch the same page: a shared PMD page."""
    hv = _hv()
    m = hv.Machine(nr_hugepages={2 * MIB: 512})
    f = m.memfd_create(size=GIB, hstate=2 * MIB)
    p1, p2 = m.spawn(), m.spawn()
    a1 = p1.mmap(f, GIB, addr=4 * GIB)
    a2 = p2.mmap(f, GIB, addr=8 * GIB)
    p1.touch(a1)
    p2.touch(a2)
    return {"m": m}


def x86_2m_full():
    """x86-64, mainline: a 1 GiB VMA of 2 MiB pages, every page faulted: 512 PMD leaves in
    one row, 512 folios in one node."""
    hv = _hv()
    m = hv.Machine(nr_hugepages={2 * MIB: 512})
    f = m.memfd_create(size=GIB, hstate=2 * MIB)
    f.fallocate(0, GIB)
    p = m.spawn()
    a = p.mmap(f, GIB)
    for i in range(512):
        p.touch(a + i * 2 * MIB)
    return {"m": m}


EXAMPLES = {f.__name__: f for f in (
    toy_fault, toy_hgm_runs, toy_pmd_share, toy_thp_like, toy_dontneed, toy_fork, toy_overflow,
    toy_compare, x86_1g_4k, x86_1g_4k_two_procs, x86_collapse_diff, x86_pmd_share, x86_2m_full)}
#: small enough for golden DOT files (toy geometry)
SMALL = tuple(n for n in EXAMPLES if n.startswith("toy_"))


def example_args(name: str) -> dict:
    try:
        return EXAMPLES[name]()
    except KeyError:
        raise ValueError("unknown example %r; allowed: %s" % (name, ", ".join(EXAMPLES))) from None


def render_example(name: str, theme="light", args=None):
    """The :class:`~hgmviz.render.Diagram` of example ``name``."""
    from . import draw, draw_compare
    args = example_args(name) if args is None else args
    if "machines" in args:
        return draw_compare(args["machines"], before=args.get("before"), theme=theme)
    return draw(args["m"], before=args.get("before"), theme=theme)


def main(argv=None) -> int:
    import os
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "render-examples"
    os.makedirs(out, exist_ok=True)
    for name in EXAMPLES:
        d = render_example(name)
        with open(os.path.join(out, name + ".txt"), "w") as fh:
            fh.write(d.text())
        with open(os.path.join(out, name + ".dot"), "w") as fh:
            fh.write(d.dot)
        with open(os.path.join(out, name + ".svg"), "w") as fh:
            fh.write(d.svg())
        print("%-22s %3d nodes  %s" % (name, d.node_count, os.path.join(out, name + ".svg")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
