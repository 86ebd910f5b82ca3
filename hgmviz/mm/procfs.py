"""fs/proc/task_mmu.c and mm/hugetlb.c views (mainline v6.2; HGM v1 21/46 for smaps):
``/proc/pid/pagemap`` (``pagemap_hugetlb_range``), the hugetlb lines of ``/proc/pid/smaps``
(``smaps_hugetlb_range``) and of ``/proc/meminfo`` (``hugetlb_report_meminfo``).
"""
from __future__ import annotations

import numpy as np

from .. import core
from .structs import _mm_state, Folio, PagemapEntry, Process, _check_int
from . import hugetlb


#: The per-hstate fields, in the order ``hugetlb_report_meminfo`` prints them.
MEMINFO_FIELDS = ("HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp",
                  "Hugepagesize")
#: The files of ``/sys/kernel/mm/hugepages/hugepages-<N>kB/`` and the field each shows
#: (mm/hugetlb.c v6.2: ``nr_hugepages_show``, ``free_hugepages_show``,
#: ``resv_hugepages_show``, ``surplus_hugepages_show``).
SYSFS_FILES = (("nr_hugepages", "HugePages_Total"), ("free_hugepages", "HugePages_Free"),
               ("resv_hugepages", "HugePages_Rsvd"), ("surplus_hugepages", "HugePages_Surp"))


class Meminfo(dict):
    """``m.meminfo()``: a dict ``{hstate size in bytes: {"HugePages_Total": n, ...}}`` (as
    before; :meth:`as_dict` gives a plain copy) that reads as the kernel shows it.

    ``str()`` is what ``cat /proc/meminfo`` prints for hugetlb, as
    ``hugetlb_report_meminfo`` (mm/hugetlb.c, v6.2) writes it — the ``HugePages_*`` lines and
    ``Hugepagesize`` of the *default* hstate only, then ``Hugetlb``, the kB of every hstate's
    pool — followed by one row per hstate as ``/sys/kernel/mm/hugepages/hugepages-<N>kB/``
    shows it (``nr_hugepages``, ``free_hugepages``, ``resv_hugepages``,
    ``surplus_hugepages``).  The default hstate is the first (``default_hstate_idx`` with no
    ``default_hugepagesz=``: HPAGE_SIZE, the PMD size on x86_64).  In a notebook it is an
    HTML table (``_repr_html_``).  The simulator keeps no surplus pages: ``HugePages_Surp``
    is 0.
    """

    default = None          # the default hstate's size (None: the smallest)

    def as_dict(self) -> dict:
        """A plain ``{size: {field: value}}`` copy."""
        return {size: dict(v) for size, v in self.items()}

    def _default(self):
        return self.default if self.default in self else (min(self) if self else None)

    def hugetlb_kb(self) -> int:
        """``Hugetlb:`` — ``sum(huge_page_size(h) * h->nr_huge_pages) / SZ_1K``."""
        return sum(size * v["HugePages_Total"] for size, v in self.items()) >> 10

    def proc_lines(self) -> list:
        """The hugetlb lines of ``/proc/meminfo``, formatted as ``seq_printf`` does."""
        d = self._default()
        if d is None:
            return []
        v = self[d]
        return ["HugePages_Total:   %5d" % v["HugePages_Total"],
                "HugePages_Free:    %5d" % v["HugePages_Free"],
                "HugePages_Rsvd:    %5d" % v["HugePages_Rsvd"],
                "HugePages_Surp:    %5d" % v["HugePages_Surp"],
                "Hugepagesize:   %8d kB" % (d >> 10),
                "Hugetlb:        %8d kB" % self.hugetlb_kb()]

    def sysfs_rows(self) -> list:
        """``[(directory, {file: value}), ...]`` for each hstate, smallest first."""
        return [("hugepages-%dkB" % (size >> 10), {f: self[size][k] for f, k in SYSFS_FILES})
                for size in sorted(self)]

    def __str__(self) -> str:
        rows = self.sysfs_rows()
        if not rows:
            return "(no hstates)"
        head = ["/sys/kernel/mm/hugepages/"] + [f for f, _ in SYSFS_FILES]
        body = [[name] + [str(v[f]) for f, _ in SYSFS_FILES] for name, v in rows]
        w = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
        fmt = lambda r: "  ".join([r[0].ljust(w[0])] + [c.rjust(w[i + 1]) for i, c in  # noqa: E731
                                                         enumerate(r[1:])])
        return "\n".join(["/proc/meminfo (hugetlb lines):"] + self.proc_lines()
                         + ["", fmt(head)] + [fmt(r) for r in body])

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))

    def _repr_html_(self) -> str:
        import html as _h
        cell = 'style="text-align:right;font-family:monospace;padding:1px 8px"'
        left = 'style="text-align:left;font-family:monospace;padding:1px 8px"'
        proc = "".join(
            "<tr><td %s>%s</td><td %s>%s</td></tr>" % (
                left, _h.escape(ln.split(":")[0] + ":"), cell,
                _h.escape(ln.split(":", 1)[1].strip()))
            for ln in self.proc_lines())
        head = "".join("<th %s>%s</th>" % (cell, f) for f, _ in SYSFS_FILES)
        body = "".join("<tr><td %s>%s/</td>%s</tr>" % (
            left, name, "".join("<td %s>%d</td>" % (cell, v[f]) for f, _ in SYSFS_FILES))
            for name, v in self.sysfs_rows())
        return ('<div class="hgmviz-meminfo" style="display:flex;flex-wrap:wrap;gap:16px;'
                'align-items:flex-start">'
                '<table><caption style="text-align:left">/proc/meminfo (hugetlb lines)'
                '</caption>%s</table>'
                '<table><caption style="text-align:left">/sys/kernel/mm/hugepages/</caption>'
                '<tr><th %s>directory</th>%s</tr>%s</table></div>' % (proc, left, head, body))


def hugetlb_report_meminfo(m) -> Meminfo:
    """``/proc/meminfo`` hugetlb lines per hstate: ``{size: {"HugePages_Total": ..}}``, a
    :class:`Meminfo` (a dict that prints as ``hugetlb_report_meminfo``, mm/hugetlb.c v6.2,
    and the per-hstate sysfs files show it)."""
    out = Meminfo()
    out.default = m.geometry.hstates[0].size
    for h in m.geometry.hstates:
        out[h.size] = {"HugePages_Total": m._nr_hugepages[h.index],
                       "HugePages_Free": hugetlb.free_huge_pages(m, h),
                       "HugePages_Rsvd": m._resv[h.index],
                       "HugePages_Surp": 0,
                       "Hugepagesize": h.size >> 10}
    return out


def pagemap_read(m, proc, addr):
    """``/proc/pid/pagemap`` for the page at ``addr`` (``pagemap_hugetlb_range``,
    fs/proc/task_mmu.c v6.2; HGM: the leaf of any size): None if not present."""
    if not isinstance(proc, Process) or proc._m is not m:
        raise TypeError("expected a Process of this machine, not %r" % (proc,))
    mm = _mm_state(m, proc.pid)
    addr = _check_int("addr", addr)
    if not mm.alive or addr >= m.geometry.TASK_SIZE:
        return None
    t, i, lvl = core.hugetlb_full_walk(m.pt.P, m._g, mm.pgd, addr, 1)
    v = int(m.pt.ent[t, i])
    if v == 0 or not v & 1:
        return None
    sh = m.geometry.level_shift(lvl)
    pfn = (v >> 1) + ((addr & ((1 << sh) - 1)) >> m.geometry.page_shift)
    fid = int(core.pfn_to_folio(m._fl, pfn))
    return PagemapEntry(pfn, Folio(m, fid), pfn - int(m._folio_pfn[fid]), sh)


def smaps_hugetlb_range(m, proc, addr):
    """The hugetlb lines of ``/proc/pid/smaps`` for the VMA holding ``addr``:
    ``smaps_hugetlb_range`` (fs/proc/task_mmu.c) as HGM v1 21/46 changed it — once per leaf
    of any size, shared if the leaf's first page has ``page_mapcount() >= 2``."""
    mm = m._mm(proc)
    vma = m._find_vma(mm, _check_int("addr", addr))
    if vma is None:
        raise ValueError("no VMA at %#x" % addr)
    # the output grows with the leaves present (doubling), not with the VMA's size
    n = max(16, min(4096, (vma.end - vma.start) >> m.geometry.page_shift))
    seen = np.zeros(m.pt.capacity, np.int32)
    while True:
        oa, osh, op, ot = (np.zeros(n, np.int64) for _ in range(4))
        k = core.collect_leaves(m.pt.P, m._g, mm.pgd, vma.start, vma.end, seen, 1, oa, osh,
                                op, ot)
        if k >= 0:
            break
        n *= 2
    shared = private = 0
    for j in range(k):
        pfn = int(op[j])
        fid = int(core.pfn_to_folio(m._fl, pfn))
        mc = m.scheme.page_mapcount(fid, pfn - int(m._folio_pfn[fid]))
        if mc >= 2:
            shared += 1 << int(osh[j])
        else:
            private += 1 << int(osh[j])
    return {"Shared_Hugetlb": shared >> 10, "Private_Hugetlb": private >> 10}
