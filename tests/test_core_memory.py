"""Memory limits (issue 16): the scale run reads the memory the process really has and
refuses, before allocating, a run that would not fit; under a real cap (RLIMIT_AS in a
forked child) the refusal is quick and small, and a scale run that fits completes."""
import json
import os
import resource

import pytest

from hgmviz.core.memory import NotEnoughMemory, memory_headroom, require_memory

GIB = 1 << 30


def _files(tmp_path, cgroup, tree, meminfo_kib=8 << 20):
    (tmp_path / "cgroup").write_text(cgroup)
    for rel, text in tree.items():
        p = tmp_path / "fs" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (tmp_path / "fs").mkdir(exist_ok=True)
    (tmp_path / "meminfo").write_text("MemTotal: 1 kB\nMemAvailable: %d kB\n" % meminfo_kib)
    return dict(root=str(tmp_path / "fs"), proc_cgroup=str(tmp_path / "cgroup"),
                meminfo=str(tmp_path / "meminfo"))


def test_cgroup_v2_tightest_ancestor(tmp_path):
    where = _files(tmp_path, "0::/user/session\n", {
        "user/session/memory.max": "max\n", "user/session/memory.current": "100\n",
        "user/memory.max": "%d\n" % (2 * GIB), "user/memory.current": "%d\n" % (GIB // 2)})
    have, source = memory_headroom(**where)
    assert have == 2 * GIB - GIB // 2
    assert "cgroup v2 memory.max 2.00 GiB" in source


def test_cgroup_v1_limit(tmp_path):
    where = _files(tmp_path, "4:memory:/job\n3:cpu:/\n", {
        "memory/job/memory.limit_in_bytes": "%d\n" % GIB,
        "memory/job/memory.usage_in_bytes": "%d\n" % (GIB // 4)})
    have, source = memory_headroom(**where)
    assert have == GIB - GIB // 4 and "cgroup v1 memory.limit_in_bytes" in source


def test_meminfo_when_no_cgroup_limit(tmp_path):
    where = _files(tmp_path, "4:memory:/job\n0::/\n", {
        "memory/job/memory.limit_in_bytes": "9223372036854771712\n", "memory.max": "max\n"},
        meminfo_kib=3 << 20)
    if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
        pytest.skip("this test process runs under RLIMIT_AS")
    assert memory_headroom(**where) == (3 * GIB, "MemAvailable 3.00 GiB")
    with pytest.raises(NotEnoughMemory) as e:
        require_memory(4 * GIB, "a run", **where)
    assert e.value.need == 4 * GIB and e.value.have == 3 * GIB
    assert str(e.value) == ("a run needs about 4.00 GiB of memory; this process has 3.00 GiB "
                            "(MemAvailable 3.00 GiB), so it is not started")
    assert require_memory(GIB, "a run", **where) == 3 * GIB


def _in_capped_child(fn, cap_extra=GIB):
    """Run ``fn()`` in a forked child whose address space may grow by ``cap_extra`` bytes at
    most (RLIMIT_AS = its VmSize + cap_extra); return what it sends back through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            with open("/proc/self/status") as fh:
                vm = next(int(x.split()[1]) * 1024 for x in fh if x.startswith("VmSize:"))
            resource.setrlimit(resource.RLIMIT_AS, (vm + cap_extra, vm + cap_extra))
            out = fn()
        except BaseException as e:     # report anything, never return into pytest
            out = {"error": repr(e)}
        os.write(w, json.dumps(out).encode())
        os.close(w)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def _rss():
    with open("/proc/self/status") as fh:
        return next(int(x.split()[1]) * 1024 for x in fh if x.startswith("VmRSS:"))


def test_scale_run_refused_under_a_64_mib_cap_quickly_and_small():
    import time

    from hgmviz.bench import scale_run
    from hgmviz.widgets.drill import ScaleRun

    def child():
        rss0, t = _rss(), time.perf_counter()
        sc = ScaleRun()
        done = sc.run_chunk()
        out = {"done": done, "outcome": sc.outcome, "message": sc.message,
               "machine": sc.machine is not None}
        try:
            scale_run("int_max_half")
            out["bench"] = "ran"
        except NotEnoughMemory as e:
            out["bench"] = str(e)
        out["seconds"] = time.perf_counter() - t
        out["rss_growth"] = _rss() - rss0
        return out

    out = _in_capped_child(child, cap_extra=64 << 20)
    assert "error" not in out, out
    assert out["done"] and out["outcome"] == "not enough memory" and not out["machine"]
    assert ("the scale run (2,105,858 page-table pages, identical leaf tables sharing their "
            "entries) needs about 116 MiB") in out["message"]
    assert "RLIMIT_AS" in out["message"] and "not started" in out["message"]
    assert "the scale run to the int_max_half guard" in out["bench"]
    assert "RLIMIT_AS" in out["bench"]
    assert out["seconds"] < 30 and out["rss_growth"] < 200 << 20


def test_a_scale_run_that_fits_completes_under_the_cap():
    # the same ScaleRun path at the toy geometry: it fits, so it runs to the guard
    from hgmviz.widgets.drill import ScaleRun

    def child():
        sc = ScaleRun(geometry="toy", hstate=1 << 18, piece=4096, procs=4, chunk=8)
        sc.run()
        return {"outcome": sc.outcome, "vmas": sc.vmas, "expected": sc.expected_vmas,
                "extra": sc.extra_pieces, "predicted": sc.predicted["extra_pieces"]}

    out = _in_capped_child(child)
    assert "error" not in out, out
    assert out["outcome"] == "refused"
    assert out["vmas"] + 1 == out["expected"] and out["extra"] == out["predicted"]


def test_the_real_scale_run_completes_under_a_1_gib_cap():
    # issue 16: 4,095 VMAs mapping one 1 GiB folio at 4 KiB (2^30 - 1 leaf installs) to the
    # INT_MAX/2 guard, in a child whose address space may grow by 1 GiB at most
    from hgmviz.widgets.drill import ScaleRun

    def child():
        rss0 = _rss()
        sc = ScaleRun(guard="int_max_half", chunk=512)
        sc.run()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        pt = sc.machine.pt
        return {"outcome": sc.outcome, "vmas": sc.vmas, "extra": sc.extra_pieces,
                "refcount": sc.refcount, "growth": peak - rss0, "used": pt.nr_used,
                "rows": pt.nr_rows, "canonical": pt.nr_canonical}

    out = _in_capped_child(child, cap_extra=GIB)
    assert "error" not in out, out
    assert (out["outcome"], out["vmas"], out["extra"]) == ("refused", 4095, 262143)
    assert out["refcount"] == 1 << 30
    # 4,096 VMAs (the last one stopped one piece short) x (1 PMD + 512 PTE pages) + 64 PGDs
    # and 64 PUD pages: 2.1 million tables; rows: 512 canonical ones, every PMD, PGD and PUD
    # page's, and at most the first VMA's PTE pages (those filled before the content's
    # second sighting) and the last VMA's last PTE page (one entry short)
    assert out["used"] == 4096 * 513 + 128
    assert out["canonical"] == 512
    assert 512 + 4096 + 128 < out["rows"] <= 512 + 4096 + 128 + 512 + 1
    assert out["growth"] < GIB


def test_scale_run_summary_shows_memory_used():
    from hgmviz.widgets.drill import ScaleRun
    sc = ScaleRun(guard="int_max_half", procs=2, chunk=2)
    assert "resident" not in sc.summary()          # not started: no machine, no memory
    sc.run_chunk()
    # 2 VMAs of 1 GiB at 4 KiB: 2 x (1 PMD + 512 PTE pages) + 2 PGDs + 2 PUD pages, 2 KiB each
    assert sc.machine.pt.nr_used == 2 * 513 + 4
    # the second VMA's PTE pages read the 512 canonical rows (issue 16)
    assert sc.machine.pt.nr_canonical == 512 and sc.machine.pt.nr_rows <= 512 + 512 + 6
    assert "page tables 1 MiB resident of the process's " in sc.summary()
    sc.release()
