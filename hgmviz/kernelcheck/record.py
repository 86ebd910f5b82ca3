"""Record real /proc and /sys bytes from this machine for the readers' unit tests.

``python -m hgmviz.kernelcheck.record tests/data/kernelcheck`` (root) builds a small known
state with :class:`~hgmviz.kernelcheck.live.LiveMachine` -- a 4 MiB 2 MiB-hstate memfd mapped
twice in one process, the first hugepage touched through both mappings, the second mapping
registered for userfaultfd MINOR faults -- and saves, unchanged, the bytes the kernel returns:

* ``pagemap.bin``: /proc/<pid>/pagemap for the 1024 pages of mapping ``a`` (8 KiB)
* ``kpagecount.bin`` / ``kpageflags.bin``: the 512 PFNs of the mapped folio
* ``kpageflags_states.bin``: head and first tail PFN, mapped / in the page cache only / free
* ``meminfo.txt``, ``smaps.txt``, ``maps.txt``, ``hugepages/hugepages-*kB/*``
* ``manifest.json``: what was done, the addresses and PFNs, and the facts the state implies
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys

from .. import ops as O
from ..ops import World, run_step
from . import procfs
from .live import LiveMachine

MiB = 1 << 20

#: The known state, as operation records (:mod:`hgmviz.ops`) run on the live kernel.
STEPS = (O.MemfdCreate("f", 4 * MiB, 2 * MiB), O.Spawn("p"), O.Mmap("p", "f", 4 * MiB, "a"),
         O.Mmap("p", "f", 4 * MiB, "b"), O.Touch("p", ("a", 0x5000)), O.Touch("p", ("b", 0x1000)),
         O.UffdioRegister("p", "b", 4 * MiB, "minor"))


def _copy_pools(dest: str) -> None:
    root = procfs.HUGEPAGES_SYSFS
    for name in sorted(os.listdir(root)):
        d = os.path.join(dest, "hugepages", name)
        os.makedirs(d, exist_ok=True)
        for k in procfs.POOL_FILES:
            try:
                with open(os.path.join(root, name, k)) as f:
                    data = f.read()
            except OSError:
                continue
            with open(os.path.join(d, k), "w") as f:
                f.write(data)


def record(dest: str) -> dict:
    os.makedirs(dest, exist_ok=True)
    if os.path.isdir(os.path.join(dest, "hugepages")):
        shutil.rmtree(os.path.join(dest, "hugepages"))

    def save(name, data):
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(os.path.join(dest, name), mode) as f:
            f.write(data)

    def pread(path, off, n):
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.pread(fd, n, off)
        finally:
            os.close(fd)

    states = b""
    with LiveMachine(nr_hugepages={2 * MiB: 4}) as m:
        w = World(m)
        for op in STEPS:
            out = run_step(w, op)
            if not out.ok:
                raise RuntimeError("%s: %s (%s)" % (op.describe_call(), out.status, out.message))
        f, p, a, b = w.files["f"], w.procs["p"], w.addrs["a"], w.addrs["b"]
        head = p.pagemap(a).pfn
        save("pagemap.bin", pread("/proc/%d/pagemap" % p.pid, (a >> 12) * 8, 1024 * 8))
        save("kpagecount.bin", pread("/proc/kpagecount", head * 8, 512 * 8))
        save("kpageflags.bin", pread("/proc/kpageflags", head * 8, 512 * 8))
        states += pread("/proc/kpageflags", head * 8, 16)
        with open("/proc/meminfo") as fh:
            save("meminfo.txt", fh.read())
        with open("/proc/%d/smaps" % p.pid) as fh:
            save("smaps.txt", fh.read())
        with open("/proc/%d/maps" % p.pid) as fh:
            save("maps.txt", fh.read())
        _copy_pools(dest)
        pools = {str(k): v.as_meminfo() for k, v in procfs.read_hugepage_pools().items()}
        p.munmap(a, 4 * MiB)
        p.munmap(b, 4 * MiB)
        states += pread("/proc/kpageflags", head * 8, 16)          # page cache only
        f.close()
        states += pread("/proc/kpageflags", head * 8, 16)          # back in the free pool
        save("kpageflags_states.bin", states)
        pid = p.pid
    manifest = {
        "kernel": platform.release(),
        "recorded_by": "python -m hgmviz.kernelcheck.record",
        "steps": ["LiveMachine(nr_hugepages={2 MiB: 4})"] + [op.describe_call() for op in STEPS] + [
                  "record pagemap of a, kpagecount/kpageflags of the folio, meminfo, smaps, "
                  "hugepages/*", "munmap a and b: record flags", "close f: record flags"],
        "pid": pid, "a": a, "b": b, "head_pfn": head,
        "pools_at_record": pools,
        "facts": {
            "pagemap_present_pages": 512, "mapcount": 2,
            "hugepages_2048kB": {"nr_hugepages": pools[str(2 * MiB)]["HugePages_Total"],
                                 "free_hugepages": pools[str(2 * MiB)]["HugePages_Free"],
                                 "resv_hugepages": pools[str(2 * MiB)]["HugePages_Rsvd"]},
            "kpageflags_states": ["mapped", "page cache only", "free pool"],
        },
    }
    save("manifest.json", json.dumps(manifest, indent=1) + "\n")
    return manifest


if __name__ == "__main__":
    print(json.dumps(record(sys.argv[1] if len(sys.argv) > 1 else "tests/data/kernelcheck"),
                     indent=1))
