"""One checkpoint type for the machine's state (:class:`Checkpoint`), the read-only state
view (:func:`machine_state`) and the state digest.  Not a kernel file: the simulator's own
bookkeeping.

A checkpoint is compact: it copies only the page-table pages in use (unused pages are
all-zero, since ``table_free`` takes an empty, unshared page), the part of the free stack
that is not the run of never-used pages, the scheme's counters, and the small Python-side
state (files with their page caches and ``resv_map``, mms with their VMAs, the folio use, the
pool's reservations).  The transaction protocol of :class:`~hgmviz.mm.machine.Machine` uses
the same type without the tables and counters (the core journals page-table writes).
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from .. import core
from ..errors import SimError
from .structs import File, FileView, MachineState, MmView, _MmState, _read_only

__all__ = ["Checkpoint", "CheckpointMismatch", "capture", "put_back", "restore",
           "machine_state", "state_digest"]


class CheckpointMismatch(SimError, ValueError):
    """A checkpoint taken on a machine of another configuration (pool layout, geometry,
    scheme or table width) was given to :meth:`Machine.restore` / :meth:`Machine.state`;
    nothing was changed."""


@dataclass(frozen=True, eq=False)
class Tables:
    """The page-table pool of a checkpoint: the rows in use (``used``) of each array, the
    pool's capacity, and the free stack as ``stack_run`` (the untouched run
    ``capacity-1, capacity-2, ...`` at its bottom, stored as a count) plus the rest."""
    capacity: int
    used: np.ndarray
    ent: np.ndarray
    tlevel: np.ndarray
    tcount: np.ndarray
    tshare: np.ndarray
    tfolio: np.ndarray
    stack_run: int
    fstack: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.used, self.ent, self.tlevel, self.tcount,
                                      self.tshare, self.tfolio, self.fstack))

    def free_stack(self, cap: int, dtype) -> np.ndarray:
        """The free stack in a pool of capacity ``cap`` >= :attr:`capacity`: pages added by
        growth lie under the stack, as ``PageTablePool.grow_tables`` puts them."""
        low = self.capacity - self.stack_run         # the run is capacity-1 .. low
        return np.concatenate([np.arange(cap - 1, low - 1, -1, dtype=dtype),
                               self.fstack.astype(dtype, copy=False)])


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """The state of one machine at one moment (:meth:`Machine.checkpoint`), put back with
    :meth:`Machine.restore` and read with :meth:`Machine.state`.  Immutable as far as the
    machine is concerned: restoring copies out of it, so one checkpoint restores any number
    of times.  ``config`` names the machine configuration it fits; ``nbytes`` is the memory
    it holds.  ``tables`` and ``scheme`` are None in the transaction protocol's own saves."""
    config: tuple
    tables: Optional[Tables]
    scheme: Optional[dict]
    files: dict
    mms: dict
    folio_used: np.ndarray
    folio_file: np.ndarray
    folio_index: np.ndarray
    resv: tuple
    next_pid: int
    next_file: int
    version: int
    warned: bool
    inject: Optional[str]

    @property
    def nbytes(self) -> int:
        n = self.tables.nbytes if self.tables is not None else 0
        if self.scheme is not None:
            n += _nbytes(self.scheme)
        n += self.folio_used.nbytes + self.folio_file.nbytes + self.folio_index.nbytes
        n += sum(st.pc.nbytes + st.resv.nbytes + 128 for st in self.files.values())
        n += sum(64 + 64 * len(st.vmas) for st in self.mms.values())
        return n


def _nbytes(x) -> int:
    if isinstance(x, np.ndarray):
        return x.nbytes
    if isinstance(x, dict):
        return sum(_nbytes(v) for v in x.values()) + 64 * len(x)
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(v) for v in x) + 8 * len(x)
    return 64


def config_of(m) -> tuple:
    """What a checkpoint must share with the machine it is restored on: the geometry, the
    pool's folio layout, the scheme and the page-table width."""
    g = m.geometry
    return (g.page_shift, g.bits_per_level, g.levels, tuple(h.size for h in g.hstates),
            m._fl.tobytes(), type(m.scheme).__name__, m.pt.ent.shape[1])


def _stack_run(fstack, cap: int) -> int:
    n = fstack.size
    if n == 0:
        return 0
    mism = np.flatnonzero(fstack != np.arange(cap - 1, cap - 1 - n, -1, dtype=fstack.dtype))
    return int(mism[0]) if mism.size else n


def _copy_files(files: dict) -> dict:
    return {k: replace(v, pc=v.pc.copy(), resv=v.resv.copy()) for k, v in files.items()}


def _copy_mms(mms: dict) -> dict:
    # the VMA lists are shared: the mm layer replaces an mm's list, never changes it in place
    return {k: _MmState(v.pid, v.pgd, v.vmas, v.alive) for k, v in mms.items()}


def capture(m, tables: bool = True) -> Checkpoint:
    """A :class:`Checkpoint` of ``m``; ``tables=False`` leaves out the page tables and the
    counters (the transaction protocol's save)."""
    t = None
    if tables:
        pt = m.pt
        used = np.flatnonzero(pt.tlevel)
        cap = pt.capacity
        fs = pt.fstack[:pt.nr_free]
        run = _stack_run(fs, cap)
        t = Tables(cap, used, pt.ent[used], pt.tlevel[used], pt.tcount[used], pt.tshare[used],
                   pt.tfolio[used], run, fs[run:].copy())
    return Checkpoint(
        config=config_of(m) if tables else (), tables=t,
        scheme=m.scheme.snapshot() if tables else None,
        files=_copy_files(m._files), mms=_copy_mms(m._mms),
        folio_used=m._folio_used.copy(), folio_file=m._folio_file.copy(),
        folio_index=m._folio_index.copy(), resv=tuple(m._resv), next_pid=m._next_pid,
        next_file=m._next_file, version=m.version, warned=m._warned_sign, inject=m._inject)


def put_back(m, ck: Checkpoint, copy: bool = True):
    """Put back the Python-side state of ``ck`` (files, mms, folio use, reservations, ids);
    ``copy=False`` hands ``ck``'s own objects to the machine (a save used once)."""
    if copy:
        files, mms = _copy_files(ck.files), _copy_mms(ck.mms)
        used, ffile, findex = ck.folio_used.copy(), ck.folio_file.copy(), ck.folio_index.copy()
    else:
        files, mms = ck.files, ck.mms
        used, ffile, findex = ck.folio_used, ck.folio_file, ck.folio_index
    handles = m._file_handles
    m._files, m._mms = files, mms
    m._folio_used, m._folio_file, m._folio_index = used, ffile, findex
    m._resv = list(ck.resv)
    m._next_pid, m._next_file = ck.next_pid, ck.next_file
    m._file_handles = {fid: handles[fid] if fid in handles else File(m, fid) for fid in files}


def check(m, ck, what: str = "checkpoint"):
    """Raise unless ``ck`` is a full checkpoint that fits ``m`` (nothing is changed)."""
    if not isinstance(ck, Checkpoint) or ck.tables is None:
        raise TypeError("%s must be a snapshot of this machine (a Checkpoint from "
                        "m.checkpoint() or m.snapshot()), not %r" % (what, type(ck).__name__))
    if ck.config != config_of(m):
        raise CheckpointMismatch(
            "%s is a snapshot of another machine (its geometry, folio pool, scheme or table "
            "width differs); take it with m.checkpoint() on this machine" % what)


def restore(m, ck: Checkpoint):
    """Put ``m`` back exactly as it was at ``ck`` (page tables in place: rows in use now are
    cleared, the checkpoint's rows written back; a pool that grew since keeps its capacity,
    the new pages under the free stack as growth puts them).  Checks first: a checkpoint of
    another machine raises :class:`CheckpointMismatch` and changes nothing."""
    check(m, ck)
    pt = m.pt
    t = ck.tables
    if pt.capacity < t.capacity:
        pt.grow_tables(t.capacity - pt.capacity)
    cur = np.flatnonzero(pt.tlevel)
    u = t.used
    pt.put_tables(cur, u, t.ent)
    pt.tlevel[cur] = 0
    pt.tcount[cur] = 0
    pt.tshare[cur] = 0
    pt.tfolio[cur] = -1
    pt.tlevel[u] = t.tlevel
    pt.tcount[u] = t.tcount
    pt.tshare[u] = t.tshare
    pt.tfolio[u] = t.tfolio
    stack = t.free_stack(pt.capacity, pt.fstack.dtype)
    pt.fstack[:stack.size] = stack
    pt.meta[core.M_NFREE] = stack.size
    pt.meta[core.M_JLEN] = 0
    pt.meta[core.M_NEV] = 0
    m.scheme.restore(ck.scheme)
    put_back(m, ck)
    m.version = ck.version
    m._warned_sign = ck.warned
    m._inject = ck.inject
    m._in_op = False                  # restoring is also the way out of an interrupted operation


#: The tables of the checkpoints read last, expanded to whole read-only arrays (id of the
#: Tables -> (weak reference, ent, tlevel, tshare)): a widget or an example redraws against
#: the same ``before`` again and again, and expanding a 1 GiB-at-4 KiB pool each time cost
#: more than the drawing.  An entry leaves when its checkpoint dies or after
#: ``_EXPANDED_MAX`` newer ones.
_EXPANDED: "OrderedDict[int, tuple]" = OrderedDict()
_EXPANDED_MAX = 8


def _expanded(t: Tables, pt):
    """``(ent, tlevel, tshare)`` of checkpoint tables ``t`` as whole read-only arrays."""
    key = id(t)
    hit = _EXPANDED.get(key)
    if hit is not None and hit[0]() is t and hit[1].shape[1] == pt.ptrs:
        _EXPANDED.move_to_end(key)
        return hit[1:]
    ent = np.zeros((t.capacity, pt.ptrs), dtype=pt.ent.dtype)
    ent[t.used] = t.ent
    tlevel = np.zeros(t.capacity, dtype=pt.tlevel.dtype)
    tlevel[t.used] = t.tlevel
    tshare = np.zeros(t.capacity, dtype=pt.tshare.dtype)
    tshare[t.used] = t.tshare
    arrays = tuple(_read_only(a) for a in (ent, tlevel, tshare))
    _EXPANDED[key] = (weakref.ref(t),) + arrays
    weakref.finalize(t, _EXPANDED.pop, key, None)
    while len(_EXPANDED) > _EXPANDED_MAX:
        _EXPANDED.popitem(last=False)
    return arrays


def machine_state(m, ck=None) -> MachineState:
    """A read-only view of the live state (``ck=None``) or of checkpoint ``ck``: what a
    renderer reads — page-table arrays, every mm (exited ones too) and file (released ones
    too), the folio layout and use, and the counters through the scheme's accessors.
    Arrays are read-only; a checkpoint's counters are read through a fresh scheme object and
    its tables are expanded into new arrays, so nothing here can change the machine."""
    if ck is None:
        pt = m.pt
        ent, tlevel, tshare = pt.ent.read_only(), pt.tlevel, pt.tshare
        files, mms = m._files, m._mms
        used, ffile, findex = m._folio_used, m._folio_file, m._folio_index
        scheme, version = m.scheme, m.version
    else:
        check(m, ck, "before")
        ent, tlevel, tshare = _expanded(ck.tables, m.pt)
        files, mms = ck.files, ck.mms
        used, ffile, findex = ck.folio_used, ck.folio_file, ck.folio_index
        scheme = m.scheme.fresh(guard=m.scheme.guard)
        scheme.restore(ck.scheme)          # a private copy: the machine's is untouched
        version = ck.version
    ro = _read_only
    return MachineState(
        geometry=m.geometry, fl=ro(m._fl), folio_pfn=ro(m._folio_pfn),
        folio_hstate=ro(m._folio_hstate), ent=ent if ck is None else ro(ent), tlevel=ro(tlevel),
        tshare=ro(tshare), folio_used=ro(used), folio_file=ro(ffile),
        folio_index=ro(findex), scheme=scheme, version=version,
        mms={pid: MmView(pid, int(st.pgd), tuple(st.vmas), bool(st.alive))
             for pid, st in mms.items()},
        files={fid: FileView(fid, st.name, int(st.hstate), int(st.size), ro(st.pc),
                             bool(st.released)) for fid, st in files.items()})


_DIGEST_CHUNK = 4096      # tables hashed per step: memory stays small for a 2-million-table pool


def state_digest(m) -> str:
    """A hash of the simulated state (page tables, counters, files, processes, the pool):
    equal digests mean byte-identical machines.

    Not included, though a :class:`Checkpoint` keeps them: an armed error injection (a test
    harness's setting, used up by the operation it fires in, even one that fails) and the
    ``WARN_ON_ONCE`` flag (the kernel sets it on the very path that fails)."""
    import hashlib
    hsh = hashlib.sha256()
    pt = m.pt
    used = np.flatnonzero(pt.tlevel != 0)
    hsh.update(used.tobytes())
    # the entries table by table, in chunks (the bytes hashed are those of pt.ent[used])
    ent = pt.ent
    for lo in range(0, used.size, _DIGEST_CHUNK):
        hsh.update(np.ascontiguousarray(ent[used[lo:lo + _DIGEST_CHUNK]]).tobytes())
    for a in (pt.tlevel[used], pt.tcount[used], pt.tshare[used], pt.tfolio[used]):
        hsh.update(np.ascontiguousarray(a).tobytes())
    nfree = int(pt.meta[core.M_NFREE])
    # the free stack's pop order, ignoring pages added by growth (they pop last)
    top = pt.fstack[:nfree]
    hsh.update(top[top < (used.max() + 1 if used.size else 1)].tobytes())
    for k in sorted(m.scheme.counters):
        v = m.scheme.counters[k]
        hsh.update(k.encode())
        hsh.update(v.tobytes() if isinstance(v, np.ndarray) else repr(sorted(v.items()) if
                                                                       isinstance(v, dict) else v).encode())
    for a in (m._folio_used, m._folio_file, m._folio_index):
        hsh.update(a.tobytes())
    for fid in sorted(m._files):
        st = m._files[fid]
        hsh.update(repr((st.id, st.name, st.hstate, st.size, st.fd_open, st.nr_vmas,
                         st.released)).encode())
        # the page cache and resv_map by content, not by how far their arrays reach
        for a in (st.pc, st.resv):
            nz = np.flatnonzero(a != (-1 if a is st.pc else 0))
            hsh.update(nz.tobytes())
            hsh.update(a[nz].tobytes())
    for pid in sorted(m._mms):
        st = m._mms[pid]
        hsh.update(repr((st.pid, st.pgd, st.alive, st.vmas)).encode())
    hsh.update(repr((m._resv, m._next_pid, m._next_file)).encode())
    return hsh.hexdigest()
