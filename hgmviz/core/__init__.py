"""Layer 1: jitted kernels over plain arrays — the page-table pool, the walk, ranged
install / zap / copy / free, the undo journal and the event buffer.

Nothing here knows about accounting, processes or files: kernels take arrays and integers,
change page tables, append *events* named after the kernel primitive that made the change,
and journal every write so that a failed operation can be rolled back byte for byte.

Modules:

``pool``
    :class:`PageTablePool`, the named slots of the tuples and arrays the kernels take
    (``P_ENT`` .. ``P_JO``, ``E_KIND`` .. ``E_FOLIO``, ``G_*``, ``FL_*``, ``RES_*``), status
    codes (``-EEXIST``, ``-EFAULT``, ``-EINVAL`` from :mod:`errno`; ``NEED_*``), event
    kinds, and the journalled primitives (``set_entry``, ``table_alloc``, ``table_free``,
    ``rollback``, ``emit``).
``walk``
    the descent, written once: ``hugetlb_hgm_walk`` and its allocating step
    ``hugetlb_walk_step`` (HGM v1 13/46 "hugetlb: add hugetlb_hgm_walk and
    hugetlb_walk_step"), ``hugetlb_full_walk``, ``probe``, and the read-only
    ``collect_leaves`` / ``count_entries``.
``ranges``
    the ranged kernels that descend with that walk and then run over one page-table
    page's leaves inline: ``install_range`` (``mfill_atomic_hugetlb`` +
    ``hugetlb_alloc_largest_pte``, HGM v2 33/46; ``hugetlb_no_page``, v2 24/46),
    ``zap_range`` (``__unmap_hugepage_range`` with ``huge_pmd_unshare``), ``unshare_range``
    (``hugetlb_unshare_all_pmds``), ``free_empty_tables`` (``hugetlb_free_pgd_range``) and
    ``copy_range`` (``copy_hugetlb_page_range``), mm/hugetlb.c v6.2.
``rowsummary``
    read-only summaries of page-table rows for the diagrams (no kernel counterpart):
    ``table_pair_steps`` (are page-table pages at consecutive entries translates of each
    other, the renderer's group nodes) and ``scan_leaves`` (count the leaves under whole
    tables and mark their folios).  Not re-exported here: ``hgmviz.core.rowsummary``.

Entry encoding (4 bytes, ``int32``), one word per page-table entry::

    0                 none (pte_none)
    (table << 1)      a pointer to page-table page ``table`` (a non-leaf pXd)
    (pfn << 1) | 1    a present leaf mapping ``pfn`` (its size is its level's size)

Page-table pages live in one pool ``ent[table, index]``; page 0 is never used.  The entries
are stored in rows apart from the tables (``rows[|rmap[table]|]``): a table gets a row of its
own at its first write, and full leaf tables of one content may read one canonical row
(issue 16, a simulator-memory technique; ``pool`` "Rows").  Per page:
``tlevel`` (0 = free), ``tcount`` (non-none entries), ``tshare`` (extra sharers of a hugetlb
PMD page, ``ptdesc->pt_share_count``), ``tfolio`` (the folio a table below the hstate level
maps, -1 above).  Free pages sit on a stack ``fstack[:meta[M_NFREE]]`` and are all-zero.
Levels are numbered as ``enum hugetlb_level`` (PTE = 1 .. PGD), ``LEVEL_*`` here.
"""
from __future__ import annotations

from .pool import *  # noqa: F401,F403
from .pool import (  # noqa: F401  (private names the machine uses)
    _jpush, _no_transparent_hugepages, _room,
)
from .pool import __all__ as _pool_all
from .ranges import *  # noqa: F401,F403
from .ranges import __all__ as _ranges_all
from .walk import *  # noqa: F401,F403
from .walk import _largest_shift, largest_shift  # noqa: F401
from .walk import __all__ as _walk_all

__all__ = list(_pool_all) + list(_walk_all) + list(_ranges_all) + ["largest_shift"]
