"""Exact closed-form refcount-overflow arithmetic for HGM's per-piece counting.

The question the January 2023 thread asked: how many high-granularity mappings of one hugetlb
folio does it take to overflow ``folio->_refcount`` (an ``atomic_t``, signed 32-bit on x86-64),
and what does a guard change?

* James Houghton, T9 (``CADrL8HUdg1Fr=tLEQRkDjeTzNzzSM6EPhvDgzURxSZSBMLgjoQ@mail.gmail.com``,
  17 Jan 2023): "INT_MAX is 2^31. We increment the refcount once for each 4K mapping in 1G:
  that's 512 * 512 (2^18). That means we only need 8192 (2^13) VMAs for the same 1G page to
  overflow refcount."  He proposed refusing a new reference once the refcount is above
  INT_MAX/2 ("similar to try_get_page()"), with ENOMEM for UFFDIO_CONTINUE and VM_FAULT_SIGBUS
  for a fault.
* David Hildenbrand, T10 (``6548b3b3-30c9-8f64-7d28-8a434e0a0b80@redhat.com``, 18 Jan 2023):
  "You'd need 8k VMAs. With 2 MiB THP you'd need 4096k VMAs. So ~64 processes with 64k VMAs."
* HGM v2 35/46 "hugetlb: add check to prevent refcount overflow via HGM"
  (``20230218002819.1486479-36-jthoughton@google.com``) shipped the sign check instead:
  ``WARN_ON_ONCE(folio && folio_ref_count(folio) <= 0)``, the test ``try_get_page()`` makes.
  Its commit message says the refcount "will increase by 2^19 (512 * 512)" per mapping; that
  is a typo: 512 * 512 = 2^18, and 2^18 * 2^13 = 2^31 is the arithmetic the message means.

Model (domain.md 1.4): the ``per_piece`` scheme (HGM v1 as posted: one reference per leaf of any
size); every mapping is its own VMA, mapped entirely at ``piece`` granularity, so it takes
``hstate // piece`` references; nothing else holds references except the page cache, which holds
1 before v6.7 and ``folio_nr_pages()`` since (commit a08c7193e4f1,
:meth:`hgmviz.geometry.KernelProfile.pagecache_refs`).  ``piece == hstate`` is the mapping at
hstate level alone (no HGM): one reference per mapping, as mainline takes.  Counters are
signed ``counter_bits``-bit integers of the geometry (32 on x86-64, 8 in the toy geometry).

Guards, each checked before every single increment, in order (``hgmviz/schemes/base.py``):

* ``None``: no check; the increment that takes the count past INT_MAX wraps it to INT_MIN.
* ``"int_max_half"``: refuse when ``refcount > INT_MAX / 2`` (the thread's proposal, T9), so
  the count stops at ``INT_MAX // 2 + 1`` (2^30 on x86-64).
* ``"sign"``: refuse when ``refcount <= 0`` (v2 35/46 as meant, checked before the
  increment as ``try_get_page()`` checks); the increment that reaches INT_MIN is admitted (the
  count was positive before it), the next one is refused.
* ``"sign_posted"``: v2 35/46 as posted: ``hugetlb_try_find_lock_folio`` tests
  ``folio_ref_count(folio) <= 0`` *after* ``filemap_lock_folio()`` took the piece's reference,
  so the piece whose reference takes the count from INT_MAX to INT_MIN is refused (one piece
  earlier than ``"sign"``) and its reference is never put (``leaked_references`` = 1; the
  count stays at INT_MIN and the folio stays locked).

Everything is integer arithmetic on Python ints: no loop, no floating point.
"""
from __future__ import annotations

from .geometry import _fmt_size, get_geometry, get_kernel_profile

__all__ = ["overflow_math", "GUARD_NAMES", "MAX_MAP_COUNT"]

#: The guard names :func:`overflow_math` and ``hv.Machine(guard=...)`` accept.
GUARD_NAMES = (None, "int_max_half", "sign", "sign_posted")

#: ``vm.max_map_count`` default (DEFAULT_MAX_MAP_COUNT, 65530): the VMAs one process may have.
MAX_MAP_COUNT = 65530


_fmt = _fmt_size


def _wrap(x: int, bits: int) -> int:
    """Two's-complement wrap into a signed ``bits``-bit integer (as ``atomic_add`` wraps)."""
    half = 1 << (bits - 1)
    return ((x + half) & ((half << 1) - 1)) - half


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int (bytes), not %r" % (name, value))
    return value


def overflow_math(hstate=1 << 30, piece=4096, kernel="6.2", guard="int_max_half",
                  geometry="x86_64") -> dict:
    """How far per-piece refcounting of one hugetlb folio gets before its guard refuses or
    its refcount wraps.

    ``hstate``: hugepage size in bytes (one of the geometry's hstates).  ``piece``: the leaf
    size every mapping is made of (a page-table leaf size, at most ``hstate``).  ``kernel``:
    ``"6.2"`` (page cache holds 1 ref), ``"6.18"`` (``folio_nr_pages()`` refs), any ``"X.Y"``.
    ``guard``: ``None``, ``"int_max_half"``, ``"sign"`` or ``"sign_posted"``.  ``geometry``: ``"x86_64"``,
    ``"x86_64-5level"``, ``"toy"`` or a :class:`~hgmviz.geometry.Geometry`.

    Always present: ``page_cache_refs``, ``refs_per_mapping``, ``int_max``, ``int_min``,
    ``counter_bits``, ``guard`` and the inputs.

    Guards ``"int_max_half"``, ``"sign"`` and ``"sign_posted"`` add ``full_mappings`` (mappings that complete),
    ``extra_pieces`` (pieces of the next mapping that succeed), ``refused_at_refcount`` (the
    refcount the guard sees when it refuses: 2^30 for ``"int_max_half"`` on x86-64, INT_MIN for
    ``"sign"`` and ``"sign_posted"``), ``admitted_references`` (every reference a mapping
    kept, = the per_piece mapcount), ``leaked_references`` (1 for ``"sign_posted"``: the refused
    lookup's, 0 otherwise) and ``refcount_after_full_mappings``.

    Every guard reports ``wraps_during_mapping``: the 1-based number of the full mapping during
    which the refcount first goes past INT_MAX (``None`` when the guard prevents it), with
    ``full_mappings_before_wrap``, ``pieces_into_wrapping_mapping`` (1-based number of the piece
    that wraps it), ``refcount_after_full_mappings`` (without a guard: before the wrapping
    mapping), ``refcount_after_wrapping_mapping`` (the wrapped value once that mapping is
    complete, guard ``None``) and ``min_processes_at_max_map_count`` (processes needed when
    each may hold ``vm.max_map_count`` = 65,530 VMAs; a lower bound, other VMAs not counted).

    >>> overflow_math()["full_mappings"], overflow_math()["extra_pieces"]
    (4095, 262143)
    >>> overflow_math(guard=None)["wraps_during_mapping"]
    8192
    """
    g = get_geometry(geometry)
    prof = get_kernel_profile(kernel)
    hstate = _check_size("hstate", hstate)
    piece = _check_size("piece", piece)
    if guard not in GUARD_NAMES:
        raise ValueError("unknown guard %r; allowed: None, 'int_max_half', 'sign', 'sign_posted'"
                         % (guard,))
    h = g.hstate(hstate)           # ValueError naming the allowed hstates
    leaves = [g.level_size(lvl) for lvl in range(1, h.level + 1)]
    if piece not in leaves:
        raise ValueError("piece must be a page-table leaf size no larger than the %s hstate in "
                         "the %s geometry; allowed: %s; not %r"
                         % (_fmt(hstate), g.name,
                            ", ".join("%s (%d)" % (_fmt(s), s) for s in leaves), piece))

    bits = g.counter_bits
    int_max = (1 << (bits - 1)) - 1
    int_min = -(1 << (bits - 1))
    r = hstate // piece                                   # refs per full mapping
    pc = prof.pagecache_refs(h.pages_per_huge_page())     # page-cache base refs
    if pc > int_max:
        raise ValueError("the page cache's %d references to a %s folio alone overflow the %d-bit "
                         "refcount of the %s geometry" % (pc, _fmt(hstate), bits, g.name))
    start = pc                                            # refcount once in the page cache

    res = {
        "hstate": hstate,
        "piece": piece,
        "kernel": prof.label,
        "guard": guard,
        "geometry": g.name,
        "scheme": "per_piece",
        "counter_bits": bits,
        "int_max": int_max,
        "int_min": int_min,
        "page_cache_refs": pc,
        "refs_per_mapping": r,
    }

    # -- the wrap: the k-th increment (1-based) takes the count from INT_MAX to INT_MIN ------
    k = int_max - start + 1
    wrap_mapping = (k - 1) // r + 1
    wrap = {
        "wraps_during_mapping": wrap_mapping,
        "full_mappings_before_wrap": wrap_mapping - 1,
        "pieces_into_wrapping_mapping": (k - 1) % r + 1,
        "refcount_after_wrapping_mapping": _wrap(start + wrap_mapping * r, bits),
        "min_processes_at_max_map_count": -(-wrap_mapping // MAX_MAP_COUNT),
    }

    if guard is None:
        res.update(wrap)
        res["refcount_after_full_mappings"] = start + (wrap_mapping - 1) * r
        return res

    if guard == "int_max_half":
        lim = int_max // 2
        admitted = lim - start + 1 if start <= lim else 0
        refused_at = start + admitted                     # INT_MAX/2 + 1 (2^30 on x86-64)
        wraps = False
    elif guard == "sign":  # the increment that reaches INT_MIN is admitted, the next refused
        admitted = int_max - start + 1                    # 1 <= start <= INT_MAX
        refused_at = _wrap(start + admitted, bits)        # INT_MIN
        wraps = True
    else:  # "sign_posted": the lookup's increment from INT_MAX wraps, then the test refuses it
        admitted = int_max - start                        # the count reaches INT_MAX
        refused_at = _wrap(start + admitted + 1, bits)    # INT_MIN, with the leaked reference
        wraps = True
    del wrap["refcount_after_wrapping_mapping"]           # the guard stops it mid-mapping
    res.update(wrap if wraps else dict.fromkeys(wrap))
    full, extra = divmod(admitted, r)
    res.update({
        "full_mappings": full,
        "extra_pieces": extra,
        "refused_at_refcount": refused_at,
        "admitted_references": admitted,
        "leaked_references": 1 if guard == "sign_posted" else 0,
        "refcount_after_full_mappings": _wrap(start + full * r, bits),
    })
    return res
