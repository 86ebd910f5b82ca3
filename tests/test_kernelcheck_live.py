"""The live cross-check on the running kernel (issue 7).

Every scenario runs for real and the kernel must do what the scenario's rules (domain.md
section 2) say.  The machine's settings must be exactly as before afterwards, with no child
process left and the hugetlb pool as it was.

Needs root on Linux with hugetlb.  Elsewhere these tests skip with the reason, except when
``CI=true``: CI runs as root on a real kernel, so there a reason to skip is a failure.
"""
from __future__ import annotations

import errno
import json
import re
import os
import signal
import subprocess
import sys
import time

import pytest

from hgmviz.kernelcheck import live, procfs
from hgmviz.kernelcheck.runner import (LiveWorld, check_against_rules, fmt_step,
                                       run_scenario)
from hgmviz.kernelcheck.scenarios import SCENARIOS, get_scenario

MiB = 1 << 20
IN_CI = os.environ.get("CI", "").lower() == "true"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cannot(reason: str):
    if IN_CI:
        pytest.fail("CI=true, and CI must run the live kernel check, but: %s" % reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def can_run():
    try:
        live.check_can_run([2 * MiB], userfaultfd=True)
    except live.CannotRun as e:
        _cannot(str(e))


def _children() -> set[int]:
    me = os.getpid()
    out = set()
    for tid in os.listdir("/proc/%d/task" % me):
        try:
            with open("/proc/%d/task/%s/children" % (me, tid)) as f:
                out |= {int(x) for x in f.read().split()}
        except OSError:
            pass
    return out


def _pool_state():
    return {size: (p.nr_hugepages, p.free_hugepages, p.resv_hugepages, p.surplus_hugepages,
                   p.nr_overcommit_hugepages)
            for size, p in procfs.read_hugepage_pools().items()}


def _resting_state():
    """Settings, pool and our children, read while no LiveMachine anywhere is open (the lock):
    another live check running at the same time on this host cannot disturb the comparison."""
    with live.host_lock():
        return live.settings_snapshot(), _pool_state(), _children()


@pytest.fixture
def machine_state(can_run):
    """Snapshot settings, pool and children; assert all are back after the test."""
    before = _resting_state()
    yield before
    deadline = time.monotonic() + 2.0
    while True:                        # a killed process may take a moment to let go
        after = _resting_state()
        if after == before or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert after[0] == before[0], "hugetlb settings not restored"
    assert after[1] == before[1], "hugetlb pool not back to where it was"
    assert after[2] == before[2], "child processes left behind: %s" % (after[2] - before[2])


def _table(run) -> str:
    return "\n".join("  %2d. %-45s => %s %s" % (s.index, s.description, fmt_step(s),
                                               "(%s)" % s.detail if s.detail else "")
                     for s in run.steps)


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_scenario_on_the_running_kernel(name, machine_state):
    sc = get_scenario(name)
    for attempt in range(3):
        run = run_scenario(LiveWorld(), sc)
        if run.status == "skipped":
            _cannot(run.reason)
        assert run.status == "ran", run.reason
        bad = check_against_rules(sc, run)
        if not bad or not run.warnings:
            break                   # a clean result, or a difference nobody else caused
    assert not bad, "kernel differs from the rules:\n%s\n%s\n%s" % (
        "\n".join("  step %d %s: expected %r, kernel %r" % b for b in bad), _table(run),
        "\n".join(run.warnings))


def test_at_least_15_scenarios_cover_the_issue():
    assert len(SCENARIOS) >= 15
    ops = {st.op.spec.method for sc in SCENARIOS for st in sc.steps}   # the machine calls
    assert {"touch", "fork", "exit", "munmap", "madvise", "uffdio_register",
            "uffdio_continue", "close"} <= ops
    outcomes = {st.expect.split()[0] for sc in SCENARIOS for st in sc.steps}
    assert {"ok", "EINVAL", "EEXIST", "EFAULT", "EAGAIN", "SIGBUS", "userfault:minor",
            "userfault:missing", "ENOMEM"} <= outcomes
    assert any(1 << 30 in sc.nr_hugepages for sc in SCENARIOS)


# --- how a touch is done ----------------------------------------------------------------------
def _one_touch(method):
    with live.LiveMachine(nr_hugepages={2 * MiB: 2}, touch_method=method) as m:
        f = m.memfd_create(4 * MiB)
        p = m.spawn()
        a = p.mmap(f, 4 * MiB)
        base = m.meminfo()[2 * MiB]
        p.touch(a + 0x5000, write=True)
        p.touch(a + 2 * MiB + 0x3000, write=False)
        e0, e1 = p.pagemap(a + 0x5000), p.pagemap(a + 2 * MiB + 0x3000)
        counts = [procfs.read_kpagecount(e.pfn - i)[0] for e, i in ((e0, 5), (e1, 3))]
        counts += [procfs.read_kpagecount(e0.pfn - 5 + 511)[0]]
        flags = [p.kpageflags(a), p.kpageflags(a + 2 * MiB)]
        mi = m.meminfo()[2 * MiB]
        c = p.fork()
        c.touch(a + 0x5000)
        counts.append(p.kpagecount(a))
        c.exit()
        return (counts, flags, mi["HugePages_Free"] - base["HugePages_Free"],
                mi["HugePages_Rsvd"] - base["HugePages_Rsvd"], e0.file_shared, e0.exclusive)


def test_prober_touch_gives_the_same_state_as_a_cpu_touch(machine_state):
    """process_vm_writev (the default) and /proc/pid/mem fault pages in exactly like a CPU
    access in the process itself: same mapcounts, flags, pool, pagemap bits."""
    cpu = _one_touch("cpu")
    assert cpu == _one_touch("vm") == _one_touch("mem")
    assert cpu[0] == [1, 1, 1, 2]
    assert cpu[2:4] == (-2, -2)          # two pages taken, both reservations consumed


def test_userfault_through_vm_is_distinct_but_through_proc_mem_looks_like_sigbus(machine_state):
    """Why the default touch is process_vm_writev: it waits in handle_userfault() (the driver
    sees the message and reports a userfault), whereas /proc/pid/mem's GUP has no
    FAULT_FLAG_ALLOW_RETRY, so handle_userfault() answers VM_FAULT_SIGBUS -> EIO at once."""
    with live.LiveMachine(nr_hugepages={2 * MiB: 2}) as m:
        f = m.memfd_create(2 * MiB)
        p = m.spawn()
        a = p.mmap(f, 2 * MiB)
        p.uffdio_register(a, 2 * MiB, mode="missing")
        free = m.meminfo()[2 * MiB]["HugePages_Free"]
        t0 = time.monotonic()
        with pytest.raises(live.UserfaultPending) as ei:
            p.touch(a + 0x10)
        assert ei.value.reason == "missing" and time.monotonic() - t0 < 2.0
        with pytest.raises(live.SigBus):
            p.touch(a + 0x10, method="mem")
        assert p.pagemap(a) is None                           # nothing was mapped ...
        assert m.meminfo()[2 * MiB]["HugePages_Free"] == free   # ... nor allocated
        with pytest.raises(live.UserfaultPending):
            p.touch(a + 0x10)                                   # again: reported, not hung


def test_refused_syscalls_raise_oserror_with_the_childs_errno(machine_state):
    with live.LiveMachine(nr_hugepages={2 * MiB: 2}) as m:
        f = m.memfd_create(4 * MiB)
        p = m.spawn()
        a = p.mmap(f, 4 * MiB)
        with pytest.raises(OSError) as ei:
            p.munmap(a + 0x1000, 2 * MiB)
        assert ei.value.errno == errno.EINVAL
        # addr= over the scenario's own memfd mapping is MAP_FIXED, as in the simulator (issue 13):
        # the old mapping is replaced, not refused with EEXIST
        assert p.mmap(f, 4 * MiB, addr=a) == a
        with pytest.raises(OSError) as ei:
            p.mmap(f, 4 * MiB, offset=0x1000)            # an offset not hugepage-aligned
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(live.SigSegv):
            p.touch(0x1000)
        p.exit()
        with pytest.raises(OSError) as ei:
            p.touch(a)
        assert ei.value.errno == errno.ESRCH


def test_an_exception_inside_the_machine_still_restores_everything(machine_state):
    with pytest.raises(ZeroDivisionError):
        with live.LiveMachine(nr_hugepages={2 * MiB: 3}) as m:
            f = m.memfd_create(4 * MiB)
            p = m.spawn()
            a = p.mmap(f, 4 * MiB)
            p.touch(a)
            p.fork().fork()
            assert len(m.live_processes()) == 3
            1 / 0


def test_a_second_machine_waits_for_the_lock(machine_state):
    with live.LiveMachine(nr_hugepages={2 * MiB: 1}):
        with pytest.raises(live.CannotRun) as ei:
            live.LiveMachine(nr_hugepages={2 * MiB: 1}, lock_timeout=0.2)
        assert "another live hgmviz kernel check" in str(ei.value)


def test_exclusive_pool_and_overcommit_are_restored(machine_state):
    path = os.path.join(live.hstate_dir(2 * MiB), "nr_overcommit_hugepages")
    with live.host_lock() as lock:     # nobody else may see overcommit = 3
        old = open(path).read().strip()
        with open(path, "w") as fh:
            fh.write("3")
        try:
            before = live.settings_snapshot()
            with live.LiveMachine(nr_hugepages={2 * MiB: 2}, exclusive=True, lock=lock) as m:
                assert open(path).read().strip() == "0"
                pool = m.meminfo()[2 * MiB]
                assert pool["HugePages_Free"] - pool["HugePages_Rsvd"] == 2
            assert live.settings_snapshot() == before
        finally:
            with open(path, "w") as fh:
                fh.write(old)


def _nr_path():
    return os.path.join(live.hstate_dir(2 * MiB), "nr_hugepages")


def _set_nr(value):
    with open(_nr_path(), "w") as fh:
        fh.write(str(value))


def test_someone_else_resizing_the_pool_is_reported_and_kept(machine_state):
    """Issue 17 item 1: an administrator's write during the run survives the check's end."""
    path = _nr_path()
    start = int(machine_state[0][path])
    try:
        with live.LiveMachine(nr_hugepages={2 * MiB: 2}) as m:
            _set_nr(start + 3)                      # "another user" sets the pool to start+3
        assert any("nr_hugepages: %d at the start, %d at the end" % (start + 2, start + 3) in w
                   for w in m.interference)
        assert any("set to %d by someone else" % (start + 3) in w and "left as it is" in w
                   for w in m.interference)
        assert open(path).read().strip() == str(start + 3)   # never lowered below their value
    finally:
        with live.host_lock():
            _set_nr(start)


def test_someone_else_resizing_the_pool_before_the_write_is_kept(machine_state, monkeypatch):
    """The race the issue timed: a write between the check's first read of the pool and its
    own write (while the guardian starts).  The check adds its pages on top, says so, and takes
    back only its own."""
    path = _nr_path()
    start = int(machine_state[0][path])
    real = live.PoolKeeper.start_guardian

    def slow_start(keeper):
        real(keeper)
        _set_nr(start + 3)

    monkeypatch.setattr(live.PoolKeeper, "start_guardian", slow_start)
    try:
        with live.LiveMachine(nr_hugepages={2 * MiB: 2}) as m:
            assert open(path).read().strip() == str(start + 5)
        assert any("changed from %d to %d before the check wrote it" % (start, start + 3) in w
                   for w in m.interference)
        assert open(path).read().strip() == str(start + 3)
    finally:
        with live.host_lock():
            _set_nr(start)


_WRITER = r"""
import sys, time
delay, path, value = float(sys.argv[1]), sys.argv[2], sys.argv[3]
sys.stdin.readline()
time.sleep(delay)
t = time.monotonic()
with open(path, "w") as f:
    f.write(value)
print(t, flush=True)
"""


@pytest.mark.parametrize("delay", [0.0, 0.03, 0.1, 0.25, 0.6])
def test_a_concurrent_administrator_keeps_the_pool_it_set(delay, machine_state):
    """A separate process sets nr_hugepages to start+5 at some moment while a machine is set
    up, used and closed.  Whenever it lands, the pool ends at start+5, and a write that landed
    while the machine was open is reported."""
    path = _nr_path()
    start = int(machine_state[0][path])
    w = subprocess.Popen([sys.executable, "-c", _WRITER, str(delay), path, str(start + 5)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        t_open = time.monotonic()
        w.stdin.write("go\n")
        w.stdin.flush()
        m = None
        try:
            with live.LiveMachine(nr_hugepages={2 * MiB: 2}) as m:
                f = m.memfd_create(4 * MiB)
                p = m.spawn()
                p.touch(p.mmap(f, 4 * MiB))
                time.sleep(0.2)
        except live.CannotRun as e:              # the write hit the reservation: it backed off
            assert "backs off" in str(e)
        t_closed = time.monotonic()
        t_write = float(w.stdout.readline())
        assert w.wait(10) == 0
        assert open(path).read().strip() == str(start + 5)
        if m is not None and t_open < t_write < t_closed - 0.05:
            assert any("someone else" in x for x in m.interference), m.interference
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
        with live.host_lock():
            _set_nr(start)


def test_the_guardian_leaves_an_outside_change_after_sigkill(machine_state):
    path = _nr_path()
    start = int(machine_state[0][path])
    code = _VICTIM % {"repo": REPO, "wait": "time.sleep(60)"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        json.loads(proc.stdout.readline())
        _set_nr(start + 7)                            # the administrator, meanwhile
        proc.kill()
        proc.wait(20)
        err = proc.stderr.read()                      # EOF once the guardian is done too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        assert "set to %d by someone else" % (start + 7) in err, err
        assert "Traceback" not in err
        with live.host_lock():                        # the guardian held it until done
            assert open(path).read().strip() == str(start + 7)
    finally:
        with live.host_lock():
            _set_nr(start)


def test_ctrl_c_on_kernel_check_prints_no_traceback_and_exits_130(machine_state):
    """Issue 17 item 10: one line, the pool given back, exit status 130."""
    before = machine_state[0]
    path = _nr_path()
    proc = subprocess.Popen([sys.executable, "-m", "hgmviz", "kernel-check", "--scenario",
                             "pmd_sharing"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=REPO))
    try:
        deadline = time.monotonic() + 60
        while open(path).read().strip() == before[path]:       # wait until it reserved
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted" in err
    assert _resting_state()[0] == before


# --- Ctrl-C, SIGTERM, SIGKILL -----------------------------------------------------------------
_VICTIM = r"""
import json, os, sys, time
sys.path.insert(0, %(repo)r)
from hgmviz.kernelcheck.live import LiveMachine
m = LiveMachine(nr_hugepages={2 << 20: 3})
f = m.memfd_create(4 << 20)
p = m.spawn()
a = p.mmap(f, 4 << 20)
p.touch(a)
c = p.fork()
c.touch(a + (2 << 20))
p.uffdio_register(a, 4 << 20, mode="wp", event_fork=True)
g = p.fork()
pids = [q.pid for q in m.processes] + [m._prober.pid, m.guardian_pid]
print(json.dumps(pids), flush=True)
%(wait)s
"""


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_interrupted_driver_restores_settings_and_leaves_no_process(how, machine_state):
    """Ctrl-C and SIGTERM unwind through close(); after SIGKILL the guardian restores."""
    wait = "time.sleep(60)" if how != "SIGINT" else "while True: time.sleep(0.01)"
    code = _VICTIM % {"repo": REPO, "wait": wait}
    before = machine_state[0]
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
        assert len(pids) == 5                                 # p, c, g, prober, guardian
        assert live.settings_snapshot() != before           # it did reserve pages
        proc.send_signal(getattr(signal, how))
        rc = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc != 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if os.path.exists("/proc/%d" % pid)]
        settings = _resting_state()[0]     # after SIGKILL the guardian holds the lock until done
        if not alive and settings == before:
            break
        time.sleep(0.05)
    assert settings == before
    assert not alive, "processes left: %s" % alive


# --- cannot run: said clearly, anywhere -------------------------------------------------------
def test_cannot_run_when_not_root(monkeypatch):
    monkeypatch.setattr(live.sys, "platform", "linux")
    monkeypatch.setattr(live.os, "geteuid", lambda: 1000)
    with pytest.raises(live.CannotRun) as ei:
        live.check_can_run([2 * MiB])
    assert "not root" in ei.value.why and "sudo" in ei.value.fix


def test_cannot_run_when_not_linux(monkeypatch):
    monkeypatch.setattr(live.sys, "platform", "darwin")
    with pytest.raises(live.CannotRun) as ei:
        live.check_can_run([2 * MiB])
    assert "not Linux" in str(ei.value)


def test_cannot_run_without_the_1g_hstate(monkeypatch, tmp_path):
    (tmp_path / "hugepages-2048kB").mkdir()
    monkeypatch.setattr(live.sys, "platform", "linux")
    monkeypatch.setattr(live.os, "geteuid", lambda: 0)
    monkeypatch.setattr(live.os, "access", lambda *a: True)
    monkeypatch.setattr(procfs, "HUGEPAGES_SYSFS", str(tmp_path))
    with pytest.raises(live.CannotRun) as ei:
        live.check_can_run([1 << 30])
    assert "1 GiB" in ei.value.why and "pdpe1gb" in ei.value.fix


def test_a_scenario_that_cannot_run_is_skipped_with_its_reason(monkeypatch):
    def refuse(*a, **k):
        raise live.CannotRun("no 1 GiB pages", "reserve them at boot")
    monkeypatch.setattr(live, "check_can_run", refuse)
    run = run_scenario(LiveWorld(), get_scenario("hugetlb_1g"))
    assert run.status == "skipped" and "no 1 GiB pages" in run.reason and not run.steps


# --- the command line -------------------------------------------------------------------------
def test_cli_list(capsys):
    from hgmviz.kernelcheck.cli import main
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(s.name in out for s in SCENARIOS)


def test_cli_json_against_rules(capsys, machine_state):
    from hgmviz.kernelcheck.cli import main
    rc = main(["--scenario", "fault", "--scenario", "munmap_unaligned", "--against", "rules",
               "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 == report["exit_code"]
    assert [s["name"] for s in report["scenarios"]] == ["fault", "munmap_unaligned"]
    assert all(r["agree"] for s in report["scenarios"] for r in s["rows"])


def test_cli_table_against_the_simulator(capsys, machine_state):
    pytest.importorskip("hgmviz.mm")
    from hgmviz.kernelcheck.cli import main
    rc = main(["--scenario", "second_mapping"])
    out = capsys.readouterr().out
    assert "scenario" in out and "simulator" in out and "agree" in out
    assert rc in (0, 1)          # 1 would be a real disagreement, reported in the table
    assert ("1 of 1 scenarios agree" in out) == (rc == 0)


# --- the notebook's views of a report (chapter 10) --------------------------------------------
def _fake_report(monkeypatch, names, kernel_reason=""):
    """A report from run_check() with the live side replaced by the simulator (or refused), so
    the formatting is tested without root."""
    from hgmviz.kernelcheck import cli
    from hgmviz.kernelcheck.runner import SimWorld

    class FakeLive(SimWorld):
        def __init__(self, touch_method="vm"):
            super().__init__()

    if kernel_reason:
        def refuse(world, sc):
            from hgmviz.kernelcheck.runner import ScenarioRun
            if isinstance(world, FakeLive):
                return ScenarioRun(sc.name, "kernel", "skipped", kernel_reason)
            return run_scenario(world, sc)
        monkeypatch.setattr(cli, "run_scenario", refuse)
    monkeypatch.setattr(cli, "LiveWorld", FakeLive)
    return cli.run_check(names)


def test_format_summary_has_one_line_per_scenario_and_the_totals(monkeypatch):
    from hgmviz.kernelcheck.cli import format_summary
    report = _fake_report(monkeypatch, ["fault", "reservations"])
    text = format_summary(report)
    lines = text.splitlines()
    fault = next(ln for ln in lines if ln.startswith("fault "))
    assert fault.split()[1] == str(len(get_scenario("fault").steps))
    assert "agree" in fault and get_scenario("fault").title in fault
    assert lines[-1].startswith("2 of 2 scenarios agree; disagree: 0; could not run: 0")


def test_without_the_kernel_the_report_still_shows_the_simulators_predictions(monkeypatch):
    from hgmviz.kernelcheck.cli import format_prediction, format_report, format_summary
    from hgmviz.kernelcheck.runner import SimWorld
    report = _fake_report(monkeypatch, ["fault", "child_exit"], kernel_reason="needs root")
    summary = format_summary(report)
    assert re.search(r"^fault\s+%d\s+not run \(1\)" % len(get_scenario("fault").steps), summary,
                     flags=re.M)
    assert "(1) every scenario — needs root" in summary
    assert summary.splitlines()[-1].startswith("0 of 2 scenarios agree; disagree: 0; could not run: 2")
    assert report["exit_code"] == 2 and report["summary"]["not_run"] == ["fault", "child_exit"]
    text = format_report(report, scenarios=["child_exit"])
    run = run_scenario(SimWorld(), get_scenario("child_exit"))
    for res in run.steps:                       # every step: kernel not run, the prediction
        line = next(ln for ln in text.splitlines() if "%d. %s" % (res.index, res.description) in ln)
        assert "(not run)" in line and fmt_step(res) in line and line.rstrip().endswith("skip")
    assert "child_exit: needs root" in text
    assert text.splitlines()[-1].startswith("0 of 2 scenarios agree; could not run: every scenario")
    assert fmt_step(run.steps[-1]) in format_prediction("child_exit")


def test_format_report_can_show_some_scenarios_and_names_the_unknown(monkeypatch):
    from hgmviz.kernelcheck.cli import format_report
    report = _fake_report(monkeypatch, ["fault", "child_exit"])
    text = format_report(report, scenarios=["child_exit"])
    assert "child_exit" in text and "\nfault " not in text
    assert "pages touched by process_vm_writev" in text.splitlines()[0]
    with pytest.raises(ValueError, match="not in this report: nope; it has: fault, child_exit"):
        format_report(report, scenarios=["nope"])


def test_format_prediction_is_the_simulator_side_with_each_steps_reason():
    from hgmviz.kernelcheck.cli import format_prediction
    from hgmviz.kernelcheck.runner import SimWorld
    sc = get_scenario("map_noreserve")
    text = format_prediction("map_noreserve")
    run = run_scenario(SimWorld(), sc)
    for step, res in zip(sc.steps, run.steps):
        line = next(ln for ln in text.splitlines() if ln.startswith("%d. " % res.index))
        assert fmt_step(res) in line
        assert step.why in line
    assert sc.rule in text
    assert "SIGBUS" in text and "ENOMEM" in text
    with pytest.raises(KeyError):
        format_prediction("no_such_scenario")
