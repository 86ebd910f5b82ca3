"""What every accounting scheme shares: counters stored as the kernel stores them, the
overflow helper, the guard policies and the admit-then-commit protocol.

Counters are signed integers of the geometry's width (``atomic_t``: 32 bits on x86-64,
8 bits in the toy geometry), kept in int64 arrays and wrapped by one helper,
:func:`wrap_counter`, exactly as two's-complement ``atomic_add`` wraps.  Mapcounts are
stored biased by -1, as the kernel stores ``_mapcount`` and ``_entire_mapcount`` ("Note:
mapcounts start at -1", include/linux/rmap.h); the accessors add the 1 back.

Guards (checked before each reference a new mapping takes, in event order):

* ``None``: no check; the counter wraps, and the scheme records it in ``wrapped``.
* ``"int_max_half"``: refuse when ``folio_ref_count(folio) > INT_MAX / 2`` (the thread's
  proposal, T9, modelled on ``try_get_page()``'s original check).
* ``"sign"``: refuse when ``folio_ref_count(folio) <= 0`` with ``WARN_ON_ONCE`` (HGM v2 35/46,
  ``hugetlb_try_find_lock_folio``; the test ``try_get_page()`` and GUP's ``try_grab_folio()``
  make today), checked before the increment, as ``try_get_page()`` checks: the rule v2 meant.
* ``"sign_posted"``: v2 35/46 in the order it was posted
  (``20230218002819.1486479-36-jthoughton@google.com``, mm/hugetlb.c
  ``hugetlb_try_find_lock_folio``): ``folio = filemap_lock_folio(mapping, idx);`` takes the
  reference first, then ``if (WARN_ON_ONCE(folio && folio_ref_count(folio) <= 0)) return
  ERR_PTR(-EFAULT);`` tests the count that includes it.  So the fault or UFFDIO_CONTINUE
  piece whose reference takes the count from INT_MAX to INT_MIN is itself refused (one step
  earlier than ``"sign"``), and its reference stays: the error path returns without
  ``folio_unlock()`` or ``folio_put()`` (a leaked reference and a folio left locked; the
  machine applies them, :meth:`Scheme.leak_lookup_reference`).  Only the fault and
  UFFDIO_CONTINUE paths go through that lookup; the fork path (``copy_hugetlb_page_range``,
  ``try_get_page()``, the intended test) and UFFDIO_COPY (a new folio) check as ``"sign"``.
"""
from __future__ import annotations

import numpy as np

from .._jit import njit
from ..core import EV_FOLIO_ALLOC, EV_PAGECACHE_ADD, EV_PAGECACHE_DEL

GUARD_NONE = 0
GUARD_INT_MAX_HALF = 1
GUARD_SIGN = 2
GUARD_SIGN_POSTED = 3
GUARDS = {None: GUARD_NONE, "int_max_half": GUARD_INT_MAX_HALF, "sign": GUARD_SIGN,
          "sign_posted": GUARD_SIGN_POSTED}
#: What a bad ``guard`` is told it may be.
GUARD_ALLOWED = "None, 'int_max_half', 'sign', 'sign_posted'"

# Slots of ``Scheme.out`` where ``_apply`` tallies the counter updates the mapping accounting
# made (one per atomic operation on a counter: a leaf's folio_get/folio_put, one
# page_add/remove_file_rmap on the head or on one subpage, one metadata count).  Slots 0-3
# report a guard refusal.  The page cache's references (one folio_ref_add each) are not
# mapping accounting and are not tallied.
OUT_REFCOUNT, OUT_ENTIRE, OUT_SUBPAGE, OUT_METADATA = 4, 5, 6, 7
UPDATE_KINDS = ("refcount", "entire_mapcount", "subpage_mapcount", "metadata")


@njit
def wrap_counter(x, bits):
    """Two's-complement wrap of ``x`` into a signed ``bits``-bit integer (``atomic_t``)."""
    half = np.int64(1) << (bits - 1)
    return ((x + half) & ((half << 1) - 1)) - half


@njit
def guarded_increments(ref, n, guard, bits):
    """How many of ``n`` single increments a guard admits, starting from ``ref``.

    Each increment is checked before it is made, as ``try_get_page()`` checks; under
    ``GUARD_SIGN_POSTED`` the check sees the count *after* the lookup's own reference (HGM v2
    35/46 as posted, ``hugetlb_try_find_lock_folio``: ``filemap_lock_folio()`` then
    ``folio_ref_count(folio) <= 0``), so an increment from a count ``c`` is admitted only if
    ``c + 1`` does not wrap: the one from INT_MAX is refused.
    """
    int_max = (np.int64(1) << (bits - 1)) - 1
    if guard == GUARD_INT_MAX_HALF:
        lim = int_max // 2
        if ref > lim:
            return 0
        room = lim - ref + 1
        return n if n < room else room
    if guard == GUARD_SIGN:
        if ref <= 0:
            return 0
        room = int_max - ref + 1          # the increment that reaches INT_MIN is admitted
        return n if n < room else room
    if guard == GUARD_SIGN_POSTED:
        if ref < 0:                       # ref + 1 <= 0
            return 0
        room = int_max - ref              # the increment from INT_MAX wraps first: refused
        return n if n < room else room
    return n


@njit
def take_head(f, n, bits, refcount, entire, wrapped, out):
    """``n`` references and ``n`` entire mapcounts on folio ``f``'s head (``folio_get()`` +
    ``hugetlb_add_file_rmap()`` per mapping), flagging a wrap and tallying the updates."""
    # one basic block, no branch: numba then drops the per-call reference counting of the
    # four arrays, which cost more than the work itself in the per-event loops
    int_max = (np.int64(1) << (bits - 1)) - 1
    r = refcount[f]
    e = entire[f]
    over = (r + n > int_max) | (e + n > int_max)
    refcount[f] = wrap_counter(r + n, bits)
    entire[f] = wrap_counter(e + n, bits)
    wrapped[f] |= over
    out[OUT_REFCOUNT] += n
    out[OUT_ENTIRE] += n


@njit
def drop_head(f, n, bits, refcount, entire, out):
    """The reverse of :func:`take_head` (``hugetlb_remove_rmap()`` + ``folio_put()``)."""
    refcount[f] = wrap_counter(refcount[f] - n, bits)
    entire[f] = wrap_counter(entire[f] - n, bits)
    out[OUT_REFCOUNT] += n
    out[OUT_ENTIRE] += n


@njit
def is_folio_event(k):
    """Whether :func:`apply_folio_event` counts events of kind ``k``: the per-event loops ask
    this first, so the table and hstate events cost no call with the counter arrays."""
    return k == EV_PAGECACHE_ADD or k == EV_PAGECACHE_DEL or k == EV_FOLIO_ALLOC


@njit
def apply_folio_event(k, f, n, bits, refcount, entire, wrapped):
    """The events every scheme counts alike: the page cache's references
    (``__filemap_add_folio`` / ``filemap_remove_folio``) and a folio leaving the pool at rest
    (``alloc_hugetlb_folio``).  Returns False for any other event."""
    if k == EV_PAGECACHE_ADD:
        if refcount[f] + n > (np.int64(1) << (bits - 1)) - 1:
            wrapped[f] = 1
        refcount[f] = wrap_counter(refcount[f] + n, bits)
    elif k == EV_PAGECACHE_DEL:
        refcount[f] = wrap_counter(refcount[f] - n, bits)
    elif k == EV_FOLIO_ALLOC:
        refcount[f] = 0
        entire[f] = -1
        wrapped[f] = 0
    else:
        return False
    return True


class SchemeRefusal(Exception):
    """A guard refused a reference: ``admitted`` leaves of the operation went through first."""

    def __init__(self, admitted: int, folio: int, refcount: int, guard: str):
        super().__init__("refcount guard %r refused folio %d at refcount %d after %d leaves"
                         % (guard, folio, refcount, admitted))
        self.admitted = admitted
        self.folio = folio
        self.refcount = refcount
        self.guard = guard
        self.leaked = False           # the refused lookup's reference stayed ("sign_posted")


class Scheme:
    """Base class: per-folio ``refcount`` and ``entire`` (biased) counters, admit/commit.

    Subclasses set ``name``, ``supports_hgm`` and ``_apply`` (a jitted function with the
    signature of :func:`hgmviz.schemes.mainline._apply_head_only`).
    """

    name = "base"
    supports_hgm = False
    writes_tail_pages = False
    has_count_at = False
    source = ""

    def __init__(self, geometry, folio_shift: np.ndarray, folio_pfn: np.ndarray, guard=None):
        if guard not in GUARDS:
            raise ValueError("unknown guard %r; allowed: %s" % (guard, GUARD_ALLOWED))
        self.geometry = geometry
        self.guard = guard
        self.bits = geometry.counter_bits
        self.folio_shift = np.asarray(folio_shift, dtype=np.int64)
        self.folio_pfn = np.asarray(folio_pfn, dtype=np.int64)
        n = self.folio_shift.size
        self.counters = {
            "refcount": np.zeros(n, dtype=np.int64),
            "entire": np.full(n, -1, dtype=np.int64),      # folio->_entire_mapcount, biased
            "wrapped": np.zeros(n, dtype=np.int8),         # a counter wrapped (overflow)
        }
        if guard == "sign_posted":
            # what v2 35/46's error path leaves behind (see leak_lookup_reference)
            self.counters["leaked"] = np.zeros(n, dtype=np.int64)   # references never put
            self.counters["locked"] = np.zeros(n, dtype=np.int8)    # folio_lock() never undone
        self.out = np.zeros(8, dtype=np.int64)

    def fresh(self, guard=None) -> "Scheme":
        """A new instance with the same folio layout and all counters at rest."""
        return type(self)(self.geometry, self.folio_shift, self.folio_pfn, guard=guard)

    def folio_mapcount_of_leaf(self):
        return None

    # --- protocol used by the machine ------------------------------------------------
    def admit(self, ev: dict, guarded: bool = True, lookup: bool = True):
        """Apply events to scratch copies; return them, or raise :class:`SchemeRefusal`.

        ``guarded=False``: a path that takes its references without the check (MADV_COLLAPSE's
        ``filemap_get_folio()``, unguarded in v2 and in the thread's proposal).
        ``lookup=False``: a path that does not go through ``hugetlb_try_find_lock_folio``
        (fork's ``try_get_page()``, UFFDIO_COPY's new folio): ``"sign_posted"`` checks there
        as ``"sign"`` does."""
        scratch = self.snapshot()
        out = self.out
        out[:] = 0
        guard = self.guard
        if not guarded:
            self.guard = None
        elif not lookup and guard == "sign_posted":
            self.guard = "sign"
        try:
            self._run(ev, scratch, out)
        finally:
            self.guard = guard
        if out[0]:
            raise SchemeRefusal(int(out[1]), int(out[2]), int(out[3]), self.guard)
        return scratch

    def commit(self, scratch):
        self.counters = scratch

    def updates(self) -> dict:
        """The counter updates of the last :meth:`admit`, by kind (:data:`UPDATE_KINDS`):
        ``refcount`` (``_refcount`` on the head), ``entire_mapcount`` (the head's
        ``_entire_mapcount``), ``subpage_mapcount`` (a subpage's ``_mapcount``: one
        ``struct page`` each) and ``metadata`` (a scheme's own counts)."""
        return dict(zip(UPDATE_KINDS, (int(x) for x in self.out[OUT_REFCOUNT:OUT_METADATA + 1])))

    def _guard_code(self) -> int:
        return GUARDS[self.guard]

    def _run(self, ev, c, out):
        self._apply(ev["kind"], ev["shift"], ev["count"], ev["pfn"], ev["folio"],
                    self.folio_shift, self.geometry.page_shift, GUARDS[self.guard], self.bits,
                    c["refcount"], c["entire"], c["wrapped"], out)

    def snapshot(self):
        return {k: (v.copy() if hasattr(v, "copy") else v) for k, v in self.counters.items()}

    def restore(self, snap):
        self.counters = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in snap.items()}

    def metadata_bytes(self) -> int:
        """Memory the scheme needs beyond struct page (0 for most schemes)."""
        return 0

    # --- the kernel's accessors ------------------------------------------------------
    def folio_ref_count(self, folio: int) -> int:
        return int(self.counters["refcount"][folio])

    def folio_entire_mapcount(self, folio: int) -> int:
        return int(self.counters["entire"][folio]) + 1

    def folio_mapcount(self, folio: int) -> int:
        return self.folio_entire_mapcount(folio)

    def page_mapcount(self, folio: int, index: int) -> int:
        """What /proc/kpagecount shows for page ``index`` of the folio.

        ``folio_precise_page_mapcount()``: ``page->_mapcount + 1`` (0 for hugetlb, whose
        subpage mapcounts are never touched) plus ``folio_entire_mapcount()``
        (fs/proc/internal.h; domain.md 2.2).
        """
        return self.folio_entire_mapcount(folio)

    def wrapped(self, folio: int) -> bool:
        return bool(self.counters["wrapped"][folio])

    def leaked_refs(self, folio: int) -> int:
        """References to ``folio`` taken and never put by an error path (``"sign_posted"``)."""
        leaked = self.counters.get("leaked")
        return 0 if leaked is None else int(leaked[folio])

    def locked(self, folio: int) -> bool:
        """``folio_test_locked()`` left true by an error path (``"sign_posted"``); otherwise
        every lookup unlocks before it returns, so a folio is never locked between operations."""
        locked = self.counters.get("locked")
        return False if locked is None else bool(locked[folio])

    def leak_lookup_reference(self, folio: int) -> int:
        """HGM v2 35/46 as posted, ``hugetlb_try_find_lock_folio`` (mm/hugetlb.c): the refused
        lookup's reference stays and the folio stays locked::

            struct folio *folio = filemap_lock_folio(mapping, idx);
            ...
            if (WARN_ON_ONCE(folio && folio_ref_count(folio) <= 0))
                    return ERR_PTR(-EFAULT);

        ``filemap_lock_folio()`` took a reference and the folio lock; this return gives back
        neither (no ``folio_unlock()``, no ``folio_put()``), and the callers
        (``hugetlb_no_page``: ``goto out``; ``hugetlb_mcopy_atomic_pte``: ``goto out``) do not
        either, since they got an ERR_PTR, not the folio.  Applies the +1 (wrapping, as
        ``atomic_inc`` wraps), counts it in ``leaked``, sets ``locked``; returns the refcount."""
        c = self.counters
        if "leaked" not in c:
            raise RuntimeError("only the 'sign_posted' guard leaks a reference, not %r"
                               % (self.guard,))
        before = int(c["refcount"][folio])
        after = int(wrap_counter(before + 1, self.bits))
        if after < before:
            c["wrapped"][folio] = 1
        c["refcount"][folio] = after
        c["leaked"][folio] += 1
        c["locked"][folio] = 1
        return after
