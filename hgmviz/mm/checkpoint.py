"""The machine's state captured and put back: snapshots, the read-only state view and the
state digest.  Not a kernel file: the simulator's own bookkeeping.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import core
from .structs import FileView, MachineState, MmView, _MmState, _read_only


def machine_state(m, snap=None) -> "MachineState":
    """A read-only view of the live state (``snap=None``) or of ``snap`` (from
    :meth:`snapshot`): what a renderer reads — page-table arrays, every mm (exited ones
    too) and file (released ones too), the folio layout and use, and the counters through
    the scheme's accessors.  Arrays are read-only views; a snapshot's counters are read
    through a fresh scheme object, so nothing here can change the machine."""
    if snap is None:
        pt = m.pt
        ent, tlevel, tshare = pt.ent, pt.tlevel, pt.tshare
        files, mms = m._files, m._mms
        used, ffile, findex = m._folio_used, m._folio_file, m._folio_index
        scheme, version = m.scheme, m.version
    else:
        check_snapshot(m, snap)
        p, py = snap["pt"], snap["py"]
        ent, tlevel, tshare = p["ent"], p["tlevel"], p["tshare"]
        files, mms = py[0], py[1]
        used, ffile, findex = py[2], py[3], py[4]
        scheme = m.scheme.fresh(guard=m.scheme.guard)
        scheme.restore(snap["scheme"])          # a private copy: the machine's is untouched
        version = snap["version"]
    ro = _read_only
    return MachineState(
        geometry=m.geometry, fl=ro(m._fl), folio_pfn=ro(m._folio_pfn),
        folio_hstate=ro(m._folio_hstate), ent=ro(ent), tlevel=ro(tlevel),
        tshare=ro(tshare), folio_used=ro(used), folio_file=ro(ffile),
        folio_index=ro(findex), scheme=scheme, version=version,
        mms={pid: MmView(pid, int(st.pgd), tuple(st.vmas), bool(st.alive))
             for pid, st in mms.items()},
        files={fid: FileView(fid, st.name, int(st.hstate), int(st.size), ro(st.pc),
                             bool(st.released)) for fid, st in files.items()})


def check_snapshot(m, snap):
    if not isinstance(snap, dict) or not {"pt", "scheme", "py", "version"} <= set(snap):
        raise TypeError("before must be a snapshot of this machine (snapshot(m)), not %r"
                        % (type(snap).__name__,))
    ref = snap["scheme"].get("refcount")
    if ref is None or np.asarray(ref).size != m._folio_pfn.size or \
            snap["pt"]["ent"].shape[1] != m.pt.ent.shape[1]:
        raise ValueError("before is a snapshot of another machine (its folio pool or table "
                         "width differs); take it with snapshot(m) on the machine you draw")


def snapshot(m):
    """A complete copy of the state (page tables, counters, files, processes)."""
    return {"pt": m.pt.snapshot(), "scheme": m.scheme.snapshot(), "py": m._save(),
            "version": m.version, "warned": m._warned_sign, "inject": m._inject}


def restore(m, snap):
    """Put the machine back exactly as it was when ``snapshot()`` was taken."""
    m.pt.restore(snap["pt"])
    m.scheme.restore(snap["scheme"])
    s = snap["py"]
    m._restore(({k: replace(v, pc=v.pc.copy(), resv=v.resv.copy()) for k, v in s[0].items()},
                   {k: _MmState(v.pid, v.pgd, list(v.vmas), v.alive)
                                          for k, v in s[1].items()},
                   s[2].copy(), s[3].copy(), s[4].copy(), list(s[5]), s[6], s[7], dict(s[8])))
    m.version = snap["version"]
    m._warned_sign = snap["warned"]
    m._inject = snap.get("inject")


def state_digest(m) -> str:
    """A hash of the simulated state (page tables, counters, files, processes, the pool):
    equal digests mean byte-identical machines.

    Not included, though ``snapshot()`` keeps them: an armed error injection (a test
    harness's setting, used up by the operation it fires in, even one that fails) and the
    ``WARN_ON_ONCE`` flag (the kernel sets it on the very path that fails)."""
    import hashlib
    hsh = hashlib.sha256()
    pt = m.pt
    used = np.flatnonzero(pt.tlevel != 0)
    hsh.update(used.tobytes())
    for a in (pt.ent[used], pt.tlevel[used], pt.tcount[used], pt.tshare[used], pt.tfolio[used]):
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
        hsh.update(st.pc.tobytes())
        hsh.update(st.resv.tobytes())
    for pid in sorted(m._mms):
        st = m._mms[pid]
        hsh.update(repr((st.pid, st.pgd, st.alive, st.vmas)).encode())
    hsh.update(repr((m._resv, m._next_pid, m._next_file)).encode())
    return hsh.hexdigest()
