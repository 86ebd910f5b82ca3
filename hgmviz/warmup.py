"""Compile every jitted kernel into the numba cache (binder/postBuild, CI): runs a short
scenario of every operation on each geometry."""
from __future__ import annotations

import sys
import time


def warm() -> None:
    from . import mm as hv
    from .schemes import SCHEMES
    for geometry in ("toy", "x86_64"):
        g = hv.Machine(geometry=geometry).geometry
        h0, h1 = (h.size for h in g.hstates)
        for scheme in SCHEMES:
            m = hv.Machine(nr_hugepages={h0: 2 * g.PTRS_PER_TABLE, h1: 2}, geometry=geometry,
                           scheme=scheme)
            f = m.memfd_create(size=2 * h1, hstate=h1)
            p = m.spawn()
            a = p.mmap(f, 2 * h1)
            f.fallocate(0, 2 * h1)
            p.touch(a)
            p.uffdio_register(a + h1, h1, mode="minor|wp", event_fork=True)
            c = p.fork()
            c.exit()
            if m.scheme.supports_hgm:
                p.madvise(a + h1, h1, hv.MADV_SPLIT)
                p.uffdio_continue(a + h1, g.PAGE_SIZE)
                p.uffdio_continue_batch(a + h1 + g.PAGE_SIZE, h0 - g.PAGE_SIZE, g.PAGE_SIZE)
                p.uffdio_unregister(a + h1, h1)
                p.touch(a + h1 + h0)
                p.madvise(a + h1, h1, hv.MADV_COLLAPSE)
            p.madvise(a, h1, hv.MADV_DONTNEED)
            f2 = m.memfd_create(size=g.level_size(3), hstate=h0)
            b = p.mmap(f2, g.level_size(3), addr=g.level_size(3) * 4)
            q = m.spawn()
            q.mmap(f2, g.level_size(3), addr=g.level_size(3) * 4)
            p.touch(b)
            q.touch(b)
            q.munmap(b, h0)
            p.pagemap(a)
            m.audit()
            p.exit()
            q.exit()
            f.close()
            f2.close()


def main(argv=None) -> int:
    t = time.perf_counter()
    warm()
    print("hgmviz: kernels compiled and cached in %.1f s" % (time.perf_counter() - t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
