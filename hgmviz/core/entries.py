"""Layer 1: ``ent[table, index]``, the page-table entries as everything above the kernels
reads them.

The pool stores entries in physical rows (:attr:`PageTablePool.rows`) that need not be one
per page-table page: identical leaf tables may share one row (issue 16).  Code outside the
jitted kernels reads entries only through :class:`Entries` (``pt.ent``), which resolves a
table to its row, so the walks, the audit, the digest, checkpoints and the diagrams see
exactly the tables they saw when every table had its own row.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

__all__ = ["Entries"]


class Entries:
    """The logical entry array of a :class:`~hgmviz.core.pool.PageTablePool`, shaped
    ``(capacity, ptrs)``, indexed like a numpy array whose first index is a table.

    Reading gives numpy values: ``ent[t, i]`` a scalar, ``ent[t]`` / ``ent[t, lo:hi]`` a
    read-only view of the table's row, ``ent[tables]`` (an index array, a mask or a slice
    of tables) a new array.  ``np.asarray(ent)`` / :meth:`copy` build the whole array.  A
    live view: it follows the pool as it changes and grows.

    Writing (``ent[t, i] = v``, ``ent[t] = row``) is a raw write for tests and tools that
    corrupt a table on purpose (no journal, ``tcount`` unchanged): the table gets a private
    row first, so no other table changes.  A :meth:`read_only` view refuses writes.
    """

    __slots__ = ("_pool", "_ro")
    ndim = 2

    def __init__(self, pool, read_only: bool = False):
        self._pool = pool
        self._ro = bool(read_only)

    # ---- array-like attributes -------------------------------------------------------------
    @property
    def shape(self):
        return (self._pool.capacity, self._pool.ptrs)

    @property
    def dtype(self):
        return self._pool.rows.dtype

    @property
    def itemsize(self) -> int:
        return self._pool.rows.itemsize

    @property
    def size(self) -> int:
        return self._pool.capacity * self._pool.ptrs

    @property
    def nbytes(self) -> int:
        """What the array would take with one row per table (``copy()`` allocates that)."""
        return self.size * self.itemsize

    @property
    def flags(self):
        return SimpleNamespace(writeable=not self._ro)

    def __len__(self) -> int:
        return self._pool.capacity

    def read_only(self) -> "Entries":
        """The same view, refusing writes."""
        return Entries(self._pool, read_only=True)

    # ---- reading ---------------------------------------------------------------------------
    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        rows = self._pool.rows
        out = rows[(self._pool.row_of(key[0]),) + key[1:]]
        if isinstance(out, np.ndarray) and not out.flags.owndata:
            out = out.view()          # a view into a row other tables may share
            out.setflags(write=False)
        return out

    def __array__(self, dtype=None, copy=None):
        pool = self._pool
        out = pool.rows[pool.row_of(np.arange(pool.capacity))]
        return out if dtype is None else out.astype(dtype, copy=False)

    def copy(self) -> np.ndarray:
        """The whole array, one row per table (``capacity * ptrs`` entries)."""
        return np.asarray(self)

    def __iter__(self):
        for t in range(self._pool.capacity):
            yield self[t]

    def __repr__(self) -> str:
        return "<Entries of %d tables x %d entries%s>" % (self.shape + (
            ", read-only" if self._ro else "",))

    # ---- raw writes (tests, tools) ---------------------------------------------------------
    def __setitem__(self, key, value):
        if self._ro:
            raise ValueError("assignment destination is read-only (a state view of the page "
                             "tables; write through the machine's operations)")
        if not isinstance(key, tuple):
            key = (key,)
        t = key[0]
        if isinstance(t, (np.ndarray, list, slice)):
            raise TypeError("raw writes take one table at a time: ent[t, i] = v or ent[t] = row, "
                            "not ent[%r]" % (t,))
        row = self._pool.private_row(int(t))
        self._pool.rows[(row,) + key[1:]] = value
