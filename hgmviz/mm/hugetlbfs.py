"""fs/hugetlbfs/inode.c and mm/memfd.c: hugetlbfs files (``memfd_create(MFD_HUGETLB)``,
``hugetlbfs_setattr``, ``hugetlbfs_fallocate``, ``hugetlbfs_evict_inode`` →
``remove_inode_hugepages``), mainline v6.2.
"""
from __future__ import annotations

import errno

import numpy as np

from .. import core
from ..errors import syscall_error
from .structs import MAX_LFS_FILESIZE, MFD_NAME_MAX_LEN, File, _FileState, _check_int, _fmt
from . import hugetlb


def memfd_create(m, size, hstate, name):
    """``memfd_create(name, MFD_HUGETLB | MFD_HUGE_<size>)`` (mm/memfd.c v6.2) →
    ``hugetlb_file_setup``, then ``ftruncate(size)`` → ``hugetlbfs_setattr``."""
    g = m.geometry
    if not isinstance(name, str):
        raise TypeError("memfd_create: name must be a str, not %r" % (name,))
    if len(name.encode("utf-8", "surrogatepass")) > MFD_NAME_MAX_LEN:
        raise syscall_error(errno.EINVAL, "memfd_create: the name may have at most %d bytes "
                            "(MFD_NAME_MAX_LEN), not %d" % (MFD_NAME_MAX_LEN, len(name)))
    if hstate is None:
        hstate = g.hstates[0].size
    hstate = _check_int("hstate", hstate, 1)
    try:
        h = g.hstate(hstate)
    except ValueError as e:
        raise syscall_error(errno.EINVAL, "memfd_create(MFD_HUGETLB): %s" % e) from None
    size = _check_int("size", size)
    if size > MAX_LFS_FILESIZE:
        raise syscall_error(errno.EFBIG, "ftruncate: size %#x is larger than a file may be "
                            "(s_maxbytes, 2**63-1; inode_newsize_ok)" % size)
    if size & (h.size - 1):
        raise syscall_error(errno.EINVAL, "ftruncate: the size of a hugetlbfs file must be a "
                            "multiple of the hugepage size %s (hugetlbfs_setattr), not %d"
                            % (_fmt(h.size), size))
    fid = m._next_file
    m._next_file += 1
    # the page cache and resv_map start empty: they grow with what is mapped or allocated
    # (ensure_extent), not with i_size, so a large file costs nothing until it is used
    m._files[fid] = _FileState(fid, name, h.index, size, np.full(0, -1, np.int32),
                               np.zeros(0, np.int8))
    m._file_handles[fid] = File(m, fid)
    m.call_path = ["memfd_create", "hugetlb_file_setup", "hugetlbfs_setattr"]
    m._finish()
    return m._file_handles[fid]


#: The simulator holds a file's page cache and ``resv_map`` as arrays over hugepage indices
#: 0 .. the highest index mapped or allocated; beyond this many it refuses (ENOMEM) rather
#: than allocate in proportion to a file offset (8 TiB of 2 MiB hugepages, 4 PiB of 1 GiB).
MAX_FILE_INDEX = 1 << 22


def grow_file(m, st: _FileState, size: int):
    """Extend ``i_size`` to ``size`` (``hugetlbfs_fallocate`` and ``hugetlbfs_file_mmap``,
    fs/hugetlbfs/inode.c v6.2).  The page cache is not touched: see :func:`ensure_extent`."""
    st.size = max(st.size, size)


def ensure_extent(m, st: _FileState, n: int, what: str):
    """Make the page cache and ``resv_map`` arrays cover hugepage indices ``[0, n)``, the
    range a mapping or an allocation is about to use; more than :data:`MAX_FILE_INDEX` is
    ENOMEM (a limit of the simulator, said so), before anything is allocated."""
    if n > MAX_FILE_INDEX:
        h = m.geometry.hstates[st.hstate]
        raise syscall_error(errno.ENOMEM, "%s: the simulator holds a file's page cache for "
                            "offsets below %s (%d hugepages of %s); this reaches hugepage %d"
                            % (what, _fmt(MAX_FILE_INDEX << h.shift), MAX_FILE_INDEX,
                               _fmt(h.size), n - 1))
    if n > st.pc.size:
        st.pc = np.concatenate([st.pc, np.full(n - st.pc.size, -1, np.int32)])
        st.resv = np.concatenate([st.resv, np.zeros(n - st.resv.size, np.int8)])


def hugetlbfs_fallocate(m, f, offset, length):
    """``hugetlbfs_fallocate`` (fs/hugetlbfs/inode.c v6.2) after ``vfs_fallocate``'s checks:
    allocate and add to the page cache every missing hugepage of the range (ENOSPC when the
    pool runs out; the simulator then keeps nothing)."""
    st = m._file(f)
    h = m.geometry.hstates[st.hstate]
    offset = _check_int("offset", offset, -(1 << 62))
    length = _check_int("length", length, -(1 << 62))
    if offset < 0 or length <= 0:
        raise syscall_error(errno.EINVAL, "fallocate: offset must be >= 0 and length > 0 "
                            "(vfs_fallocate), not offset %d length %d" % (offset, length))
    if offset + length > MAX_LFS_FILESIZE:
        raise syscall_error(errno.EFBIG, "fallocate: offset + length %#x is larger than a file "
                            "may be (s_maxbytes, 2**63-1; vfs_fallocate)" % (offset + length))
    start = offset >> h.shift
    end = (offset + length + h.size - 1) >> h.shift
    # what the loop below would find, counted first: a range the pool cannot fill is ENOSPC
    # at once, whatever its size (reserved indices take their reservation; the others need
    # free - reserved > 0, as alloc_hugetlb_folio checks)
    top = min(end, st.pc.size)
    have = st.pc[start:top] >= 0 if start < top else np.zeros(0, bool)
    reserved = int(np.count_nonzero(~have & (st.resv[start:top] == 1))) if start < top else 0
    unreserved = (end - start) - int(np.count_nonzero(have)) - reserved
    avail = hugetlb.free_huge_pages(m, h) - m._resv[h.index]
    if unreserved > avail:
        raise syscall_error(errno.ENOSPC, "fallocate: %d %s hugepage(s) needed, HugePages_Free "
                            "%d, HugePages_Rsvd %d (alloc_hugetlb_folio)"
                            % (unreserved + reserved, _fmt(h.size),
                               hugetlb.free_huge_pages(m, h), m._resv[h.index]))
    ensure_extent(m, st, end, "fallocate")
    grow_file(m, st, offset + length)   # i_size = offset + len, not rounded
    m.call_path = ["fallocate", "hugetlbfs_fallocate"]
    for idx in range(start, end):
        if st.pc[idx] >= 0:
            continue
        try:
            hugetlb.alloc_hugetlb_folio(m, st, idx)
        except LookupError as e:
            raise syscall_error(errno.ENOSPC, "fallocate: %s" % e) from None
    m._account()
    m._finish()


def close_fd(m, f):
    """``close(fd)`` → ``fput``: the file goes when its last reference does
    (:func:`hugetlbfs_evict_inode`)."""
    st = m._file(f)
    st.fd_open = False
    m.call_path = ["close", "fput"]
    hugetlbfs_evict_inode(m, st)
    m._account()
    m._finish()


def hugetlbfs_evict_inode(m, st: _FileState):
    """The last reference to the file is gone: ``hugetlbfs_evict_inode`` →
    ``remove_inode_hugepages`` (page cache lets go, folios return to the pool) and
    ``hugetlb_unreserve_pages`` (unused reservations are released)."""
    if st.fd_open or st.nr_vmas > 0 or st.released:
        return
    st.released = True
    h = m.geometry.hstates[st.hstate]
    m.call_path += ["hugetlbfs_evict_inode", "remove_inode_hugepages", "hugetlb_unreserve_pages"]
    for idx in np.flatnonzero(st.pc >= 0):
        fid = int(st.pc[idx])
        pfn = int(m._folio_pfn[fid])
        m._emit(core.EV_PAGECACHE_DEL, -1, 0, h.shift,
                   m.kernel.pagecache_refs(h.pages_per_huge_page()), pfn, fid)
        m._emit(core.EV_FOLIO_FREE, -1, 0, h.shift, 1, pfn, fid)
        m._folio_used[fid] = 0
        m._folio_file[fid] = -1
        m._folio_index[fid] = -1
        st.pc[idx] = -1
    m._resv[h.index] -= int(np.count_nonzero(st.resv == 1))
    st.resv[:] = 0
